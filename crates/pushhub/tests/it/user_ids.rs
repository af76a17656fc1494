//! One byte string, one user: a user id that is not UTF-8 is refused on every transport
//! and endpoint, instead of being decoded leniently into U+FFFD, which would make
//! `user=%FF` and `user=%FE` the same user (each could read the other's messages).

use serde_json::{json, Value};

use crate::util::{http, TestServer};

const PASSWORD: &str = "abc12345";

fn server() -> TestServer {
    TestServer::start_with(
        &[],
        &[
            ("PUSHHUB_PUSHSERVE_PASSWORD", PASSWORD),
            ("PUSHHUB_TCP_LISTEN", "127.0.0.1:0"),
        ],
    )
}

/// GET on the client listener: status and JSON body. Bounded, body included: an SSE
/// stream that was let in would otherwise never end.
async fn client_get(server: &TestServer, path: &str) -> (u16, Value) {
    let request = async {
        let response = http()
            .get(format!("http://{}{path}", server.client))
            .send()
            .await
            .expect("request failed");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    };
    let (status, text) = tokio::time::timeout(crate::util::WAIT, request)
        .await
        .unwrap_or_else(|_| panic!("{path}: no complete answer within the wait"));
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn says_not_utf8(message: &str) {
    assert!(message.contains("not valid UTF-8"), "{message}");
}

#[tokio::test]
async fn websocket_clients_with_a_non_utf8_user_are_closed_with_4500() {
    let server = server();
    for path in ["/v1/ws?app=demo&user=%FF", "/v1/ws?app=demo&user=a%C3%28"] {
        let mut client = server.ws(path).await;
        let (code, reason) = client.closed().await;
        assert_eq!(code, 4500, "{path}: {reason}");
        says_not_utf8(&reason);
    }
    // jdserver's init frame is JSON, so its bytes are UTF-8; the replacement character
    // itself, what a lenient decoder would have made of them, is refused the same way.
    let mut jd = server.jdserver("demo", json!("\u{FFFD}")).await;
    let (code, reason) = jd.closed().await;
    assert_eq!(code, 4500);
    says_not_utf8(&reason);
    // push-serve: refused as a bad uid, not as a bad access key.
    let mut pushserve = server.ws("/ws?uid=%FF&access_key=1.x").await;
    let (code, reason) = pushserve.closed().await;
    assert_eq!(code, 4500, "{reason}");
    says_not_utf8(&reason);
    assert_eq!(server.push("*", json!("nobody got in")).await, 0);
}

#[tokio::test]
async fn http_clients_with_a_non_utf8_user_get_400() {
    let server = server();
    for path in [
        "/v1/sse?app=demo&user=%FF",
        "/v1/poll?app=demo&user=%FF&timeout=0",
        "/getMsg?app=demo&user=%FF&timeout=0",
    ] {
        let (status, body) = client_get(&server, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        says_not_utf8(body["error"]["message"].as_str().unwrap_or_default());
    }
}

#[tokio::test]
async fn raw_tcp_connect_with_the_replacement_character_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server();
    let mut socket = tokio::net::TcpStream::connect(server.tcp.expect("tcp listener"))
        .await
        .expect("connect");
    let connect = json!({"type": "connect", "app": "demo", "user": "\u{FFFD}"});
    socket
        .write_all(format!("{connect}\n").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(crate::util::WAIT, socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let error: Value = serde_json::from_slice(answer.split(|b| *b == b'\n').next().unwrap())
        .expect("an error frame");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "bad_request", "{error}");
    says_not_utf8(error["message"].as_str().unwrap_or_default());
}

#[tokio::test]
async fn api_targets_and_access_keys_refuse_a_non_utf8_user() {
    let server = server();
    // A push to bytes that are not UTF-8 is refused, not delivered to whoever U+FFFD is.
    let (status, body) = server.get("/push?app=demo&user=%FF&msg=hi").await;
    assert_eq!(status, 400, "{body}");
    says_not_utf8(&body.to_string());
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "demo", "to": "\u{FFFD}", "data": 1}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    says_not_utf8(&body.to_string());
    // push-serve's /access hands no key to a uid that could never connect.
    let (status, body) = server
        .get(&format!("/access?uid=%FF&password={PASSWORD}"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["topic"], "error", "{body}");
    says_not_utf8(body["contents"].as_str().unwrap_or_default());
    let (status, body) = server
        .get(&format!("/access?uid=a,b&password={PASSWORD}"))
        .await;
    assert_eq!((status, &body["topic"]), (400, &json!("error")), "{body}");
    let (status, body) = server
        .get(&format!("/access?uid=7&password={PASSWORD}"))
        .await;
    assert_eq!((status, &body["topic"]), (200, &json!("_access")), "{body}");
}
