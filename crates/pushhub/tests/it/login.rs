//! Seed 003 (swoole-push): a client connects first and logs in later with a web `ukey` or
//! an app `token`, checked by the site's validation endpoint (a real local HTTP server
//! here); a refused login is an error frame the client may retry, a logout keeps the
//! socket, and a connection that is not logged in receives nothing but its own answers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{Client, TestServer};

/// The site's validation endpoint (`/auth`: a web `ukey` or an app `token`, told apart by
/// the `param` pushhub names) and the app's lifecycle webhook (`/events`).
fn site(request: &Recorded) -> Answer {
    if request.path_and_query.starts_with("/events") {
        return Answer::new(200, "{}");
    }
    let question = request.json();
    let credential = question["credential"].as_str().unwrap_or_default();
    match (question["param"].as_str(), credential) {
        (Some("ukey"), "web-100") => Answer::new(200, r#"{"user":100}"#),
        // An `auth` frame's credential comes unnamed.
        (Some("token") | None, "app-200") => Answer::new(200, r#"{"user":"200"}"#),
        _ => Answer::new(403, r#"{"error":"unknown ukey or token"}"#),
    }
}

/// App `swoole`: seed 003's profile (idle 180 s, log in later by `ukey` or `token`, one
/// connection per user, the newest kicking the oldest); app `plain`: credentials at
/// connect only.
fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let config = format!(
        r#"
tcp_listen = "127.0.0.1:0"

[apps.swoole]
auth = "webhook"
login_later = true
max_logins_per_minute = 4
heartbeat = 60
idle_timeout = 180
max_connections_per_user = 1
backend_secret = "swoole-backend-secret-0123456789abcdef"
[apps.swoole.auth_webhook]
url = "{auth}"
query_param = ["ukey", "token"]
[apps.swoole.events]
url = "{events}"
max_delay_ms = 20

[apps.plain]
auth = "webhook"
[apps.plain.auth_webhook]
url = "{auth}"
"#,
        auth = backend.url("/auth"),
        events = backend.url("/events"),
    );
    TestServer::with_config(&config)
}

/// A `swoole` client that connected without a credential, after its `waiting` greeting.
async fn anonymous(server: &TestServer) -> Client {
    let mut client = server.ws("/v1/ws?app=swoole").await;
    let waiting = client.json().await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    client
}

async fn push(server: &TestServer, to: &str, data: &str) -> u64 {
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "swoole", "to": to, "event": "notice", "data": data}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["delivered"].as_u64().unwrap()
}

/// Send `frame` and return the answer.
async fn ask(client: &mut Client, frame: Value) -> Value {
    client.send(&frame.to_string()).await;
    client.json().await
}

/// The next frame is the answer to a ping, so nothing was queued for the client before
/// it: the connection's queue is in order.
async fn nothing_queued(client: &mut Client, id: &str) {
    let pong = ask(client, json!({"type": "ping", "id": id})).await;
    assert_eq!(pong, json!({"type": "pong", "id": id}));
}

/// The lifecycle events the app's webhook has received so far.
fn events(backend: &Backend) -> Vec<Value> {
    backend
        .seen()
        .iter()
        .filter(|r| r.path_and_query.starts_with("/events"))
        .flat_map(|r| r.json()["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn wait_events(backend: &Backend, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = events(backend);
        if seen.len() >= n {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} events: {seen:?}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_anonymous_connection_waits_logs_in_and_out_on_one_socket() {
    let backend = Backend::start(site).await;
    let (server, _dir) = server(&backend);

    let mut anon = server.ws("/v1/ws?app=swoole").await;
    let waiting = anon.json().await;
    assert_eq!(
        waiting,
        json!({"type": "waiting", "app": "swoole", "heartbeat": 60, "idle_timeout": 180,
               "max_frame_bytes": waiting["max_frame_bytes"], "login": ["ukey", "token"]})
    );
    let (mut app_user, welcome) = {
        let mut client = server.ws("/v1/ws?app=swoole&token=app-200").await;
        let welcome = client.json().await;
        (client, welcome)
    };
    assert_eq!(welcome["user"], "200", "?token= on the same app: {welcome}");
    server.wait_connections(1).await;

    assert_eq!(
        push(&server, "*", "to all").await,
        1,
        "only the logged-in one"
    );
    assert_eq!(app_user.json().await["data"], "to all");
    nothing_queued(&mut anon, "a").await;
    let refused = ask(&mut anon, json!({"type": "join", "id": 1, "room": "r"})).await;
    assert_eq!(refused["code"], "not_logged_in", "{refused}");

    let rejected = ask(
        &mut anon,
        json!({"type": "login", "id": 2, "ukey": "nobody"}),
    )
    .await;
    assert_eq!(
        rejected,
        json!({"type": "error", "id": 2, "code": "credential_rejected",
               "message": "credential rejected: unknown ukey or token"})
    );
    nothing_queued(&mut anon, "b").await;

    let welcome = ask(
        &mut anon,
        json!({"type": "login", "id": 3, "ukey": "web-100"}),
    )
    .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        (&welcome["id"], &welcome["user"]),
        (&json!(3), &json!("100"))
    );
    let conn = welcome["conn"].as_str().unwrap().to_owned();
    server.wait_connections(2).await;
    assert_eq!(push(&server, "100", "for 100").await, 1);
    assert_eq!(anon.json().await["data"], "for 100");
    assert_eq!(push(&server, "*", "to both").await, 2);
    assert_eq!(anon.json().await["data"], "to both");
    assert_eq!(app_user.json().await["data"], "to both");
    let again = ask(
        &mut anon,
        json!({"type": "login", "id": 4, "token": "app-200"}),
    )
    .await;
    assert_eq!(again["code"], "already_logged_in", "{again}");

    let waiting = ask(&mut anon, json!({"type": "logout", "id": 5})).await;
    assert_eq!(
        (&waiting["type"], &waiting["id"]),
        (&json!("waiting"), &json!(5))
    );
    server.wait_connections(1).await;
    assert_eq!(push(&server, "100", "gone").await, 0);
    assert_eq!(push(&server, "*", "to all again").await, 1);
    assert_eq!(app_user.json().await["data"], "to all again");
    nothing_queued(&mut anon, "c").await;

    let (_, users) = server.get("/v1/apps/swoole/users").await;
    assert_eq!(
        users["users"],
        json!([{"user": "200", "connections": 1}]),
        "the logged-out connection is nobody's: {users}"
    );
    let questions: Vec<Value> = backend
        .seen()
        .iter()
        .filter(|r| r.path_and_query == "/auth")
        .map(|r| r.json())
        .collect();
    assert_eq!(
        questions,
        [
            json!({"app": "swoole", "credential": "app-200", "source": "query", "param": "token"}),
            json!({"app": "swoole", "credential": "nobody", "source": "frame", "param": "ukey"}),
            json!({"app": "swoole", "credential": "web-100", "source": "frame", "param": "ukey"}),
        ]
    );
    let seen = wait_events(&backend, 3).await;
    let ours: Vec<&Value> = seen.iter().filter(|e| e["user"] == "100").collect();
    assert_eq!(ours.len(), 2, "{seen:?}");
    assert_eq!(
        (&ours[0]["type"], &ours[0]["conn"]),
        (&json!("connect"), &json!(conn))
    );
    assert_eq!(ours[1]["type"], "disconnect");
    assert_eq!(
        (&ours[1]["code"], &ours[1]["reason"]),
        (&json!(1000), &json!("logged out"))
    );
}

#[tokio::test]
async fn a_refused_login_may_be_retried_within_the_login_rate() {
    let backend = Backend::start(site).await;
    let (server, _dir) = server(&backend);
    let mut client = anonymous(&server).await;
    for id in 0..4 {
        let refused = ask(
            &mut client,
            json!({"type": "login", "id": id, "ukey": "typo"}),
        )
        .await;
        assert_eq!(refused["code"], "credential_rejected", "{refused}");
    }
    let limited = ask(
        &mut client,
        json!({"type": "login", "id": 9, "ukey": "web-100"}),
    )
    .await;
    assert_eq!(limited["code"], "login_rate_limited", "{limited}");
    let retry_after = limited["retry_after"].as_u64().unwrap();
    assert!((1..=60).contains(&retry_after), "{limited}");
    let asked = backend
        .seen()
        .iter()
        .filter(|r| r.path_and_query == "/auth")
        .count();
    assert_eq!(asked, 4, "a limited login never reaches the backend");
    nothing_queued(&mut client, "still open").await;
}

#[tokio::test]
async fn the_newest_login_of_a_user_kicks_the_oldest() {
    let backend = Backend::start(site).await;
    let (server, _dir) = server(&backend);
    let mut first = anonymous(&server).await;
    let welcome = ask(&mut first, json!({"type": "login", "ukey": "web-100"})).await;
    assert_eq!(welcome["user"], "100");
    let mut second = anonymous(&server).await;
    let welcome = ask(&mut second, json!({"type": "login", "ukey": "web-100"})).await;
    assert_eq!(welcome["user"], "100");
    assert_eq!(first.closed().await.0, 4512);
    assert_eq!(push(&server, "100", "newest").await, 1);
    assert_eq!(second.json().await["data"], "newest");
}

#[tokio::test]
async fn bad_login_frames_get_their_own_errors_and_other_apps_keep_their_rules() {
    let backend = Backend::start(site).await;
    let (server, _dir) = server(&backend);
    let mut client = anonymous(&server).await;
    let cases = [
        (
            json!({"type": "login", "id": 1, "user": "100"}),
            "missing_credential",
        ),
        (json!({"type": "login", "id": 2, "ukey": 100}), "bad_frame"),
        (
            json!({"type": "login", "id": 3, "ukey": "web-100", "since": "x"}),
            "invalid_cursor",
        ),
    ];
    for (frame, code) in cases {
        let answer = ask(&mut client, frame.clone()).await;
        assert_eq!(
            (&answer["code"], &answer["id"]),
            (&json!(code), &frame["id"]),
            "{answer}"
        );
    }
    client.send("{not json").await;
    assert_eq!(client.json().await["code"], "bad_json");
    let waiting = ask(&mut client, json!({"type": "logout"})).await;
    assert_eq!(
        waiting["type"], "waiting",
        "a logout while waiting changes nothing"
    );
    let welcome = ask(&mut client, json!({"type": "auth", "token": "app-200"})).await;
    assert_eq!(
        (&welcome["type"], &welcome["user"]),
        (&json!("welcome"), &json!("200")),
        "a client written for auth frames logs in with one: {welcome}"
    );

    let (mut plain, welcome) = {
        let mut client = server.ws("/v1/ws?app=plain&token=app-200").await;
        let welcome = client.json().await;
        (client, welcome)
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let refused = ask(&mut plain, json!({"type": "logout", "id": 7})).await;
    assert_eq!(refused["code"], "login_not_enabled", "{refused}");
    let mut no_credential = server.ws("/v1/ws?app=plain").await;
    no_credential
        .send(r#"{"type":"login","token":"app-200"}"#)
        .await;
    let (code, reason) = no_credential.closed().await;
    assert_eq!(code, 4502, "{reason}");
}

/// The next newline-delimited frame of a raw TCP client.
async fn tcp_frame(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
) -> Value {
    let line = tokio::time::timeout(crate::util::WAIT, lines.next_line())
        .await
        .expect("a frame in time")
        .unwrap()
        .expect("a line");
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn a_raw_tcp_client_connects_without_a_token_and_logs_in_later() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let backend = Backend::start(site).await;
    let (server, _dir) = server(&backend);
    let stream = tokio::net::TcpStream::connect(server.tcp.expect("tcp listener"))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    for frame in [
        json!({"type": "connect", "app": "swoole"}),
        json!({"type": "login", "id": 1, "token": "app-200"}),
    ] {
        write
            .write_all(format!("{frame}\n").as_bytes())
            .await
            .unwrap();
    }
    let waiting = tcp_frame(&mut lines).await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    let welcome = tcp_frame(&mut lines).await;
    assert_eq!(
        (&welcome["type"], &welcome["user"]),
        (&json!("welcome"), &json!("200"))
    );
    assert_eq!(push(&server, "200", "over tcp").await, 1);
    assert_eq!(tcp_frame(&mut lines).await["data"], "over tcp");
}
