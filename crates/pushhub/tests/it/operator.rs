//! The operator's view of a running server: `GET /v1/apps/{app}/users?conns=true` and
//! the `pushhub users|kick|push|tasks` commands run as the operator runs them (the real
//! binary against a real server with real clients).

use serde_json::{json, Value};
use tokio_tungstenite::MaybeTlsStream;

use crate::util::TestServer;

/// The local address of a WebSocket client's socket: what the server sees as its peer.
fn local_addr(client: &crate::util::Client) -> String {
    match client.ws.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().unwrap().to_string(),
        _ => unreachable!("tests connect without TLS"),
    }
}

/// An SSE response held open: a connection of `user` until dropped.
async fn sse(server: &TestServer, user: &str) -> reqwest::Response {
    let response = crate::util::http()
        .get(format!(
            "http://{}/v1/sse?app=demo&user={user}",
            server.client
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn users_api_shows_each_connection_in_detail_on_request_and_pages() {
    let server = TestServer::start();
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (ws, welcome) = server.native("demo", "alice").await;
    let _stream = sse(&server, "alice").await;
    let (_bob, _) = server.native("demo", "bob").await;
    server.wait_connections(3).await;

    let (status, plain) = server.get("/v1/apps/demo/users").await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["total_users"], 2);
    assert_eq!(plain["total_connections"], 3);
    assert!(plain.get("conns_of_node").is_none(), "{plain}");
    assert!(plain.get("next_cursor").is_none(), "{plain}");
    for user in plain["users"].as_array().unwrap() {
        assert!(
            user.get("conns").is_none(),
            "unchanged without conns: {plain}"
        );
    }

    let (status, detail) = server.get("/v1/apps/demo/users?conns=true").await;
    assert_eq!(status, 200, "{detail}");
    let node = detail["conns_of_node"].as_str().unwrap().to_owned();
    let alice = detail["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["connections"], 2, "{detail}");
    let conns = alice["conns"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{detail}");
    let by_transport = |name: &str| -> Value {
        conns
            .iter()
            .find(|c| c["transport"] == name)
            .unwrap_or_else(|| panic!("no {name} connection: {detail}"))
            .clone()
    };
    let on_ws = by_transport("websocket");
    assert_eq!(on_ws["conn"], welcome["conn"], "{detail}");
    assert_eq!(on_ws["node"], json!(node));
    assert_eq!(on_ws["dialect"], "native");
    assert_eq!(on_ws["addr"], json!(local_addr(&ws)));
    assert_eq!(on_ws["queue"], 0);
    let since = on_ws["since"].as_u64().unwrap();
    assert!(since >= before_ms && since < before_ms + 60_000, "{detail}");
    let on_sse = by_transport("sse");
    assert_eq!(on_sse["dialect"], "native");
    assert!(
        on_sse["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{detail}"
    );

    let (_, first) = server.get("/v1/apps/demo/users?limit=1").await;
    assert_eq!(first["users"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["users"][0]["user"], "alice");
    assert_eq!(first["next_cursor"], "alice");
    assert_eq!(first["total_users"], 2);
    let (_, second) = server.get("/v1/apps/demo/users?limit=1&cursor=alice").await;
    assert_eq!(second["users"][0]["user"], "bob", "{second}");
    assert_eq!(second["next_cursor"], Value::Null, "{second}");

    let (status, bad) = server.get("/v1/apps/demo/users?limit=0").await;
    assert_eq!(
        (status, bad["error"]["code"].clone()),
        (400, json!("invalid_param"))
    );
}
