//! End to end: start the relay on free ports, drive a tiny broadcast through
//! the real generator (parent + worker process), and require zero loss.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pushhub-bench");

/// Kills the child when the test ends, whatever happens.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` for at most `limit`, killing it on timeout.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn relay_broadcast_has_no_loss() {
    let mut relay = KillOnDrop(
        Command::new(BIN)
            .args([
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start relay"),
    );
    let stdout = relay.0.stdout.take().expect("relay stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("relay announced its ports");
    let addrs: serde_json::Value = serde_json::from_str(&line).expect("address line is JSON");
    let ws = addrs["ws"].as_str().expect("ws address");
    let api = addrs["api"].as_str().expect("api address");

    let out = Command::new(BIN)
        .args([
            "broadcast",
            "--conns",
            "10",
            "--messages",
            "5",
            "--rate",
            "50",
        ])
        .args([
            "--drain-secs",
            "5",
            "--connect-timeout-secs",
            "30",
            "--json",
        ])
        .arg("--ws-url")
        .arg(format!("ws://{ws}/v1/ws"))
        .arg("--api-url")
        .arg(format!("http://{api}"))
        .arg("--pid")
        .arg(relay.0.id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start generator");
    let mut gen = KillOnDrop(out);
    let status = wait_bounded(&mut gen.0, Duration::from_secs(60));
    let mut text = String::new();
    if let Some(mut s) = gen.0.stdout.take() {
        std::io::Read::read_to_string(&mut s, &mut text).expect("read output");
    }
    let mut err = String::new();
    if let Some(mut s) = gen.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut s, &mut err);
    }
    assert!(
        status.success(),
        "generator failed: {status}\n{text}\n{err}"
    );

    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in output:\n{text}"));
    let r: serde_json::Value = serde_json::from_str(json).expect("result JSON");
    assert_eq!(r["conns_connected"], 10, "{text}");
    assert_eq!(r["expected"], 50, "{text}");
    assert_eq!(r["deliveries"], 50, "{text}");
    assert_eq!(r["lost"], 0, "{text}");
    assert_eq!(r["duplicated"], 0, "{text}");
    assert_eq!(r["unexpected"], 0, "{text}");
    assert_eq!(r["publish_errors"], 0, "{text}");
    assert_eq!(r["server_reported_delivered"], 50, "{text}");
    assert_eq!(r["complete"], true, "{text}");
    assert!(
        r["server_rss_after_bytes"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    assert!(r["latency"]["samples"] == 50, "{text}");
}
