//! `pushhub check-config` and `serve --config`.

use std::process::Command;

fn pushhub(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"0.0.0.0\"\napi_listen = \"0.0.0.0:8082\"\n\n[apps.wms]\nauth = \"none\"\nheartbeat = 0\n",
    )
    .unwrap();
    let (ok, _, stderr) = pushhub(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    let file = path.display().to_string();
    assert!(stderr.contains(&format!("{file}:1:1: listen:")), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}:4:7: apps.wms.api_keys: the API listens beyond loopback"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:6:1: apps.wms.heartbeat:")),
        "{stderr}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn check_config_reports_every_wrong_type_and_unknown_key_not_only_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("types.toml");
    std::fs::write(
        &path,
        "heartbeat = \"soon\"\n\n[apps.wms]\nauth = \"none\"\nhistroy_size = 10\n\n[limits]\nmax_frame_bytes = true\n",
    )
    .unwrap();
    let (ok, _, stderr) = pushhub(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    let file = path.display().to_string();
    for (at, key) in [
        ("1:13", "heartbeat"),
        ("5:1", "histroy_size"),
        ("8:19", "max_frame_bytes"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("{file}:{at}")))
            .unwrap_or_else(|| panic!("no error at {at}: {stderr}"));
        assert!(line.contains(key), "{line}");
    }
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pushhub.example.toml");
    let (ok, stdout, stderr) = pushhub(&["check-config", example]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
}

#[test]
fn serve_refuses_an_invalid_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "heartbeat = \"x\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("heartbeat"));
}
