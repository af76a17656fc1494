//! The JavaScript SDK's own tests (`clients/js/test`), run from `cargo test` so that the one
//! test command covers them: the SDK's logic on fake clocks, the SDK in Node against this
//! build's binary, and the demo page in headless Chromium (playwright-core). `node --test`
//! gets the binary as `PUSHHUB_BIN`.
//!
//! Outside CI a missing service (node, the npm packages, Chromium) skips them with a loud
//! message; with `CI=true` it fails the run. `.ci/run` installs all three.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole JavaScript suite takes about a minute; past this something hangs.
const LIMIT: Duration = Duration::from_secs(300);

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/js")
}

/// Straight to the terminal: libtest captures `eprintln!`, and a skip must be seen.
fn loud(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[test]
fn javascript_client_sdk_and_demo_page() {
    node_suite(
        "the JavaScript client tests",
        &[
            "test/unit.test.js",
            "test/server.test.js",
            "test/browser.test.js",
        ],
    );
}

/// The failed subtests of a `node --test` TAP output with their error blocks, to end a
/// failure message: CI logs keep a failure's head and tail and cut its middle.
fn failures_of(tap: &str) -> String {
    let mut failures = Vec::new();
    let mut lines = tap.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("not ok") {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = vec![line];
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !deeper {
                break;
            }
            block.push(lines.next().unwrap_or_default());
        }
        failures.push(block.join("\n"));
    }
    failures.join("\n")
}

/// Run `files` of clients/js with `node --test` against this build's binary, failing on
/// any failure; `what` names them in skips and the summary.
pub fn node_suite(what: &str, files: &[&str]) {
    node_suite_with(what, files, &["playwright-core", "ws"], &[], &String::new);
}

/// [`node_suite`] for tests that need the npm `packages` of clients/js (a missing one is a
/// missing service) and read `env` (where the server under test is); a failure's message
/// holds `context()` (the servers' logs) between the whole output and the failed subtests.
pub fn node_suite_with(
    what: &str,
    files: &[&str],
    packages: &[&str],
    env: &[(&str, String)],
    context: &dyn Fn() -> String,
) {
    let missing = |reason: &str| {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}: with CI=true a missing service fails the run (.ci/run installs it)");
        }
        loud(&format!("\n*** SKIPPED {what}: {reason} ***\n"));
    };
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            let major: u32 = version
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 18 {
                return missing(&format!("node {} is older than 18", version.trim()));
            }
        }
        _ => return missing("node is not installed"),
    }
    let dir = js_dir();
    if let Some(package) = packages
        .iter()
        .find(|p| !dir.join("node_modules").join(p).exists())
    {
        return missing(&format!(
            "the npm package {package} is not installed (run `npm ci` in clients/js)"
        ));
    }
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("--test")
        .args(files)
        .current_dir(&dir)
        .env("PUSHHUB_BIN", env!("CARGO_BIN_EXE_pushhub"))
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let out = out.join().unwrap_or_default();
            panic!(
                "node --test ran longer than {LIMIT:?}:\n{out}\n{}\n{}\n\
                 the failed subtests:\n{}",
                err.join().unwrap_or_default(),
                context(),
                failures_of(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(
        status.success(),
        "node --test failed ({status}); the whole output:\n{out}\n{err}\n{}\n\
         the failed subtests:\n{}",
        context(),
        failures_of(&out)
    );
    // Skips inside the suite (no Chromium, say) are reported by the suite; pass them on.
    let skips: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.contains("SKIPPED"))
        .collect();
    if !skips.is_empty() {
        loud(&format!("\n*** {what}: skipped:\n{}\n", skips.join("\n")));
    }
    let summary: Vec<&str> = out
        .lines()
        .filter(|l| {
            ["# tests", "# pass", "# fail", "# skipped"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.trim_start_matches("# "))
        .collect();
    loud(&format!(
        "{what} ({:.1} s): {}",
        started.elapsed().as_secs_f64(),
        summary.join(", ")
    ));
}
