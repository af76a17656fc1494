//! The shell scripts of `scripts/` that talk to a running server, run against a real one
//! so they cannot rot: `jdserver-test.sh` (jdserver's test.sh) with bash and curl.
//!
//! Outside CI a missing bash or curl skips with a loud message; with `CI=true` it fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::backend::{Answer, Backend};
use crate::util::TestServer;

/// True when `program --version` runs; otherwise says so (failing under CI).
fn available(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        pushhub_testkit::missing(&format!("{program} is not installed"));
    }
    found
}

#[tokio::test]
async fn jdserver_test_sh_passes_against_a_real_server() {
    if !available("bash") || !available("curl") {
        return;
    }
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "echo")).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/jdserver-test.sh");
    let (api, client) = (server.api.to_string(), server.client.to_string());
    let echo = backend.url("/echo.php");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .env("PUSHHUB_API", api)
            .env("PUSHHUB_CLIENT", client)
            .env("ECHO_URL", echo)
            .env_remove("PUSHHUB_API_KEY")
            .output()
            .expect("run bash")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for call in ["/getUsers?", "/getMsg?", "/push", "/setTimeout"] {
        assert!(stdout.contains(call), "the script calls {call}: {stdout}");
    }
    assert!(stdout.contains("All jdserver calls answered as expected."));
    // Its three /setTimeout calls reach the echo URL, the form one a second later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.seen().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "{} of 3 callbacks",
            backend.seen().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut bodies: Vec<String> = backend
        .seen()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["", "c=3&d=4", r#"{"c":"3","d":"4"}"#]);
}
