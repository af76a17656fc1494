//! push-serve compatibility: every example of seed 004, with its own values (passwords
//! `abc123` and `123123`, topic `info_update`, 张三 aged 17), byte for byte where the seed
//! shows bytes, on push-serve's single port (`[pushserve] addr`) as its users ran it, and
//! its PHP run as written.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{Client, TestServer, WAIT};

/// push-serve's `conf.yaml` example password.
const CONF_PASSWORD: &str = "abc123";
/// The password in the seed's `/access` example.
const ACCESS_PASSWORD: &str = "123123";

/// The body PHP's `json_encode` makes of the seed's `$data` (non-ASCII escaped).
const PHP_BODY: &str = r#"{"topic":"info_update","contents":{"name":"\u5f20\u4e09","age":17}}"#;
const SUCCESS: &str = r#"{"topic":"success","number":1,"contents":"推送成功"}"#;
const NOT_ONLINE: &str = r#"{"topic":"error","contents":"此用户不在线"}"#;

/// The embedded default with push-serve on its own port, set up by variables only.
fn single_port(password: &str, more: &[(&str, &str)]) -> TestServer {
    let mut env = vec![
        ("PUSHHUB_PUSHSERVE_PASSWORD", password),
        ("PUSHHUB_PUSHSERVE_ADDR", "127.0.0.1:0"),
    ];
    env.extend_from_slice(more);
    TestServer::start_with(&[], &env)
}

fn port(server: &TestServer) -> SocketAddr {
    server.pushserve.expect("the server logs push-serve's port")
}

/// `GET http://ADDR/PATH`: status and body bytes as text.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = crate::util::http().get(format!("http://{addr}{path}"));
    answer(request).await
}

/// The PHP example's request: POST, the body json_encode makes, its odd content type.
async fn php_push(addr: SocketAddr, uid: &str, password: &str) -> String {
    let request = crate::util::http()
        .post(format!("http://{addr}/push?uid={uid}&password={password}"))
        .header("Content-type", "application/json;charset='utf-8'")
        .body(PHP_BODY);
    answer(request).await.1
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn ws(addr: SocketAddr, path: &str) -> Client {
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    Client { ws }
}

/// The access key in an `/access` answer, after checking the answer is exactly
/// `{"topic":"_access","contents":KEY}`.
fn key_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("JSON");
    let key = value["contents"].as_str().expect("a key").to_owned();
    assert_eq!(body, format!(r#"{{"topic":"_access","contents":"{key}"}}"#));
    key
}

#[tokio::test]
async fn the_seeds_three_calls_on_one_port_byte_for_byte() {
    let server = single_port(CONF_PASSWORD, &[]);
    let addr = port(&server);
    // 3. $url = "http://{$domain}/access?uid={$uid}&password={$password}";
    let (status, body) = get(addr, &format!("/access?uid=7&password={CONF_PASSWORD}")).await;
    assert_eq!(status, 200);
    let key = key_of(&body);
    assert!(
        key.len() == 43 && !key.contains('.'),
        "a key that never expires, as push-serve's: {key}"
    );
    let (_, again) = get(addr, &format!("/access?uid=7&password={CONF_PASSWORD}")).await;
    assert_eq!(again, body, "the same uid gets the same key");

    // 1. new WebSocket("ws://#host/ws?uid=#uid&access_key=#access_key")
    let mut client = ws(addr, &format!("/ws?uid=7&access_key={key}")).await;
    server.wait_connections(1).await;

    // 2. httpPostRaw("http://localhost:8080/push?uid=#uid&password=#password", $data)
    assert_eq!(php_push(addr, "7", CONF_PASSWORD).await, SUCCESS);
    assert_eq!(
        client.text().await,
        r#"{"topic":"info_update","number":1,"contents":{"name":"\u5f20\u4e09","age":17}}"#
    );
    assert_eq!(php_push(addr, "8", CONF_PASSWORD).await, NOT_ONLINE);
    assert_eq!(
        php_push(addr, "7", ACCESS_PASSWORD).await,
        r#"{"topic":"error","contents":"密码错误"}"#
    );
    let (_, body) = get(addr, "/access?uid=7&password=wrong").await;
    assert_eq!(body, r#"{"topic":"error","contents":"密码错误"}"#);

    let log = server.log();
    assert!(
        log.contains("[pushserve] password has 6 characters"),
        "a short password is warned about:\n{log}"
    );
    assert!(
        log.contains("[pushserve] access keys never expire"),
        "keys that never expire are warned about:\n{log}"
    );
}

#[tokio::test]
async fn the_port_serves_push_serve_and_nothing_else() {
    let server = single_port(ACCESS_PASSWORD, &[]);
    let addr = port(&server);
    for path in [
        "/v1/stats",
        "/healthz",
        "/getUsers?app=demo",
        "/v1/apps/demo/users",
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains(r#""code":"not_found""#), "{path}: {body}");
    }
    let (status, _) = get(addr, "/v1/ws?app=demo&user=7").await;
    assert_eq!(status, 404);
    // jdserver's /push (open on the loopback API) is push-serve's here, behind its password.
    let (status, body) = get(addr, "/push?app=demo&user=7&msg=hi").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"topic":"error","contents":"缺少参数 password"}"#)
    );
    let (status, body) = get(addr, "/access?uid=7").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"topic":"error","contents":"缺少参数 password"}"#)
    );
    let mut missing = ws(addr, "/ws?uid=7").await;
    assert_eq!(missing.closed().await.0, 4500);
    let mut forged = ws(addr, "/ws?uid=7&access_key=AAAA").await;
    assert_eq!(forged.closed().await.0, 4511);

    // The other listeners keep serving what they served.
    let (status, body) = server.get("/push?app=demo&user=7&msg=hi").await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(0)));
    let (status, body) = server
        .get(&format!("/access?uid=7&password={ACCESS_PASSWORD}"))
        .await;
    assert_eq!((status, &body["topic"]), (200, &json!("_access")));
}

#[tokio::test]
async fn access_keys_expire_when_access_key_ttl_is_set() {
    let server = single_port(
        "a-long-random-password-for-tests",
        &[("PUSHHUB_PUSHSERVE_ACCESS_KEY_TTL", "60")],
    );
    let addr = port(&server);
    let (_, body) = get(
        addr,
        "/access?uid=7&password=a-long-random-password-for-tests",
    )
    .await;
    let key = key_of(&body);
    let (expires, _) = key.split_once('.').expect("EXPIRY.SIGNATURE");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires: u64 = expires.parse().unwrap();
    assert!(
        (now + 55..=now + 61).contains(&expires),
        "{expires} vs {now}"
    );
    let mut client = ws(addr, &format!("/ws?uid=7&access_key={key}")).await;
    server.wait_connections(1).await;
    assert_eq!(
        php_push(addr, "7", "a-long-random-password-for-tests").await,
        SUCCESS
    );
    client.text().await;

    let (_, signature) = key.split_once('.').unwrap();
    let mut without_expiry = ws(addr, &format!("/ws?uid=7&access_key={signature}")).await;
    assert_eq!(without_expiry.closed().await.0, 4511);
    let mut expired = ws(addr, &format!("/ws?uid=7&access_key=1.{signature}")).await;
    assert_eq!(expired.closed().await.0, 4511);

    let log = server.log();
    assert!(
        !log.contains("[pushserve]"),
        "a long password and expiring keys need no warning:\n{log}"
    );
}

/// `pushhub check-config FILE`: success and what it printed on both streams.
fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pushhub.toml");
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let mut printed = String::from_utf8_lossy(&output.stdout).into_owned();
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

#[test]
fn each_option_refuses_bad_values_with_its_own_error() {
    let file =
        |lines: &str| format!("[apps.shop]\nauth = \"none\"\n[pushserve]\napp = \"shop\"\n{lines}");
    let (ok, printed) = check_config(&file("password = \"abc123\"\naddr = \"0.0.0.0:8080\"\n"));
    assert!(ok, "the seed's settings pass: {printed}");
    assert!(
        printed.contains("push-serve's port 0.0.0.0:8080"),
        "{printed}"
    );
    assert!(
        printed.contains("warning: [pushserve] password has 6 characters"),
        "{printed}"
    );
    for (lines, expected) in [
        ("password = \"\"\n", "pushserve.password: must not be empty"),
        (
            "password = \"abc123\"\naccess_key_ttl = 0\n",
            "pushserve.access_key_ttl: must be at least 1 second; leave it out for keys that never expire",
        ),
        (
            "password = \"abc123\"\naddr = \"8080\"\n",
            "pushserve.addr: \"8080\" is not an address like 0.0.0.0:8080",
        ),
        (
            "password = \"abc123\"\naddr = \"127.0.0.1:8081\"\n",
            "pushserve.addr: 127.0.0.1:8081 is already the client listener (listen)",
        ),
        (
            "password = \"abc123\"\naddr = \"127.0.0.1:8082\"\n",
            "pushserve.addr: 127.0.0.1:8082 is already the API listener (api_listen)",
        ),
        ("password = \"abc123\"\naccess_key_ttl = \"1d\"\n", "access_key_ttl"),
    ] {
        let (ok, printed) = check_config(&file(lines));
        assert!(!ok, "{lines}");
        assert!(printed.contains(expected), "{lines}: {printed}");
    }
    // Single-port mode still wants API keys for every app, and says where push-serve's
    // single port is.
    let (ok, printed) = check_config(&format!(
        "listen = \"0.0.0.0:8080\"\napi_listen = \"0.0.0.0:8080\"\n{}",
        file("password = \"abc123\"\n")
    ));
    assert!(!ok);
    assert!(
        printed.contains("apps.shop.api_keys: the API shares the client listener")
            && printed.contains("set [pushserve] addr instead"),
        "{printed}"
    );
}

#[test]
fn variables_name_their_own_errors() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(["serve", "--data-dir", "/nonexistent/never-created"])
        .env("PUSHHUB_PUSHSERVE_PASSWORD", "")
        .env("PUSHHUB_PUSHSERVE_ACCESS_KEY_TTL", "soon")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PUSHHUB_PUSHSERVE_ACCESS_KEY_TTL: pushserve.access_key_ttl: \"soon\" is not a whole number"),
        "{stderr}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(["serve", "--data-dir", "/nonexistent/never-created"])
        .env("PUSHHUB_PUSHSERVE_PASSWORD", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PUSHHUB_PUSHSERVE_PASSWORD: pushserve.password: must not be empty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_api_and_client_listeners_serve_it_too() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_PUSHSERVE_PASSWORD", CONF_PASSWORD)]);
    assert_eq!(
        server.pushserve, None,
        "no port of its own unless addr is set"
    );
    let (_, body) = server
        .get(&format!("/access?uid=7&password={CONF_PASSWORD}"))
        .await;
    let key = body["contents"].as_str().unwrap().to_owned();
    let mut client = server.ws(&format!("/ws?uid=7&access_key={key}")).await;
    server.wait_connections(1).await;
    assert_eq!(php_push(server.api, "7", CONF_PASSWORD).await, SUCCESS);
    let message: Value = serde_json::from_str(&client.text().await).unwrap();
    assert_eq!(
        message,
        json!({"topic": "info_update", "number": 1, "contents": {"name": "张三", "age": 17}})
    );

    let mut wrong_uid = server.ws(&format!("/ws?uid=8&access_key={key}")).await;
    assert_eq!(wrong_uid.closed().await.0, 4511);
    let (_, body) = server
        .post_raw(
            &format!("/push?uid=7&password={CONF_PASSWORD}"),
            "application/json",
            "{not json",
        )
        .await;
    assert_eq!(body["topic"], "error");
    // jdserver's /push on the same path still works.
    let (status, body) = server.get("/push?app=demo&user=7&msg=hi").await;
    assert_eq!((status, body["delivered"].as_u64()), (200, Some(1)));
}

#[tokio::test]
async fn off_unless_configured() {
    let server = TestServer::start();
    let (_, body) = server.get("/access?uid=7&password=abc123").await;
    assert_eq!(body["topic"], "error");
    let mut client = server.ws("/ws?uid=7&access_key=x").await;
    assert_eq!(client.closed().await.0, 4500);
}

/// The seed's `/access` example (section 3) as written, with the semicolon its
/// `$access_key = $msg['contents']` line lacks (PHP refuses the file without it); the
/// script prints the key.
const PHP_ACCESS: &str = r#"<?php
[$_, $domain, $uid, $password] = $argv;
$url = "http://{$domain}/access?uid={$uid}&password={$password}";
$msg = json_decode(file_get_contents($url), true);
if($msg['topic'] == "_access"){
    $access_key = $msg['contents'];
}
echo $access_key;
"#;

/// The seed's `/push` example (section 2) as written: its `httpPostRaw`, its `$url` with
/// `localhost:8080`, `#uid` and `#password` filled in, its `$data`; the last call echoes
/// what `httpPostRaw` returns (the seed's line lacks `echo` and the semicolon).
const PHP_PUSH: &str = r#"<?php
//场景， 会员资料更新后
function httpPostRaw($url, $data){
    $headers = array(
        "Content-type: application/json;charset='utf-8'"
    );
    $ch = curl_init($url);
    curl_setopt($ch, CURLOPT_TIMEOUT, 60); //设置超时
    $url = '这里为请求地址';
    if(0 === strpos(strtolower($url), 'https')) {
        curl_setopt($ch, CURLOPT_SSL_VERIFYPEER, 0); //对认证证书来源的检查
        curl_setopt($ch, CURLOPT_SSL_VERIFYHOST, 0); //从证书中检查SSL加密算法是否存在
    }
    curl_setopt($ch, CURLOPT_POST, TRUE);
    curl_setopt($ch, CURLOPT_POSTFIELDS, json_encode($data)); 
    curl_setopt($ch, CURLOPT_RETURNTRANSFER, TRUE); 
    curl_setopt($ch, CURLOPT_HTTPHEADER, $headers); 
    $rtn = curl_exec($ch);//CURLOPT_RETURNTRANSFER 不设置  curl_exec返回TRUE 设置  curl_exec返回json(此处) 失败都返回FALSE
    curl_close($ch);

    return $rtn;
}
$url = "http://localhost:8080/push?uid=#uid&password=#password";
$data = [
    'topic' => "info_update",
    "contents" => [
        'name' => "张三",
        'age' => 17
    ]
];
echo httpPostRaw($url, $data);
"#;

/// Run PHP `script` with `args`; its output, or `None` (a loud skip outside CI, a failure
/// under `CI=true`) when php-cli or its curl extension is missing.
async fn php(script: &str, args: &[&str]) -> Option<String> {
    let probe = tokio::process::Command::new("php")
        .args(["-r", "exit(extension_loaded('curl') ? 0 : 1);"])
        .output()
        .await;
    if !probe.is_ok_and(|out| out.status.success()) {
        pushhub_testkit::missing(
            "php-cli with php-curl is not installed (apt-get install php-cli php-curl)",
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.php");
    std::fs::write(&path, script).unwrap();
    let run = tokio::process::Command::new("php")
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT + Duration::from_secs(5), run)
        .await
        .expect("php took too long")
        .expect("php runs");
    assert!(
        output.status.success(),
        "php failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("UTF-8 output"))
}

#[tokio::test]
async fn the_seeds_php_runs_as_written() {
    let server = single_port(ACCESS_PASSWORD, &[]);
    let addr = port(&server);
    let domain = addr.to_string();
    let Some(key) = php(PHP_ACCESS, &[&domain, "7", ACCESS_PASSWORD]).await else {
        return;
    };
    let (_, body) = get(addr, &format!("/access?uid=7&password={ACCESS_PASSWORD}")).await;
    assert_eq!(key, key_of(&body));
    let mut client = ws(addr, &format!("/ws?uid=7&access_key={key}")).await;
    server.wait_connections(1).await;

    let push = |uid: &str| {
        PHP_PUSH
            .replace("localhost:8080", &domain)
            .replace("#uid", uid)
            .replace("#password", ACCESS_PASSWORD)
    };
    assert_eq!(php(&push("7"), &[]).await.unwrap(), SUCCESS);
    assert_eq!(
        client.text().await,
        r#"{"topic":"info_update","number":1,"contents":{"name":"\u5f20\u4e09","age":17}}"#
    );
    assert_eq!(php(&push("8"), &[]).await.unwrap(), NOT_ONLINE);
}
