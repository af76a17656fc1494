//! `[redis]`: where the Redis engine keeps cluster state (read when `engine = "redis"`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::redis::{RedisSettings, ReplicaCount};

/// `[redis]` as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRedis {
    /// One URL per independent Redis deployment; channels are sharded over several by a
    /// consistent hash. Forms: `redis://[:password@]host:port/db`,
    /// `redis-sentinel://host:port/db?sentinelServiceName=NAME&node=host:port`,
    /// `redis-cluster://host:port?node=host:port` (also `rediss`, `valkey`).
    pub urls: Vec<String>,
    /// Put before every key and pub/sub channel, so deployments can share one Redis.
    pub prefix: String,
    /// Command connections per deployment (commands on one are pipelined).
    pub pool_size: usize,
    /// Milliseconds a command may wait for its answer before it fails.
    pub command_timeout_ms: u64,
    /// Seconds a killed node's presence entries outlive it at most.
    pub presence_ttl: u64,
    /// Seconds a node's claim on a due timer or cron run lasts without renewal.
    pub lease: u64,
    /// Replicas that must hold a publish before it is answered: a number or `"all"`
    /// (default: `"all"` behind Sentinel, 0 otherwise).
    pub replicas_ack: Option<RawReplicaCount>,
    /// Milliseconds a publish waits for those replicas before it is refused.
    pub replicas_ack_timeout_ms: u64,
}

impl Default for RawRedis {
    fn default() -> Self {
        let defaults = RedisSettings::default();
        Self {
            urls: defaults.urls,
            prefix: defaults.prefix,
            pool_size: defaults.pool_size,
            command_timeout_ms: defaults.command_timeout.as_millis() as u64,
            presence_ttl: defaults.presence_ttl.as_secs(),
            lease: defaults.lease.as_secs(),
            replicas_ack: None,
            replicas_ack_timeout_ms: defaults.replicas_ack_timeout.as_millis() as u64,
        }
    }
}

/// `replicas_ack` as written: a count, or a word (`"all"` is the one that is valid).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawReplicaCount {
    /// A number of replicas.
    Number(u32),
    /// A word; `"all"`.
    Word(String),
}

/// Check `[redis]`, reporting each problem through `error` (key, message); returns the
/// settings when there was none.
pub fn check(raw: &RawRedis, error: &mut impl FnMut(&[&str], String)) -> Option<RedisSettings> {
    let mut ok = true;
    let mut fail = |key: &str, message: String| {
        ok = false;
        error(&["redis", key], message);
    };
    if raw.urls.is_empty() {
        fail("urls", "must name at least one Redis".into());
    }
    for url in &raw.urls {
        if let Err(problem) = RedisSettings::topology(url) {
            fail("urls", problem);
        }
    }
    let prefix_ok = !raw.prefix.is_empty()
        && raw.prefix.len() <= 64
        && raw
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !prefix_ok {
        fail(
            "prefix",
            "must be 1 to 64 characters of letters, digits, '-', '_' or '.'".into(),
        );
    }
    if !(1..=64).contains(&raw.pool_size) {
        fail("pool_size", "must be between 1 and 64".into());
    }
    if !(10..=60_000).contains(&raw.command_timeout_ms) {
        fail(
            "command_timeout_ms",
            "must be between 10 and 60000 milliseconds".into(),
        );
    }
    if !(3..=3600).contains(&raw.presence_ttl) {
        fail("presence_ttl", "must be between 3 and 3600 seconds".into());
    }
    if !(3..=3600).contains(&raw.lease) {
        fail("lease", "must be between 3 and 3600 seconds".into());
    }
    let replicas_ack = match &raw.replicas_ack {
        None => None,
        Some(RawReplicaCount::Number(n)) if *n <= 16 => Some(ReplicaCount::Exactly(*n)),
        Some(RawReplicaCount::Word(word)) if word == "all" => Some(ReplicaCount::All),
        Some(_) => {
            fail(
                "replicas_ack",
                "must be \"all\" or a number of replicas from 0 to 16".into(),
            );
            None
        }
    };
    if !(10..=10_000).contains(&raw.replicas_ack_timeout_ms) {
        fail(
            "replicas_ack_timeout_ms",
            "must be between 10 and 10000 milliseconds".into(),
        );
    }
    ok.then(|| RedisSettings {
        urls: raw.urls.clone(),
        prefix: raw.prefix.clone(),
        pool_size: raw.pool_size,
        command_timeout: Duration::from_millis(raw.command_timeout_ms),
        presence_ttl: Duration::from_secs(raw.presence_ttl),
        lease: Duration::from_secs(raw.lease),
        replicas_ack,
        replicas_ack_timeout: Duration::from_millis(raw.replicas_ack_timeout_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(toml_text: &str) -> (Option<RedisSettings>, Vec<String>) {
        let raw: RawRedis = toml::from_str(toml_text).unwrap();
        let mut errors = Vec::new();
        let settings = check(&raw, &mut |key, message| {
            errors.push(format!("{}: {message}", key.join(".")))
        });
        (settings, errors)
    }

    #[test]
    fn replicas_ack_is_all_a_number_or_left_to_the_topology() {
        let (settings, _) = checked("");
        assert_eq!(settings.unwrap().replicas_ack, None);
        let (settings, _) = checked(r#"replicas_ack = "all""#);
        assert_eq!(settings.unwrap().replicas_ack, Some(ReplicaCount::All));
        let (settings, _) = checked("replicas_ack = 0");
        assert_eq!(
            settings.unwrap().replicas_ack,
            Some(ReplicaCount::Exactly(0))
        );
        for bad in [r#"replicas_ack = "most""#, "replicas_ack = 17"] {
            let (settings, errors) = checked(bad);
            assert!(settings.is_none(), "{bad}");
            assert_eq!(
                errors,
                ["redis.replicas_ack: must be \"all\" or a number of replicas from 0 to 16"]
            );
        }
        let (_, errors) = checked("replicas_ack_timeout_ms = 5");
        assert_eq!(
            errors,
            ["redis.replicas_ack_timeout_ms: must be between 10 and 10000 milliseconds"]
        );
    }
}
