//! Following a Sentinel failover promptly: the Sentinels are asked which server is master
//! now, and a connection still on another one is reopened (fred finds the new master
//! through the Sentinels when it reconnects). Without this a node keeps writing to the old
//! master until the Sentinels reconfigure it (seconds later), and Redis loses what the old
//! master accepted meanwhile.

use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::prelude::Builder;
use fred::types::config::{Config, ReconnectPolicy, ServerConfig};
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::time::timeout;

/// The Sentinels of one deployment.
pub struct Sentinels {
    service: String,
    clients: Vec<Client>,
}

impl Sentinels {
    /// Connections to the Sentinels `url` names (connecting in the background), or `None`
    /// when it names no Sentinel deployment.
    pub fn connect(url: &str, wait: Duration) -> Option<Self> {
        let config = Config::from_url(url).ok()?;
        let ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } = config.server
        else {
            return None;
        };
        let clients = hosts
            .into_iter()
            .filter_map(|server| {
                let config = Config {
                    server: ServerConfig::Centralized { server },
                    ..Config::default()
                };
                let mut builder = Builder::from_config(config);
                builder
                    .with_performance_config(|performance| {
                        performance.default_command_timeout = wait;
                    })
                    .set_policy(ReconnectPolicy::new_constant(0, 1_000));
                let client = builder.build().ok()?;
                drop(client.connect());
                Some(client)
            })
            .collect();
        Some(Self {
            service: service_name,
            clients,
        })
    }

    /// The master's address as the first Sentinel that answers within `wait` names it.
    pub async fn master(&self, wait: Duration) -> Option<(String, u16)> {
        for client in &self.clients {
            let ask = client.custom::<Value, String>(
                CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                vec!["GET-MASTER-ADDR-BY-NAME".into(), self.service.clone()],
            );
            let Ok(Ok(reply)) = timeout(wait, ask).await else {
                continue;
            };
            let mut parts = reply.into_array().into_iter();
            let host = parts.next().and_then(|v| v.as_string());
            let port = parts
                .next()
                .and_then(|v| v.as_string())
                .and_then(|p| p.parse().ok());
            if let (Some(host), Some(port)) = (host, port) {
                return Some((host, port));
            }
        }
        None
    }

    /// True when `client` is connected to a server other than `master`.
    pub fn elsewhere(client: &Client, master: &(String, u16)) -> bool {
        let servers = client.active_connections();
        !servers.is_empty()
            && !servers
                .iter()
                .any(|server| *server.host == *master.0 && server.port == master.1)
    }

    /// Close the connections (at shutdown).
    pub async fn quit(&self) {
        for client in &self.clients {
            let _ = client.quit().await;
        }
    }
}
