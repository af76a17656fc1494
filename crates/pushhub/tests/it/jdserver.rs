//! jdserver compatibility: every push/getUsers example of seed 000.

use serde_json::json;

use crate::util::TestServer;

#[tokio::test]
async fn seed_example_push_to_everyone_with_php_array_msg() {
    let server = TestServer::start();
    let mut a = server.jdserver("wms", json!("100")).await;
    let mut b = server.jdserver("wms", json!(101)).await;
    server.wait_connections(2).await;
    // httpCall("localhost:8081/push", ["app"=>"wms","user"=>"*","msg"=>["id"=>1,"text"=>"订单10待审批"]])
    // as PHP's http_build_query sends it:
    let body = "app=wms&user=%2A&msg%5Bid%5D=1&msg%5Btext%5D=%E8%AE%A2%E5%8D%9510%E5%BE%85%E5%AE%A1%E6%89%B9";
    let (status, reply) = server
        .post_raw("/push", "application/x-www-form-urlencoded", body)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["delivered"], 2);
    assert_eq!(a.text().await, r#"{"id":"1","text":"订单10待审批"}"#);
    assert_eq!(b.text().await, r#"{"id":"1","text":"订单10待审批"}"#);
}

#[tokio::test]
async fn scalars_are_sent_as_is_and_json_bodies_work() {
    let server = TestServer::start();
    let mut client = server.jdserver("wms", json!("100")).await;
    server.wait_connections(1).await;
    let (status, _) = server.get("/push?app=wms&user=100&msg=hello%20world").await;
    assert_eq!(status, 200);
    assert_eq!(client.text().await, "hello world");
    let (status, _) = server
        .post_json("/push", &json!({"app": "wms", "user": 100, "msg": 42}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(client.text().await, "42");
    let (status, _) = server
        .post_json(
            "/push",
            &json!({"app": "wms", "user": "100", "msg": {"id": 1, "list": [1, 2]}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(client.text().await, r#"{"id":1,"list":[1,2]}"#);
    let (status, _) = server.get("/push?app=wms&user=100&msg[]=a&msg[]=b").await;
    assert_eq!(status, 200);
    assert_eq!(client.text().await, r#"["a","b"]"#);
}

#[tokio::test]
async fn lists_and_groups() {
    let server = TestServer::start();
    let mut u100 = server.jdserver("wms", json!("100")).await;
    let mut u101 = server.jdserver("wms", json!("101")).await;
    let mut g1 = server.jdserver("wms", json!("group1/1")).await;
    let mut g2 = server.jdserver("wms", json!("group2/1")).await;
    server.wait_connections(4).await;
    let (_, reply) = server.get("/push?app=wms&user=100,101&msg=list").await;
    assert_eq!(reply["delivered"], 2);
    assert_eq!(u100.text().await, "list");
    assert_eq!(u101.text().await, "list");
    let (_, reply) = server.get("/push?app=wms&user=group1/*&msg=g1").await;
    assert_eq!(reply["delivered"], 1);
    assert_eq!(g1.text().await, "g1");
    assert!(g2.silent_for(std::time::Duration::from_millis(200)).await);
}

#[tokio::test]
async fn get_users_by_query_form_and_json() {
    let server = TestServer::start();
    let _a = server.jdserver("wms", json!("100")).await;
    let _b = server.jdserver("wms", json!(101)).await;
    let _c = server.jdserver("other", json!("1")).await;
    server.wait_connections(3).await;
    // httpCall("localhost:8081/getUsers?app=wms")
    assert_eq!(
        server.get("/getUsers?app=wms").await,
        (200, json!(["100", "101"]))
    );
    assert_eq!(
        server
            .post_raw("/getUsers", "application/x-www-form-urlencoded", "app=wms")
            .await,
        (200, json!(["100", "101"]))
    );
    assert_eq!(
        server
            .post_json("/getUsers", &json!({"app": "other"}))
            .await,
        (200, json!(["1"]))
    );
}

#[tokio::test]
async fn jdserver_and_native_clients_of_one_user_each_get_their_format() {
    let server = TestServer::start();
    let mut jd = server.jdserver("demo", json!("100")).await;
    let (mut native, _) = server.native("demo", "100").await;
    server.wait_connections(2).await;
    let (_, reply) = server.get("/push?app=demo&user=100&msg[text]=hi").await;
    assert_eq!(reply["delivered"], 2);
    assert_eq!(jd.text().await, r#"{"text":"hi"}"#);
    let msg = native.json().await;
    assert_eq!(msg["data"], json!({"text": "hi"}));
    assert_eq!(msg["ch"], "demo:user:100");

    assert_eq!(server.push("100", json!("plain")).await, 2);
    assert_eq!(jd.text().await, "plain");
    assert_eq!(native.json().await["data"], "plain");
}

#[tokio::test]
async fn frames_after_init_are_ignored_like_jdserver_did() {
    let server = TestServer::start();
    let mut client = server.jdserver("wms", json!("1")).await;
    client.send("ping").await;
    client.send(r#"{"ac":"other"}"#).await;
    server.wait_connections(1).await;
    server.get("/push?app=wms&user=1&msg=still+here").await;
    assert_eq!(client.text().await, "still here");
}
