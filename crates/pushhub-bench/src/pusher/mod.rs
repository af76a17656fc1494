//! The Pusher dialect's benchmark targets (issue 19): `pusher-fanout` (a public Pusher
//! channel against a native room, same server, same run) and `pusher-presence` (a
//! presence channel of 10,000 members: correctness of the member events and lists, and
//! the subscribe time of a new member at that size).

pub mod conn;
pub mod fanout;
pub mod presence;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use pushhub_testkit::RedisServer;

use crate::suite::server::{self, RunningServer, ServerKind};

/// A pushhub serving app `demo` both natively (`auth = "none"`, open rooms) and as a
/// Pusher app, plus the Redis it runs on if any (kept alive as long as the server).
pub struct BenchServer {
    /// The server process.
    pub server: RunningServer,
    /// Its client listener.
    pub ws_addr: SocketAddr,
    _redis: Option<RedisServer>,
}

/// Starts pushhub `bin` with the app's config (written to `log_dir/TAG.toml`) on the
/// `engine` (`memory`, or `redis` on a fresh redis-server from pushhub-testkit).
pub async fn start(bin: &Path, log_dir: &Path, tag: &str, engine: &str) -> Result<BenchServer> {
    std::fs::create_dir_all(log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let config = log_dir.join(format!("{tag}.toml"));
    std::fs::write(&config, config_text(engine))
        .with_context(|| format!("writing {}", config.display()))?;
    let redis = match engine {
        "memory" => None,
        "redis" => Some(
            tokio::task::block_in_place(RedisServer::start)
                .context("redis-server is not installed")?,
        ),
        other => anyhow::bail!("unknown engine {other:?} (memory or redis)"),
    };
    let config_path = config.to_string_lossy().into_owned();
    let redis_url = redis.as_ref().map(RedisServer::url);
    let mut env = vec![
        ("PUSHHUB_CONFIG", Some(config_path.as_str())),
        ("PUSHHUB_LOG", Some("warn")),
    ];
    if let Some(url) = &redis_url {
        env.push(("PUSHHUB_REDIS_URLS", Some(url.as_str())));
    }
    let kind = ServerKind::Pushhub(bin.to_path_buf());
    let server = server::start(&kind, log_dir, tag, None, &env).await?;
    let ws_addr = server
        .ws_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.strip_suffix("/v1/ws"))
        .context("unexpected ws url")?
        .parse()?;
    Ok(BenchServer {
        server,
        ws_addr,
        _redis: redis,
    })
}

/// The server's configuration: one app, native and Pusher, limits out of the way.
fn config_text(engine: &str) -> String {
    format!(
        r#"engine = "{engine}"

[limits]
max_connections = 100000
max_connections_per_ip = 100000

[apps.{app}]
auth = "none"

[apps.{app}.pusher]
app_id = "1001"
key = "{key}"
secret = "{secret}"
max_presence_members = 20000
"#,
        app = conn::APP,
        key = conn::KEY,
        secret = conn::SECRET,
    )
}

/// `p` (0–100) of `sorted` microseconds, in milliseconds.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}
