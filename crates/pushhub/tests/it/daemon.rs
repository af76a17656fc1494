//! `serve --daemon`, the pid file, the log file (JSON lines, SIGUSR2 reopen, rotation by
//! size) and the request id on API calls, against the real binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{http, WAIT};

/// A daemon started by a test: SIGKILLed on drop if the test did not stop it.
struct Daemon {
    pid: i32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if alive(self.pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Whether process `pid` runs (a zombie left for a non-reaping init counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: i32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// `pushhub serve ARGS` on port 0 with its data in `dir`, run to completion (with
/// --daemon, that is until the daemon serves or fails).
fn serve(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushhub"));
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("PUSHHUB_LOG")
        .stdin(Stdio::null());
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT)
        .expect("serve --daemon did not return in time")
        .expect("output")
}

/// Wait until the log file at `path` has a line containing `text`; returns the file.
fn wait_for_log(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} not in {}:\n{log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The API listener from the JSON log's `listening client=... api=...` line.
fn api_address(json_log: &str) -> SocketAddr {
    json_log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["fields"]["message"].as_str().map(str::to_owned))
        .find_map(|message| {
            message
                .split_whitespace()
                .find_map(|part| part.strip_prefix("api="))
                .and_then(|addr| addr.parse().ok())
        })
        .expect("a listening line in the JSON log")
}

#[tokio::test]
async fn daemon_serves_logs_json_with_request_ids_reopens_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("pushhub.log");
    let pid_path = dir.path().join("pushhub.pid");
    let args = [
        "--daemon",
        "--log-file",
        log_path.to_str().expect("path"),
        "--pid-file",
        pid_path.to_str().expect("path"),
        "--log-format",
        "json",
        "--log",
        "info,pushhub::api=debug",
    ];
    let output = serve(dir.path(), &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "serve --daemon failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The foreground process returns only once the daemon serves: the pid file is there.
    let pid: i32 = std::fs::read_to_string(&pid_path)
        .expect("pid file written before the foreground process exits")
        .trim()
        .parse()
        .expect("a pid");
    let daemon = Daemon { pid };
    assert!(stdout.contains(&format!("pid {pid}")), "{stdout}");
    assert!(alive(pid));
    let log = wait_for_log(&log_path, "timer store open");
    let api = api_address(&log);
    for line in log.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }

    // A second server under the same pid file is refused, and says why.
    let again = serve(dir.path(), &args);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already running") && stderr.contains(&pid.to_string()),
        "{stderr}"
    );

    // The caller's request id comes back and tags the request's log lines; a malformed
    // one is replaced by a generated id.
    let client = http();
    let response = client
        .get(format!("http://{api}/healthz"))
        .header("x-request-id", "deploy-check-42")
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.headers()["x-request-id"], "deploy-check-42");
    let response = client
        .get(format!("http://{api}/v1/nothing-here"))
        .header("x-request-id", "has spaces and \"quotes\"")
        .send()
        .await
        .expect("404");
    assert_eq!(response.status(), 404);
    let generated = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(generated.len(), 32, "{generated}");
    let log = wait_for_log(&log_path, &generated);
    let tagged = |id: &str| {
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .any(|line| line["span"]["request_id"] == id && line["span"]["path"].is_string())
    };
    assert!(tagged("deploy-check-42"), "{log}");
    assert!(tagged(&generated), "{log}");

    // logrotate's way: move the file, then SIGUSR2; new lines go to a new file.
    let moved = dir.path().join("pushhub.log.moved");
    std::fs::rename(&log_path, &moved).expect("move the log");
    signal(pid, "USR2");
    wait_for_log(&log_path, "reopened the log file");
    assert!(!std::fs::read_to_string(&moved)
        .expect("moved log")
        .contains("reopened"));

    // SIGTERM: a clean exit removes the pid file.
    signal(pid, "TERM");
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_path.exists(), "pid file left behind");
    wait_for_log(&log_path, "stopped");
    drop(daemon);
}

#[test]
fn a_daemon_that_cannot_start_says_why_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The data directory is a file: the timer store cannot open, after binding.
    std::fs::write(dir.path().join("data"), "not a directory").expect("write");
    let log_path = dir.path().join("pushhub.log");
    let pid_path = dir.path().join("pushhub.pid");
    let output = serve(
        dir.path(),
        &[
            "--daemon",
            "--log-file",
            log_path.to_str().expect("path"),
            "--pid-file",
            pid_path.to_str().expect("path"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("did not start") && stderr.contains("timer store"),
        "{stderr}"
    );
    assert!(!pid_path.exists(), "pid file left by a failed start");
    assert!(std::fs::read_to_string(&log_path)
        .expect("log")
        .contains("timer store"));

    // A bad log filter is refused before anything starts.
    let output = serve(dir.path(), &["--log", "info,pushhub=loud"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid log filter"), "{stderr}");
}

#[tokio::test]
async fn the_log_file_rotates_by_size_keeping_n_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("pushhub.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--log-file")
        .arg(&log_path)
        .args([
            "--log-max-size",
            "4K",
            "--log-keep",
            "2",
            "--log-format",
            "json",
        ])
        .args(["--log", "info,pushhub::api=debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let _guard = Daemon {
        pid: child.id() as i32,
    };
    let api = api_address(&wait_for_log(&log_path, "listening client="));
    let client = http();
    for _ in 0..100 {
        client
            .get(format!("http://{api}/healthz"))
            .send()
            .await
            .expect("healthz");
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", log_path.display()));
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(numbered(1).exists() && numbered(2).exists());
    assert!(!numbered(3).exists(), "more than --log-keep files kept");
    for path in [log_path.clone(), numbered(1), numbered(2)] {
        assert!(
            size(&path) <= 4096,
            "{} is {} bytes",
            path.display(),
            size(&path)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn an_upgraded_daemon_hands_its_pid_file_and_log_file_to_the_new_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("pushhub.log");
    let pid_path = dir.path().join("pushhub.pid");
    let args = [
        "--daemon",
        "--log-file",
        log_path.to_str().expect("path"),
        "--pid-file",
        pid_path.to_str().expect("path"),
        "--log-format",
        "json",
    ];
    let output = serve(dir.path(), &args);
    assert!(output.status.success(), "{output:?}");
    let read_pid = || -> i32 {
        std::fs::read_to_string(&pid_path)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let old = Daemon { pid: read_pid() };
    let api = api_address(&wait_for_log(&log_path, "timer store open"));
    let answer: Value = http()
        .post(format!("http://{api}/v1/admin/upgrade"))
        .send()
        .await
        .expect("upgrade")
        .json()
        .await
        .expect("JSON");
    let new = Daemon {
        pid: answer["pid"].as_i64().expect("the new pid") as i32,
    };
    wait_for_log(&log_path, "upgrade: accepting again");
    let deadline = Instant::now() + WAIT;
    while alive(old.pid) || read_pid() != new.pid {
        assert!(Instant::now() < deadline, "pid file: {}", read_pid());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = http()
        .get(format!("http://{api}/healthz"))
        .send()
        .await
        .expect("the new daemon answers");
    assert_eq!(health.status(), 200);
    signal(new.pid, "TERM");
    let deadline = Instant::now() + WAIT;
    while pid_path.exists() || alive(new.pid) {
        assert!(Instant::now() < deadline, "the new daemon did not clean up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
