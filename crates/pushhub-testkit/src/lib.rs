//! Real services for pushhub's tests and benchmarks, each started on free ports of
//! 127.0.0.1 in its own temporary directory and stopped when dropped: a Redis server
//! ([`RedisServer`]), a Sentinel-watched master with a replica ([`SentinelGroup`]) and a Redis
//! Cluster ([`RedisCluster`]). Valkey's binaries work the same when they are the ones on the
//! `PATH` under Redis's names.
//!
//! Never the machine's own Redis: a test owns what it starts, so it can kill, restart and
//! fail over without touching anyone else's data.
//!
//! A service that is not installed is a loud skip outside CI and a failure under `CI=true`
//! ([`missing`]); `.ci/run` installs them.

mod cluster;
mod process;
mod redis;
mod sentinel;

use std::io::Write;

pub use cluster::RedisCluster;
pub use redis::{RedisOptions, RedisServer};
pub use sentinel::SentinelGroup;

/// Say loudly that `what` is missing and the test is skipped, straight to the terminal
/// (libtest captures `eprintln!`, and a skip must be seen). Under `CI=true` a missing
/// service fails the run instead: panics.
pub fn missing(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what}: with CI=true a missing service fails the run (.ci/run installs it)");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** SKIPPED: {what} (install it, or run .ci/run which does) ***\n"
    );
}

/// True when `redis-server` and `redis-cli` can be run; otherwise says so through
/// [`missing`] (which panics under CI) and returns false.
pub fn redis_available() -> bool {
    for program in ["redis-server", "redis-cli"] {
        let found = std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            missing(&format!("{program} is not installed"));
            return false;
        }
    }
    true
}
