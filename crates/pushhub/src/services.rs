//! Building the live services from a validated [`Config`]: the HTTP client for app
//! backends and, per app, its token keys, auth webhook, RPC proxy, room and send
//! questions and event sink.
//!
//! The configuration is plain data; this is the one place that turns it into things
//! that hold connections and tasks. Start-up assembles once; a reload assembles again
//! from the new file and swaps the result in (the `reload` module).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::mswoole_des::MSwooleDes;
use crate::auth::token::TokenKeys;
use crate::auth::webhook::{WebhookAuth, WebhookSettings};
use crate::backend::call::{BackendClient, Question};
use crate::backend::events::{EventSettings, EventSink};
use crate::backend::pusher_webhooks::PusherWebhooks;
use crate::backend::rooms::RoomPolicy;
use crate::backend::rpc::{RpcProxy, RpcSettings};
use crate::backend::send::SendPolicy;
use crate::config::{
    AppConfig, ClientSend, Config, JoinRooms, RawApp, RawAuthWebhook, RawQuestion,
};
use crate::hub::{AppSettings, AuthMode};

/// What assembling can fail on: the configuration was valid, but the machine would not
/// give what it describes.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The HTTP client for app backends (TLS roots, resolver) could not be made.
    #[error("cannot make an HTTP client for app backends: {0}")]
    Outbound(#[from] crate::outbound::OutboundError),
}

/// Every app's live settings, assembled from one configuration.
#[derive(Debug, Clone)]
pub struct Services {
    /// The declared apps.
    pub apps: Vec<AppSettings>,
    /// The template of apps created on first use, when enabled.
    pub dynamic_apps: Option<AppSettings>,
}

/// Build the services `config` describes. One HTTP client serves every app backend (its
/// connection pool is shared); it is made only when some app has a backend.
pub fn assemble(config: &Config) -> Result<Services, AssembleError> {
    let needs_client = config
        .apps
        .iter()
        .filter_map(|app| app.raw.as_ref())
        .any(|a| {
            a.auth_webhook.is_some()
                || a.rpc.is_some()
                || a.room_webhook.is_some()
                || a.send_webhook.is_some()
                || a.events.is_some()
                || a.pusher.as_ref().is_some_and(|p| !p.webhooks.is_empty())
        });
    let outbound = match needs_client {
        true => Some(crate::outbound::client()?),
        false => None,
    };
    Ok(Services {
        apps: config
            .apps
            .iter()
            .map(|app| app_settings(app, outbound.as_ref()))
            .collect(),
        dynamic_apps: config
            .dynamic_apps
            .as_ref()
            .map(|app| app_settings(app, None)),
    })
}

/// The live settings of one app; `outbound` is the HTTP client its backends use.
pub fn app_settings(app: &AppConfig, outbound: Option<&reqwest::Client>) -> AppSettings {
    let raw = app.raw.as_ref();
    let auth = app.policy.auth;
    let pusher_webhooks = raw.and_then(|a| pusher_webhooks(&app.policy.name, a, outbound?));
    AppSettings {
        policy: app.policy.clone(),
        token_keys: Arc::new(
            raw.and_then(|a| TokenKeys::new(&a.token_secrets, &a.token_public_keys).ok())
                .unwrap_or_default(),
        ),
        webhook: raw
            .filter(|_| auth == AuthMode::Webhook)
            .and_then(|a| a.auth_webhook.as_ref())
            .and_then(|w| auth_webhook(w, outbound?)),
        mswoole_des: raw
            .filter(|_| auth == AuthMode::MSwooleDes)
            .and_then(|a| a.mswoole_des.as_ref())
            .map(|des| Arc::new(MSwooleDes::new(&des.key, Duration::from_secs(des.max_age)))),
        rpc: raw.and_then(|a| rpc_proxy(&app.policy.name, a, outbound?)),
        rooms: room_policy(raw, outbound),
        send: send_policy(raw, outbound),
        events: raw.and_then(|a| event_sink(&app.policy.name, a, outbound?)),
        room_watch: pusher_webhooks
            .clone()
            .map(|hooks| hooks as Arc<dyn crate::hub::room_watch::RoomWatch>),
        pusher_webhooks,
    }
}

/// The Pusher webhooks of app `name`, when its `[pusher]` table lists any (invalid ones
/// are reported by the configuration check).
fn pusher_webhooks(
    name: &str,
    app: &RawApp,
    client: &reqwest::Client,
) -> Option<Arc<PusherWebhooks>> {
    let pusher = app.pusher.as_ref()?;
    let settings = crate::config::pusher_webhook_settings(&pusher.webhooks);
    if settings.is_empty() {
        return None;
    }
    let credentials = (pusher.key.as_str().into(), pusher.secret.as_str().into());
    Some(Arc::new(PusherWebhooks::new(
        name.into(),
        credentials,
        settings,
        client.clone(),
    )))
}

/// The validated backend check of `raw`, or `None` when its URL is invalid (reported by the configuration check).
fn auth_webhook(raw: &RawAuthWebhook, client: &reqwest::Client) -> Option<Arc<WebhookAuth>> {
    let settings = WebhookSettings {
        url: reqwest::Url::parse(&raw.url).ok()?,
        query_params: raw
            .query_param
            .names()
            .iter()
            .map(|name| Arc::from(name.as_str()))
            .collect(),
        cookie: raw.cookie.as_deref().map(Arc::from),
        timeout: Duration::from_millis(raw.timeout_ms),
        cache_ttl: Duration::from_secs(raw.cache_seconds),
        max_concurrency: raw.max_concurrency,
    };
    Some(Arc::new(WebhookAuth::new(settings, client.clone())))
}

/// The RPC proxy of app `name`, when it has a valid `rpc` table and `backend_secret`
/// (anything invalid is reported by the configuration check).
fn rpc_proxy(name: &str, app: &RawApp, client: &reqwest::Client) -> Option<Arc<RpcProxy>> {
    let rpc = app.rpc.as_ref()?;
    let secret = app.backend_secret.as_deref()?;
    let mut routes = Vec::new();
    if let Some(url) = &rpc.url {
        routes.push((String::new(), reqwest::Url::parse(url).ok()?));
    }
    for (prefix, url) in &rpc.routes {
        routes.push((prefix.clone(), reqwest::Url::parse(url).ok()?));
    }
    routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
    let settings = RpcSettings {
        routes,
        timeout: Duration::from_millis(rpc.timeout_ms),
        max_in_flight_per_connection: rpc.max_in_flight_per_connection,
        max_in_flight: rpc.max_in_flight,
    };
    let backend = BackendClient::new(client.clone(), secret.into());
    let calls = crate::work_counters::calls("rpc", Some(name));
    Some(Arc::new(RpcProxy::new(settings, backend, calls)))
}

/// The question `raw` describes, asked through `client` and signed with `app`'s
/// `backend_secret`; `None` when something is missing or invalid (reported by
/// the configuration check).
fn question(
    app: &RawApp,
    raw: Option<&RawQuestion>,
    client: Option<&reqwest::Client>,
) -> Option<Question> {
    let raw = raw?;
    Some(Question {
        url: reqwest::Url::parse(&raw.url).ok()?,
        timeout: Duration::from_millis(raw.timeout_ms),
        backend: BackendClient::new(client?.clone(), app.backend_secret.as_deref()?.into()),
    })
}

/// The room policy of `app` (the embedded default's apps and dynamic apps are
/// `auth = "none"`: open).
fn room_policy(app: Option<&RawApp>, client: Option<&reqwest::Client>) -> RoomPolicy {
    let Some(app) = app else {
        return RoomPolicy::Open;
    };
    let kind = app.join_rooms.unwrap_or(match app.auth_mode() {
        AuthMode::None => JoinRooms::Open,
        _ => JoinRooms::Credential,
    });
    match kind {
        JoinRooms::Open => RoomPolicy::Open,
        JoinRooms::Credential => RoomPolicy::Credential,
        // Without a valid question (reported by the configuration check) nobody may join.
        JoinRooms::Webhook => question(app, app.room_webhook.as_ref(), client)
            .map_or(RoomPolicy::Credential, RoomPolicy::Webhook),
    }
}

/// The lifecycle event sink of app `name`, when it has a valid `events` table and
/// `backend_secret` (anything invalid is reported by the configuration check).
fn event_sink(name: &str, app: &RawApp, client: &reqwest::Client) -> Option<Arc<EventSink>> {
    let events = app.events.as_ref()?;
    let settings = EventSettings {
        url: reqwest::Url::parse(&events.url).ok()?,
        max_batch: events.max_batch,
        max_delay: Duration::from_millis(events.max_delay_ms),
        queue: events.queue,
        timeout: Duration::from_millis(events.timeout_ms),
        max_attempts: events.max_attempts,
    };
    let backend = BackendClient::new(client.clone(), app.backend_secret.as_deref()?.into());
    Some(Arc::new(EventSink::new(name.into(), settings, backend)))
}

/// The `send` policy of `app`.
fn send_policy(app: Option<&RawApp>, client: Option<&reqwest::Client>) -> SendPolicy {
    match app.map(|a| (a, a.client_send)) {
        None | Some((_, ClientSend::Off)) => SendPolicy::Off,
        Some((_, ClientSend::Open)) => SendPolicy::Open,
        // Without a valid question (reported by the configuration check) nothing may be sent.
        Some((app, ClientSend::Webhook)) => question(app, app.send_webhook.as_ref(), client)
            .map_or(SendPolicy::Off, SendPolicy::Webhook),
    }
}
