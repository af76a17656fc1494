//! Client tokens: `auth = "token"` apps take the user id from a signed JWT, given in the
//! URL or in a first `auth` frame; bad tokens are refused before the welcome.

use std::process::Command;

use serde_json::json;

use crate::util::TestServer;

const SECRET: &str = "secure-app-secret-0123456789abcdef";

const CONFIG: &str = r#"
[apps.secure]
auth = "token"
token_secrets = ["secure-app-secret-0123456789abcdef"]

[apps.other]
auth = "token"
token_secrets = ["other-app-secret-0123456789abcdefg"]
"#;

/// A token minted by the real CLI, as a developer would.
pub fn mint(app: &str, user: &str, secret: &str, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args([
            "token", "--app", app, "--user", user, "--secret", secret, "--ttl", "10m",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, CONFIG).unwrap();
    (
        TestServer::start_with(&["--config", path.to_str().unwrap()], &[]),
        dir,
    )
}

#[tokio::test]
async fn a_token_in_the_url_or_in_the_first_frame_names_the_user() {
    let (server, _dir) = server();
    let token = mint("secure", "42", SECRET, &["--groups", "vip"]);
    let mut by_url = server.ws(&format!("/v1/ws?app=secure&token={token}")).await;
    let welcome = by_url.json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some("42"))
    );
    let channels: Vec<&str> = welcome["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ch"].as_str().unwrap())
        .collect();
    assert!(channels.contains(&"secure:group:vip"), "{channels:?}");

    let mut by_frame = server.ws("/v1/ws?app=secure").await;
    by_frame
        .send(&json!({"type": "auth", "token": mint("secure", "43", SECRET, &[])}).to_string())
        .await;
    assert_eq!(by_frame.json().await["user"], "43");

    // The user claimed in the URL does not count: the token's `sub` does.
    let mut claimed = server
        .ws(&format!("/v1/ws?app=secure&user=admin&token={token}"))
        .await;
    assert_eq!(claimed.json().await["user"], "42");

    let (status, _) = server
        .post_json(
            "/v1/push",
            &json!({"app": "secure", "to": "vip/*", "data": "hi"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_url.json().await["data"], "hi");
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_welcome() {
    let (server, _dir) = server();
    let wrong_app = mint("other", "1", "other-app-secret-0123456789abcdefg", &[]);
    let mut refused = server
        .ws(&format!("/v1/ws?app=secure&token={wrong_app}"))
        .await;
    assert_eq!(refused.closed().await.0, 4511);
    let forged = mint("secure", "1", "a-secret-nobody-configured-0123456", &[]);
    let mut refused = server
        .ws(&format!("/v1/ws?app=secure&token={forged}"))
        .await;
    assert_eq!(refused.closed().await.0, 4511);
    let mut refused = server.ws("/v1/ws?app=secure&token=garbage").await;
    assert_eq!(refused.closed().await.0, 4511);
    let mut refused = server.ws("/v1/ws?app=secure&user=1").await;
    refused.send(r#"{"type":"ping"}"#).await;
    assert_eq!(refused.closed().await.0, 4502);

    let response = crate::util::http()
        .get(format!("http://{}/v1/sse?app=secure&user=1", server.client))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");

    let mut jd = server.ws("/").await;
    jd.send(&json!({"ac": "init", "app": "secure", "user": "1"}).to_string())
        .await;
    assert_eq!(
        jd.closed().await.0,
        4510,
        "a jdserver init without token for a token app"
    );
    let mut jd = server.ws("/").await;
    jd.send(
        &json!({"ac": "init", "app": "secure", "token": mint("secure", "7", SECRET, &[])})
            .to_string(),
    )
    .await;
    server.wait_connections(1).await;
    server
        .post_json(
            "/v1/push",
            &json!({"app": "secure", "to": "7", "data": "for seven"}),
        )
        .await;
    assert_eq!(jd.text().await, "for seven");
}

#[test]
fn the_token_cli_reads_the_secret_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args([
            "token",
            "--app",
            "secure",
            "--user",
            "5",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).matches('.').count(),
        2,
        "a JWT"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args([
            "token", "--app", "secure", "--user", "5", "--ttl", "soon", "--secret", SECRET,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// A connection lives as long as its token: refreshed in time it goes on, otherwise it is
/// closed with 4006 (a few seconds of clock skew allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_on_live_connections_unless_refreshed() {
    let (server, _dir) = server();
    let short = |user: &str| pushhub::auth::token::mint(SECRET, "secure", user, &[], 1).unwrap();
    let mut lapsing = server
        .ws(&format!("/v1/ws?app=secure&token={}", short("a")))
        .await;
    let welcome = lapsing.json().await;
    assert!(welcome["expires"].as_u64().is_some(), "{welcome}");
    let mut refreshing = server
        .ws(&format!("/v1/ws?app=secure&token={}", short("b")))
        .await;
    refreshing.json().await;
    let fresh = pushhub::auth::token::mint(SECRET, "secure", "b", &[], 600).unwrap();
    let someone_else = pushhub::auth::token::mint(SECRET, "secure", "c", &[], 600).unwrap();
    refreshing
        .send(&json!({"type": "refresh", "id": 1, "token": someone_else}).to_string())
        .await;
    assert_eq!(refreshing.json().await["code"], "wrong_user");
    refreshing
        .send(&json!({"type": "refresh", "id": 2, "token": fresh}).to_string())
        .await;
    let refreshed = refreshing.json().await;
    assert_eq!(
        (refreshed["type"].as_str(), refreshed["id"].as_i64()),
        (Some("refreshed"), Some(2))
    );

    let stream = crate::util::http()
        .get(format!(
            "http://{}/v1/sse?app=secure&token={}",
            server.client,
            short("d")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let started = std::time::Instant::now();
    let (code, _) = lapsing.closed().await;
    assert_eq!(code, 4006);
    assert!(started.elapsed() < std::time::Duration::from_secs(9));
    // An SSE stream ends at its token's expiry too, saying so last.
    let events = crate::kick::sse_events_to_the_end(stream).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last["code"].clone(), last["close"].clone()),
        (json!("token_expired"), json!(4006)),
        "{events:?}"
    );
    server
        .post_json(
            "/v1/push",
            &json!({"app": "secure", "to": "b", "data": "still here"}),
        )
        .await;
    assert_eq!(refreshing.json().await["data"], "still here");
}

/// jdserver's `getMsg` for a token app: the token names the user, so no `user` parameter
/// (which would be ignored) is asked for.
#[tokio::test]
async fn get_msg_of_a_token_app_takes_its_user_from_the_token_alone() {
    let (server, _dir) = server();
    let token = mint("secure", "42", SECRET, &[]);
    let url = format!(
        "http://{}/getMsg?app=secure&token={token}&timeout=8",
        server.client
    );
    let poll = tokio::spawn(async move {
        let response = crate::util::http().get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    server.wait_connections(1).await;
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "secure", "to": "42", "data": "for 42"}),
        )
        .await;
    assert_eq!((status, &body["delivered"]), (200, &json!(1)), "{body}");
    let (status, body) = tokio::time::timeout(crate::util::WAIT, poll)
        .await
        .expect("the poll answers")
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "for 42"));

    let response = crate::util::http()
        .get(format!(
            "http://{}/getMsg?app=secure&timeout=0",
            server.client
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no token: still refused");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");
}

/// A token whose `sub` is U+FFFD (what a lenient decoder makes of bytes that are not
/// UTF-8) names no user: refused like the same id given in a query.
#[tokio::test]
async fn a_token_naming_the_replacement_character_is_refused() {
    let (server, _dir) = server();
    let token = mint("secure", "\u{FFFD}", SECRET, &[]);
    let mut client = server.ws(&format!("/v1/ws?app=secure&token={token}")).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4500);
    assert!(reason.contains("not valid UTF-8"), "{reason}");
}
