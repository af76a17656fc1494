//! A Redis Cluster of three masters (no replicas), all local.

use std::process::Command;
use std::time::Duration;

use crate::process::{free_port, redis_cli, wait_until};
use crate::redis::{RedisOptions, RedisServer};

/// Three cluster nodes holding all 16,384 slots between them, killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Start three nodes, join them into a cluster and wait until it reports `ok`; None
    /// when Redis is not installed.
    pub fn start() -> Option<Self> {
        if !crate::redis_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory for the cluster");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|index| {
                let node_dir = dir.path().join(format!("node-{index}"));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                RedisServer::start_in(
                    node_dir,
                    None,
                    RedisOptions {
                        cluster_bus_port: Some(free_port()),
                        ..RedisOptions::default()
                    },
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes, _dir: dir };
        assert!(
            wait_until(Duration::from_secs(30), || cluster.nodes.iter().all(
                |node| {
                    redis_cli(node.port(), &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                }
            )),
            "the cluster did not reach cluster_state:ok"
        );
        Some(cluster)
    }

    /// The URL pushhub's Redis engine takes for this cluster (fred's cluster form).
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port());
        for (index, node) in self.nodes[1..].iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port()));
        }
        url
    }

    /// The nodes, to run commands on or to kill.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}
