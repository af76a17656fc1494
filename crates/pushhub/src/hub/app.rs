//! Apps: the tenants of a server. Each has its own users, channels and policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::registry::UserLimit;
use super::{names, HubError};
use crate::auth::mswoole_des::MSwooleDes;
use crate::auth::token::TokenKeys;
use crate::auth::webhook::WebhookAuth;
use crate::backend::events::EventSink;
use crate::backend::pusher_webhooks::PusherWebhooks;
use crate::backend::rooms::RoomPolicy;
use crate::backend::rpc::RpcProxy;
use crate::backend::send::{RoomSendPolicy, SendPolicy};
use crate::disconnect::Disconnect;
use crate::engine::HistoryPolicy;
use crate::sync::lock;

/// How clients of an app prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Clients say who they are and are believed: for development, and for jdserver users
    /// migrating as they were. The server warns about it at start.
    #[default]
    None,
    /// Clients present a JWT signed with one of the app's token secrets or keys; its `sub`
    /// is the user id.
    Token,
    /// Clients present an opaque credential (a session cookie, seed 003's `ukey`) that the
    /// app's backend checks and answers with the user id.
    Webhook,
    /// Clients present MSwoole's DES-encrypted `auth` string (seed 001), decrypted with the
    /// app's shared key: insecure, accepted only so MSwoole backends can migrate without
    /// rewriting their login first. The server warns about it at start.
    #[serde(rename = "mswoole-des")]
    MSwooleDes,
}

/// What a client frame its dialect cannot use earns: a frame that is not JSON, has no
/// type, or has a type the dialect does not know. Seed 002's servers closed such a
/// connection ("data format invalidate.", "event is not exists."); clients written for
/// that may count on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidFrames {
    /// An error frame naming what was wrong; the connection stays.
    #[default]
    Error,
    /// The connection is closed with 4500 and the same reason.
    Close,
}

/// The plain policy of one app, resolved from configuration defaults and its own
/// overrides: values only, so the configuration can hold it, compare it and validate it
/// again on reload without building anything live.
#[derive(Debug, Clone)]
pub struct AppPolicy {
    /// The app's name, as it appears in channel names.
    pub name: Arc<str>,
    /// Client authentication.
    pub auth: AuthMode,
    /// How often the server pings an idle connection.
    pub heartbeat: Duration,
    /// How long a connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Largest client message accepted.
    pub max_frame_bytes: usize,
    /// How much history each of the app's channels keeps, for resume.
    pub history: HistoryPolicy,
    /// Keys that let a backend use the API for this app; empty: loopback only.
    pub api_keys: Vec<Arc<str>>,
    /// Most frames a client may send per second; 0: no limit.
    pub max_frames_per_second: u32,
    /// Web origins whose pages may connect; empty: any.
    pub allowed_origins: Vec<Arc<str>>,
    /// Most connections per user on one node, and what happens beyond it; `None`: no limit.
    pub user_limit: Option<UserLimit>,
    /// Whether clients may `send` to the rooms they are in.
    pub room_send: RoomSendPolicy,
    /// What a frame the dialect cannot use (not JSON, no type, an unknown type) earns:
    /// an error frame, or the end of the connection.
    pub invalid_frames: InvalidFrames,
    /// How long a client may take to present its credential once its app is known (the
    /// wait for an `auth` frame, an auth webhook's answer).
    pub handshake_timeout: Duration,
    /// Whether a client may connect without a credential and log in later, and how often
    /// it may try; `None`: it presents one at connect.
    pub login: Option<super::login::LoginPolicy>,
    /// The app's Pusher Channels face (`[apps.NAME.pusher]`), when it has one: its
    /// credentials and the limits Pusher's clients and SDKs expect. Shared, so the many
    /// copies a reload compares and connections hold stay cheap.
    pub pusher: Option<Arc<PusherPolicy>>,
}

/// An app's Pusher Channels settings (issue 19): what pusher-js, Laravel Echo and the
/// Pusher server SDKs name the app by, what signs their requests, and Pusher's limits,
/// which Soketi and Reverb users expect to set per app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherPolicy {
    /// The app id of the HTTP API's paths (`/apps/{app_id}/events`).
    pub app_id: Arc<str>,
    /// The public key: pusher-js's `new Pusher(key)`, the WebSocket path `/app/{key}`, the
    /// API's `auth_key`.
    pub key: Arc<str>,
    /// Signs channel and user authorizations, API requests and webhooks.
    pub secret: Arc<str>,
    /// Whether clients may send `client-` events on private and presence channels.
    pub client_events: bool,
    /// `false`: the app is switched off for Pusher clients and API calls (error 4003).
    pub enabled: bool,
    /// Most Pusher connections to the app at once; 0: no limit (error 4004 beyond it).
    pub max_connections: usize,
    /// Most members one presence channel holds (Pusher's 100).
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, in bytes (Pusher's 1 KB).
    pub max_member_info_bytes: usize,
    /// Largest event `data`, in bytes, from clients and the API alike (Pusher's 10 KB).
    pub max_event_bytes: usize,
    /// Most channels one API trigger names (Pusher's 100).
    pub max_trigger_channels: usize,
    /// Most events one `batch_events` call carries (Pusher's 10).
    pub max_batch_events: usize,
    /// Most client events one connection sends per second (Pusher's 10; error 4301
    /// beyond it).
    pub client_events_per_second: usize,
}

/// One app as the hub runs it: its plain [`AppPolicy`] and the live services built from
/// it (`services::assemble`), such as HTTP clients for its backends. A connection keeps
/// the `Arc<AppSettings>` it was admitted with, so a reload never changes the rules under
/// a connection already up.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The plain policy; its fields read through `Deref` as the app's own.
    pub policy: AppPolicy,
    /// Keys that verify the app's client tokens (`auth = "token"`).
    pub token_keys: Arc<TokenKeys>,
    /// The backend that checks client credentials (`auth = "webhook"`).
    pub webhook: Option<Arc<WebhookAuth>>,
    /// The key that opens MSwoole's `auth` strings (`auth = "mswoole-des"`).
    pub mswoole_des: Option<Arc<MSwooleDes>>,
    /// The backend that answers clients' `rpc` frames, when the app takes them.
    pub rpc: Option<Arc<RpcProxy>>,
    /// Who may join rooms.
    pub rooms: RoomPolicy,
    /// Whether clients may `send` to other users.
    pub send: SendPolicy,
    /// Where the app's lifecycle events (connect, disconnect, join, leave) go, if anywhere.
    pub events: Option<Arc<EventSink>>,
    /// Where the app's Pusher webhooks (channel occupied and vacated, members, client
    /// events, cache misses) go, if anywhere.
    pub pusher_webhooks: Option<Arc<PusherWebhooks>>,
    /// Who hears of the app's rooms filling and emptying and of presence members coming
    /// and going (the Pusher webhooks, when configured).
    pub room_watch: Option<Arc<dyn super::room_watch::RoomWatch>>,
}

impl AppPolicy {
    /// Refuse a browser page whose `origin` this app does not allow (no `Origin`: not a
    /// page, nothing to check). The gateway asks at the upgrade, before any dialect holds
    /// the socket, so a foreign page cannot even wait there to log in.
    pub fn admit_origin(&self, origin: Option<&str>) -> Result<(), Disconnect> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = origin.trim_end_matches('/');
        let allowed = self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|o| &**o == origin || &**o == "*");
        if allowed {
            return Ok(());
        }
        Err(Disconnect::ORIGIN_NOT_ALLOWED.with_reason(format!(
            "origin {origin:?} may not connect to app {:?}",
            self.name
        )))
    }
}

impl std::ops::Deref for AppSettings {
    type Target = AppPolicy;

    fn deref(&self) -> &AppPolicy {
        &self.policy
    }
}

/// Most apps created on first use; a guard against a client inventing names without end.
pub const MAX_DYNAMIC_APPS: usize = 10_000;

/// The apps a server knows: those declared, plus (when enabled) development apps created
/// the first time a client or backend names them, as jdserver did.
#[derive(Debug)]
pub struct Apps {
    declared: HashMap<String, Arc<AppSettings>>,
    /// Declared apps with a Pusher face, by Pusher key (clients) and by app id (the API).
    pusher_keys: HashMap<Arc<str>, Arc<AppSettings>>,
    pusher_ids: HashMap<Arc<str>, Arc<AppSettings>>,
    dynamic_template: Option<AppSettings>,
    created: Mutex<HashMap<String, Arc<AppSettings>>>,
}

impl Apps {
    /// `declared` apps, and `dynamic_template` as the policy of apps created on first use
    /// (`None` disables that).
    /// Configuration checks keep Pusher keys and app ids unique across apps.
    pub fn new(declared: Vec<AppSettings>, dynamic_template: Option<AppSettings>) -> Self {
        let declared: HashMap<String, Arc<AppSettings>> = declared
            .into_iter()
            .map(|a| (a.name.to_string(), Arc::new(a)))
            .collect();
        let pusher = || {
            declared
                .values()
                .filter_map(|app| Some((app.pusher.clone()?, app.clone())))
        };
        Self {
            pusher_keys: pusher().map(|(p, app)| (p.key.clone(), app)).collect(),
            pusher_ids: pusher().map(|(p, app)| (p.app_id.clone(), app)).collect(),
            declared,
            dynamic_template,
            created: Mutex::new(HashMap::new()),
        }
    }

    /// The app called `name`, creating it if dynamic apps are enabled.
    pub fn get(&self, name: &str) -> Result<Arc<AppSettings>, HubError> {
        if let Some(app) = self.declared.get(name) {
            return Ok(app.clone());
        }
        let Some(template) = &self.dynamic_template else {
            names::check_app(name)?;
            return Err(HubError::UnknownApp(name.to_owned()));
        };
        names::check_app(name)?;
        let mut created = lock(&self.created);
        if let Some(app) = created.get(name) {
            return Ok(app.clone());
        }
        if created.len() >= MAX_DYNAMIC_APPS {
            return Err(HubError::UnknownApp(name.to_owned()));
        }
        tracing::warn!(
            app = name,
            "created development app on first use (auth = \"none\")"
        );
        let mut app = template.clone();
        app.policy.name = name.into();
        let app = Arc::new(app);
        created.insert(name.to_owned(), app.clone());
        Ok(app)
    }

    /// The app whose Pusher key is `key` (a pusher-js client's `/app/{key}`).
    pub fn by_pusher_key(&self, key: &str) -> Option<Arc<AppSettings>> {
        self.pusher_keys.get(key).cloned()
    }

    /// The app whose Pusher app id is `app_id` (the HTTP API's `/apps/{app_id}/…`).
    pub fn by_pusher_id(&self, app_id: &str) -> Option<Arc<AppSettings>> {
        self.pusher_ids.get(app_id).cloned()
    }

    /// Whether `name` is a configured app (not one created on first use).
    pub fn is_declared(&self, name: &str) -> bool {
        self.declared.contains_key(name)
    }

    /// The label metrics give app `name`: its own for a configured app, the shared
    /// [`crate::metrics::DYNAMIC_APP`] for one created on first use, whose name came
    /// from a client and must not make a label of its own.
    pub fn metric_label(&self, name: &str) -> String {
        if self.is_declared(name) {
            name.to_owned()
        } else {
            crate::metrics::DYNAMIC_APP.to_owned()
        }
    }

    /// Every app there is now, sorted by name: the declared ones and the development
    /// apps created so far. The one listing; callers take names or labels from it.
    pub fn all(&self) -> Vec<Arc<AppSettings>> {
        let mut apps: Vec<_> = self.declared.values().cloned().collect();
        apps.extend(lock(&self.created).values().cloned());
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        apps
    }

    /// The app called `name` if it exists now, without creating it: `Ok(None)` for a valid
    /// name that dynamic apps would accept but nobody has used yet.
    pub fn lookup(&self, name: &str) -> Result<Option<Arc<AppSettings>>, HubError> {
        if let Some(app) = self.declared.get(name) {
            return Ok(Some(app.clone()));
        }
        names::check_app(name)?;
        if let Some(app) = lock(&self.created).get(name) {
            return Ok(Some(app.clone()));
        }
        match self.dynamic_template {
            Some(_) => Ok(None),
            None => Err(HubError::UnknownApp(name.to_owned())),
        }
    }
}
