//! Validation: every check a configuration passes before the server runs with it, each
//! error located at its key (file line, or the `PUSHHUB_*` variable that set it).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::*;
use crate::auth::token::TokenKeys;
use crate::engine::{EngineKind, HistoryPolicy};
use crate::gateway::TrustedProxies;
use crate::hub::login::LoginPolicy;
use crate::hub::registry::UserLimit;
use crate::hub::{names, AppPolicy, AuthMode, OutboxLimits};
use crate::scheduler::log::Rotation;
use crate::scheduler::targets::TargetPolicy;
use crate::scheduler::TimerSettings;
use crate::store::RetryPolicy;
use crate::transport::tcp::Framing;

/// Paths the client listener serves already, which the MSwoole endpoint may not take
/// (`/` is jdserver's unless `[jdserver] websocket = false`).
pub(super) const RESERVED_CLIENT_PATHS: &[&str] =
    &["/ws", "/v1/ws", "/v1/sse", "/v1/poll", "/getMsg", "/demo"];

/// Bytes a message's frame may add to its pushed data (frame header, channel, ids).
pub(super) const FRAME_OVERHEAD: usize = 4096;

/// Shortest HS256 token secret accepted (256 bits of text).
pub(super) const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// Shortest API key accepted: long enough that guessing is hopeless.
pub(super) const MIN_API_KEY_BYTES: usize = 16;

/// The demo app of the embedded default.
pub const DEMO_APP: &str = "demo";

/// Without a file, `PUSHHUB_PUSHSERVE_*` variables turn push-serve compatibility on for
/// the embedded app: `PUSHHUB_PUSHSERVE_PASSWORD=abc123 pushhub serve` is enough.
pub(super) fn pushserve_for_demo(table: &mut toml::Table) {
    if let Some(toml::Value::Table(pushserve)) = table.get_mut("pushserve") {
        pushserve
            .entry("app")
            .or_insert_with(|| toml::Value::String(DEMO_APP.into()));
    }
}

pub(super) fn validate(
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
        if app.auth == Some(AuthMode::Token) && !has_keys {
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
    pusher::check(&mut error, &raw.apps);
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
            auth: app.map(RawApp::auth_mode).unwrap_or(AuthMode::None),
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
            pusher: app.and_then(|a| a.pusher.as_ref()).map(pusher::policy),
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
pub(super) fn check_mswoole(
    error: &mut impl FnMut(&[&str], String),
    raw: &RawConfig,
    mswoole: &RawMSwoole,
) {
    match raw.apps.get(&mswoole.app) {
        None => error(
            &["mswoole", "app"],
            format!("app {:?} is not declared in [apps]", mswoole.app),
        ),
        Some(app) if app.auth_mode() == AuthMode::None => error(
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
pub(super) fn check_timers(error: &mut impl FnMut(&[&str], String), timers: &RawTimers) {
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
pub(super) fn timer_settings(raw: &RawTimers, apps: &[AppConfig]) -> TimerSettings {
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

pub(super) fn check_events(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
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
pub(super) fn check_question(
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

pub(super) fn check_rpc(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
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

pub(super) fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

pub(super) fn check_mswoole_des(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    let Some(des) = &app.mswoole_des else {
        if app.auth_mode() == AuthMode::MSwooleDes {
            error(
                &["apps", name, "auth"],
                "auth = \"mswoole-des\" needs an [apps.NAME.mswoole_des] table with the key".into(),
            );
        }
        return;
    };
    if app.auth_mode() != AuthMode::MSwooleDes {
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

pub(super) fn check_auth_webhook(
    error: &mut impl FnMut(&[&str], String),
    name: &str,
    app: &RawApp,
) {
    let path = |last: &'static str| ["apps", name, "auth_webhook", last];
    let Some(webhook) = &app.auth_webhook else {
        if app.auth_mode() == AuthMode::Webhook {
            error(
                &["apps", name, "auth"],
                "auth = \"webhook\" needs an [apps.NAME.auth_webhook] table with the backend's url"
                    .into(),
            );
        }
        return;
    };
    if app.auth_mode() != AuthMode::Webhook {
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
pub(super) fn check_login(error: &mut impl FnMut(&[&str], String), name: &str, app: &RawApp) {
    if app.login_later && app.auth_mode() == AuthMode::None {
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
pub(super) fn is_http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub(super) fn check_liveness(
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
pub(super) fn check_tls(
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

pub(super) fn check_frame_bytes(
    error: &mut impl FnMut(&[&str], String),
    key: &[&str],
    bytes: usize,
) {
    if !(125..=16 * 1024 * 1024).contains(&bytes) {
        error(key, "must be between 125 and 16777216 bytes".into());
    }
}
