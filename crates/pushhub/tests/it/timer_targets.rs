//! A timer or cron job cannot be aimed at pushhub itself: with one app's key, a timer
//! calling pushhub's own API on loopback could push into a keyless app, create more
//! timers and read the answers. Every address of every listener is refused at creation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{free_port, http, TestServer};

const KEY: &str = "shop-key-0123456789";

const CONFIG: &str = r#"
[apps.shop]
auth = "none"
api_keys = ["shop-key-0123456789"]

[apps.open]
auth = "none"
"#;

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.bearer_auth(KEY).send().await.expect("a request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

fn assert_refused((status, body): (u16, Value), url: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("target_not_allowed")),
        "{url}: {body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("pushhub's own listener"),
        "{url}: {message}"
    );
}

#[tokio::test]
async fn timers_and_cron_jobs_aimed_at_pushhubs_own_listeners_are_refused() {
    let (server, _dir) = TestServer::with_config(CONFIG);
    let (mut victim, _) = server.native("open", "1").await;
    let api = server.api.port();
    let client = server.client.port();
    let urls = [
        format!("http://127.0.0.1:{api}/v1/push"),
        format!("http://localhost:{api}/v1/push"),
        format!("http://127.0.0.2:{api}/v1/push"),
        format!("http://[::1]:{api}/v1/push"),
        format!("http://[::ffff:127.0.0.1]:{api}/v1/push"),
        format!("http://[::127.0.0.1]:{api}/v1/push"),
        format!("http://[2002:7f00:1::]:{api}/v1/push"),
        format!("http://0x7f.1:{api}/v1/timers"),
        format!("http://127.0.0.1:{client}/v1/poll?app=open&user=1"),
    ];
    let push_into_open = json!({"app": "open", "to": "*", "data": "pwned"});
    for url in &urls {
        let timer = json!({"app": "shop", "url": url, "method": "POST", "json": push_into_open});
        let created = send(http().post(server.api_url("/v1/timers")).json(&timer)).await;
        assert_refused(created, url);
        let job = json!({"app": "shop", "schedule": "* * * * *", "url": url, "method": "POST",
                         "json": push_into_open});
        let put = send(http().put(server.api_url("/v1/cron/loop")).json(&job)).await;
        assert_refused(put, url);
    }
    let jdserver = send(
        http()
            .post(server.api_url("/setTimeout"))
            .json(&json!({"url": urls[0], "delay": 0, "app": "shop"})),
    )
    .await;
    assert_refused(jdserver, &urls[0]);

    let (status, timers) = send(http().get(server.api_url("/v1/timers?app=shop"))).await;
    assert_eq!((status, &timers["timers"]), (200, &json!([])), "{timers}");
    assert!(
        victim.silent_for(Duration::from_millis(500)).await,
        "nothing reached the keyless app"
    );

    // A backend elsewhere on loopback is still a fine target.
    let backend = format!("http://127.0.0.1:{}/hook", free_port());
    let timer = json!({"app": "shop", "url": backend, "delay_ms": 60_000});
    let (status, body) = send(http().post(server.api_url("/v1/timers")).json(&timer)).await;
    assert_eq!(status, 201, "{body}");
}
