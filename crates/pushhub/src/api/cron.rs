//! Cron job endpoints (swoole-push's `crontab show|stop|resume|run`, seed 003, done
//! durably):
//!
//! - `PUT /v1/cron/{name}`: create (201) or update (200) a job.
//! - `GET /v1/cron`: an app's jobs, with next run, last run and last result.
//! - `GET /v1/cron/{name}`: one job.
//! - `POST /v1/cron/{name}/pause`, `/resume`, `/run` (run now).
//! - `DELETE /v1/cron/{name}`.
//!
//! A job belongs to an app; its name is unique in the app. The app is the request's
//! `app` (body field for PUT, or query parameter), else the app of the API key the
//! request presents, else the server's only app. The app's API keys guard its jobs as
//! they guard its timers.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::timers::{header_list, header_object, request_app, request_body};
use super::{parse_json, read_body, ApiState};
use crate::http_error::ApiError;
use crate::scheduler::cron::spec::{local_time, SpecError};
use crate::scheduler::cron::CronError;
use crate::scheduler::rules::{callback_request, Call};
use crate::store::{Job, JobDefinition, JobRun, Overlap};

/// Longest job name.
const MAX_NAME_BYTES: usize = 64;

/// The time zone of a job that names none.
const DEFAULT_TIME_ZONE: &str = "UTC";

impl From<CronError> for ApiError {
    fn from(error: CronError) -> Self {
        let message = error.to_string();
        match error {
            CronError::Store(error) => error.into(),
            CronError::Spec(SpecError::InvalidTimeZone(_)) => {
                ApiError::bad_request("invalid_time_zone", message)
            }
            CronError::Spec(_) => ApiError::bad_request("invalid_cron", message),
            CronError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "job_not_found", message)
            }
            CronError::TooManyJobs(_) => {
                ApiError::new(StatusCode::CONFLICT, "too_many_jobs", message)
            }
            CronError::Running(_) => ApiError::new(StatusCode::CONFLICT, "job_running", message),
        }
    }
}

/// A job name: 1-64 characters from `A-Z a-z 0-9 _ . -`.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_job_name",
            format!(
                "invalid job name {:?}: use 1-64 characters from A-Z a-z 0-9 _ - .",
                name.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// The job name in the path.
fn path_name(name: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = name.map_err(|e| ApiError::bad_request("invalid_job_name", e.body_text()))?;
    check_name(&name)?;
    Ok(name)
}

/// The job a request names: `{name}` in the path, of the app the request acts for (the
/// `app` query parameter, else its API key's app, else the server's only app). Every
/// per-job endpoint starts with this.
pub struct JobRef {
    /// The app.
    pub app: String,
    /// The job's name, checked.
    pub name: String,
}

impl FromRequestParts<ApiState> for JobRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let name = path_name(Path::<String>::from_request_parts(parts, state).await)?;
        let app = request_app(state, query_app(&parts.uri), &parts.headers)?;
        Ok(Self { app, name })
    }
}

/// The `app` query parameter, if any.
fn query_app(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(name, _)| name == "app")
        .map(|(_, value)| value.into_owned())
}

/// A run as the API shows it.
fn run_view(run: &JobRun, time_zone: &str) -> Value {
    json!({
        "number": run.number,
        "trigger": run.trigger.name(),
        "outcome": if run.succeeded { "succeeded" } else { "failed" },
        "scheduled_ms": run.scheduled_ms,
        "started_ms": run.started_ms,
        "started": local_time(run.started_ms, time_zone),
        "duration_ms": run.duration_ms,
        "status": run.status,
        "error": run.error,
        "response": run.response,
    })
}

/// A job as the API shows it; `with_body` adds the request body (one job, not lists).
pub fn view(job: &Job, with_body: bool) -> Value {
    let mut out = json!({
        "app": job.app,
        "name": job.name,
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "overlap": job.overlap.name(),
        "paused": job.paused,
        "method": job.request.method,
        "url": job.request.url,
        "headers": header_object(&job.request.headers),
        "body_bytes": job.request.body.as_ref().map_or(0, String::len),
        "timeout_ms": job.request.timeout_ms,
        "next_run_ms": job.next_ms,
        "next_run": job.next_ms.and_then(|ms| local_time(ms, &job.time_zone)),
        "running": job.running,
        "runs": job.runs,
        "skipped": job.skipped,
        "failed": job.failed,
        "last_skipped_ms": job.last_skipped_ms,
        "last_run": job.last_run.as_ref().map(|run| run_view(run, &job.time_zone)),
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
    });
    if with_body {
        out["body"] = json!(job.request.body);
    }
    out
}

/// Body of `PUT /v1/cron/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutJob {
    #[serde(default)]
    app: Option<String>,
    schedule: String,
    #[serde(default)]
    time_zone: Option<String>,
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    json: Option<Box<RawValue>>,
    #[serde(default)]
    form: Option<Map<String, Value>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    paused: Option<bool>,
}

/// `PUT /v1/cron/{name}`: create or replace a job's definition.
pub async fn put(
    State(state): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let name = path_name(name)?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, state.max_body_bytes).await?;
    let put: PutJob = parse_json(&body, "cron job")?;
    let app = request_app(
        &state,
        put.app.or_else(|| query_app(&parts.uri)),
        &parts.headers,
    )?;
    state.hub.app(&app)?;
    let overlap = match put.overlap.as_deref() {
        None => Overlap::Skip,
        Some(name) => Overlap::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_overlap",
                format!("overlap {name:?} is not skip or allow"),
            )
        })?,
    };
    let mut headers = header_list(put.headers)?;
    let body = request_body(put.body, put.json, put.form, &mut headers)?;
    let method = put
        .method
        .map(|m| m.to_ascii_uppercase())
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let call = Call {
        method,
        url: put.url,
        headers,
        body,
        timeout_ms: put.timeout_ms,
    };
    let definition = JobDefinition {
        app,
        name,
        schedule: put.schedule,
        time_zone: put
            .time_zone
            .unwrap_or_else(|| DEFAULT_TIME_ZONE.to_owned()),
        request: callback_request(state.timers.settings(), call)?,
        overlap,
    };
    let stored = state.timers.put_job(definition, put.paused).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/cron/{}", stored.job.name);
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(view(&stored.job, true)),
    )
        .into_response())
}

/// `GET /v1/cron?app=`: the app's jobs, in name order.
pub async fn list(
    State(state): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let app = request_app(&state, query_app(&uri), &headers)?;
    let jobs = state.timers.list_jobs(&app).await?;
    Ok(Json(json!({
        "app": app,
        "jobs": jobs.iter().map(|job| view(job, false)).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/cron/{name}?app=`.
pub async fn get(
    State(state): State<ApiState>,
    JobRef { app, name }: JobRef,
) -> Result<Json<Value>, ApiError> {
    let job = state.timers.get_job(&app, &name).await?;
    Ok(Json(view(&job, true)))
}

/// `POST /v1/cron/{name}/pause?app=`: no scheduled runs until resumed.
pub async fn pause(
    State(state): State<ApiState>,
    JobRef { app, name }: JobRef,
) -> Result<Json<Value>, ApiError> {
    let job = state.timers.pause_job(&app, &name).await?;
    Ok(Json(view(&job, true)))
}

/// `POST /v1/cron/{name}/resume?app=`: scheduled runs again, from the next fire time.
pub async fn resume(
    State(state): State<ApiState>,
    JobRef { app, name }: JobRef,
) -> Result<Json<Value>, ApiError> {
    let job = state.timers.resume_job(&app, &name).await?;
    Ok(Json(view(&job, true)))
}

/// `POST /v1/cron/{name}/run?app=`: run now (202), unless a run is in flight and the
/// overlap policy is `skip` (409 `job_running`).
pub async fn run(
    State(state): State<ApiState>,
    JobRef { app, name }: JobRef,
) -> Result<Response, ApiError> {
    let job = state.timers.run_job(&app, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&job, true))).into_response())
}

/// `DELETE /v1/cron/{name}?app=`: answers the job as it was.
pub async fn delete(
    State(state): State<ApiState>,
    JobRef { app, name }: JobRef,
) -> Result<Json<Value>, ApiError> {
    let job = state.timers.delete_job(&app, &name).await?;
    Ok(Json(view(&job, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_short_and_plain() {
        for good in ["a", "daily-report", "cleanup.v2", "A_1", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert_eq!(
                check_name(bad).unwrap_err().code,
                "invalid_job_name",
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_have_their_own_codes() {
        let code = |error: CronError| ApiError::from(error);
        let tz = code(CronError::Spec(SpecError::InvalidTimeZone("Mars/X".into())));
        assert_eq!(
            (tz.status, tz.code),
            (StatusCode::BAD_REQUEST, "invalid_time_zone")
        );
        let never = code(CronError::Spec(SpecError::NeverFires("0 0 30 2 *".into())));
        assert_eq!(never.code, "invalid_cron");
        let missing = code(CronError::NotFound {
            app: "a".into(),
            name: "n".into(),
        });
        assert_eq!(
            (missing.status, missing.code),
            (StatusCode::NOT_FOUND, "job_not_found")
        );
        assert_eq!(code(CronError::Running("n".into())).code, "job_running");
    }
}
