//! A master, its replicas and three Sentinels watching them, all local: enough for a real
//! failover.

use std::process::Command;
use std::time::Duration;

use crate::process::{answers_ping, free_port, redis_cli, wait_until, Owned};
use crate::redis::{RedisOptions, RedisServer};

/// The name the Sentinels know the master by.
pub const SERVICE: &str = "pushhub";

/// How long a failover may take (Sentinel is configured to notice within a second).
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

/// A Sentinel-watched master with its replicas, and three Sentinels, killed when dropped.
pub struct SentinelGroup {
    servers: Vec<RedisServer>,
    sentinel_ports: Vec<u16>,
    _sentinels: Vec<Owned>,
    _dir: tempfile::TempDir,
}

impl SentinelGroup {
    /// A master with one replica (see [`start_with_replicas`](Self::start_with_replicas)).
    pub fn start() -> Option<Self> {
        Self::start_with_replicas(1)
    }

    /// Start a master with `replicas` replicas (two is what Redis's Sentinel guide
    /// recommends: after a failover the new master has a replica at once) and wait until
    /// the Sentinels know them all; None when Redis is not installed.
    pub fn start_with_replicas(replicas: usize) -> Option<Self> {
        if !crate::redis_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory for the Sentinel group");
        let master_dir = dir.path().join("master");
        std::fs::create_dir_all(&master_dir).expect("master dir");
        let master = RedisServer::start_in(master_dir, None, RedisOptions::default());
        let mut servers = vec![master];
        for index in 1..=replicas {
            let replica_dir = dir.path().join(format!("replica-{index}"));
            std::fs::create_dir_all(&replica_dir).expect("replica dir");
            servers.push(RedisServer::start_in(
                replica_dir,
                None,
                RedisOptions {
                    replica_of: Some(servers[0].port()),
                    ..RedisOptions::default()
                },
            ));
        }
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for index in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{index}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     logfile {dir}/sentinel-{index}.log\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 5000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    dir = dir.path().display(),
                    master = servers[0].port(),
                ),
            )
            .expect("sentinel config");
            let mut command = Command::new("redis-server");
            command.arg(&conf).arg("--sentinel");
            sentinels.push(Owned::spawn(command).expect("redis-server --sentinel starts"));
            sentinel_ports.push(port);
        }
        let group = Self {
            servers,
            sentinel_ports,
            _sentinels: sentinels,
            _dir: dir,
        };
        for &port in &group.sentinel_ports {
            assert!(
                wait_until(Duration::from_secs(20), || answers_ping(
                    port,
                    Duration::from_millis(200)
                )),
                "sentinel on port {port} did not start"
            );
        }
        assert!(
            wait_until(Duration::from_secs(30), || group.sentinels_ready()),
            "the Sentinels did not learn the replicas and each other"
        );
        // A replica still waiting for its first full sync (Redis delays a diskless one
        // by 5 s) would be promoted empty: a failover must find it in sync.
        for replica in group.servers[1..].iter().map(RedisServer::port) {
            assert!(
                wait_until(Duration::from_secs(30), || redis_cli(
                    replica,
                    &["INFO", "replication"]
                )
                .contains("master_link_status:up")),
                "a replica did not finish its first sync"
            );
        }
        Some(group)
    }

    /// Each Sentinel knows every replica and the two other Sentinels: a failover can happen.
    fn sentinels_ready(&self) -> bool {
        self.sentinel_ports.iter().all(|&port| {
            let replicas = redis_cli(port, &["SENTINEL", "REPLICAS", SERVICE]);
            let peers = redis_cli(port, &["SENTINEL", "SENTINELS", SERVICE]);
            replicas.matches("slave").count() >= self.servers.len() - 1
                && peers.matches("name").count() >= 2
        })
    }

    /// The URL pushhub's Redis engine takes for this group (fred's Sentinel form).
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SERVICE}",
            self.sentinel_ports[0]
        );
        for port in &self.sentinel_ports[1..] {
            url.push_str(&format!("&node=127.0.0.1:{port}"));
        }
        url
    }

    /// The current master's port, as the first Sentinel reports it.
    pub fn master_port(&self) -> u16 {
        let answer = redis_cli(
            self.sentinel_ports[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
        );
        answer
            .lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The master and the replicas, in no particular order.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The server on `port` (the master or a replica).
    pub fn server(&self, port: u16) -> Option<&RedisServer> {
        self.servers.iter().find(|server| server.port() == port)
    }

    /// Ask the Sentinels for a failover and wait until the replica is master; returns the
    /// new master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let answer = redis_cli(self.sentinel_ports[0], &["SENTINEL", "FAILOVER", SERVICE]);
        assert!(answer.contains("OK"), "SENTINEL FAILOVER said {answer}");
        let mut new = old;
        let done = wait_until(FAILOVER_LIMIT, || {
            new = self.master_port();
            new != old && new != 0 && redis_cli(new, &["ROLE"]).starts_with("master")
        });
        assert!(done, "no failover within {FAILOVER_LIMIT:?}");
        new
    }
}
