//! Reload (SIGHUP, SIGUSR1): apps added and removed, keys rotated, limits changed, an
//! invalid file refused, without dropping the connections already up.

use serde_json::json;

use crate::util::{http, TestServer};

const OLD_KEY: &str = "old-key-0123456789abcdef";
const NEW_KEY: &str = "new-key-0123456789abcdef";

fn config(key: &str, extra: &str) -> String {
    format!(
        "dynamic_apps = false\n[apps.a]\nauth = \"none\"\napi_keys = [\"{key}\"]\n[apps.gone]\nauth = \"none\"\n{extra}"
    )
}

async fn push(server: &TestServer, key: &str, app: &str, user: &str) -> u16 {
    let request = http().post(server.api_url("/v1/push"));
    let request = match key {
        "" => request,
        key => request.bearer_auth(key),
    };
    request
        .json(&json!({"app": app, "to": user, "event": "e", "data": "x"}))
        .send()
        .await
        .expect("push")
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_adds_removes_and_rotates_without_dropping_anyone() {
    let (server, dir) = TestServer::with_config(&config(OLD_KEY, ""));
    let path = dir.path().join("pushhub.toml");
    let (mut kept, _) = server.native("a", "1").await;
    let (mut removed, _) = server.native("gone", "2").await;
    assert_eq!(push(&server, OLD_KEY, "a", "1").await, 200);
    assert_eq!(kept.json().await["data"], "x");

    // An invalid file: every error reported, the old configuration keeps serving.
    std::fs::write(&path, config("short", "heartbeat = 0\n")).expect("write");
    server.signal("HUP");
    server.wait_log("configuration reload refused", 1).await;
    let log = server.log();
    assert!(log.contains("apps.a.api_keys"), "{log}");
    assert!(log.contains("heartbeat"), "{log}");
    assert_eq!(push(&server, OLD_KEY, "a", "1").await, 200);
    assert_eq!(kept.json().await["data"], "x");

    // A key only a restart applies: refused by name.
    std::fs::write(&path, config(NEW_KEY, "[jdserver]\nwebsocket = false\n")).expect("write");
    server.signal("USR1");
    server.wait_log("configuration reload refused", 2).await;
    assert!(server
        .log()
        .contains("jdserver.websocket: changing this needs a restart"));

    // Rotate the key, add app b, remove app gone, change a limit.
    let next = format!(
        "dynamic_apps = false\n[apps.a]\nauth = \"none\"\napi_keys = [\"{NEW_KEY}\"]\nmax_frame_bytes = 200\n[apps.b]\nauth = \"none\"\n"
    );
    std::fs::write(&path, next).expect("write");
    server.signal("HUP");
    server.wait_log("configuration reloaded", 1).await;
    assert!(server.log().contains("generation 2"), "{}", server.log());
    assert!(!server.log().contains(NEW_KEY), "a key was logged");

    assert_eq!(removed.closed().await.0, 4501);
    assert_eq!(
        push(&server, OLD_KEY, "a", "1").await,
        401,
        "old key refused"
    );
    assert_eq!(
        push(&server, NEW_KEY, "a", "1").await,
        200,
        "new key accepted"
    );
    assert_eq!(kept.json().await["data"], "x", "the connection stayed up");
    let (mut added, _) = server.native("b", "3").await;
    assert_eq!(push(&server, "", "b", "3").await, 200);
    assert_eq!(added.json().await["data"], "x");

    // The new limit applies to new connections.
    let (mut limited, _) = server.native("a", "4").await;
    limited.send(&"x".repeat(300)).await;
    assert_eq!(limited.closed().await.0, 1009);
}
