//! Configuration: a TOML file (optional), `PUSHHUB_*` environment variables and command-line
//! flags, in rising order of precedence, validated once into a [`Config`].
//!
//! Without a file the server runs the embedded default: app `demo` with `auth = "none"`,
//! and any other valid app name accepted on first use as another development app (as
//! jdserver did). With a file only the declared apps exist unless `dynamic_apps = true`.
//! The file's tables are in `raw.rs`: each field's doc comment is its operator
//! documentation, which `pushhub.example.toml` and docs/operations.md repeat. `checks.rs`
//! validates them into a [`Config`].

mod checks;
mod env;
mod locate;
mod pusher;
mod pushserve;
mod raw;
pub mod redis;
pub mod tcp_framing;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::EngineKind;
use crate::gateway::TrustedProxies;
use crate::hub::{AppPolicy, OutboxLimits};
use crate::scheduler::TimerSettings;
use crate::store::history::{FsyncPolicy, HistoryStore};
use crate::transport::tcp::Framing;
pub use checks::DEMO_APP;
use checks::*;
pub use pusher::{webhook_settings as pusher_webhook_settings, RawPusher, RawPusherWebhook};
pub use pushserve::{PushServe, RawPushServe};
pub use raw::*;

/// MSwoole compatibility, validated.
#[derive(Debug, Clone)]
pub struct MSwoole {
    /// The app it serves.
    pub app: Arc<str>,
    /// Its WebSocket paths.
    pub paths: Vec<String>,
    /// What a frame without `method` calls; `None`: such a frame is refused.
    pub default_method: Option<Arc<str>>,
}

/// Validated limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per-connection send queue bounds.
    pub outbox: OutboxLimits,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Largest API body.
    pub max_body_bytes: usize,
    /// Most pushes per batch.
    pub max_batch: usize,
    /// Largest batch body.
    pub max_batch_body_bytes: usize,
    /// Most bytes of history over all apps.
    pub max_history_bytes: usize,
    /// Most client connections; 0 until resolved from the open-file limit at start.
    pub max_connections: usize,
    /// Most client connections per client address; 0: no limit.
    pub max_connections_per_ip: usize,
    /// Deadline for a client's dialect handshake.
    pub handshake_timeout: Duration,
    /// Frame rate of a client that has not authenticated yet.
    pub max_frames_per_second_before_auth: u32,
    /// SSE/long-poll request rate per client address; 0: no limit.
    pub max_requests_per_second_per_ip: u32,
    /// Longest wait a long-poll may ask for.
    pub max_poll_wait: Duration,
}

/// One app as configured: its resolved policy, and the app's own table (`None` for the
/// embedded demo app, the dynamic-app template and the defaults) from which
/// `services::assemble` builds its backends. Plain data, so a reload can validate a new
/// file and compare it with the running one before anything live is built.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's resolved policy.
    pub policy: AppPolicy,
    /// The app's `[apps.NAME]` table as validated.
    pub raw: Option<RawApp>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client listener address.
    pub listen: SocketAddr,
    /// API listener address (may equal `listen`: single-port mode).
    pub api_listen: SocketAddr,
    /// Raw TCP listener address, when raw TCP is on.
    pub tcp_listen: Option<SocketAddr>,
    /// The raw TCP listener's framing.
    pub tcp_framing: Framing,
    /// Durable state directory.
    pub data_dir: PathBuf,
    /// Engine kind.
    pub engine: EngineKind,
    /// Where the memory engine keeps histories.
    pub history_store: HistoryStore,
    /// When the history log is synced.
    pub history_fsync: FsyncPolicy,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Limits.
    pub limits: Limits,
    /// Declared apps.
    pub apps: Vec<AppConfig>,
    /// Proxies whose forwarding headers name the client's address.
    pub trusted_proxies: TrustedProxies,
    /// Policy of apps created on first use, when enabled.
    pub dynamic_apps: Option<AppConfig>,
    /// Connection mechanics before a client's app is known.
    pub defaults: AppPolicy,
    /// push-serve compatibility, when enabled.
    pub pushserve: Option<PushServe>,
    /// MSwoole compatibility, when enabled.
    pub mswoole: Option<MSwoole>,
    /// Whether `/` on the client listener is jdserver's WebSocket.
    pub jdserver_websocket: bool,
    /// TLS, when on; its files loaded and matched when the configuration was checked.
    pub tls: Option<RawTls>,
    /// Timers.
    pub timers: TimerSettings,
    /// Where Redis is, when the engine is Redis (None with the memory engine).
    pub redis: Option<crate::redis::RedisSettings>,
    /// Operators' keys: server-wide operations and every app's API.
    pub admin_keys: Vec<String>,
    /// Where the configuration came from, for the start-up log.
    pub source: String,
    /// The file's values as validated (after `PUSHHUB_*` variables and flags): what a
    /// reload compares the new file with, key by key.
    pub raw: RawConfig,
    /// How to read the configuration again (a reload).
    pub origin: ConfigOrigin,
}

/// Where a configuration was read from, so a reload reads it the same way: the same file,
/// the same `PUSHHUB_*` variables, the same command-line flags.
#[derive(Debug, Clone, Default)]
pub struct ConfigOrigin {
    /// The file; `None`: the embedded default.
    pub file: Option<PathBuf>,
    /// The `PUSHHUB_*` variables in force at start.
    pub vars: Vec<(String, String)>,
    /// The command-line flags.
    pub overrides: Overrides,
}

impl ConfigOrigin {
    /// Read and validate the configuration again.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        Config::load(self.file.as_deref(), self.vars.clone(), &self.overrides)
    }
}

impl Config {
    /// Why the API listener is reachable from beyond this host, if it is: then nothing
    /// on it may be open without a key.
    pub fn api_exposure(&self) -> Option<&'static str> {
        api_exposure(Some(self.listen), self.api_listen)
    }
}

/// Why an API on `api` is reachable from beyond this host (`listen` is the client
/// listener, which single-port mode shares with the API), if it is.
fn api_exposure(listen: Option<SocketAddr>, api: SocketAddr) -> Option<&'static str> {
    if listen == Some(api) && api.port() != 0 {
        Some("the API shares the client listener")
    } else if !api.ip().is_loopback() {
        Some("the API listens beyond loopback")
    } else {
        None
    }
}

/// One problem found in a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `file:line:column` or the environment variable / flag at fault.
    pub location: String,
    /// The key path, e.g. `apps.wms.heartbeat`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.key, self.message)
        }
    }
}

/// Every problem found, so an operator fixes them in one pass.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Values given on the command line; they win over the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--api-listen`.
    pub api_listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--engine`.
    pub engine: Option<EngineKind>,
    /// `--redis-url` (repeated: several independent deployments); replaces `redis.urls`.
    pub redis_urls: Vec<String>,
}

impl Config {
    /// Load `file` (or the embedded default), apply `PUSHHUB_*` variables from `vars`
    /// and then `overrides`, and validate.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("PUSHHUB_"))
            .collect();
        let origin = ConfigOrigin {
            file: file.map(Path::to_path_buf),
            vars: vars.clone(),
            overrides: overrides.clone(),
        };
        let (text, source) = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => (text, path.display().to_string()),
                Err(e) => {
                    return Err(ConfigErrors(vec![ConfigError {
                        location: path.display().to_string(),
                        key: String::new(),
                        message: format!("cannot read: {e}"),
                    }]))
                }
            },
            None => (String::new(), "embedded default".to_owned()),
        };
        let mut table: toml::Table = match text.parse() {
            Ok(table) => table,
            Err(_) => return Err(ConfigErrors(locate::syntax_errors(&source, &text))),
        };
        let type_errors = locate::type_errors::<RawConfig>(&source, &text);
        if !type_errors.is_empty() {
            return Err(ConfigErrors(type_errors));
        }
        let from_env = env::apply(&mut table, vars).map_err(ConfigErrors)?;
        if file.is_none() {
            pushserve_for_demo(&mut table);
        }
        let mut raw = RawConfig::deserialize(table).map_err(|error| {
            ConfigErrors(vec![ConfigError {
                location: "environment (PUSHHUB_*)".into(),
                key: String::new(),
                message: error.message().trim().to_owned(),
            }])
        })?;
        if let Some(listen) = &overrides.listen {
            raw.listen = listen.clone();
        }
        if let Some(api) = &overrides.api_listen {
            raw.api_listen = api.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            raw.data_dir = dir.clone();
        }
        if let Some(engine) = overrides.engine {
            raw.engine = engine;
        }
        if !overrides.redis_urls.is_empty() {
            raw.redis.urls = overrides.redis_urls.clone();
        }
        let embedded = file.is_none();
        let locate = |path: &[&str]| match from_env.iter().find(|(p, _)| p.iter().eq(path.iter())) {
            Some((_, variable)) => variable.clone(),
            None => locate::key(&source, &text, path),
        };
        validate(raw, embedded, &locate).map(|mut config| {
            config.source = source;
            config.origin = origin;
            config
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::login::LoginPolicy;

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushhub.toml");
        std::fs::write(&path, text).unwrap();
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), vars, &Overrides::default())
    }

    #[test]
    fn timers_have_defaults_env_overrides_and_bounds() {
        let config = Config::load(None, [], &Overrides::default()).unwrap();
        assert_eq!(config.timers.concurrency, 256);
        assert_eq!(config.timers.request_timeout, Duration::from_secs(30));
        assert_eq!(config.timers.retry.max_attempts, 5);
        assert_eq!(config.timers.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(config.timers.default_app.as_deref(), Some(DEMO_APP));
        let vars = [
            ("PUSHHUB_TIMERS_CONCURRENCY".to_string(), "8".to_string()),
            ("PUSHHUB_TIMERS_LOG_MAX_BYTES".to_string(), "0".to_string()),
        ];
        let config = Config::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(config.timers.concurrency, 8);
        assert_eq!(config.timers.log.max_bytes, 0);
        let config = load_text(
            "[timers]\nmax_attempts = 3\nretention = 60\n[apps.a]\nauth = \"none\"\n[apps.b]\nauth = \"none\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.timers.retry.max_attempts, 3);
        assert_eq!(config.timers.retention, Duration::from_secs(60));
        assert_eq!(config.timers.default_app, None, "two apps: no default");
        let errors = load_text(
            "dynamic_apps = true\n[timers]\nconcurrency = 0\nretry_base_ms = 10\nretry_max_ms = 5\nlog_max_bytes = 10\n",
            &[],
        )
        .unwrap_err()
        .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "timers.concurrency",
                "timers.retry_max_ms",
                "timers.log_max_bytes"
            ]
        );
        assert!(
            errors[0].location.ends_with(":3:1"),
            "{}",
            errors[0].location
        );
        let errors = load_text("dynamic_apps = true\n[timers]\nconcurency = 1\n", &[])
            .unwrap_err()
            .0;
        assert!(errors[0].message.contains("concurency"), "{errors:?}");
    }

    #[test]
    fn the_timer_store_cache_is_sized_in_mib_within_bounds() {
        let config = load_text("dynamic_apps = true\n", &[]).unwrap();
        assert_eq!(config.timers.store_cache_bytes, 64 * 1024 * 1024);
        let config = load_text("dynamic_apps = true\n[timers]\nstore_cache_mb = 8\n", &[]).unwrap();
        assert_eq!(config.timers.store_cache_bytes, 8 * 1024 * 1024);
        let errors = load_text("dynamic_apps = true\n[timers]\nstore_cache_mb = 0\n", &[])
            .unwrap_err()
            .0;
        assert_eq!(errors[0].key, "timers.store_cache_mb", "{errors:?}");
    }

    #[test]
    fn timer_targets_come_from_allow_hosts_and_its_variable() {
        let open = Config::load(None, [], &Overrides::default()).unwrap();
        let metadata = reqwest::Url::parse("http://169.254.169.254/").unwrap();
        let backend = reqwest::Url::parse("http://127.0.0.1:9000/").unwrap();
        assert!(open.timers.targets.check_url(&metadata).is_err());
        assert!(open.timers.targets.check_url(&backend).is_ok());
        let vars = [(
            "PUSHHUB_TIMERS_ALLOW_HOSTS".to_string(),
            "10.0.0.0/8, api.example.com".to_string(),
        )];
        let listed = Config::load(None, vars, &Overrides::default()).unwrap();
        assert!(listed.timers.targets.check_url(&backend).is_err());
        let errors = load_text(
            "dynamic_apps = true\n[timers]\nallow_hosts = [\"ok.example\", \"not a host\"]\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "timers.allow_hosts");
        assert!(errors[0].message.contains("not a host"), "{errors:?}");
        let vars = [("PUSHHUB_API_KEY".to_string(), "k".to_string())];
        assert!(
            Config::load(None, vars, &Overrides::default()).is_ok(),
            "the CLI's key is not a configuration key"
        );
    }

    #[test]
    fn embedded_default_has_demo_and_dynamic_apps() {
        let config = Config::load(None, [], &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(config.api_listen.to_string(), "127.0.0.1:8082");
        assert_eq!(config.apps.len(), 1);
        assert_eq!(&*config.apps[0].policy.name, "demo");
        assert!(config.dynamic_apps.is_some());
    }

    #[test]
    fn backend_features_are_checked_together() {
        let errors = load_text(
            r#"
[limits]
trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "nope"]

[apps.hook]
auth = "webhook"

[apps.calls]
auth = "none"
backend_secret = "short"
join_rooms = "webhook"
[apps.calls.rpc]
url = "ftp://x"
routes = { "a." = "http://127.0.0.1:1/" }
timeout_ms = 0

[apps.extra]
auth = "none"
[apps.extra.auth_webhook]
url = "http://127.0.0.1:1/auth"
"#,
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "limits.trusted_proxies",
            "apps.hook.auth",
            "apps.calls.backend_secret",
            "apps.calls.rpc",
            "apps.calls.rpc.url",
            "apps.calls.rpc.timeout_ms",
            "apps.calls.join_rooms",
            "apps.extra.auth_webhook",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }

        let config = load_text(
            r#"
[limits]
max_connections_per_ip = 3
[apps.live]
auth = "token"
token_secrets = ["live-token-secret-0123456789abcdefgh"]
backend_secret = "live-backend-secret-0123456789abcdef"
[apps.live.rpc]
routes = { "live." = "http://127.0.0.1:9000/live", "live.admin." = "http://127.0.0.1:9000/admin" }
"#,
            &[("PUSHHUB_LIMITS_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")],
        )
        .unwrap();
        assert_eq!(config.limits.max_connections_per_ip, 3);
        let services = crate::services::assemble(&config).unwrap();
        let live = &services.apps[0];
        let routes = &live.rpc.as_ref().unwrap().settings().routes;
        assert_eq!(routes[0].0, "live.admin.", "longest prefix first");
        assert!(matches!(
            live.rooms,
            crate::backend::rooms::RoomPolicy::Credential
        ));
    }

    #[test]
    fn login_later_needs_credentials_and_takes_several_names() {
        let errors = load_text(
            r#"
[apps.anyone]
auth = "none"
login_later = true
max_logins_per_minute = 0

[apps.site]
auth = "webhook"
[apps.site.auth_webhook]
url = "http://127.0.0.1:1/auth"
query_param = []
"#,
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "apps.anyone.login_later",
            "apps.anyone.max_logins_per_minute",
            "apps.site.auth_webhook.query_param",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }

        let config = load_text(
            r#"
[apps.swoole]
auth = "webhook"
login_later = true
[apps.swoole.auth_webhook]
url = "http://127.0.0.1:1/auth"
query_param = ["ukey", "token"]
"#,
            &[],
        )
        .unwrap();
        let services = crate::services::assemble(&config).unwrap();
        let swoole = &services.apps[0];
        assert_eq!(swoole.login, Some(LoginPolicy { max_per_minute: 6 }));
        assert_eq!(crate::auth::query_params(swoole), ["ukey", "token"]);
    }

    #[test]
    fn poll_waits_tick_floors_and_logged_bodies_are_bounded() {
        let config = load_text("dynamic_apps = true\n", &[]).unwrap();
        assert_eq!(config.limits.max_poll_wait, Duration::from_secs(120));
        assert_eq!(config.timers.min_interval, Duration::from_millis(100));
        assert_eq!(config.timers.log.body_bytes, 256);
        let config = load_text(
            "dynamic_apps = true\n[limits]\nmax_poll_wait = 30\n[timers]\nmin_interval_ms = 5\nlog_body_bytes = 0\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.limits.max_poll_wait, Duration::from_secs(30));
        assert_eq!(config.timers.min_interval, Duration::from_millis(5));
        assert_eq!(config.timers.log.body_bytes, 0);
        let errors = load_text(
            "dynamic_apps = true\n[limits]\nmax_poll_wait = 0\n[timers]\nmin_interval_ms = 0\nlog_body_bytes = 70000\n",
            &[],
        )
        .unwrap_err()
        .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "timers.min_interval_ms",
                "timers.log_body_bytes",
                "limits.max_poll_wait"
            ]
        );
    }

    #[test]
    fn flood_limits_have_defaults_and_the_pre_auth_one_cannot_be_turned_off() {
        let config = load_text("[apps.wms]\nauth = \"none\"\n", &[]).unwrap();
        assert_eq!(config.limits.max_frames_per_second_before_auth, 10);
        assert_eq!(config.limits.max_requests_per_second_per_ip, 50);
        let config = load_text(
            "[limits]\nmax_requests_per_second_per_ip = 0\n[apps.wms]\nauth = \"none\"\n",
            &[("PUSHHUB_LIMITS_MAX_FRAMES_PER_SECOND_BEFORE_AUTH", "3")],
        )
        .unwrap();
        assert_eq!(config.limits.max_frames_per_second_before_auth, 3);
        assert_eq!(config.limits.max_requests_per_second_per_ip, 0);
        let text = "[limits]\nmax_frames_per_second_before_auth = 0\n[apps.wms]\nauth = \"none\"\n";
        let errors = load_text(text, &[]).unwrap_err().0;
        assert_eq!(errors[0].key, "limits.max_frames_per_second_before_auth");
    }

    #[test]
    fn file_apps_only_unless_opted_in() {
        let config = load_text("[apps.wms]\nauth = \"none\"\nheartbeat = 5\n", &[]).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].policy.heartbeat, Duration::from_secs(5));
        assert!(config.dynamic_apps.is_none());
        let config = load_text("dynamic_apps = true\n", &[]).unwrap();
        assert!(config.apps.is_empty());
        assert!(config.dynamic_apps.is_some());
    }

    #[test]
    fn env_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1000\"\nheartbeat = 5\ndynamic_apps = true\n",
        )
        .unwrap();
        let vars = [
            ("PUSHHUB_HEARTBEAT".to_string(), "7".to_string()),
            ("PUSHHUB_LISTEN".to_string(), "127.0.0.1:2000".to_string()),
            (
                "PUSHHUB_LIMITS_MAX_FRAME_BYTES".to_string(),
                "1000".to_string(),
            ),
            ("PUSHHUB_LOG".to_string(), "debug".to_string()),
        ];
        let overrides = Overrides {
            listen: Some("127.0.0.1:3000".into()),
            ..Default::default()
        };
        let config = Config::load(Some(&path), vars, &overrides).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.defaults.heartbeat, Duration::from_secs(7));
        assert_eq!(config.defaults.max_frame_bytes, 1000);
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_line() {
        let text = "listen = \"nope\"\nheartbeat = 30\n\n[apps.wms]\nauth = \"none\"\nidle_timeout = 10\n\n[apps.\"bad name\"]\nauth = \"none\"\n";
        let errors = load_text(text, &[]).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["listen", "apps.bad name", "apps.wms.idle_timeout"]);
        assert!(
            errors[0].location.ends_with(":1:1"),
            "{}",
            errors[0].location
        );
        assert!(
            errors[2].location.ends_with(":6:1"),
            "{}",
            errors[2].location
        );
    }

    #[test]
    fn syntax_and_type_errors_have_locations() {
        let errors = load_text("listen = \n[x\n", &[]).unwrap_err().0;
        assert!(
            errors
                .iter()
                .all(|e| e.location.contains(":1:") || e.location.contains(":2:")),
            "{errors:?}"
        );
        let errors = load_text("heartbeat = \"soon\"\n", &[]).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("heartbeat"), "{errors:?}");
        let errors = load_text("[apps.wms]\nheartbeat = 5\n", &[]).unwrap_err().0;
        assert!(errors[0].message.contains("auth"), "{errors:?}");
        let errors = load_text("lisen = \"x\"\n", &[]).unwrap_err().0;
        assert!(errors[0].message.contains("lisen"), "{errors:?}");
    }

    #[test]
    fn every_type_and_unknown_key_error_is_reported_not_only_the_first() {
        let text = "heartbeat = \"soon\"\nlisen = \"x\"\n\n[apps.wms]\nauth = \"none\"\nmax_frame_bytes = \"big\"\ncolour = \"blüe\"\n\n[apps.crm]\nauth = \"none\"\nidle_timeout = -5\n";
        let errors = load_text(text, &[]).unwrap_err().0;
        let lines: Vec<&str> = errors
            .iter()
            .map(|e| e.location.rsplit_once(".toml:").map_or("", |(_, at)| at))
            .collect();
        assert_eq!(lines, ["1:13", "2:1", "6:19", "7:1", "11:16"], "{errors:?}");
        for (error, key) in errors.iter().zip([
            "heartbeat",
            "lisen",
            "max_frame_bytes",
            "colour",
            "idle_timeout",
        ]) {
            assert!(error.message.contains(key), "{error:?} should name {key}");
        }
        let errors = load_text("[apps.wms]\nauth = 5\n", &[]).unwrap_err().0;
        assert_eq!(
            errors.len(),
            1,
            "a blanked key is not reported missing: {errors:?}"
        );
    }

    #[test]
    fn env_values_take_their_key_type_and_errors_name_the_variable() {
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let config = Config::load(
            None,
            vars(&[("PUSHHUB_DATA_DIR", "2024")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("2024"));
        let errors = Config::load(
            None,
            vars(&[("PUSHHUB_HEARTBEAT", "soon")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].location, "PUSHHUB_HEARTBEAT");
        let errors = Config::load(
            None,
            vars(&[("PUSHHUB_HEARTBAET", "5")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .0;
        assert!(errors[0].message.contains("unknown"), "{errors:?}");
        let errors = Config::load(
            None,
            vars(&[("PUSHHUB_IDLE_TIMEOUT", "5")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .0;
        assert_eq!(
            (errors[0].location.as_str(), errors[0].key.as_str()),
            ("PUSHHUB_IDLE_TIMEOUT", "idle_timeout")
        );
        assert_eq!(errors.len(), 1, "one error, not one per app: {errors:?}");
    }

    #[test]
    fn a_file_must_leave_some_app_to_connect_to() {
        let errors = load_text("heartbeat = 5\n", &[]).unwrap_err().0;
        assert_eq!(errors[0].key, "apps");
    }

    #[test]
    fn queue_must_hold_the_largest_push() {
        let errors = load_text(
            "[limits]\nmax_body_bytes = 8000000\n[apps.a]\nauth = \"none\"\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].key, "limits.max_queue_bytes");
    }

    #[test]
    fn raw_tcp_is_off_by_default_and_set_from_file_or_env() {
        let config = Config::load(None, [], &Overrides::default()).unwrap();
        assert_eq!(
            (config.tcp_listen, config.tcp_framing),
            (None, Framing::Lines)
        );
        let config = load_text(
            "dynamic_apps = true\ntcp_listen = \"0.0.0.0:8083\"\ntcp_framing = \"length\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.tcp_listen.unwrap().to_string(), "0.0.0.0:8083");
        assert_eq!(config.tcp_framing, Framing::Length(Default::default()));
        let vars = [
            (
                "PUSHHUB_TCP_LISTEN".to_string(),
                "127.0.0.1:9000".to_string(),
            ),
            ("PUSHHUB_TCP_FRAMING".to_string(), "length".to_string()),
        ];
        let config = Config::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(config.tcp_listen.unwrap().to_string(), "127.0.0.1:9000");
        assert_eq!(config.tcp_framing, Framing::Length(Default::default()));
    }

    #[test]
    fn raw_tcp_settings_are_checked() {
        let errors = load_text(
            "dynamic_apps = true\nlisten = \"127.0.0.1:8081\"\ntcp_listen = \"127.0.0.1:8081\"\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].key, "tcp_listen");
        assert!(
            errors[0].location.ends_with(":3:1"),
            "{}",
            errors[0].location
        );
        let vars = [("PUSHHUB_TCP_LISTEN".to_string(), "8083".to_string())];
        let errors = Config::load(None, vars, &Overrides::default())
            .unwrap_err()
            .0;
        assert_eq!(
            (errors[0].location.as_str(), errors[0].key.as_str()),
            ("PUSHHUB_TCP_LISTEN", "tcp_listen")
        );
        let errors = load_text("dynamic_apps = true\ntcp_framing = \"json\"\n", &[])
            .unwrap_err()
            .0;
        assert!(errors[0].message.contains("lines"), "{errors:?}");
    }

    #[test]
    fn an_exposed_api_needs_keys_for_every_app() {
        let errors = load_text(
            "api_listen = \"0.0.0.0:8082\"\n[apps.wms]\nauth = \"none\"\n",
            &[],
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].key, "apps.wms.api_keys");
        let keyed = "api_listen = \"0.0.0.0:8082\"\n[apps.wms]\nauth = \"none\"\napi_keys = [\"0123456789abcdef\"]\n";
        assert!(load_text(keyed, &[]).is_ok());
        let errors = Config::load(
            None,
            vec![("PUSHHUB_API_LISTEN".into(), "0.0.0.0:8082".into())],
            &Overrides::default(),
        )
        .unwrap_err()
        .0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["dynamic_apps", "api_listen"]);
        let single_port = "listen = \"127.0.0.1:9000\"\napi_listen = \"127.0.0.1:9000\"\n[apps.wms]\nauth = \"none\"\n";
        assert_eq!(
            load_text(single_port, &[]).unwrap_err().0[0].key,
            "apps.wms.api_keys"
        );
    }

    #[test]
    fn api_keys_are_long_and_name_one_app() {
        let text = "[apps.a]\nauth = \"none\"\napi_keys = [\"short\", \"0123456789abcdef\"]\n[apps.b]\nauth = \"none\"\napi_keys = [\"0123456789abcdef\"]\n";
        let errors = load_text(text, &[]).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message.contains("at least 16"));
        assert!(errors[1].message.contains("also a key of app"));
    }

    #[test]
    fn admin_keys_are_long_and_never_an_apps_key() {
        let text = "admin_keys = [\"short\", \"0123456789abcdef\"]\n[apps.a]\nauth = \"none\"\napi_keys = [\"0123456789abcdef\"]\n";
        let errors = load_text(text, &[]).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].key, "admin_keys");
        assert!(errors[0].message.contains("at least 16"));
        assert!(errors[1].message.contains("also an admin key"));
        let config = load_text(
            "[apps.a]\nauth = \"none\"\n",
            &[(
                "PUSHHUB_ADMIN_KEYS",
                "k-0123456789abcdef,k-fedcba9876543210",
            )],
        )
        .unwrap();
        assert_eq!(config.admin_keys.len(), 2);
    }
}
