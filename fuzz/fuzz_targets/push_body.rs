//! `POST /v1/push` and `POST /v1/batch` bodies: `api::native::read_push` then
//! `PushRequest::into_action`, `api::batch::read_batch` then `BatchRequest::into_entries`,
//! the functions the handlers call on a body before anything is published.
//!
//! Input: the first byte chooses the endpoint (even: push, odd: batch, with at most
//! `byte / 2 % 8` entries allowed); the rest is the body.
//!
//! Checks: no panic; every refusal, of the body or of one entry, is a 4xx; a publish
//! names 1 to `MAX_TARGET_ITEMS` distinct targets (or one room), each user or group a
//! valid user id, and a payload that is JSON; a batch has at most the allowed entries; a
//! push written back as a body (targets in the grammar, the payload as it came) reads to
//! the same push.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushhub::api::batch::{read_batch, BatchEntries};
use pushhub::api::native::{read_push, PushAction};
use pushhub::http_error::ApiError;
use pushhub::hub::names::check_user;
use pushhub::hub::target::MAX_TARGET_ITEMS;
use pushhub::hub::{PushSpec, Target};

fn refused(error: &ApiError) {
    assert!(error.status.is_client_error(), "{error:?}");
}

/// The checks on one publish that was read.
fn check(spec: &PushSpec) {
    let rooms = spec
        .targets
        .iter()
        .filter(|t| matches!(t, Target::Room(_)))
        .count();
    assert!(rooms == 0 || spec.targets.len() == 1, "{:?}", spec.targets);
    assert!(!spec.targets.is_empty() && spec.targets.len() <= MAX_TARGET_ITEMS);
    for (i, target) in spec.targets.iter().enumerate() {
        assert!(!spec.targets[..i].contains(target), "duplicate {target:?}");
        if let Target::User(name) | Target::Group(name) = target {
            check_user(name).expect("a read user or group is a valid user id");
        }
    }
    serde_json::from_str::<serde::de::IgnoredAny>(spec.data.get()).expect("a read payload is JSON");
}

/// `spec` of `app` written back as a `POST /v1/push` body.
fn write(app: &str, spec: &PushSpec) -> String {
    let mut body = serde_json::json!({"app": app});
    match spec.targets.as_slice() {
        [Target::Room(room)] => body["room"] = room.as_str().into(),
        targets => {
            let to: Vec<String> = targets
                .iter()
                .map(|t| match t {
                    Target::All => "*".to_owned(),
                    Target::User(user) => user.clone(),
                    Target::Group(group) => format!("{group}/*"),
                    Target::Room(room) => panic!("a room among other targets: {room:?}"),
                })
                .collect();
            body["to"] = to.join(",").into();
        }
    }
    if let Some(event) = &spec.event {
        body["event"] = event.as_str().into();
    }
    if let Some(key) = &spec.idempotency_key {
        body["idempotency_key"] = key.as_str().into();
    }
    if let Some(conn) = &spec.exclude {
        body["exclude"] = conn.as_str().into();
    }
    let mut text = body.to_string();
    text.truncate(text.len() - 1);
    format!("{text},\"data\":{}}}", spec.data.get())
}

fn push(body: &[u8]) {
    let request = match read_push(body) {
        Ok(request) => request,
        Err(error) => return refused(&error),
    };
    let app = request.app().to_owned();
    match request.into_action() {
        Err(error) => refused(&error),
        Ok(PushAction::Conn { data, .. }) => {
            serde_json::from_str::<serde::de::IgnoredAny>(data.get()).expect("payload is JSON");
        }
        Ok(PushAction::Publish(spec)) => {
            check(&spec);
            let written = write(&app, &spec);
            let again = read_push(written.as_bytes())
                .and_then(|request| request.into_action())
                .unwrap_or_else(|error| panic!("{written} is refused: {error:?}"));
            let PushAction::Publish(again) = again else {
                panic!("{written} became a push to a connection");
            };
            assert_eq!(again.targets, spec.targets, "{written}");
            assert_eq!(again.event, spec.event);
            assert_eq!(again.data.get(), spec.data.get());
            assert_eq!(again.idempotency_key, spec.idempotency_key);
            assert_eq!(again.exclude, spec.exclude);
        }
    }
}

fn batch(body: &[u8], max_batch: usize) {
    let request = match read_batch(body) {
        Ok(request) => request,
        Err(error) => return refused(&error),
    };
    match request.into_entries(max_batch) {
        Err(error) => refused(&error),
        Ok(BatchEntries::Pushes(entries)) => {
            assert!(entries.len() <= max_batch);
            for entry in &entries {
                match entry {
                    Ok(spec) => check(spec),
                    Err(error) => refused(error),
                }
            }
        }
        Ok(BatchEntries::Broadcast { targets, data, .. }) => {
            assert!(targets.len() <= max_batch);
            for entry in targets {
                match entry {
                    Ok(targets) => check(&PushSpec {
                        targets,
                        event: None,
                        data: data.clone(),
                        idempotency_key: None,
                        exclude: None,
                    }),
                    Err(error) => refused(&error),
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        push(body);
    } else {
        batch(body, usize::from(mode / 2 % 8));
    }
});
