//! Configuration: a TOML file (optional), `PUSHHUB_*` environment variables and command-line
//! flags, in rising order of precedence, validated once into a [`Config`].
//!
//! Without a file the server runs the embedded default: app `demo` with `auth = "none"`,
//! and any other valid app name accepted on first use as another development app (as
//! jdserver did). With a file only the declared apps exist unless `dynamic_apps = true`.
//! Each field's doc comment is its operator documentation; `pushhub.example.toml` and
//! docs/operations.md repeat them.

mod env;
mod locate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::token::TokenKeys;
use crate::engine::{EngineKind, HistoryPolicy};
use crate::hub::registry::UserLimit;
use crate::hub::{names, AppSettings, AuthMode, OutboxLimits};
use crate::transport::tcp::Framing;

/// The configuration file's shape, before validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Client listener: WebSocket, SSE and long-poll clients connect here.
    pub listen: String,
    /// API listener: backends and operators. Loopback only until API keys are configured.
    pub api_listen: String,
    /// Raw TCP listener for native apps and devices (native frames on a plain socket, first
    /// frame `connect`). Unset (the default): no raw TCP.
    pub tcp_listen: Option<String>,
    /// How frames are delimited on the raw TCP listener: "lines" (newline-delimited JSON)
    /// or "length" (4-byte big-endian length prefix).
    pub tcp_framing: Framing,
    /// Where durable state lives (timers, cron, optional history).
    pub data_dir: PathBuf,
    /// Accept any valid app name on first use as a development app with `auth = "none"`.
    /// Default: true without a config file, false with one.
    pub dynamic_apps: Option<bool>,
    /// Engine for channel streams and presence: "memory" (single node).
    pub engine: EngineKind,
    /// Seconds between the server's WebSocket pings to each client.
    pub heartbeat: u64,
    /// Seconds of client silence after which a connection is closed. Must exceed `heartbeat`.
    pub idle_timeout: u64,
    /// Seconds to let connections close cleanly on shutdown before exiting anyway.
    pub shutdown_grace: u64,
    /// Messages each channel keeps for clients that resume; 0 keeps none.
    pub history_size: usize,
    /// Seconds a message stays in history; 0 keeps none. A channel silent this long is
    /// forgotten (its next message starts a new epoch).
    pub history_ttl: u64,
    /// Resource limits.
    pub limits: RawLimits,
    /// Apps by name.
    pub apps: BTreeMap<String, RawApp>,
    /// push-serve compatibility (seed 004): off unless this table is present (or, without
    /// a file, `PUSHHUB_PUSHSERVE_PASSWORD` is set, for app `demo`).
    pub pushserve: Option<RawPushServe>,
}

/// What happens to a user's connection beyond `max_connections_per_user`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserLimitPolicy {
    /// The oldest connection is closed (4512) to make room.
    #[default]
    KickOldest,
    /// The newest connection is refused (4513).
    RefuseNewest,
}

/// push-serve compatibility: which app its endpoints serve and the backend password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPushServe {
    /// The app push-serve's `/access`, `/ws` and `/push` act for.
    pub app: String,
    /// The backend password (push-serve's `conf.yaml` `password`); also the key that signs
    /// access keys, so changing it revokes every key handed out.
    pub password: String,
    /// Seconds an access key stays valid.
    #[serde(default = "default_access_key_ttl")]
    pub access_key_ttl: u64,
}

fn default_max_frames_per_second() -> u32 {
    50
}

fn default_access_key_ttl() -> u64 {
    86_400
}

/// push-serve compatibility, validated.
#[derive(Debug, Clone)]
pub struct PushServe {
    /// The app it serves.
    pub app: Arc<str>,
    /// The backend password and access-key signing key.
    pub password: Arc<str>,
    /// How long an access key stays valid.
    pub access_key_ttl: Duration,
}

/// Resource limits, server-wide.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Largest client message in bytes; larger ones close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Most frames waiting in one connection's send queue before it is cut off as slow.
    pub max_queue_messages: usize,
    /// Most bytes waiting in one connection's send queue before it is cut off as slow.
    pub max_queue_bytes: usize,
    /// Seconds one write to a client may take before it is cut off as slow.
    pub write_timeout: u64,
    /// Largest API request body in bytes.
    pub max_body_bytes: usize,
    /// Most client connections at once; 0 = as many as the open-file limit allows.
    pub max_connections: usize,
    /// Seconds a client may take to finish its handshake (jdserver: send `init`; raw TCP:
    /// send `connect`).
    pub handshake_timeout: u64,
}

/// One app's settings; unset fields take the server-wide value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// Client authentication. Must be given: `"none"` trusts whatever user id a client
    /// claims and is for development and trusted networks only.
    pub auth: AuthMode,
    /// Overrides the server's `heartbeat`.
    #[serde(default)]
    pub heartbeat: Option<u64>,
    /// Overrides the server's `idle_timeout`.
    #[serde(default)]
    pub idle_timeout: Option<u64>,
    /// Overrides `limits.max_frame_bytes`.
    #[serde(default)]
    pub max_frame_bytes: Option<usize>,
    /// Keys a backend presents as `Authorization: Bearer KEY` to use the API for this app.
    /// Several may be valid at once, so keys rotate without downtime. An app without keys
    /// is reachable only while the API listens on loopback.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// HS256 secrets that sign this app's client tokens (`auth = "token"`), 32+ characters;
    /// several at once for rotation.
    #[serde(default)]
    pub token_secrets: Vec<String>,
    /// RS256/ES256 public keys (PEM text) that verify this app's client tokens.
    #[serde(default)]
    pub token_public_keys: Vec<String>,
    /// Most frames a client may send per second (bursts up to twice that); 0: no limit.
    #[serde(default = "default_max_frames_per_second")]
    pub max_frames_per_second: u32,
    /// Web origins (`https://app.example.com`) whose pages may connect; empty (the
    /// default): any. Requests without an `Origin` header (apps, devices, servers) are
    /// not browser pages and are not held to it.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Most connections one user may hold on this node; 0 (the default): no limit.
    #[serde(default)]
    pub max_connections_per_user: usize,
    /// What happens to a connection beyond that limit: `"kick_oldest"` (the default, as the
    /// seeds did: the newest takes the oldest's place) or `"refuse_newest"`.
    #[serde(default)]
    pub on_user_limit: UserLimitPolicy,
    /// Overrides the server's `history_size`.
    #[serde(default)]
    pub history_size: Option<usize>,
    /// Overrides the server's `history_ttl`.
    #[serde(default)]
    pub history_ttl: Option<u64>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            api_listen: "127.0.0.1:8082".into(),
            tcp_listen: None,
            tcp_framing: Framing::Lines,
            data_dir: "./data".into(),
            dynamic_apps: None,
            engine: EngineKind::Memory,
            heartbeat: 25,
            idle_timeout: 60,
            shutdown_grace: 10,
            history_size: 100,
            history_ttl: 600,
            limits: RawLimits::default(),
            apps: BTreeMap::new(),
            pushserve: None,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_queue_messages: 1024,
            max_queue_bytes: 4 * 1024 * 1024,
            write_timeout: 10,
            max_body_bytes: 1024 * 1024,
            max_connections: 0,
            handshake_timeout: 10,
        }
    }
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
    /// Most client connections; 0 until resolved from the open-file limit at start.
    pub max_connections: usize,
    /// Deadline for a client's dialect handshake.
    pub handshake_timeout: Duration,
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
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Limits.
    pub limits: Limits,
    /// Declared apps.
    pub apps: Vec<AppSettings>,
    /// Policy of apps created on first use, when enabled.
    pub dynamic_apps: Option<AppSettings>,
    /// Connection mechanics before a client's app is known.
    pub defaults: AppSettings,
    /// push-serve compatibility, when enabled.
    pub pushserve: Option<PushServe>,
    /// Where the configuration came from, for the start-up log.
    pub source: String,
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
}

impl Config {
    /// Load `file` (or the embedded default), apply `PUSHHUB_*` variables from `vars`
    /// and then `overrides`, and validate.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let pushserve_password = vars
            .iter()
            .find(|(name, _)| name == PUSHSERVE_PASSWORD_VAR)
            .map(|(_, value)| value.clone());
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
        if let Err(error) = toml::from_str::<RawConfig>(&text) {
            return Err(ConfigErrors(vec![locate::type_error(
                &source, &text, &error,
            )]));
        }
        let from_env = env::apply(&mut table, vars).map_err(ConfigErrors)?;
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
        if let (None, Some(password)) = (file, pushserve_password) {
            raw.pushserve.get_or_insert(RawPushServe {
                app: DEMO_APP.into(),
                password,
                access_key_ttl: default_access_key_ttl(),
            });
        }
        let embedded = file.is_none();
        let locate = |path: &[&str]| match from_env.iter().find(|(p, _)| p.iter().eq(path.iter())) {
            Some((_, variable)) => variable.clone(),
            None => locate::key(&source, &text, path),
        };
        validate(raw, embedded, &locate).map(|mut config| {
            config.source = source;
            config
        })
    }
}

/// Bytes a message's frame may add to its pushed data (frame header, channel, ids).
const FRAME_OVERHEAD: usize = 4096;

/// Shortest HS256 token secret accepted (256 bits of text).
const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// Shortest API key accepted: long enough that guessing is hopeless.
const MIN_API_KEY_BYTES: usize = 16;

/// The variable that enables push-serve compatibility in the embedded default.
pub const PUSHSERVE_PASSWORD_VAR: &str = "PUSHHUB_PUSHSERVE_PASSWORD";

/// The demo app of the embedded default.
pub const DEMO_APP: &str = "demo";

fn validate(
    raw: RawConfig,
    embedded: bool,
    locate: &dyn Fn(&[&str]) -> String,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut error = |path: &[&str], message: String| {
        errors.push(ConfigError {
            location: locate(path),
            key: path.join("."),
            message,
        })
    };
    let mut address = |key: &str, value: &str| match value.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            error(
                &[key],
                format!("{value:?} is not an address like 127.0.0.1:8081"),
            );
            None
        }
    };
    let listen = address("listen", &raw.listen);
    let api_listen = address("api_listen", &raw.api_listen);
    let tcp_listen = raw
        .tcp_listen
        .as_deref()
        .and_then(|tcp| address("tcp_listen", tcp));
    if let Some(tcp) = tcp_listen.filter(|tcp| tcp.port() != 0) {
        if Some(tcp) == listen || Some(tcp) == api_listen {
            error(
                &["tcp_listen"],
                format!(
                    "{tcp} is already the client or API listener: raw TCP needs a port of its own"
                ),
            );
        }
    }
    let dynamic = raw.dynamic_apps.unwrap_or(embedded);
    if let Some(api) = api_listen {
        let exposed = if listen == Some(api) && api.port() != 0 {
            Some("the API shares the client listener")
        } else if !api.ip().is_loopback() {
            Some("the API listens beyond loopback")
        } else {
            None
        };
        if let Some(why) = exposed {
            if dynamic {
                error(
                    &["dynamic_apps"],
                    format!("{why} ({api}), so every app needs API keys, and apps created on first use have none: set dynamic_apps = false"),
                );
            }
            if embedded && !raw.apps.contains_key(DEMO_APP) {
                error(
                    &["api_listen"],
                    format!("{why} ({api}), so every app needs API keys: the embedded app \"demo\" has none; use a config file with [apps.NAME] api_keys"),
                );
            }
            for (name, app) in &raw.apps {
                if app.api_keys.is_empty() {
                    error(
                        &["apps", name, "api_keys"],
                        format!("{why} ({api}), so this app needs at least one API key"),
                    );
                }
            }
        }
    }
    for (name, app) in &raw.apps {
        let key = ["apps", name.as_str(), "token_secrets"];
        if app
            .token_secrets
            .iter()
            .any(|s| s.len() < MIN_TOKEN_SECRET_BYTES)
        {
            error(
                &key,
                format!("a token secret must be at least {MIN_TOKEN_SECRET_BYTES} characters"),
            );
        }
        if let Err(e) = TokenKeys::new(&[], &app.token_public_keys) {
            error(&["apps", name, "token_public_keys"], e.to_string());
        }
        let has_keys = !app.token_secrets.is_empty() || !app.token_public_keys.is_empty();
        if app.auth == AuthMode::Token && !has_keys {
            error(
                &key,
                "auth = \"token\" needs token_secrets or token_public_keys to verify tokens with"
                    .into(),
            );
        }
    }
    if let Some(pushserve) = &raw.pushserve {
        let declared =
            raw.apps.contains_key(&pushserve.app) || (embedded && pushserve.app == DEMO_APP);
        if !declared {
            error(
                &["pushserve", "app"],
                format!("app {:?} is not declared in [apps]", pushserve.app),
            );
        }
        if pushserve.password.len() < 8 {
            error(
                &["pushserve", "password"],
                "must be at least 8 characters".into(),
            );
        }
        if pushserve.access_key_ttl == 0 {
            error(
                &["pushserve", "access_key_ttl"],
                "must be at least 1 second".into(),
            );
        }
    }
    let mut seen_keys = std::collections::HashMap::new();
    for (name, app) in &raw.apps {
        for key in &app.api_keys {
            if key.len() < MIN_API_KEY_BYTES {
                error(
                    &["apps", name, "api_keys"],
                    format!("an API key must be at least {MIN_API_KEY_BYTES} characters"),
                );
            }
            if let Some(other) = seen_keys.insert(key.as_str(), name.as_str()) {
                error(
                    &["apps", name, "api_keys"],
                    format!("this key is also a key of app {other:?}: a key names exactly one app"),
                );
            }
        }
    }
    check_liveness(&mut error, &[], raw.heartbeat, raw.idle_timeout);
    check_frame_bytes(
        &mut error,
        &["limits", "max_frame_bytes"],
        raw.limits.max_frame_bytes,
    );
    let limits = &raw.limits;
    if limits.max_queue_messages == 0 {
        error(
            &["limits", "max_queue_messages"],
            "must be at least 1".into(),
        );
    }
    if limits.max_queue_bytes < limits.max_body_bytes + FRAME_OVERHEAD {
        error(
            &["limits", "max_queue_bytes"],
            format!(
                "must be at least limits.max_body_bytes + {FRAME_OVERHEAD}: a message as large as the largest push must fit one connection's queue, or every recipient is cut off as a slow consumer"
            ),
        );
    }
    if limits.handshake_timeout == 0 {
        error(
            &["limits", "handshake_timeout"],
            "must be at least 1 second".into(),
        );
    }
    if limits.write_timeout == 0 {
        error(
            &["limits", "write_timeout"],
            "must be at least 1 second".into(),
        );
    }
    if limits.max_body_bytes < 1024 {
        error(
            &["limits", "max_body_bytes"],
            "must be at least 1024".into(),
        );
    }
    let settings = |name: &str, app: Option<&RawApp>| AppSettings {
        name: Arc::from(name),
        auth: app.map(|a| a.auth).unwrap_or(AuthMode::None),
        heartbeat: Duration::from_secs(app.and_then(|a| a.heartbeat).unwrap_or(raw.heartbeat)),
        idle_timeout: Duration::from_secs(
            app.and_then(|a| a.idle_timeout).unwrap_or(raw.idle_timeout),
        ),
        max_frame_bytes: app
            .and_then(|a| a.max_frame_bytes)
            .unwrap_or(limits.max_frame_bytes),
        history: HistoryPolicy {
            size: app.and_then(|a| a.history_size).unwrap_or(raw.history_size),
            ttl: Duration::from_secs(app.and_then(|a| a.history_ttl).unwrap_or(raw.history_ttl)),
        },
        api_keys: app
            .map(|a| a.api_keys.iter().map(|k| Arc::from(k.as_str())).collect())
            .unwrap_or_default(),
        max_frames_per_second: app
            .map_or(default_max_frames_per_second(), |a| a.max_frames_per_second),
        allowed_origins: app
            .map(|a| {
                a.allowed_origins
                    .iter()
                    .map(|o| Arc::from(o.trim_end_matches('/')))
                    .collect()
            })
            .unwrap_or_default(),
        user_limit: app
            .filter(|a| a.max_connections_per_user > 0)
            .map(|a| UserLimit {
                max: a.max_connections_per_user,
                kick_oldest: a.on_user_limit == UserLimitPolicy::KickOldest,
            }),
        token_keys: Arc::new(
            app.and_then(|a| TokenKeys::new(&a.token_secrets, &a.token_public_keys).ok())
                .unwrap_or_default(),
        ),
    };
    let mut apps = Vec::new();
    for (name, app) in &raw.apps {
        let key = ["apps", name.as_str()];
        if names::check_app(name).is_err() {
            error(
                &key,
                "app names use 1-64 characters from A-Z a-z 0-9 _ - .".into(),
            );
        }
        let resolved = settings(name, Some(app));
        if app.heartbeat.is_some() || app.idle_timeout.is_some() {
            check_liveness(
                &mut error,
                &key,
                resolved.heartbeat.as_secs(),
                resolved.idle_timeout.as_secs(),
            );
        }
        if let Some(bytes) = app.max_frame_bytes {
            check_frame_bytes(&mut error, &["apps", name, "max_frame_bytes"], bytes);
        }
        apps.push(resolved);
    }
    if embedded && !raw.apps.contains_key(DEMO_APP) {
        apps.push(settings(DEMO_APP, None));
    }
    if apps.is_empty() && !dynamic {
        error(
            &["apps"],
            "no app is declared and dynamic_apps is false: no client could connect; add an [apps.NAME] table".into(),
        );
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let dynamic = raw
        .dynamic_apps
        .unwrap_or(embedded)
        .then(|| settings("", None));
    Ok(Config {
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081))),
        api_listen: api_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8082))),
        tcp_listen,
        tcp_framing: raw.tcp_framing,
        data_dir: raw.data_dir.clone(),
        engine: raw.engine,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace),
        limits: Limits {
            outbox: OutboxLimits {
                max_messages: limits.max_queue_messages,
                max_bytes: limits.max_queue_bytes,
            },
            write_timeout: Duration::from_secs(limits.write_timeout),
            max_body_bytes: limits.max_body_bytes,
            max_connections: limits.max_connections,
            handshake_timeout: Duration::from_secs(limits.handshake_timeout),
        },
        defaults: settings("", None),
        apps,
        dynamic_apps: dynamic,
        pushserve: raw.pushserve.as_ref().map(|p| PushServe {
            app: p.app.as_str().into(),
            password: p.password.as_str().into(),
            access_key_ttl: Duration::from_secs(p.access_key_ttl),
        }),
        source: String::new(),
    })
}

fn check_liveness(
    error: &mut impl FnMut(&[&str], String),
    prefix: &[&str],
    heartbeat: u64,
    idle: u64,
) {
    let path = |last: &'static str| [prefix, &[last]].concat();
    if heartbeat == 0 {
        error(&path("heartbeat"), "must be at least 1 second".into());
    }
    if idle <= heartbeat {
        error(
            &path("idle_timeout"),
            format!(
                "must be longer than heartbeat ({heartbeat} s), or healthy clients are cut off"
            ),
        );
    }
}

fn check_frame_bytes(error: &mut impl FnMut(&[&str], String), key: &[&str], bytes: usize) {
    if !(125..=16 * 1024 * 1024).contains(&bytes) {
        error(key, "must be between 125 and 16777216 bytes".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pushhub.toml");
        std::fs::write(&path, text).unwrap();
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), vars, &Overrides::default())
    }

    #[test]
    fn embedded_default_has_demo_and_dynamic_apps() {
        let config = Config::load(None, [], &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(config.api_listen.to_string(), "127.0.0.1:8082");
        assert_eq!(config.apps.len(), 1);
        assert_eq!(&*config.apps[0].name, "demo");
        assert!(config.dynamic_apps.is_some());
    }

    #[test]
    fn file_apps_only_unless_opted_in() {
        let config = load_text("[apps.wms]\nauth = \"none\"\nheartbeat = 5\n", &[]).unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].heartbeat, Duration::from_secs(5));
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
        assert_eq!(config.tcp_framing, Framing::Length);
        let vars = [
            (
                "PUSHHUB_TCP_LISTEN".to_string(),
                "127.0.0.1:9000".to_string(),
            ),
            ("PUSHHUB_TCP_FRAMING".to_string(), "length".to_string()),
        ];
        let config = Config::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(config.tcp_listen.unwrap().to_string(), "127.0.0.1:9000");
        assert_eq!(config.tcp_framing, Framing::Length);
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
}
