//! The `restart` scenario: how long pushhub takes to serve again after a stop, with many
//! channels of history (issue 17: durable history's restart target).
//!
//! For each history store asked for (`--stores`, default memory then disk), on a fresh
//! server (`--pushhub-bin`): publish one message to each of `--channels` user channels
//! (`--per-push` users per `POST /v1/push`), stop the server (`--stop`: SIGTERM, or
//! `kill` for SIGKILL), start it again on the same data directory and time it until
//! `/healthz` answers (the listeners serve only once the history log has been read back),
//! then read how many channel streams it holds (`broker.streams` in `/v1/stats`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;

use crate::http::HttpConn;
use crate::suite::server::{self, ServerKind};

/// Arguments of `pushhub-bench restart`.
#[derive(clap::Args, Debug, Clone)]
pub struct RestartArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// User channels given one message each before the stop.
    #[arg(long, default_value_t = 100_000)]
    pub channels: u64,
    /// Users per push request while filling.
    #[arg(long, default_value_t = 1_000)]
    pub per_push: u64,
    /// How the server is stopped: `term` (SIGTERM, graceful) or `kill` (SIGKILL).
    #[arg(long, default_value = "term")]
    pub stop: String,
    /// History stores to measure, in order (`PUSHHUB_HISTORY_STORE`).
    #[arg(long, value_delimiter = ',', default_value = "memory,disk")]
    pub stores: Vec<String>,
    /// Where the servers' logs go.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
}

/// One store's measurement.
#[derive(Debug, Serialize)]
struct RestartResult {
    store: String,
    stop: String,
    channels: u64,
    fill_secs: f64,
    streams_before: u64,
    history_log_bytes: u64,
    restart_secs: f64,
    streams_after: u64,
}

/// Run the scenario and print one line per store, human and JSON.
pub async fn run(args: RestartArgs) -> Result<()> {
    std::fs::create_dir_all(&args.log_dir)?;
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    for store in &args.stores {
        let result = measure(&kind, &args, store).await?;
        println!(
            "restart: store {} ({}), {} channels filled in {:.1} s, log {:.1} MiB; back to serving in {:.3} s with {} of {} streams",
            result.store,
            result.stop,
            result.channels,
            result.fill_secs,
            result.history_log_bytes as f64 / (1024.0 * 1024.0),
            result.restart_secs,
            result.streams_after,
            result.streams_before,
        );
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

async fn measure(kind: &ServerKind, args: &RestartArgs, store: &str) -> Result<RestartResult> {
    let env = [("PUSHHUB_HISTORY_STORE", Some(store))];
    let tag = format!("restart-{store}");
    let server = server::start(kind, &args.log_dir, &tag, None, &env).await?;
    let filling = Instant::now();
    let mut conn = HttpConn::to_url(&server.api_url).await?;
    let per_push = args.per_push.max(1);
    for first in (0..args.channels).step_by(per_push as usize) {
        let users: Vec<String> = (first..(first + per_push).min(args.channels))
            .map(|user| user.to_string())
            .collect();
        let body = serde_json::json!({"app": "demo", "to": users.join(","), "data": {"n": first}});
        let (status, answer) = conn
            .request(
                Method::POST,
                "/v1/push",
                Some(Bytes::from(body.to_string())),
                None,
            )
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "push answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let fill_secs = filling.elapsed().as_secs_f64();
    let streams_before = streams(&mut conn).await?;
    let history_log_bytes = dir_bytes(&server.data_dir().join("history"));
    let data = match args.stop.as_str() {
        "kill" => server.kill().await?,
        _ => server.terminate().await?,
    };
    let restarting = Instant::now();
    let server = server::start_in(
        kind,
        &args.log_dir,
        &format!("{tag}-again"),
        None,
        &env,
        data,
    )
    .await?;
    let restart_secs = restarting.elapsed().as_secs_f64();
    let streams_after = streams(&mut HttpConn::to_url(&server.api_url).await?).await?;
    server.stop().await?;
    Ok(RestartResult {
        store: store.to_owned(),
        stop: args.stop.clone(),
        channels: args.channels,
        fill_secs,
        streams_before,
        history_log_bytes,
        restart_secs,
        streams_after,
    })
}

/// `broker.streams` from `/v1/stats`.
async fn streams(conn: &mut HttpConn) -> Result<u64> {
    let (_, body) = conn.request(Method::GET, "/v1/stats", None, None).await?;
    let stats: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(stats["broker"]["streams"].as_u64().unwrap_or(0))
}

/// Bytes of the files in `dir` (0 when it does not exist).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}
