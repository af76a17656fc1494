//! MSwoole's own habits (seed 001) against the real server: clients on `/` and on module
//! paths, frames without `method` sent to `Index.Index.Index`, and `auth` strings made by
//! PHP exactly as an MSwoole backend makes them (docs/examples/mswoole_auth.php: mcrypt's
//! Triple DES as `Encrypt::des` used it, and OpenSSL's for PHP without mcrypt), each
//! refusal a 403 with its own reason.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::backend::{Answer, Backend, Recorded};
use crate::util::{refused_handshake, TestServer};

/// The key of the seed's `\Encrypt::undes($auth, 'kfw001-websocket')`.
const KEY: &str = "kfw001-websocket";
const MAX_AGE: u64 = 600;

/// How the PHP script encrypts: with mcrypt (MSwoole's own) or OpenSSL.
#[derive(Clone, Copy)]
enum Php {
    Mcrypt,
    OpenSsl,
}

/// The auth string PHP makes for the seed's fields, or `None` (said loudly, a failure
/// under CI) when PHP or the extension cannot run here.
fn php_auth(
    php: Php,
    key: &str,
    id: &str,
    code: &str,
    nickname: &str,
    ctime: u64,
) -> Option<String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/mswoole_auth.php"
    );
    let mut command = Command::new("php");
    command.arg(script);
    if let Php::OpenSsl = php {
        command.arg("--openssl");
    }
    let ctime = ctime.to_string();
    let output = command
        .args([key, id, "wechatUser", code, nickname, &ctime])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
        }
        Ok(out) => {
            pushhub_testkit::missing(&format!(
                "PHP could not make an MSwoole auth string (apt-get install php-cli php-mcrypt): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            None
        }
        Err(error) => {
            pushhub_testkit::missing(&format!("php is not installed ({error})"));
            None
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn answer(request: &Recorded) -> Answer {
    match request.json()["method"].as_str().unwrap_or_default() {
        "index.index.index" | "Index.Index.Index" => Answer::new(
            200,
            r#"{"status":200,"info":"执行完成","param":null,"event":"success"}"#,
        ),
        _ => Answer::new(200, r#"{"ok":true}"#),
    }
}

/// A server whose MSwoole app takes DES auth on `/` and two module paths.
fn server(backend: &Backend) -> (TestServer, tempfile::TempDir) {
    let config = format!(
        r#"
[jdserver]
websocket = false

[mswoole]
app = "live"
paths = ["/", "/live", "/wall"]

[apps.live]
auth = "mswoole-des"
backend_secret = "live-backend-secret-0123456789abcdef"
[apps.live.mswoole_des]
key = "{KEY}"
max_age = {MAX_AGE}
[apps.live.rpc]
url = "{url}"
"#,
        url = backend.url("/rpc")
    );
    TestServer::with_config(&config)
}

#[tokio::test]
async fn the_seed_test_script_connects_on_root_with_a_php_made_auth() {
    let Some(auth) = php_auth(Php::Mcrypt, KEY, "1001", "room-7", "小明", now()) else {
        return;
    };
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    server.wait_log("mswoole-des", 1).await;
    assert!(
        server.log().contains("no integrity check"),
        "the insecure mode is warned about at start"
    );

    // The seed's test script: '/?auth='.$auth, then index.index.index with a name.
    let mut client = server.ws(&format!("/?auth={auth}")).await;
    server.wait_connections(1).await;
    client
        .send(r#"{"method":"index.index.index","name":"hello"}"#)
        .await;
    assert_eq!(
        client.json().await,
        json!({"status": 200, "info": "执行完成", "param": null, "event": "success"})
    );
    let call = backend.seen()[0].json();
    assert_eq!(call["user"], "1001");
    assert_eq!(call["method"], "index.index.index");
    assert_eq!(call["data"], json!({"name": "hello"}));
    assert_eq!(
        call["info"],
        json!({"type": "wechatUser", "nickname": "小明"}),
        "type and nickname reach the backend as the user's info"
    );

    // No method: MSwoole's default module, controller and action.
    client.send(r#"{"name":"hello"}"#).await;
    assert_eq!(client.json().await["info"], "执行完成");
    let call = backend.seen()[1].json();
    assert_eq!(
        (call["method"].clone(), call["data"].clone()),
        (json!("Index.Index.Index"), json!({"name": "hello"}))
    );

    // MSwoole's keep-alive.
    client.send("2").await;
    assert_eq!(client.text().await, "3");

    // The auth's room code was joined at connect.
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "live", "room": "room-7", "event": "gift", "data": "rose"}),
        )
        .await;
    assert_eq!((status, body["delivered"].clone()), (200, json!(1)));
    assert_eq!(
        client.json().await,
        json!({"status": 200, "info": "", "param": "rose", "event": "gift"})
    );
}

#[tokio::test]
async fn every_module_path_serves_the_app_and_openssl_strings_work_too() {
    let ctime = now();
    let (Some(live), Some(wall)) = (
        php_auth(Php::OpenSsl, KEY, "2001", "room-9", "Ann", ctime),
        php_auth(Php::Mcrypt, KEY, "big-screen", "room-9", "Wall", ctime),
    ) else {
        return;
    };
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let mut on_live = server.ws(&format!("/live?auth={live}")).await;
    let mut on_wall = server.ws(&format!("/wall?auth={wall}")).await;
    server.wait_connections(2).await;
    let (_, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "live", "room": "room-9", "event": "like", "data": {"n": 1}}),
        )
        .await;
    assert_eq!(body["delivered"], 2);
    for client in [&mut on_live, &mut on_wall] {
        assert_eq!(client.json().await["param"], json!({"n": 1}));
    }
    let (_, users) = server.get("/v1/apps/live/users").await;
    let mut users: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["2001", "big-screen"]);
}

#[tokio::test]
async fn bad_auth_strings_get_403_with_their_own_reason() {
    let ctime = now();
    let (Some(other_key), Some(expired), Some(future)) = (
        php_auth(Php::Mcrypt, "another-websocket", "1001", "r", "A", ctime),
        php_auth(Php::Mcrypt, KEY, "1001", "r", "A", ctime - MAX_AGE - 60),
        php_auth(Php::Mcrypt, KEY, "1001", "r", "A", ctime + 3600),
    ) else {
        return;
    };
    let backend = Backend::start(answer).await;
    let (server, _dir) = server(&backend);
    let frame = |info: &str| json!({"status": 403, "info": info, "param": null, "event": ""});

    assert_eq!(
        refused_handshake(&server, "/").await,
        (
            403,
            frame("permission denied: connect with ?auth=CREDENTIAL")
        )
    );
    assert_eq!(
        refused_handshake(&server, "/live?auth=not-des!").await,
        (
            403,
            frame("auth is not an MSwoole DES string (base64 of 8-byte blocks)")
        )
    );
    assert_eq!(
        refused_handshake(&server, &format!("/?auth={other_key}")).await,
        (403, frame("auth does not decrypt with this app's DES key"))
    );
    let (status, body) = refused_handshake(&server, &format!("/wall?auth={expired}")).await;
    assert_eq!(status, 403);
    let info = body["info"].as_str().unwrap();
    assert!(
        info.starts_with("auth expired: made 6")
            && info.ends_with(&format!("this app accepts {MAX_AGE} s")),
        "{body}"
    );
    let (status, body) = refused_handshake(&server, &format!("/?auth={future}")).await;
    assert_eq!(status, 403);
    assert!(
        body["info"].as_str().unwrap().contains("in the future"),
        "{body}"
    );
    assert!(backend.seen().is_empty());
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["connections"], 0);
}

#[tokio::test]
async fn a_key_longer_than_24_bytes_counts_only_its_first_24_as_in_mcrypt() {
    let long = "kfw001-websocket-0123456789-and-more";
    let Some(auth) = php_auth(Php::Mcrypt, long, "7", "r1", "A", now()) else {
        return;
    };
    let backend = Backend::start(answer).await;
    let config = format!(
        r#"
[mswoole]
app = "live"
path = "/live"
default_method = ""

[apps.live]
auth = "mswoole-des"
backend_secret = "live-backend-secret-0123456789abcdef"
[apps.live.mswoole_des]
key = "{long}"
[apps.live.rpc]
url = "{url}"
"#,
        url = backend.url("/rpc")
    );
    let (server, _dir) = TestServer::with_config(&config);
    let mut client = server.ws(&format!("/live?auth={auth}")).await;
    server.wait_connections(1).await;
    client.send(r#"{"name":"no method"}"#).await;
    assert_eq!(
        client.json().await["status"],
        400,
        "default_method = \"\" refuses frames without a method"
    );
    // `/` stays jdserver's unless [jdserver] websocket = false: it wants an init frame.
    let mut jd = server.ws("/").await;
    jd.send(r#"{"method":"index.index.index"}"#).await;
    assert_eq!(jd.closed().await.0, 4502);
}

#[test]
fn check_config_explains_that_root_is_jdservers_unless_it_is_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mswoole.toml");
    let app = "[apps.live]\nauth = \"mswoole-des\"\n[apps.live.mswoole_des]\nkey = \"kfw001-websocket\"\n";
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = check(&format!(
        "[mswoole]\napp = \"live\"\npaths = [\"/\", \"/live\", \"/live\", \"/v1/ws\"]\n{app}"
    ));
    assert!(!ok);
    for expected in [
        "mswoole.paths: \"/\" is jdserver's WebSocket: set [jdserver] websocket = false",
        "mswoole.paths: \"/live\" is listed twice",
        "mswoole.paths: \"/v1/ws\" must be \"/\" or a path like \"/live\"",
        "3 error(s)",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    let (ok, stderr) = check(&format!(
        "[jdserver]\nwebsocket = false\n[mswoole]\napp = \"live\"\npaths = [\"/\", \"/live\"]\n{app}"
    ));
    assert!(ok, "{stderr}");
    let (ok, stderr) = check(&format!("[mswoole]\napp = \"live\"\npaths = 5\n{app}"));
    assert!(!ok);
    assert!(stderr.contains("a path or a list of paths"), "{stderr}");
    let (ok, stderr) = check("[mswoole]\napp = \"live\"\n[apps.live]\nauth = \"mswoole-des\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("auth = \"mswoole-des\" needs an [apps.NAME.mswoole_des] table"),
        "{stderr}"
    );
}
