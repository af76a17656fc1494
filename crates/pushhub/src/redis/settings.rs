//! `[redis]` as validated plain data: where Redis is and how pushhub uses it.

use std::time::Duration;

use super::replicas::ReplicaCount;

/// Which kind of Redis deployment a URL names; decides, for example, whether channels
/// use sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, a cluster) or the classic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://`, `rediss://`, `valkey://`).
    Standalone,
    /// A master found through Sentinels (`redis-sentinel://`).
    Sentinel,
    /// A Redis Cluster (`redis-cluster://`).
    Cluster,
}

/// How the server reaches Redis, validated: every URL parses and names a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// One URL per independent deployment (channels are sharded over them), in fred's
    /// forms: `redis://[[user:]pass@]host:port/db`,
    /// `redis-sentinel://host:port/db?sentinelServiceName=NAME&node=host:port…`,
    /// `redis-cluster://host:port?node=host:port…` (`rediss`/`valkey` variants alike).
    pub urls: Vec<String>,
    /// Put before every key and pub/sub channel, so several deployments (or a staging
    /// and a production cluster) share one Redis without seeing each other.
    pub prefix: String,
    /// Connections per deployment for commands (publishes, history reads, presence);
    /// concurrent commands on one connection are pipelined.
    pub pool_size: usize,
    /// How long one command may wait for its answer before it fails (and a publish is
    /// refused as `engine_unavailable` rather than hanging).
    pub command_timeout: Duration,
    /// How long a node's presence entries live without its heartbeat: a node killed
    /// without cleanup disappears from presence within this.
    pub presence_ttl: Duration,
    /// How long a node's claim on a due timer or cron run lasts without renewal: a node
    /// killed mid-call hands the call to another node after this.
    pub lease: Duration,
    /// How many replicas must hold a publish before it is answered: `None` picks by
    /// topology (every replica behind Sentinel, none otherwise). Redis replicates
    /// asynchronously, so a master that fails over can take its last writes with it;
    /// waiting for the replicas (`WAIT`) makes an accepted publish survive the failover
    /// Sentinel performs.
    pub replicas_ack: Option<ReplicaCount>,
    /// How long a publish waits for its replicas before it is refused.
    pub replicas_ack_timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            urls: vec!["redis://127.0.0.1:6379/0".into()],
            prefix: "pushhub".into(),
            pool_size: 4,
            command_timeout: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            replicas_ack: None,
            replicas_ack_timeout: Duration::from_millis(500),
        }
    }
}

impl RedisSettings {
    /// The replicas a publish to a deployment of `topology` waits for: as configured, or
    /// by default all of them behind Sentinel (the deployment exists to fail over, to any
    /// of its replicas) and none otherwise (a standalone server has none; a Cluster may
    /// have none, and says so only at run time).
    pub fn replicas_for(&self, topology: Topology) -> ReplicaCount {
        self.replicas_ack.unwrap_or(match topology {
            Topology::Sentinel => ReplicaCount::All,
            _ => ReplicaCount::Exactly(0),
        })
    }

    /// The topology `url` names, or why it cannot be used.
    pub fn topology(url: &str) -> Result<Topology, String> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        let (base, form) = scheme.split_once('-').unwrap_or((scheme, ""));
        let known = matches!(base, "redis" | "rediss" | "valkey" | "valkeys")
            && matches!(form, "" | "sentinel" | "cluster");
        if !known {
            return Err(format!(
                "{:?} is not a Redis URL: it must start with redis://, rediss://, \
                 redis-sentinel://, redis-cluster:// (or the valkey forms)",
                redact(url)
            ));
        }
        let config = fred::types::config::Config::from_url(url).map_err(|error| {
            format!(
                "{:?} is not a Redis URL: {} (forms: redis://host:port/db, \
                 redis-sentinel://host:port/db?sentinelServiceName=NAME&node=host:port, \
                 redis-cluster://host:port?node=host:port)",
                redact(url),
                error.details()
            )
        })?;
        Ok(match config.server {
            fred::types::config::ServerConfig::Centralized { .. } => Topology::Standalone,
            fred::types::config::ServerConfig::Sentinel { .. } => Topology::Sentinel,
            fred::types::config::ServerConfig::Clustered { .. } => Topology::Cluster,
        })
    }
}

/// `url` with its password replaced by `***`, for logs and error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_names_its_topology() {
        assert_eq!(
            RedisSettings::topology("redis://127.0.0.1:6379/0"),
            Ok(Topology::Standalone)
        );
        assert_eq!(
            RedisSettings::topology("valkey://127.0.0.1:6379"),
            Ok(Topology::Standalone)
        );
        assert_eq!(
            RedisSettings::topology(
                "redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=m&node=127.0.0.1:26380"
            ),
            Ok(Topology::Sentinel)
        );
        assert_eq!(
            RedisSettings::topology("redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001"),
            Ok(Topology::Cluster)
        );
        for bad in ["http://x", "127.0.0.1:6379", "redis-typo://h:1"] {
            let error = RedisSettings::topology(bad).unwrap_err();
            assert!(error.contains("not a Redis URL"), "{bad}: {error}");
        }
        assert_eq!(
            RedisSettings::topology("rediss://h:6380/0"),
            Ok(Topology::Standalone)
        );
    }

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://app:s3cret@h:1?x=y"),
            "redis://app:***@h:1?x=y"
        );
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
