//! push-serve compatibility: every example of seed 004, byte for byte where the seed
//! shows bytes.

use serde_json::{json, Value};

use crate::util::TestServer;

const PASSWORD: &str = "abc12345";

fn server() -> TestServer {
    TestServer::start_with(&[], &[("PUSHHUB_PUSHSERVE_PASSWORD", PASSWORD)])
}

async fn access_key(server: &TestServer, uid: &str) -> String {
    // $url = "http://{$domain}/access?uid={$uid}&password={$password}";
    let (status, body) = server
        .get(&format!("/access?uid={uid}&password={PASSWORD}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["topic"], "_access", "{body}");
    body["contents"].as_str().unwrap().to_owned()
}

/// The PHP example's request: POST, JSON body from json_encode, its odd content type.
async fn php_push(server: &TestServer, uid: &str, password: &str) -> String {
    let body = r#"{"topic":"info_update","contents":{"name":"\u5f20\u4e09","age":17}}"#;
    crate::util::http()
        .post(server.api_url(&format!("/push?uid={uid}&password={password}")))
        .header("Content-type", "application/json;charset='utf-8'")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn access_subscribe_push_as_the_seed_shows() {
    let server = server();
    let key = access_key(&server, "7").await;
    let mut client = server.ws(&format!("/ws?uid=7&access_key={key}")).await;
    server.wait_connections(1).await;

    assert_eq!(
        php_push(&server, "7", PASSWORD).await,
        r#"{"topic":"success","number":1,"contents":"推送成功"}"#
    );
    let message: Value = serde_json::from_str(&client.text().await).unwrap();
    assert_eq!(
        message,
        json!({"topic": "info_update", "number": 1, "contents": {"name": "张三", "age": 17}})
    );

    assert_eq!(
        php_push(&server, "8", PASSWORD).await,
        r#"{"topic":"error","contents":"此用户不在线"}"#
    );
}

#[tokio::test]
async fn keys_passwords_and_parameters_are_checked() {
    let server = server();
    let key = access_key(&server, "7").await;
    let mut wrong_uid = server.ws(&format!("/ws?uid=8&access_key={key}")).await;
    assert_eq!(wrong_uid.closed().await.0, 4511);
    let mut forged = server.ws("/ws?uid=7&access_key=4102444800.AAAA").await;
    assert_eq!(forged.closed().await.0, 4511);
    let mut missing = server.ws("/ws?uid=7").await;
    assert_eq!(missing.closed().await.0, 4500);

    let (_, body) = server.get("/access?uid=7&password=wrong").await;
    assert_eq!(body["topic"], "error");
    let (_, body) = server.get(&format!("/access?password={PASSWORD}")).await;
    assert_eq!(body["topic"], "error");
    let reply: Value = serde_json::from_str(&php_push(&server, "7", "wrong").await).unwrap();
    assert_eq!(reply["topic"], "error");
    let (_, body) = server
        .post_raw(
            &format!("/push?uid=7&password={PASSWORD}"),
            "application/json",
            "{not json",
        )
        .await;
    assert_eq!(body["topic"], "error");

    // jdserver's /push on the same path still works.
    let (status, body) = server.get("/push?app=demo&user=7&msg=hi").await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn off_unless_configured() {
    let server = TestServer::start();
    let (_, body) = server
        .get(&format!("/access?uid=7&password={PASSWORD}"))
        .await;
    assert_eq!(body["topic"], "error");
    let mut client = server.ws("/ws?uid=7&access_key=x").await;
    assert_eq!(client.closed().await.0, 4500);
}
