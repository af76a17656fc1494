//! One `redis-server` on a free port, in its own directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{answers_ping, free_port, redis_cli, wait_until, Owned};

/// How long a starting server may take to answer.
const START_LIMIT: Duration = Duration::from_secs(20);

/// How a [`RedisServer`] runs.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Append-only file with `appendfsync always`: what a restart must not lose.
    pub aof: bool,
    /// Replica of the server on this port.
    pub replica_of: Option<u16>,
    /// A Redis Cluster node, its bus on this port.
    pub cluster_bus_port: Option<u16>,
    /// More `--name value` arguments, as pairs.
    pub extra: Vec<(String, String)>,
}

/// A `redis-server` process this test owns, killed when dropped.
pub struct RedisServer {
    port: u16,
    options: RedisOptions,
    dir: PathBuf,
    /// Keeps the directory until the server is dropped (None when the caller owns it).
    _temp: Option<tempfile::TempDir>,
    process: Owned,
}

impl RedisServer {
    /// A plain server (nothing persisted), or None when Redis is not installed (a loud
    /// skip outside CI; a panic under CI).
    pub fn start() -> Option<Self> {
        Self::start_with(RedisOptions::default())
    }

    /// A server run as `options` say, or None when Redis is not installed.
    pub fn start_with(options: RedisOptions) -> Option<Self> {
        if !crate::redis_available() {
            return None;
        }
        let temp = tempfile::tempdir().expect("a temporary directory for redis-server");
        let dir = temp.path().to_path_buf();
        Some(Self::start_in(dir, Some(temp), options))
    }

    /// A server in `dir` (which the caller keeps), assuming Redis is installed.
    pub(crate) fn start_in(
        dir: PathBuf,
        temp: Option<tempfile::TempDir>,
        options: RedisOptions,
    ) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let process = launch(port, &dir, &options);
            if answers_ping(port, Duration::from_millis(200))
                || wait_until(START_LIMIT, || {
                    answers_ping(port, Duration::from_millis(200))
                })
            {
                return Self {
                    port,
                    options,
                    dir,
                    _temp: temp,
                    process,
                };
            }
        }
        panic!(
            "redis-server did not start in {} (see its log there)",
            dir.display()
        );
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Run a command through `redis-cli` and return what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    /// How often Redis ran each command since it started, from `INFO commandstats`
    /// (commands called inside scripts under their own names), leaving out what only
    /// observes it: `INFO` (this very question) and `PING` (clients' liveness probes).
    /// Compare two readings to count what something in between cost.
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                (name != "info" && name != "ping").then(|| (name.to_owned(), calls))
            })
            .collect()
    }

    /// Kill it with SIGKILL: what the append-only file has survives, nothing else.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stop it cleanly (`SHUTDOWN`, which saves what it is configured to save).
    pub fn stop(&mut self) {
        let _ = self.cli(&["SHUTDOWN"]);
        if !self.process.wait_exit(Duration::from_secs(10)) {
            self.process.kill();
        }
    }

    /// Start it again on the same port and directory (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill)), and wait until it answers.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = launch(self.port, &self.dir, &self.options);
        assert!(
            wait_until(START_LIMIT, || answers_ping(
                self.port,
                Duration::from_millis(200)
            )),
            "redis-server did not restart on port {}",
            self.port
        );
        // Loading a large append-only file answers PING with -LOADING; wait for real answers.
        assert!(
            wait_until(START_LIMIT, || !self.cli(&["DBSIZE"]).contains("LOADING")),
            "redis-server kept loading on port {}",
            self.port
        );
    }

    /// Its directory (log, append-only file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn launch(port: u16, dir: &Path, options: &RedisOptions) -> Owned {
    let mut command = Command::new("redis-server");
    let port_text = port.to_string();
    let log = dir.join(format!("redis-{port}.log"));
    command.args([
        "--port",
        &port_text,
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.to_string_lossy(),
        "--logfile",
        &log.to_string_lossy(),
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
    ]);
    if options.aof {
        command.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    if let Some(master) = options.replica_of {
        command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
    }
    if let Some(bus) = options.cluster_bus_port {
        command.args([
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
            "--cluster-config-file",
            &dir.join(format!("nodes-{port}.conf")).to_string_lossy(),
            "--cluster-node-timeout",
            "2000",
        ]);
    }
    for (name, value) in &options.extra {
        command.args([format!("--{name}"), value.clone()]);
    }
    Owned::spawn(command).expect("redis-server starts")
}
