//! The configuration file's tables as TOML gives them, with their defaults: what an
//! operator may write, before `checks.rs` turns it into a [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::pusher::RawPusher;
use super::pushserve::RawPushServe;
use super::redis;
use super::tcp_framing::RawTcpFraming;
use crate::backend::send::RoomSendPolicy;
use crate::engine::EngineKind;
use crate::hub::{AuthMode, InvalidFrames};
use crate::store::history::{FsyncPolicy, HistoryStore};

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
    /// delimiter, or a 2- or 4-byte length field at an offset: see [`super::tcp_framing`]).
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

pub(super) fn default_max_frames_per_second() -> u32 {
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
    /// Client authentication of the native dialects. Must be given, but by an app with a
    /// `[pusher]` table (Pusher clients prove nothing at connect; the app's Pusher secret
    /// signs their channels): omitted there, it is `"token"` with no key, so a native
    /// client can never connect. `"none"` trusts whatever user id a client claims and is
    /// for development and trusted networks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthMode>,
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
    /// The app's Pusher Channels face (pusher-js, Laravel Echo, the Pusher server SDKs);
    /// unset: none. See docs/pusher.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher: Option<RawPusher>,
}

impl RawApp {
    /// The app's client authentication: as given, or (for a Pusher-only app that gives
    /// none) token authentication without keys, which refuses every native client.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or(AuthMode::Token)
    }
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
