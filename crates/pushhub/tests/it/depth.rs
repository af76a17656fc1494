//! JSON nested deeper than the parsers allow is refused wherever pushhub takes JSON it
//! stores or forwards as written: `400 too_deep`, and nothing reaches a client or a timer.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{http, TestServer};

/// Far past the limit: what a hostile backend or key holder would send.
const DEEP: usize = 100_000;

/// `levels` nested arrays around a number, as JSON text.
fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

fn assert_too_deep((status, body): (u16, Value), endpoint: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("too_deep")),
        "{endpoint}: {body}"
    );
}

#[tokio::test]
async fn every_json_endpoint_refuses_deep_nesting() {
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "1").await;
    let deep = nested(DEEP);

    let push = format!(r#"{{"app":"demo","to":"1","data":{deep}}}"#);
    assert_too_deep(
        server.post_raw("/v1/push", "application/json", &push).await,
        "/v1/push",
    );
    let jd_push = format!(r#"{{"app":"demo","user":"1","msg":{deep}}}"#);
    assert_too_deep(
        server.post_raw("/push", "application/json", &jd_push).await,
        "/push",
    );
    let url = "http://127.0.0.1:9/never";
    let timer = format!(r#"{{"app":"demo","url":"{url}","delay_ms":60000,"json":{deep}}}"#);
    assert_too_deep(
        server
            .post_raw("/v1/timers", "application/json", &timer)
            .await,
        "/v1/timers",
    );
    let set_timeout = format!(r#"{{"url":"{url}","delay":60,"data":{deep}}}"#);
    assert_too_deep(
        server
            .post_raw("/setTimeout", "application/json", &set_timeout)
            .await,
        "/setTimeout",
    );
    let job = format!(r#"{{"app":"demo","schedule":"0 0 1 1 *","url":"{url}","json":{deep}}}"#);
    let response = http()
        .put(server.api_url("/v1/cron/deep"))
        .header("content-type", "application/json")
        .body(job)
        .send()
        .await
        .expect("PUT /v1/cron/deep");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON answer");
    assert_too_deep((status, body), "/v1/cron/{name}");

    let (status, timers) = server.get("/v1/timers?app=demo").await;
    assert_eq!(status, 200, "{timers}");
    assert_eq!(timers["timers"], json!([]), "no timer was stored");
    assert!(
        client.silent_for(Duration::from_millis(300)).await,
        "nothing deep reached the client"
    );

    let depth = pushhub::json_depth::MAX_DEPTH - 1;
    let fine = format!(r#"{{"app":"demo","to":"1","data":{}}}"#, nested(depth));
    let (status, body) = server.post_raw("/v1/push", "application/json", &fine).await;
    assert_eq!(
        status, 200,
        "the deepest allowed payload goes through: {body}"
    );
    let message = client.json().await;
    assert!(message["data"].is_array());
}

#[tokio::test]
async fn push_serve_refuses_deep_contents_in_its_own_words() {
    let password = "abc12345";
    let server = TestServer::start_with(&[], &[("PUSHHUB_PUSHSERVE_PASSWORD", password)]);
    let body = format!(r#"{{"topic":"t","contents":{}}}"#, nested(DEEP));
    let answer: Value = http()
        .post(server.api_url(&format!("/push?uid=7&password={password}")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("push-serve /push")
        .json()
        .await
        .expect("a JSON answer");
    assert_eq!(answer["topic"], "error", "{answer}");
    assert!(
        answer["contents"]
            .as_str()
            .is_some_and(|text| text.contains("nested deeper")),
        "{answer}"
    );
}
