//! The PHP that users run, run by PHP (php-cli with its curl extension) against a real
//! server: seed 000's own `httpCall` calls (`tests/php/seed000.php`), and the PHP of the
//! docs (the token minting of docs/security.md and the signature check of docs/api.md),
//! taken from the pages themselves, so a page that drifts from the server fails here.
//!
//! Outside CI a missing PHP skips with a loud message; with `CI=true` it fails the run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend::{Answer, Backend, Recorded};
use crate::util::TestServer;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when `php` runs and has curl; otherwise says so ([`pushhub_testkit::missing`],
/// which fails under CI) and returns false.
fn php_available() -> bool {
    let modules = Command::new("php").arg("-m").output();
    match modules {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|m| m.trim() == "curl")
            {
                return true;
            }
            pushhub_testkit::missing("PHP's curl extension (apt-get install php-curl)");
        }
        _ => pushhub_testkit::missing("php (apt-get install php-cli php-curl)"),
    }
    false
}

/// Run PHP `code` (without its `<?php` line) with `env`; its standard output, which it
/// must exit 0 with.
fn run_php(code: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.php");
    std::fs::write(&file, format!("<?php\n{code}\n")).unwrap();
    run_php_file(&file, env)
}

fn run_php_file(file: &Path, env: &[(&str, &str)]) -> String {
    let mut command = Command::new("php");
    command.arg(file);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("run php");
    assert!(
        out.status.success(),
        "php {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The ```php block of docs page `page` that defines `function`, as the page shows it.
fn php_block(page: &str, function: &str) -> String {
    let text = std::fs::read_to_string(root().join("docs").join(page)).unwrap();
    text.split("```php\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .find(|block| block.contains(&format!("function {function}(")))
        .unwrap_or_else(|| panic!("docs/{page} has no PHP block defining {function}"))
        .to_owned()
}

async fn wait_seen(backend: &Backend, n: usize) -> Vec<Recorded> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = backend.seen();
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < deadline, "{} of {n} calls", seen.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn seed_000_php_http_calls_work_as_written() {
    if !php_available() {
        return;
    }
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let mut a = server.jdserver("wms", json!("100")).await;
    let mut b = server.jdserver("wms", json!("101")).await;
    server.wait_connections(2).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/php/seed000.php");
    let api = server.api.to_string();
    let echo = backend.url("/echo.php");
    let out = tokio::task::spawn_blocking(move || {
        run_php_file(&script, &[("PUSHHUB_API", &api), ("ECHO_URL", &echo)])
    })
    .await
    .unwrap();
    let answers: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(answers[0].0, "push");
    let pushed: serde_json::Value = serde_json::from_str(answers[0].1).unwrap();
    assert_eq!(pushed["delivered"], 2, "{out}");
    assert_eq!(answers[1], ("getUsers", r#"["100","101"]"#));
    // http_build_query sends numbers as text: jdserver's clients got them so too.
    for client in [&mut a, &mut b] {
        assert_eq!(client.text().await, r#"{"id":"1","text":"订单10待审批"}"#);
    }
    let ids: Vec<u64> = answers[2..]
        .iter()
        .map(|(_, id)| id.parse().expect("setTimeout answers the bare timer id"))
        .collect();
    assert_eq!(ids.len(), 3, "{out}");

    let mut seen = wait_seen(&backend, 3).await;
    seen.sort_by_key(|r| {
        r.headers["x-pushhub-timer-id"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    let shown: Vec<(&str, &str, Option<&str>, &str)> = seen
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path_and_query.as_str(),
                r.headers.get("content-type").map(|v| v.to_str().unwrap()),
                std::str::from_utf8(&r.body).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("GET", "/echo.php?a=1&b=2", None, ""),
            (
                "POST",
                "/echo.php?a=1&b=2",
                Some("application/x-www-form-urlencoded"),
                "c=3&d=4"
            ),
            (
                "POST",
                "/echo.php?a=1&b=2",
                Some("application/json"),
                r#"{"c":"3","d":"4"}"#
            ),
        ]
    );
    assert_eq!(seen[2].headers["authorization"], "Basic dGVzdDp0ZXN0MTIz");
}

#[tokio::test]
async fn the_php_token_of_docs_security_md_is_accepted() {
    if !php_available() {
        return;
    }
    let secret = "secure-app-secret-0123456789abcdef";
    let (server, _dir) = TestServer::with_config(&format!(
        "[apps.secure]\nauth = \"token\"\ntoken_secrets = [\"{secret}\"]\n"
    ));
    let code = format!(
        "{}\necho pushhub_token('{secret}', 'secure', '100', 600, ['vip']);",
        php_block("security.md", "pushhub_token")
    );
    let token = tokio::task::spawn_blocking(move || run_php(&code, &[]))
        .await
        .unwrap();
    let mut client = server.ws(&format!("/v1/ws?app=secure&token={token}")).await;
    let welcome = client.json().await;
    assert_eq!(
        (&welcome["type"], &welcome["user"]),
        (&json!("welcome"), &json!("100")),
        "{welcome}"
    );
    let (status, reply) = server
        .post_json(
            "/v1/push",
            &json!({"app": "secure", "to": "vip/*", "data": 1}),
        )
        .await;
    assert_eq!((status, &reply["delivered"]), (200, &json!(1)), "{reply}");
}

#[tokio::test]
async fn the_php_signature_check_of_docs_api_md_accepts_pushhubs_webhooks() {
    if !php_available() {
        return;
    }
    let secret = "live-backend-secret-0123456789abcdef";
    let backend = Backend::start(|_| Answer::new(200, "{}")).await;
    let (server, _dir) = TestServer::with_config(&format!(
        "[apps.live]\nauth = \"none\"\nbackend_secret = \"{secret}\"\n[apps.live.events]\nurl = \"{}\"\nmax_delay_ms = 50\n",
        backend.url("/events")
    ));
    let _client = server.native("live", "100").await;
    let seen = wait_seen(&backend, 1).await;
    let header = seen[0].headers["x-pushhub-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = String::from_utf8(seen[0].body.to_vec()).unwrap();
    let code = format!(
        "{}\n\
         $body = getenv('BODY');\n\
         echo pushhub_verify(getenv('SECRET'), getenv('SIGNATURE'), $body) ? 'valid' : 'invalid', \"\\n\";\n\
         echo pushhub_verify(getenv('SECRET'), getenv('SIGNATURE'), $body . ' ') ? 'valid' : 'invalid', \"\\n\";\n\
         echo pushhub_verify('another-secret', getenv('SIGNATURE'), $body) ? 'valid' : 'invalid', \"\\n\";",
        php_block("api.md", "pushhub_verify")
    );
    let out = tokio::task::spawn_blocking(move || {
        run_php(
            &code,
            &[("SECRET", secret), ("SIGNATURE", &header), ("BODY", &body)],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["valid", "invalid", "invalid"],
        "pushhub's signature checks out; a changed body or another secret does not"
    );
}
