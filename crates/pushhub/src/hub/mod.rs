//! The hub: apps, users, connections, channels and fan-out.
//!
//! The hub never sees a wire format. Dialects attach connections through [`Hub::connect`]
//! with an [`Outbox`] and a [`Render`]; backends publish through [`Hub::publish`]. Channel
//! streams and presence sit behind the engine traits, so the hub runs unchanged on one node
//! or many.

pub mod app;
pub mod channel;
pub mod message;
pub mod names;
pub mod outbox;
pub mod registry;
pub mod render;
pub mod target;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

pub use app::{AppSettings, Apps, AuthMode};
pub use message::{Message, Publication};
pub use outbox::{Outbox, OutboxLimits};
pub use registry::ConnId;
pub use render::{FormatId, Render};
pub use target::Target;

use crate::engine::{Engine, EngineError, StreamPosition};
use crate::stats::Stats;
use registry::{Registry, Subscriber};
use render::RenderCache;

/// Why the hub refused a request. Each variant is something the caller can tell its own
/// client about; none means the hub is broken.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No app of that name, and dynamic apps are off.
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    /// The app name is not a valid name.
    #[error("invalid app name {0:?}: use 1-64 characters from A-Z a-z 0-9 _ - .")]
    InvalidApp(String),
    /// The user id is not valid.
    #[error("{0}")]
    InvalidUser(String),
    /// The target expression is not valid.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a connection asks to join the hub with.
pub struct ConnectRequest {
    /// Its app.
    pub app: Arc<AppSettings>,
    /// Its user id (already authenticated by the dialect's auth step).
    pub user: String,
    /// Where fan-out queues its frames.
    pub outbox: Arc<Outbox>,
    /// Its wire format.
    pub renderer: Arc<dyn Render>,
}

/// What the hub decided about a connection, for its greeting.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Its id on this node.
    pub id: ConnId,
    /// The app.
    pub app: Arc<AppSettings>,
    /// The user id.
    pub user: Arc<str>,
    /// The channels it was subscribed to, user channel first.
    pub channels: Vec<Arc<str>>,
}

/// The result of one push.
#[derive(Debug, Clone)]
pub struct PublishReceipt {
    /// The message id.
    pub id: Arc<str>,
    /// Connections on this node it was queued to (each counted once).
    pub delivered: u64,
}

struct HubInner {
    apps: Apps,
    engine: Engine,
    registry: Registry,
    stats: Arc<Stats>,
    next_conn: AtomicU64,
    next_message: AtomicU64,
    id_prefix: String,
}

/// Handle to the hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Hub {
    /// A hub over `apps`, running on `engine`, counting into `stats`.
    pub fn new(apps: Apps, engine: Engine, stats: Arc<Stats>) -> Self {
        Self {
            inner: Arc::new(HubInner {
                apps,
                engine,
                registry: Registry::new(),
                stats,
                next_conn: AtomicU64::new(1),
                next_message: AtomicU64::new(1),
                id_prefix: format!("{:x}", now_ms()),
            }),
        }
    }

    /// The app called `name` (creating a development app when allowed).
    pub fn app(&self, name: &str) -> Result<Arc<AppSettings>, HubError> {
        self.inner.apps.get(name)
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// Attach a connection: record presence, call `greet` (so a greeting is queued before
    /// any message can be), then subscribe it to its user, `all` and group channels.
    pub async fn connect(
        &self,
        request: ConnectRequest,
        greet: impl FnOnce(&ConnInfo),
    ) -> Result<Session, HubError> {
        names::check_user(&request.user)?;
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let app = request.app;
        self.inner
            .engine
            .presence
            .join(&app.name, &request.user, id)
            .await?;
        let info = ConnInfo {
            id,
            channels: channel::channels_for(&app.name, &request.user),
            user: request.user.into(),
            app,
        };
        greet(&info);
        let home = Registry::home(&info.app.name, &info.user);
        let subscriber = Arc::new(Subscriber {
            id,
            outbox: request.outbox,
            renderer: request.renderer,
        });
        self.inner
            .registry
            .subscribe(home, &info.channels, &subscriber);
        self.inner.stats.connection_opened();
        Ok(Session {
            hub: self.clone(),
            info,
            home,
            attached: true,
        })
    }

    /// Publish `data` (JSON text) with an optional `event` to every target of `app`.
    /// A connection reached through several targets receives the message once.
    pub async fn publish(
        &self,
        app: &str,
        targets: &[Target],
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<PublishReceipt, HubError> {
        let app = self.app(app)?;
        let serial = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        let message = Arc::new(Message {
            id: format!("{}-{serial}", self.inner.id_prefix).into(),
            app: app.name.clone(),
            event: event.map(String::into_boxed_str),
            data,
            ts_ms: now_ms(),
        });
        let mut seen = (targets.len() > 1).then(HashSet::new);
        let mut delivered = 0;
        for target in targets {
            let (channel, home) = match target {
                Target::All => (channel::all(&app.name), None),
                Target::Group(g) => (channel::group(&app.name, g), None),
                Target::User(u) => (
                    channel::user(&app.name, u),
                    Some(Registry::home(&app.name, u)),
                ),
            };
            let mut deliver = |position: &StreamPosition| {
                let publication = Publication {
                    channel: channel.clone(),
                    position: position.clone(),
                    message: message.clone(),
                };
                delivered += self.deliver_local(&publication, home, seen.as_mut());
            };
            self.inner
                .engine
                .broker
                .publish(&channel, &message, &mut deliver)
                .await?;
        }
        Ok(PublishReceipt {
            id: message.id.clone(),
            delivered,
        })
    }

    /// Queue `publication` to this node's members of its channel, each format rendered once.
    fn deliver_local(
        &self,
        publication: &Publication,
        home: Option<u64>,
        mut seen: Option<&mut HashSet<ConnId>>,
    ) -> u64 {
        let mut cache = RenderCache::new(publication);
        let mut delivered = 0;
        self.inner
            .registry
            .for_each(&publication.channel, home, |sub| {
                if let Some(seen) = seen.as_deref_mut() {
                    if !seen.insert(sub.id) {
                        return;
                    }
                }
                if sub.outbox.push(cache.get(sub.renderer.as_ref())) {
                    delivered += 1;
                }
            });
        self.inner.stats.published(delivered);
        delivered
    }

    /// Online users of `app` with their connection counts. Asking about a development
    /// app nobody has used yet answers with nobody, without creating it.
    pub async fn users(&self, app: &str) -> Result<Vec<(String, usize)>, HubError> {
        match self.inner.apps.lookup(app)? {
            Some(app) => Ok(self.inner.engine.presence.users(&app.name).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Which engines the hub runs on, for logs.
    pub fn engine_kinds(&self) -> (&'static str, &'static str) {
        (
            self.inner.engine.broker.kind(),
            self.inner.engine.presence.kind(),
        )
    }
}

/// A connection attached to the hub. Call [`Session::close`] when it ends; dropping it
/// without that still unsubscribes it, and finishes presence in the background.
pub struct Session {
    hub: Hub,
    info: ConnInfo,
    home: u64,
    attached: bool,
}

impl Session {
    /// What the hub decided about this connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn detach_local(&mut self) -> bool {
        if !std::mem::take(&mut self.attached) {
            return false;
        }
        let inner = &self.hub.inner;
        inner
            .registry
            .unsubscribe(self.home, &self.info.channels, self.info.id);
        inner.stats.connection_closed();
        true
    }

    /// Leave every channel and presence.
    pub async fn close(mut self) {
        if self.detach_local() {
            let result = self
                .hub
                .inner
                .engine
                .presence
                .leave(&self.info.app.name, &self.info.user, self.info.id)
                .await;
            if let Err(error) = result {
                tracing::warn!(%error, conn = self.info.id, "presence leave failed");
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.detach_local() {
            let hub = self.hub.clone();
            let info = self.info.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = hub
                        .inner
                        .engine
                        .presence
                        .leave(&info.app.name, &info.user, info.id)
                        .await;
                });
            }
        }
    }
}
