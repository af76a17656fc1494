//! The worked example in docs/examples/backend.py (plain Python, no framework), run for
//! real against the real server: auth webhook, RPC, room checks and lifecycle events,
//! with signatures verified by the example itself.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::util::TestServer;

const SECRET: &str = "example-backend-secret-0123456789abcdef";

/// The example backend as a child process; killed on drop.
struct Example {
    child: Child,
    port: u16,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start docs/examples/backend.py, or `None` (loudly) when there is no python3 outside CI.
fn start_example() -> Option<Example> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/backend.py"
    );
    let spawned = Command::new("python3")
        .args([script, "--port", "0", "--secret", SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED: python3 is not available ({error}); the example backend test needs it"
            );
            return None;
        }
        Err(error) => panic!("python3 is required under CI: {error}"),
    };
    let mut first = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout);
    lines
        .read_line(&mut first)
        .expect("the example's first line");
    std::thread::spawn(move || for _ in lines.lines() {});
    let port = first
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
    Some(Example { child, port })
}

#[tokio::test]
async fn the_python_example_backend_serves_a_real_app() {
    let Some(example) = start_example() else {
        return;
    };
    let base = format!("http://127.0.0.1:{}", example.port);
    let config = format!(
        r#"
[apps.live]
auth = "webhook"
backend_secret = "{SECRET}"
join_rooms = "webhook"
[apps.live.auth_webhook]
url = "{base}/auth"
[apps.live.rpc]
url = "{base}/rpc"
[apps.live.room_webhook]
url = "{base}/rooms"
[apps.live.events]
url = "{base}/events"
max_delay_ms = 50
"#
    );
    let (server, _dir) = TestServer::with_config(&config);

    let mut ann = server.ws("/v1/ws?app=live&token=session-ann").await;
    assert_eq!(ann.json().await["user"], "100");
    ann.send(r#"{"type":"rpc","id":1,"method":"live.user.like","data":{"video":9}}"#)
        .await;
    assert_eq!(
        ann.json().await,
        json!({"type": "reply", "id": 1, "data": {"video": "9", "likes": 1, "by": "100"}})
    );
    ann.send(r#"{"type":"rpc","id":2,"method":"live.user.whoami"}"#)
        .await;
    assert_eq!(ann.json().await["data"]["info"]["nickname"], "Ann");
    ann.send(r#"{"type":"rpc","id":3,"method":"live.nope"}"#)
        .await;
    assert_eq!(ann.json().await["message"], "no such method: live.nope");
    ann.send(r#"{"type":"join","id":4,"room":"lobby"}"#).await;
    assert_eq!(ann.json().await["type"], "joined");
    ann.send(r#"{"type":"join","id":5,"room":"backstage"}"#)
        .await;
    assert_eq!(ann.json().await["message"], "members only");

    let mut stranger = server.ws("/v1/ws?app=live&token=who-knows").await;
    assert_eq!(
        stranger.closed().await,
        (4515, "credential rejected: not logged in".into())
    );

    let http = crate::util::http();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let online: serde_json::Value = http
            .get(format!("{base}/online"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if online == json!(["100"]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "online: {online}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let forged = http
        .post(format!("{base}/rpc"))
        .header("x-pushhub-signature", "t=1,v1=00")
        .body(r#"{"app":"live","user":"1","conn":"1","method":"live.user.like","data":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401, "the example refuses unsigned calls");
}
