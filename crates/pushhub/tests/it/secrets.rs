//! No secret is ever logged: a server at debug level (every crate) with known API keys,
//! admin keys (used, refused and rotated by a reload), token secrets, a backend secret, a push-serve password and credentials, driven through
//! every feature that handles them; then its whole log is searched for each secret, as
//! is and in its base64 and hex forms.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{http, TestServer, WAIT};

const TOKEN_SECRET: &str = "tok-secret-Zq8w3Lr5Pn2Xc7Vb9Mk4Hj6Gf1Dd0Ss";
const OLD_TOKEN_SECRET: &str = "old-tok-secret-Mn4Bv5Cx6Za7Sd8Fg9Hj0Kl1";
const BACKEND_SECRET: &str = "backend-secret-Ty7Uu8Ii9Oo0Pp1Aa2Ss3Dd4Ff";
const API_KEY: &str = "api-key-Qw3Er4Ty5Ui6Op7As8";
const WRONG_KEY: &str = "wrong-key-Zx1Cv2Bn3Mm4Lk5Jh6";
const PUSHSERVE_PASSWORD: &str = "ps-password-Gh5Jk6Lm7Nb8Vc9";
const WRONG_PASSWORD: &str = "ps-wrong-Ab3Cd4Ef5Gh6Ij7";
const TIMER_BEARER: &str = "timer-bearer-Rt5Yu6Io7Pa8Sd9";
const UKEY: &str = "ukey-cred-Wq2Ee3Rr4Tt5Yy6Uu7";
const ADMIN_KEY: &str = "admin-key-Vb6Nm7Qa8Ws9Ed0Rf";
const NEW_ADMIN_KEY: &str = "admin-new-Tg1Yh2Uj3Ik4Ol5Pp";
const WRONG_ADMIN_KEY: &str = "admin-wrong-Xs6Cd7Vf8Bg9Nh0";
const BAD_UKEY: &str = "ukey-bad-Lp0Ok9Ij8Uh7Yg6";

fn answer(request: &Recorded) -> Answer {
    match request.path_and_query.split('?').next().unwrap_or_default() {
        "/auth" if request.json()["credential"] == UKEY => Answer::new(200, r#"{"user":"100"}"#),
        "/auth" => Answer::new(403, r#"{"error":"logged out"}"#),
        "/rpc" => Answer::new(200, r#"{"ok":true}"#),
        _ => Answer::new(200, "{}"),
    }
}

/// Every form in which `secret` could show up in a log line.
fn forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_owned(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex.clone(),
        hex.to_uppercase(),
    ]
}

/// Wait until the backend has seen a request to `path`.
async fn wait_for(backend: &Backend, path: &str) {
    let deadline = Instant::now() + WAIT;
    while !backend
        .seen()
        .iter()
        .any(|r| r.path_and_query.starts_with(path))
    {
        assert!(Instant::now() < deadline, "the backend never saw {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_secret_is_ever_logged() {
    let backend = Backend::start(answer).await;
    let config = format!(
        r#"
admin_keys = ["{ADMIN_KEY}"]

[apps.secure]
auth = "token"
token_secrets = ["{TOKEN_SECRET}", "{OLD_TOKEN_SECRET}"]
backend_secret = "{BACKEND_SECRET}"
api_keys = ["{API_KEY}"]
[apps.secure.rpc]
url = "{rpc}"
[apps.secure.events]
url = "{events}"
max_delay_ms = 50

[apps.site]
auth = "webhook"
[apps.site.auth_webhook]
url = "{auth}"
query_param = "ukey"

[apps.shop]
auth = "none"

[pushserve]
app = "shop"
password = "{PUSHSERVE_PASSWORD}"
"#,
        rpc = backend.url("/rpc"),
        events = backend.url("/events"),
        auth = backend.url("/auth"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pushhub.toml");
    std::fs::write(&path, &config).expect("write config");
    let mut server = TestServer::start_with(
        &["--config", path.to_str().expect("path"), "--log", "debug"],
        &[],
    );
    let client = http();
    let api = |path: &str| server.api_url(path);

    // A client with a token; an RPC (signed with the backend secret); a forged token.
    let token = crate::tokens::mint("secure", "42", TOKEN_SECRET, &[]);
    let forged = crate::tokens::mint("secure", "42", "not-the-secret-0123456789abcdefgh", &[]);
    let mut user = server.ws(&format!("/v1/ws?app=secure&token={token}")).await;
    assert_eq!(user.json().await["type"], "welcome");
    let mut refused = server
        .ws(&format!("/v1/ws?app=secure&token={forged}"))
        .await;
    refused.closed().await;
    user.send(&json!({"type": "rpc", "id": 1, "method": "shop.buy", "data": {}}).to_string())
        .await;
    assert_eq!(user.json().await["type"], "reply");

    // Pushes with the API key, and with a wrong one.
    let push = json!({"app": "secure", "to": "42", "event": "e", "data": "hi"});
    let response = client
        .post(api("/v1/push"))
        .bearer_auth(API_KEY)
        .json(&push)
        .send()
        .await
        .expect("push");
    assert_eq!(response.status(), 200);
    assert_eq!(user.json().await["data"], "hi");
    let response = client
        .post(api("/v1/push"))
        .bearer_auth(WRONG_KEY)
        .json(&push)
        .send()
        .await
        .expect("push");
    assert_eq!(response.status(), 401);

    // A timer whose callback carries an Authorization header.
    let timer = json!({
        "app": "secure",
        "url": backend.url("/timer"),
        "headers": {"Authorization": format!("Bearer {TIMER_BEARER}")},
        "json": {"order": 10},
    });
    let response = client
        .post(api("/v1/timers"))
        .bearer_auth(API_KEY)
        .json(&timer)
        .send()
        .await
        .expect("timer");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    wait_for(&backend, "/timer").await;

    // The backend decides who a client is from its credential, good and bad.
    let mut site = server.ws(&format!("/v1/ws?app=site&ukey={UKEY}")).await;
    assert_eq!(site.json().await["user"], "100");
    let mut bad_site = server.ws(&format!("/v1/ws?app=site&ukey={BAD_UKEY}")).await;
    bad_site.closed().await;

    // push-serve: an access key for a password, a client with it, a push; a wrong password.
    let access: Value = client
        .get(api(&format!("/access?uid=7&password={PUSHSERVE_PASSWORD}")))
        .send()
        .await
        .expect("access")
        .json()
        .await
        .expect("JSON");
    let access_key = access["contents"].as_str().expect("access key").to_owned();
    let mut ps = server
        .ws(&format!("/ws?uid=7&access_key={access_key}"))
        .await;
    // Attachment is asynchronous to the handshake: push until the client is online.
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = client
            .post(api(&format!("/push?uid=7&password={PUSHSERVE_PASSWORD}")))
            .body(r#"{"topic":"t","contents":"hello"}"#)
            .send()
            .await
            .expect("push-serve push")
            .text()
            .await
            .expect("body");
        if answer.contains("success") {
            break;
        }
        assert!(Instant::now() < deadline, "push-serve push: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ps.text().await;
    let response = client
        .get(api(&format!("/access?uid=7&password={WRONG_PASSWORD}")))
        .send()
        .await
        .expect("access");
    let refusal = response.text().await.expect("body");
    assert!(refusal.contains("error"), "{refusal}");

    // Operators: status, the dashboard's overview and a reload that rotates the admin key,
    // with the admin key; refusals of a wrong one and of an app's key.
    let admin = |path: &str, key: &'static str| {
        let request = if path.ends_with("/reload") {
            client.post(api(path))
        } else {
            client.get(api(path))
        }
        .bearer_auth(key);
        async move { request.send().await.expect("admin call").status() }
    };
    assert_eq!(admin("/v1/admin/status", ADMIN_KEY).await, 200);
    assert_eq!(admin("/v1/admin/overview", ADMIN_KEY).await, 200);
    assert_eq!(admin("/v1/admin/status", WRONG_ADMIN_KEY).await, 401);
    assert_eq!(admin("/v1/admin/status", API_KEY).await, 403);
    std::fs::write(&path, config.replace(ADMIN_KEY, NEW_ADMIN_KEY)).expect("rewrite config");
    assert_eq!(admin("/v1/admin/reload", ADMIN_KEY).await, 200);
    assert_eq!(admin("/v1/admin/status", NEW_ADMIN_KEY).await, 200);
    assert_eq!(admin("/v1/admin/status", ADMIN_KEY).await, 401);

    // Lifecycle events (signed) for a disconnect, then a clean stop.
    drop(user);
    wait_for(&backend, "/events").await;
    server.terminate();

    let log = server.log();
    assert!(
        log.contains("DEBUG"),
        "the server did not log at debug level"
    );
    let secrets = [
        ("token secret", TOKEN_SECRET.to_owned()),
        ("old token secret", OLD_TOKEN_SECRET.to_owned()),
        ("backend secret", BACKEND_SECRET.to_owned()),
        ("API key", API_KEY.to_owned()),
        ("admin key", ADMIN_KEY.to_owned()),
        ("rotated admin key", NEW_ADMIN_KEY.to_owned()),
        ("wrong admin key", WRONG_ADMIN_KEY.to_owned()),
        ("wrong API key", WRONG_KEY.to_owned()),
        ("push-serve password", PUSHSERVE_PASSWORD.to_owned()),
        ("wrong push-serve password", WRONG_PASSWORD.to_owned()),
        ("timer Authorization header", TIMER_BEARER.to_owned()),
        ("webhook credential", UKEY.to_owned()),
        ("refused webhook credential", BAD_UKEY.to_owned()),
        ("client token", token),
        ("forged token", forged),
        ("push-serve access key", access_key),
    ];
    let leaks: Vec<String> = secrets
        .iter()
        .flat_map(|(what, secret)| {
            let log = &log;
            forms(secret).into_iter().filter_map(move |form| {
                log.lines()
                    .find(|line| line.contains(&form))
                    .map(|line| format!("{what} ({form}) in: {line}"))
            })
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}

const REDIS_PASSWORD: &str = "redis-pass-Kj8Hg7Fd6Sa5Qw4";
const WRONG_REDIS_PASSWORD: &str = "redis-wrong-Po9Iu8Yt7Re6";

#[tokio::test]
async fn no_redis_password_is_logged() {
    let Some(redis) = pushhub_testkit::RedisServer::start() else {
        return;
    };
    redis.cli(&["CONFIG", "SET", "requirepass", REDIS_PASSWORD]);
    let url = |password: &str| format!("redis://:{password}@127.0.0.1:{}/0", redis.port());
    let debug = ["--log", "debug", "--engine", "redis", "--redis-url"];
    let good_url = url(REDIS_PASSWORD);
    let mut good = TestServer::start_with(&[&debug[..], &[good_url.as_str()]].concat(), &[]);
    crate::cluster::wait_healthy(&good).await;
    let (mut client, _) = good.native("demo", "7").await;
    good.wait_connections(1).await;
    assert_eq!(good.push("7", Value::from("hi")).await, 1);
    assert_eq!(client.json().await["data"], "hi");
    // A wrong password: refused by Redis, reported (and retried) in the log.
    let bad_url = url(WRONG_REDIS_PASSWORD);
    let bad = TestServer::start_with(&[&debug[..], &[bad_url.as_str()]].concat(), &[]);
    bad.wait_log("Redis does not answer yet", 1).await;
    // (Killed: a node whose Redis refuses it may take longer to stop than the test waits.)
    let bad_log = bad.log();
    bad.crash();
    good.terminate();
    let logs = format!("{}{bad_log}", good.log());
    assert!(
        logs.contains("DEBUG"),
        "the servers did not log at debug level"
    );
    // The URL is logged (the failing node names it), with its password redacted.
    assert!(logs.contains("redis://:***@127.0.0.1"), "{logs}");
    for (what, secret) in [
        ("Redis password", REDIS_PASSWORD),
        ("wrong Redis password", WRONG_REDIS_PASSWORD),
    ] {
        for form in forms(secret) {
            let line = logs.lines().find(|line| line.contains(&form));
            assert!(
                line.is_none(),
                "{what} ({form}) in: {}",
                line.unwrap_or_default()
            );
        }
    }
}
