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
mod pushserve;
pub mod redis;
pub mod tcp_framing;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::token::TokenKeys;
use crate::backend::send::RoomSendPolicy;
use crate::engine::{EngineKind, HistoryPolicy};
use crate::gateway::TrustedProxies;
use crate::hub::login::LoginPolicy;
use crate::hub::registry::UserLimit;
use crate::hub::{names, AppPolicy, AuthMode, InvalidFrames, OutboxLimits};
use crate::scheduler::log::Rotation;
use crate::scheduler::targets::TargetPolicy;
use crate::scheduler::TimerSettings;
use crate::store::history::{FsyncPolicy, HistoryStore};
use crate::store::RetryPolicy;
use crate::transport::tcp::Framing;
pub use pushserve::{PushServe, RawPushServe};
use tcp_framing::RawTcpFraming;

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
    /// How frames are delimited on the raw TCP listener: "lines" (newline-delimited JSON),
    /// "length" (4-byte big-endian length prefix), or a table of Swoole's settings (a
    /// delimiter, or a 2- or 4-byte length field at an offset: see [`tcp_framing`]).
    pub tcp_framing: RawTcpFraming,
    /// Where durable state lives (timers, cron, optional history).
    pub data_dir: PathBuf,
    /// Accept any valid app name on first use as a development app with `auth = "none"`.
    /// Default: true without a config file, false with one.
    pub dynamic_apps: Option<bool>,
    /// Engine for channel streams, presence, timers and cron: "memory" (one node, the
    /// default) or "redis" (many nodes on one Redis: see `[redis]`).
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
    /// Most bytes the histories of one app's channels hold together; beyond it the app's
    /// oldest kept messages are evicted, and clients resuming from before them are told
    /// `recovered: false`. All apps together are bounded by `limits.max_history_bytes`.
    pub history_max_bytes: usize,
    /// Where the memory engine keeps channel histories: "disk" (an append-only log in
    /// `data_dir/history`, so restarts keep every epoch, offset and kept message) or
    /// "memory" (lost on restart: resuming clients get `recovered: false`). The Redis
    /// engine keeps history in Redis and ignores this.
    pub history_store: HistoryStore,
    /// When the history log is forced to disk: "always", "every_second" or "never".
    /// A killed process loses nothing under any of them; they differ on a machine crash
    /// (see docs/operations.md).
    pub history_fsync: FsyncPolicy,
    /// Resource limits.
    pub limits: RawLimits,
    /// Apps by name.
    pub apps: BTreeMap<String, RawApp>,
    /// push-serve compatibility (seed 004): off unless this table is present (or, without
    /// a file, `PUSHHUB_PUSHSERVE_PASSWORD` is set: then for app `demo`).
    pub pushserve: Option<RawPushServe>,
    /// MSwoole compatibility (seed 001): off unless this table is present.
    pub mswoole: Option<RawMSwoole>,
    /// jdserver compatibility (seed 000) on the client listener.
    pub jdserver: RawJdServer,
    /// TLS in pushhub itself (`wss://`, `https://`), for running without nginx: off unless
    /// this table is present (or `PUSHHUB_TLS_CERT` and `PUSHHUB_TLS_KEY` are set).
    pub tls: Option<RawTls>,
    /// Delayed HTTP callbacks (jdserver's `/setTimeout`, `/v1/timers`).
    pub timers: RawTimers,
    /// Where the Redis engine keeps cluster state; read when `engine = "redis"`.
    pub redis: redis::RawRedis,
    /// Operators' keys (`Authorization: Bearer KEY`, 16+ characters): server-wide
    /// operations (status, reload, stop, the admin dashboard) and every app's API. Without
    /// any, those operations are open only while the API listens on loopback.
    pub admin_keys: Vec<String>,
}

/// `[timers]`: how timers' HTTP calls are made, retried, kept and logged. Timers live in
/// `data_dir` (`timers.redb`, and the result log `timers.log`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTimers {
    /// Calls in flight at once, over all timers; due timers wait for a free slot, in due
    /// order.
    pub concurrency: usize,
    /// Seconds one call may take (connecting, the answer and the first 1 KiB of its
    /// body) before it counts as failed; a timer may ask for less or more (`timeout_ms`).
    pub request_timeout: u64,
    /// Attempts a native timer makes, the first included, when it does not say
    /// (jdserver's `/setTimeout` makes one, as jdserver did).
    pub max_attempts: u32,
    /// Milliseconds before the first retry; each further retry may wait twice as long
    /// (a random wait up to that: full jitter).
    pub retry_base_ms: u64,
    /// Longest wait before a retry, in milliseconds.
    pub retry_max_ms: u64,
    /// Longest delay a timer may be set for, in seconds (an interval timer's interval
    /// too).
    pub max_delay: u64,
    /// Shortest interval in milliseconds an interval timer may tick at: each tick is a
    /// store write (a Redis round trip in a cluster), so a floor keeps a careless
    /// `interval_ms = 1` from swamping the store.
    pub min_interval_ms: u64,
    /// Seconds a finished timer (succeeded, failed, cancelled) stays queryable before it
    /// is deleted.
    pub retention: u64,
    /// Size in bytes at which `timers.log` (one JSON line per call) is rotated; 0 turns
    /// the log off.
    pub log_max_bytes: u64,
    /// Rotated logs kept: `timers.log.1` (newest) to `timers.log.N`.
    pub log_files: usize,
    /// Bytes of each answer's body kept in its `timers.log` line (`body`, beside the
    /// status and the headers `content-type`, `content-length`, `location`,
    /// `retry-after`); 0 keeps none.
    pub log_body_bytes: usize,
    /// What timers and cron jobs may call: host names (`api.example.com`), wildcards
    /// (`*.example.com`), addresses and networks (`10.0.0.0/8`). Empty (the default):
    /// any host except link-local and cloud metadata addresses and names; not empty:
    /// only these (metadata addresses still only when an address or network lists them).
    /// pushhub's own listeners are refused either way.
    pub allow_hosts: Vec<String>,
    /// MiB of page cache for the timer store (`timers.redb`): what stays in memory of
    /// the file; more makes reads of a large store faster.
    pub store_cache_mb: usize,
}

impl Default for RawTimers {
    fn default() -> Self {
        Self {
            concurrency: 256,
            request_timeout: 30,
            max_attempts: 5,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
            max_delay: 366 * 86_400,
            min_interval_ms: 100,
            retention: 7 * 86_400,
            log_max_bytes: 64 * 1024 * 1024,
            log_files: 5,
            log_body_bytes: 256,
            allow_hosts: Vec::new(),
            store_cache_mb: 64,
        }
    }
}

/// `[tls]`: the certificate pushhub presents and which listeners use it. The files are
/// read again on SIGHUP, so a renewed certificate takes effect without a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, end-entity certificate first (certbot's `fullchain.pem`).
    /// A relative path is taken from the working directory.
    pub cert: PathBuf,
    /// PEM private key of that certificate (certbot's `privkey.pem`).
    pub key: PathBuf,
    /// TLS on the client listener (`wss://`, `https://` for SSE and long-poll).
    #[serde(default = "default_true")]
    pub client: bool,
    /// TLS on the API listener. Off by default: the API normally listens on loopback for
    /// backends on the same host; turn it on when backends call it across a network.
    #[serde(default)]
    pub api: bool,
    /// TLS on the raw TCP listener (`tcp_listen`).
    #[serde(default)]
    pub tcp: bool,
}

fn default_true() -> bool {
    true
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

fn default_max_frames_per_second() -> u32 {
    50
}

/// MSwoole compatibility (seed 001): which app its WebSocket endpoint serves, and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMSwoole {
    /// The app MSwoole clients belong to; it must take credentials (`auth = "token"`,
    /// `"webhook"` or `"mswoole-des"`): clients present one in `?auth=`.
    pub app: String,
    /// The WebSocket paths on the client listener, all serving the app alike (MSwoole's
    /// clients used `/` and one path per module, `/live`, behind nginx). `/` only when
    /// `[jdserver] websocket = false`. `path = "/live"` is the same as `paths = ["/live"]`.
    #[serde(
        default = "default_mswoole_paths",
        alias = "path",
        deserialize_with = "one_or_many"
    )]
    pub paths: Vec<String>,
    /// The method a frame without `method` calls (MSwoole routed it to its default
    /// module, controller and action); `""`: such a frame is an error (400).
    #[serde(default = "default_mswoole_method")]
    pub default_method: String,
}

fn default_mswoole_paths() -> Vec<String> {
    vec!["/mswoole".into()]
}

fn default_mswoole_method() -> String {
    "Index.Index.Index".into()
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a path or a list of paths")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `[jdserver]`: the jdserver dialect's WebSocket on the client listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawJdServer {
    /// Serve jdserver's WebSocket (first frame `{"ac":"init",...}`) on `/` (the default).
    /// Off frees `/` for `[mswoole] paths`, as MSwoole's clients connected there.
    pub websocket: bool,
}

impl Default for RawJdServer {
    fn default() -> Self {
        Self { websocket: true }
    }
}

/// Paths the client listener serves already, which the MSwoole endpoint may not take
/// (`/` is jdserver's unless `[jdserver] websocket = false`).
const RESERVED_CLIENT_PATHS: &[&str] =
    &["/ws", "/v1/ws", "/v1/sse", "/v1/poll", "/getMsg", "/demo"];

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
    /// Most pushes one `POST /v1/batch` may carry (targets of its broadcast form included).
    pub max_batch: usize,
    /// Largest `POST /v1/batch` body in bytes.
    pub max_batch_body_bytes: usize,
    /// Most bytes the histories of all channels of all apps hold together (the memory
    /// engine's); beyond it the oldest kept messages are evicted, whatever their app.
    pub max_history_bytes: usize,
    /// Most client connections at once; 0 = as many as the open-file limit allows.
    pub max_connections: usize,
    /// Most client connections one address may hold at once (beyond: 4008 / HTTP 429);
    /// 0 (the default): no limit. Behind a proxy, list it in `trusted_proxies`, or every
    /// client counts as the proxy's address.
    pub max_connections_per_ip: usize,
    /// Proxies (addresses or networks, `127.0.0.1`, `10.0.0.0/8`) whose `X-Forwarded-For`
    /// / `X-Real-IP` headers name the real client address.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client may take to finish its handshake (jdserver: send `init`; raw TCP:
    /// send `connect`).
    pub handshake_timeout: u64,
    /// Most frames a client may send per second (bursts up to twice that) before it has
    /// authenticated, when no app's limit applies yet; beyond it: close 1008.
    pub max_frames_per_second_before_auth: u32,
    /// Most SSE, long-poll and getMsg requests one client address may start per second
    /// (bursts up to twice that); beyond it: HTTP 429. 0: no limit.
    pub max_requests_per_second_per_ip: u32,
    /// Longest wait in seconds a long-poll (`/v1/poll`, jdserver's `getMsg`) may ask for;
    /// a longer `timeout` waits this long, and the answer says so in
    /// `X-Pushhub-Timeout-Capped`. Keep it below the idle timeout of any proxy in front.
    pub max_poll_wait: u64,
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
    /// Overrides the server's `history_max_bytes`.
    #[serde(default)]
    pub history_max_bytes: Option<usize>,
    /// Overrides `limits.handshake_timeout` for this app's clients: how long they may take
    /// to present a credential (an `auth` frame, the auth webhook's answer).
    #[serde(default)]
    pub handshake_timeout: Option<u64>,
    /// The backend that checks client credentials; required by `auth = "webhook"`.
    #[serde(default)]
    pub auth_webhook: Option<RawAuthWebhook>,
    /// The key of MSwoole's encrypted `auth` strings; required by `auth = "mswoole-des"`.
    #[serde(default)]
    pub mswoole_des: Option<RawMSwooleDes>,
    /// Signs every request pushhub makes to this app's backend (RPC calls), 32+
    /// characters: the `X-Pushhub-Signature` header lets the backend trust who the caller
    /// is. Required with `rpc`.
    #[serde(default)]
    pub backend_secret: Option<String>,
    /// Where clients' `rpc` frames go; unset: the app takes none.
    #[serde(default)]
    pub rpc: Option<RawRpc>,
    /// Who may join rooms: `"open"` (any connected client), `"credential"` (the rooms its
    /// token's `rooms` claim or auth webhook answer lists; `"*"` there: any) or
    /// `"webhook"` (ask `room_webhook`). Default: `"open"` for `auth = "none"` apps,
    /// `"credential"` otherwise.
    #[serde(default)]
    pub join_rooms: Option<JoinRooms>,
    /// The backend asked about each join when `join_rooms = "webhook"`.
    #[serde(default)]
    pub room_webhook: Option<RawQuestion>,
    /// Whether clients may `send` events to other users of the app: `"off"` (the
    /// default: it lets any client reach any user), `"open"`, or `"webhook"` (the backend
    /// vets each message at `send_webhook`).
    #[serde(default)]
    pub client_send: ClientSend,
    /// The backend that vets each `send` when `client_send = "webhook"`.
    #[serde(default)]
    pub send_webhook: Option<RawQuestion>,
    /// Whether clients may `send` to a room: `"off"` (the default) or `"members"` (a
    /// client in the room may; every member gets the message, as in seed 002's chat).
    #[serde(default)]
    pub room_send: RoomSendPolicy,
    /// What a client frame that is not JSON, has no type or an unknown type earns:
    /// `"error"` (the default: an error frame, the connection stays) or `"close"` (the
    /// connection is closed with 4500, as seed 002's servers did).
    #[serde(default)]
    pub invalid_frames: InvalidFrames,
    /// Where the app's lifecycle events (connect, disconnect, room join and leave) are
    /// POSTed in batches; unset: nowhere.
    #[serde(default)]
    pub events: Option<RawEvents>,
    /// Lets a WebSocket or raw TCP client connect without a credential and log in later
    /// with a `login` frame (seed 003): until then it is anonymous and receives nothing
    /// but answers to its own frames. Needs `auth = "token"` or `"webhook"`.
    #[serde(default)]
    pub login_later: bool,
    /// Most `login` frames one connection may send per minute (seed 003's clients retried
    /// every 30 s); beyond it they are refused with `login_rate_limited`.
    #[serde(default = "default_logins_per_minute")]
    pub max_logins_per_minute: u32,
}

fn default_logins_per_minute() -> u32 {
    6
}

/// An app's lifecycle webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Where pushhub POSTs `{"app","events":[...]}` (signed with `backend_secret`).
    pub url: String,
    /// Most events in one request.
    #[serde(default = "default_events_batch")]
    pub max_batch: usize,
    /// Milliseconds an event may wait for its batch to fill.
    #[serde(default = "default_events_delay_ms")]
    pub max_delay_ms: u64,
    /// Most events waiting to be sent (while the backend is slow or down); more are
    /// dropped and counted.
    #[serde(default = "default_events_queue")]
    pub queue: usize,
    /// Milliseconds one request may take.
    #[serde(default = "default_rpc_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per batch (with exponential backoff between them) before it is dropped.
    #[serde(default = "default_events_attempts")]
    pub max_attempts: u32,
}

fn default_events_batch() -> usize {
    100
}

fn default_events_delay_ms() -> u64 {
    1000
}

fn default_events_queue() -> usize {
    10_000
}

fn default_events_attempts() -> u32 {
    5
}

/// Client-to-user message policies, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientSend {
    /// Refused.
    #[default]
    Off,
    /// Allowed.
    Open,
    /// Vetted by the backend.
    Webhook,
}

/// Room join policies, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinRooms {
    /// Any connected client.
    Open,
    /// The rooms the client's credential lists.
    Credential,
    /// Ask the backend.
    Webhook,
}

/// A backend asked yes or no (room joins, client messages).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuestion {
    /// Where pushhub POSTs the question (signed); 2xx allows, 401/403 refuses.
    pub url: String,
    /// Milliseconds the backend may take before the request fails as unavailable.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

/// An app's RPC backend: one URL for every method, or one per method prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRpc {
    /// The URL every method is POSTed to.
    #[serde(default)]
    pub url: Option<String>,
    /// Method prefix → URL (`"live." = "http://..."`); the longest matching prefix wins.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Milliseconds one call may take (waiting for a free slot included) before the caller
    /// gets `rpc_timeout`.
    #[serde(default = "default_rpc_timeout_ms")]
    pub timeout_ms: u64,
    /// Most calls one connection may have in flight; more fail at once with `rpc_busy`.
    #[serde(default = "default_rpc_per_connection")]
    pub max_in_flight_per_connection: usize,
    /// Most calls the app may have in flight; more wait their turn within `timeout_ms`.
    #[serde(default = "default_rpc_in_flight")]
    pub max_in_flight: usize,
}

fn default_rpc_timeout_ms() -> u64 {
    5000
}

fn default_rpc_per_connection() -> usize {
    8
}

fn default_rpc_in_flight() -> usize {
    256
}

/// MSwoole's `Encrypt::undes($auth, KEY)` (`auth = "mswoole-des"`, seed 001): insecure,
/// for backends that keep minting these strings while they move to tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMSwooleDes {
    /// The shared key, as the backend passes it to `Encrypt::des` (MSwoole's example:
    /// `kfw001-websocket`); only its first 24 bytes count, as in mcrypt.
    pub key: String,
    /// Seconds an `auth` string stays acceptable after its `ctime`; checked when a client
    /// connects (an open connection is not cut when its string ages).
    #[serde(default = "default_mswoole_des_max_age")]
    pub max_age: u64,
}

fn default_mswoole_des_max_age() -> u64 {
    86_400
}

/// An app's auth backend (`auth = "webhook"`, seed 003's login against the main site).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthWebhook {
    /// Where pushhub POSTs `{"app","credential","source"}`; it answers 200
    /// `{"user":"100","groups":[...],"rooms":[...]}` to accept, 401/403 to reject.
    pub url: String,
    /// The query parameter a client's credential arrives in, or several (seed 003:
    /// `["ukey", "token"]`, a web session key or an app token), tried in order; the
    /// backend is told which one a credential came under. Also the fields of a `login`
    /// frame.
    #[serde(default = "default_credential_param")]
    pub query_param: CredentialParams,
    /// A cookie that carries the credential (a web session), checked before the query
    /// parameter; unset: cookies are not read.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Milliseconds one check may take before the client is refused (4007, retryable).
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Seconds an answer is reused for the same credential; 0 (the default): ask every
    /// time. A few seconds turn a reconnect storm into one request per user.
    #[serde(default)]
    pub cache_seconds: u64,
    /// Most checks in flight at once for this app; more wait their turn (within
    /// `timeout_ms`).
    #[serde(default = "default_webhook_concurrency")]
    pub max_concurrency: usize,
}

fn default_credential_param() -> CredentialParams {
    CredentialParams::One("token".into())
}

/// One credential parameter name, or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CredentialParams {
    /// `query_param = "ukey"`.
    One(String),
    /// `query_param = ["ukey", "token"]`.
    Several(Vec<String>),
}

impl CredentialParams {
    /// The names, in the order they are tried.
    pub fn names(&self) -> &[String] {
        match self {
            Self::One(name) => std::slice::from_ref(name),
            Self::Several(names) => names,
        }
    }
}

fn default_webhook_timeout_ms() -> u64 {
    3000
}

fn default_webhook_concurrency() -> usize {
    64
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            api_listen: "127.0.0.1:8082".into(),
            tcp_listen: None,
            tcp_framing: RawTcpFraming::Lines,
            data_dir: "./data".into(),
            dynamic_apps: None,
            engine: EngineKind::Memory,
            heartbeat: 25,
            idle_timeout: 60,
            shutdown_grace: 10,
            history_size: 100,
            history_ttl: 600,
            history_max_bytes: 128 * 1024 * 1024,
            history_store: HistoryStore::default(),
            history_fsync: FsyncPolicy::default(),
            limits: RawLimits::default(),
            apps: BTreeMap::new(),
            pushserve: None,
            mswoole: None,
            jdserver: RawJdServer::default(),
            tls: None,
            timers: RawTimers::default(),
            redis: redis::RawRedis::default(),
            admin_keys: Vec::new(),
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
            max_batch: 1000,
            max_batch_body_bytes: 16 * 1024 * 1024,
            max_history_bytes: 256 * 1024 * 1024,
            max_connections: 0,
            max_connections_per_ip: 0,
            trusted_proxies: Vec::new(),
            handshake_timeout: 10,
            max_frames_per_second_before_auth: 10,
            max_requests_per_second_per_ip: 50,
            max_poll_wait: 120,
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

/// Bytes a message's frame may add to its pushed data (frame header, channel, ids).
const FRAME_OVERHEAD: usize = 4096;

/// Shortest HS256 token secret accepted (256 bits of text).
const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// Shortest API key accepted: long enough that guessing is hopeless.
const MIN_API_KEY_BYTES: usize = 16;

/// The demo app of the embedded default.
pub const DEMO_APP: &str = "demo";

/// Without a file, `PUSHHUB_PUSHSERVE_*` variables turn push-serve compatibility on for
/// the embedded app: `PUSHHUB_PUSHSERVE_PASSWORD=abc123 pushhub serve` is enough.
fn pushserve_for_demo(table: &mut toml::Table) {
    if let Some(toml::Value::Table(pushserve)) = table.get_mut("pushserve") {
        pushserve
            .entry("app")
            .or_insert_with(|| toml::Value::String(DEMO_APP.into()));
    }
}

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
        if let Some(why) = api_exposure(listen, api) {
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
                    // push-serve's users have a password, not API keys: their single port
                    // is `[pushserve] addr`, which serves push-serve's endpoints only.
                    let pushserve_hint = match &raw.pushserve {
                        Some(pushserve) if &pushserve.app == name => "; for push-serve's single port (/ws, /access, /push behind its password) keep the API on loopback and set [pushserve] addr instead",
                        _ => "",
                    };
                    error(
                        &["apps", name, "api_keys"],
                        format!(
                            "{why} ({api}), so this app needs at least one API key{pushserve_hint}"
                        ),
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
        check_auth_webhook(&mut error, name, app);
        check_mswoole_des(&mut error, name, app);
        check_rpc(&mut error, name, app);
        check_events(&mut error, name, app);
        let rooms = app.join_rooms == Some(JoinRooms::Webhook);
        let room_webhook = app.room_webhook.as_ref();
        check_question(
            &mut error,
            name,
            app,
            ("room_webhook", room_webhook, rooms, "join_rooms"),
        );
        let send = app.client_send == ClientSend::Webhook;
        let send_webhook = app.send_webhook.as_ref();
        check_question(
            &mut error,
            name,
            app,
            ("send_webhook", send_webhook, send, "client_send"),
        );
        if app.handshake_timeout == Some(0) {
            error(
                &["apps", name, "handshake_timeout"],
                "must be at least 1 second".into(),
            );
        }
        check_login(&mut error, name, app);
    }
    if let Some(mswoole) = &raw.mswoole {
        check_mswoole(&mut error, &raw, mswoole);
    }
    let pushserve = raw.pushserve.as_ref().and_then(|pushserve| {
        let declared =
            raw.apps.contains_key(&pushserve.app) || (embedded && pushserve.app == DEMO_APP);
        let others = pushserve::OtherListeners {
            client: listen,
            api: api_listen,
            tcp: tcp_listen,
        };
        pushserve::check(pushserve, declared, &others, &mut error)
    });
    if let Some(tls) = &raw.tls {
        check_tls(
            &mut error,
            tls,
            listen,
            api_listen,
            raw.tcp_listen.is_some(),
        );
    }
    let mut seen_keys = std::collections::HashMap::new();
    for key in &raw.admin_keys {
        if key.len() < MIN_API_KEY_BYTES {
            error(
                &["admin_keys"],
                format!("an admin key must be at least {MIN_API_KEY_BYTES} characters"),
            );
        }
        seen_keys.insert(key.as_str(), "");
    }
    for (name, app) in &raw.apps {
        for key in &app.api_keys {
            if key.len() < MIN_API_KEY_BYTES {
                error(
                    &["apps", name, "api_keys"],
                    format!("an API key must be at least {MIN_API_KEY_BYTES} characters"),
                );
            }
            match seen_keys.insert(key.as_str(), name.as_str()) {
                Some("") => error(
                    &["apps", name, "api_keys"],
                    "this key is also an admin key: an app's key must not open every app".into(),
                ),
                Some(other) => error(
                    &["apps", name, "api_keys"],
                    format!("this key is also a key of app {other:?}: a key names exactly one app"),
                ),
                None => {}
            }
        }
    }
    let framing = tcp_framing::framing(&raw.tcp_framing, raw.limits.max_body_bytes, FRAME_OVERHEAD)
        .unwrap_or_else(|(path, why)| {
            error(&path, why);
            Framing::Lines
        });
    check_liveness(&mut error, &[], raw.heartbeat, raw.idle_timeout);
    check_timers(&mut error, &raw.timers);
    let redis = match raw.engine {
        EngineKind::Memory => None,
        EngineKind::Redis => redis::check(&raw.redis, &mut error),
    };
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
    let mut trusted_proxies = Vec::new();
    for proxy in &limits.trusted_proxies {
        match proxy
            .parse::<IpNet>()
            .or_else(|_| proxy.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => error(
                &["limits", "trusted_proxies"],
                format!("{proxy:?} is not an address or network like 10.0.0.0/8"),
            ),
        }
    }
    if limits.handshake_timeout == 0 {
        error(
            &["limits", "handshake_timeout"],
            "must be at least 1 second".into(),
        );
    }
    if limits.max_frames_per_second_before_auth == 0 {
        error(
            &["limits", "max_frames_per_second_before_auth"],
            "must be at least 1: a client that has not authenticated is never unlimited".into(),
        );
    }
    if limits.write_timeout == 0 {
        error(
            &["limits", "write_timeout"],
            "must be at least 1 second".into(),
        );
    }
    if !(1..=3600).contains(&limits.max_poll_wait) {
        error(
            &["limits", "max_poll_wait"],
            "must be between 1 and 3600 seconds".into(),
        );
    }
    if limits.max_body_bytes < 1024 {
        error(
            &["limits", "max_body_bytes"],
            "must be at least 1024".into(),
        );
    }
    if !(1..=100_000).contains(&limits.max_batch) {
        error(
            &["limits", "max_batch"],
            "must be between 1 and 100000".into(),
        );
    }
    if limits.max_batch_body_bytes < limits.max_body_bytes {
        error(
            &["limits", "max_batch_body_bytes"],
            "must be at least limits.max_body_bytes: a batch of one push is a push".into(),
        );
    }
    let settings = |name: &str, app: Option<&RawApp>| AppConfig {
        policy: AppPolicy {
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
                ttl: Duration::from_secs(
                    app.and_then(|a| a.history_ttl).unwrap_or(raw.history_ttl),
                ),
                max_bytes: app
                    .and_then(|a| a.history_max_bytes)
                    .unwrap_or(raw.history_max_bytes),
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
            room_send: app.map(|a| a.room_send).unwrap_or_default(),
            invalid_frames: app.map(|a| a.invalid_frames).unwrap_or_default(),
            handshake_timeout: Duration::from_secs(
                app.and_then(|a| a.handshake_timeout)
                    .unwrap_or(limits.handshake_timeout),
            ),
            login: app.filter(|a| a.login_later).map(|a| LoginPolicy {
                max_per_minute: a.max_logins_per_minute,
            }),
        },
        raw: app.cloned(),
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
                resolved.policy.heartbeat.as_secs(),
                resolved.policy.idle_timeout.as_secs(),
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
    let timers = timer_settings(&raw.timers, &apps);
    Ok(Config {
        listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081))),
        api_listen: api_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8082))),
        tcp_listen,
        tcp_framing: framing,
        data_dir: raw.data_dir.clone(),
        engine: raw.engine,
        history_store: raw.history_store,
        history_fsync: raw.history_fsync,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace),
        limits: Limits {
            outbox: OutboxLimits {
                max_messages: limits.max_queue_messages,
                max_bytes: limits.max_queue_bytes,
            },
            write_timeout: Duration::from_secs(limits.write_timeout),
            max_body_bytes: limits.max_body_bytes,
            max_batch: limits.max_batch,
            max_batch_body_bytes: limits.max_batch_body_bytes,
            max_history_bytes: limits.max_history_bytes,
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            handshake_timeout: Duration::from_secs(limits.handshake_timeout),
            max_frames_per_second_before_auth: limits.max_frames_per_second_before_auth,
            max_requests_per_second_per_ip: limits.max_requests_per_second_per_ip,
            max_poll_wait: Duration::from_secs(limits.max_poll_wait),
        },
        trusted_proxies: TrustedProxies::new(trusted_proxies),
        defaults: settings("", None).policy,
        apps,
        dynamic_apps: dynamic,
        pushserve,
        mswoole: raw.mswoole.as_ref().map(|m| MSwoole {
            app: m.app.as_str().into(),
            paths: m.paths.clone(),
            default_method: Some(m.default_method.as_str())
                .filter(|method| !method.is_empty())
                .map(Arc::from),
        }),
        jdserver_websocket: raw.jdserver.websocket,
        tls: raw.tls.clone(),
        timers,
        redis,
        admin_keys: raw.admin_keys.clone(),
        source: String::new(),
        raw: raw.clone(),
        origin: ConfigOrigin::default(),
    })
}

/// `[mswoole]`: a declared app that takes credentials, paths nothing else serves, a
/// default method the RPC routing would accept.
fn check_mswoole(error: &mut impl FnMut(&[&str], String), raw: &RawConfig, mswoole: &RawMSwoole) {
    match raw.apps.get(&mswoole.app) {
        None => error(
            &["mswoole", "app"],
            format!("app {:?} is not declared in [apps]", mswoole.app),
        ),
        Some(app) if app.auth == AuthMode::None => error(
            &["mswoole", "app"],
            format!(
                "app {:?} has auth = \"none\": MSwoole clients present a credential in ?auth=, so the app needs auth = \"token\", \"webhook\" or \"mswoole-des\"",
                mswoole.app
            ),
        ),
        Some(_) => {}
    }
    if mswoole.paths.is_empty() {
        error(&["mswoole", "paths"], "must name at least one path".into());
    }
    for (i, path) in mswoole.paths.iter().enumerate() {
        if path == "/" {
            if raw.jdserver.websocket {
                error(
                    &["mswoole", "paths"],
                    "\"/\" is jdserver's WebSocket: set [jdserver] websocket = false to give it to MSwoole clients (jdserver's WebSocket clients then have none; /getMsg stays), or proxy / to an MSwoole path like \"/live\"".into(),
                );
            }
            continue;
        }
        let taken = RESERVED_CLIENT_PATHS.contains(&path.as_str()) || path.starts_with("/demo/");
        let valid = path.starts_with('/')
            && path.len() > 1
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
        if taken || !valid {
            error(
                &["mswoole", "paths"],
                format!(
                    "{path:?} must be \"/\" or a path like \"/live\" that no other endpoint uses ({}, /demo/...)",
                    RESERVED_CLIENT_PATHS.join(", ")
                ),
            );
        }
        if mswoole.paths[..i].contains(path) {
            error(&["mswoole", "paths"], format!("{path:?} is listed twice"));
        }
    }
    let method = &mswoole.default_method;
    let valid_method = method.len() <= 128
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if !valid_method {
        error(
            &["mswoole", "default_method"],
            "must be \"\" or 1-128 characters from A-Z a-z 0-9 . _ - /".into(),
        );
    }
}

/// `[timers]` within bounds that keep the server sane.
fn check_timers(error: &mut impl FnMut(&[&str], String), timers: &RawTimers) {
    let mut out_of = |key: &'static str, ok: bool, bounds: &str| {
        if !ok {
            error(&["timers", key], format!("must be {bounds}"));
        }
    };
    out_of(
        "concurrency",
        (1..=65_536).contains(&timers.concurrency),
        "between 1 and 65536",
    );
    out_of(
        "request_timeout",
        (1..=3600).contains(&timers.request_timeout),
        "between 1 and 3600 seconds",
    );
    out_of(
        "max_attempts",
        (1..=100).contains(&timers.max_attempts),
        "between 1 and 100",
    );
    out_of(
        "retry_base_ms",
        timers.retry_base_ms >= 1,
        "at least 1 millisecond",
    );
    out_of(
        "retry_max_ms",
        timers.retry_max_ms >= timers.retry_base_ms && timers.retry_max_ms <= 86_400_000,
        "at least retry_base_ms and at most 86400000 (a day)",
    );
    out_of(
        "max_delay",
        (1..=10 * 366 * 86_400).contains(&timers.max_delay),
        "between 1 second and 10 years",
    );
    out_of(
        "min_interval_ms",
        (1..=86_400_000).contains(&timers.min_interval_ms),
        "between 1 and 86400000 (a day)",
    );
    out_of(
        "log_max_bytes",
        timers.log_max_bytes == 0 || timers.log_max_bytes >= 4096,
        "0 (no log) or at least 4096 bytes",
    );
    out_of(
        "log_files",
        (1..=100).contains(&timers.log_files),
        "between 1 and 100",
    );
    out_of(
        "log_body_bytes",
        timers.log_body_bytes <= 65_536,
        "at most 65536 bytes",
    );
    out_of(
        "store_cache_mb",
        (1..=65_536).contains(&timers.store_cache_mb),
        "between 1 and 65536 MiB",
    );
    if let Err(problems) = TargetPolicy::new(&timers.allow_hosts) {
        for problem in problems {
            error(&["timers", "allow_hosts"], problem);
        }
    }
}

/// The validated `[timers]` table; `apps` are the declared apps, whose only member (if
/// there is one) is the app of jdserver `/setTimeout` calls that name none.
fn timer_settings(raw: &RawTimers, apps: &[AppConfig]) -> TimerSettings {
    TimerSettings {
        concurrency: raw.concurrency,
        request_timeout: Duration::from_secs(raw.request_timeout),
        retry: RetryPolicy {
            max_attempts: raw.max_attempts,
            base_ms: raw.retry_base_ms,
            max_ms: raw.retry_max_ms,
        },
        max_delay: Duration::from_secs(raw.max_delay),
        min_interval: Duration::from_millis(raw.min_interval_ms),
        retention: Duration::from_secs(raw.retention),
        store_cache_bytes: raw.store_cache_mb * 1024 * 1024,
        log: Rotation {
            max_bytes: raw.log_max_bytes,
            files: raw.log_files,
            body_bytes: raw.log_body_bytes,
        },
        default_app: match apps {
            [only] => Some(only.policy.name.to_string()),
            _ => None,
        },
        // Checked by `check_timers`.
        targets: Arc::new(TargetPolicy::new(&raw.allow_hosts).unwrap_or_default()),
    }
}

fn check_events(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    let Some(events) = &app.events else { return };
    let path = |key: &'static str| ["apps", name, "events", key];
    if !is_http_url(&events.url) {
        error(
            &path("url"),
            format!("{:?} is not an http:// or https:// URL", events.url),
        );
    }
    if app.backend_secret.is_none() {
        error(
            &["apps", name, "backend_secret"],
            "events needs a backend_secret to sign its requests with".into(),
        );
    }
    if !(1..=10_000).contains(&events.max_batch) {
        error(&path("max_batch"), "must be between 1 and 10000".into());
    }
    if events.max_delay_ms > 60_000 {
        error(&path("max_delay_ms"), "must be at most 60000".into());
    }
    if events.queue == 0 {
        error(&path("queue"), "must be at least 1".into());
    }
    if !(1..=300_000).contains(&events.timeout_ms) {
        error(&path("timeout_ms"), "must be between 1 and 300000".into());
    }
    if events.max_attempts == 0 {
        error(&path("max_attempts"), "must be at least 1".into());
    }
}

/// Check a yes-or-no backend table `key` of app `name`, needed when `wanted` (its policy
/// is `"webhook"`, which `policy` names).
fn check_question(
    error: &mut impl FnMut(&[&str], String),
    name: &str,
    app: &RawApp,
    (key, raw, wanted, policy): (&str, Option<&RawQuestion>, bool, &str),
) {
    match raw {
        None if wanted => error(
            &["apps", name, policy],
            format!(
                "{policy} = \"webhook\" needs a [apps.NAME.{key}] table with the backend's url"
            ),
        ),
        Some(_) if !wanted => error(
            &["apps", name, key],
            format!("is used only by {policy} = \"webhook\""),
        ),
        Some(question) => {
            if !is_http_url(&question.url) {
                error(
                    &["apps", name, key, "url"],
                    format!("{:?} is not an http:// or https:// URL", question.url),
                );
            }
            if !(1..=60_000).contains(&question.timeout_ms) {
                error(
                    &["apps", name, key, "timeout_ms"],
                    "must be between 1 and 60000".into(),
                );
            }
            if app.backend_secret.is_none() {
                error(
                    &["apps", name, "backend_secret"],
                    format!("{key} needs a backend_secret to sign its questions with"),
                );
            }
        }
        None => {}
    }
}

fn check_rpc(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    if let Some(secret) = &app.backend_secret {
        if secret.len() < MIN_TOKEN_SECRET_BYTES {
            error(
                &["apps", name, "backend_secret"],
                format!("must be at least {MIN_TOKEN_SECRET_BYTES} characters"),
            );
        }
    }
    let Some(rpc) = &app.rpc else { return };
    if app.backend_secret.is_none() {
        error(
            &["apps", name, "backend_secret"],
            "rpc needs a backend_secret to sign calls with, so the backend can trust who the caller is".into(),
        );
    }
    if rpc.url.is_none() == rpc.routes.is_empty() {
        error(
            &["apps", name, "rpc"],
            "give either url (every method) or routes (method prefix = URL), not both".into(),
        );
    }
    let urls = rpc
        .url
        .iter()
        .map(|u| ("url", u))
        .chain(rpc.routes.values().map(|u| ("routes", u)));
    for (key, url) in urls {
        if !is_http_url(url) {
            error(
                &["apps", name, "rpc", key],
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
    }
    if rpc.routes.contains_key("") {
        error(
            &["apps", name, "rpc", "routes"],
            "a route prefix must not be empty: use url for a catch-all".into(),
        );
    }
    if !(1..=300_000).contains(&rpc.timeout_ms) {
        error(
            &["apps", name, "rpc", "timeout_ms"],
            "must be between 1 and 300000".into(),
        );
    }
    if rpc.max_in_flight_per_connection == 0 || rpc.max_in_flight == 0 {
        error(
            &["apps", name, "rpc"],
            "max_in_flight and max_in_flight_per_connection must be at least 1".into(),
        );
    }
}

fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

fn check_mswoole_des(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    let Some(des) = &app.mswoole_des else {
        if app.auth == AuthMode::MSwooleDes {
            error(
                &["apps", name, "auth"],
                "auth = \"mswoole-des\" needs an [apps.NAME.mswoole_des] table with the key".into(),
            );
        }
        return;
    };
    if app.auth != AuthMode::MSwooleDes {
        error(
            &["apps", name, "mswoole_des"],
            "is used only by auth = \"mswoole-des\"".into(),
        );
    }
    if des.key.is_empty() {
        error(
            &["apps", name, "mswoole_des", "key"],
            "must not be empty".into(),
        );
    }
    if des.max_age == 0 {
        error(
            &["apps", name, "mswoole_des", "max_age"],
            "must be at least 1 second".into(),
        );
    }
}

fn check_auth_webhook(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    let path = |last: &'static str| ["apps", name, "auth_webhook", last];
    let Some(webhook) = &app.auth_webhook else {
        if app.auth == AuthMode::Webhook {
            error(
                &["apps", name, "auth"],
                "auth = \"webhook\" needs an [apps.NAME.auth_webhook] table with the backend's url"
                    .into(),
            );
        }
        return;
    };
    if app.auth != AuthMode::Webhook {
        error(
            &["apps", name, "auth_webhook"],
            "is used only by auth = \"webhook\"".into(),
        );
    }
    if !is_http_url(&webhook.url) {
        error(
            &path("url"),
            format!("{:?} is not an http:// or https:// URL", webhook.url),
        );
    }
    let params = webhook.query_param.names();
    if params.is_empty() || !params.iter().all(|name| is_http_token(name)) {
        error(
            &path("query_param"),
            "must be a non-empty name of letters, digits, '_', '-' or '.', or a non-empty list of them".into(),
        );
    }
    if webhook.cookie.as_deref().is_some_and(|c| !is_http_token(c)) {
        error(
            &path("cookie"),
            "must be a non-empty name of letters, digits, '_', '-' or '.'".into(),
        );
    }
    if !(1..=60_000).contains(&webhook.timeout_ms) {
        error(&path("timeout_ms"), "must be between 1 and 60000".into());
    }
    if webhook.max_concurrency == 0 {
        error(&path("max_concurrency"), "must be at least 1".into());
    }
}

/// `login_later` needs an app that checks credentials, and a login rate that lets one in.
fn check_login(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    if app.login_later && app.auth == AuthMode::None {
        error(
            &["apps", name, "login_later"],
            "needs auth = \"token\" or \"webhook\": a login frame carries a credential to check"
                .into(),
        );
    }
    if app.max_logins_per_minute == 0 {
        error(
            &["apps", name, "max_logins_per_minute"],
            "must be at least 1".into(),
        );
    }
}

/// A name safe as a query parameter or cookie name without escaping.
fn is_http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
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

/// The `[tls]` files load and match, and the table puts some listener under TLS.
fn check_tls(
    error: &mut impl FnMut(&[&str], String),
    tls: &RawTls,
    listen: Option<SocketAddr>,
    api_listen: Option<SocketAddr>,
    has_tcp: bool,
) {
    if let Err(e) = crate::tls::load(&tls.cert, &tls.key) {
        error(&["tls", e.field()], e.to_string());
    }
    if !tls.client && !tls.api && !tls.tcp {
        error(
            &["tls"],
            "no listener uses it: set client, api or tcp = true, or remove [tls]".into(),
        );
    }
    if tls.tcp && !has_tcp {
        error(
            &["tls", "tcp"],
            "tcp_listen is not set: there is no raw TCP listener to put under TLS".into(),
        );
    }
    let single_port = listen.is_some_and(|l| Some(l) == api_listen && l.port() != 0);
    if single_port && tls.api != tls.client {
        error(
            &["tls", "api"],
            "the API shares the client listener (single-port mode), so one port is either TLS or not: make api equal client".into(),
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
