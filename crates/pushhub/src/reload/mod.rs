//! Reload: read the configuration again and apply it without dropping anyone.
//!
//! A reload (SIGHUP, SIGUSR1, `POST /v1/admin/reload`) reads the file the server started
//! with, the same way (same `PUSHHUB_*` variables and flags), and validates it, every error
//! collected. A change to a key only a restart applies ([`diff::RESTART_ONLY`]) refuses
//! the whole reload, naming the keys; so does an invalid file or a TLS pair that does not
//! load. Nothing changes then: the running configuration keeps serving.
//!
//! Otherwise the services are assembled from the new file ([`crate::services`]) and
//! swapped in where they are read: the hub's apps, the API keys, the client listener's
//! settings, push-serve's password, the TLS certificate. Each is read once per connection
//! or request, so a connection already up keeps the settings it was admitted with (its
//! app's secrets, heartbeat, limits), while new connections and requests see the new ones
//! at once. Connections of a removed app are closed with 4501.

pub mod diff;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::auth::ApiKeys;
use crate::config::{Config, ConfigError, ConfigErrors, PushServe};
use crate::disconnect::Disconnect;
use crate::gateway::GatewayLive;
use crate::hub::{Apps, Hub};
use crate::sync::lock;
use crate::tls::Tls;

/// The places the running services are read from, which a reload replaces.
pub struct Swaps {
    /// The hub (its apps).
    pub hub: Hub,
    /// The API keys.
    pub keys: Arc<ArcSwap<ApiKeys>>,
    /// The client listener's settings.
    pub gateway: Arc<ArcSwap<GatewayLive>>,
    /// push-serve's settings, read by its API endpoints.
    pub pushserve: Arc<ArcSwapOption<PushServe>>,
    /// The certificate, when TLS is on.
    pub tls: Option<Arc<Tls>>,
    /// Where lifecycle event sinks run, and what stops them (at shutdown).
    pub events: (TaskTracker, CancellationToken),
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is invalid, or changes keys that need a restart: every problem.
    #[error("{0}")]
    Refused(ConfigErrors),
    /// Another reload is running.
    #[error("a reload is already running")]
    Busy,
}

impl ReloadError {
    /// Every problem, one per entry.
    pub fn errors(&self) -> Vec<ConfigError> {
        match self {
            Self::Refused(errors) => errors.0.clone(),
            Self::Busy => vec![ConfigError {
                location: String::new(),
                key: String::new(),
                message: self.to_string(),
            }],
        }
    }
}

/// One reload that applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The configuration generation now running (1 at start).
    pub generation: u64,
    /// The keys that changed (names only, never values).
    pub changed: Vec<String>,
    /// Apps added, by name.
    pub added_apps: Vec<String>,
    /// Apps removed, by name.
    pub removed_apps: Vec<String>,
    /// Connections closed because their app was removed.
    pub closed: usize,
    /// The TLS certificate's SHA-256 fingerprint now served, when TLS is on.
    pub tls_sha256: Option<String>,
}

/// The last reload attempt, for `pushhub status`.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// When it ran, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What started it: `SIGHUP`, `SIGUSR1`, `api`.
    pub trigger: &'static str,
    /// Whether it applied.
    pub ok: bool,
    /// What changed, when it applied.
    pub changed: Vec<String>,
    /// Why not, when it did not: `location: key: message` each.
    pub errors: Vec<String>,
}

/// The reload state `pushhub status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// The configuration generation running: 1 at start, one more per applied reload.
    pub generation: u64,
    /// The last attempt, if any.
    pub last: Option<LastReload>,
}

/// Reloads the running server's configuration; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    swaps: Swaps,
    /// The configuration running now. A tokio mutex: held across the reload's file reads,
    /// so two reloads never interleave (a second one is refused as busy).
    running: tokio::sync::Mutex<Config>,
    status: Mutex<ReloadStatus>,
}

impl Reloader {
    /// A reloader for a server running `config`, whose services are read from `swaps`.
    pub fn new(config: Config, swaps: Swaps) -> Self {
        Self {
            inner: Arc::new(Inner {
                swaps,
                running: tokio::sync::Mutex::new(config),
                status: Mutex::new(ReloadStatus {
                    generation: 1,
                    last: None,
                }),
            }),
        }
    }

    /// The generation running and the last attempt.
    pub fn status(&self) -> ReloadStatus {
        lock(&self.inner.status).clone()
    }

    /// Read the configuration again and apply it, or change nothing and say why. Logs
    /// the outcome (keys, never values) and records it for [`status`](Self::status).
    pub async fn reload(&self, trigger: &'static str) -> Result<Applied, ReloadError> {
        let Ok(mut running) = self.inner.running.try_lock() else {
            return Err(ReloadError::Busy);
        };
        let result = self.apply(&mut running).await;
        let mut status = lock(&self.inner.status);
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match &result {
            Ok(applied) => {
                status.generation = applied.generation;
                tracing::info!(
                    generation = applied.generation,
                    trigger,
                    changed = %applied.changed.join(", "),
                    added_apps = %applied.added_apps.join(", "),
                    removed_apps = %applied.removed_apps.join(", "),
                    closed = applied.closed,
                    "configuration reloaded: generation {}, {} key(s) changed",
                    applied.generation,
                    applied.changed.len()
                );
            }
            Err(error) => {
                tracing::error!(
                    generation = status.generation,
                    trigger,
                    "configuration reload refused; the running configuration stays:\n{error}"
                );
            }
        }
        status.last = Some(LastReload {
            at_ms,
            trigger,
            ok: result.is_ok(),
            changed: result
                .as_ref()
                .map(|applied| applied.changed.clone())
                .unwrap_or_default(),
            errors: match &result {
                Ok(_) => Vec::new(),
                Err(error) => error.errors().iter().map(ToString::to_string).collect(),
            },
        });
        result
    }

    async fn apply(&self, running: &mut Config) -> Result<Applied, ReloadError> {
        let origin = running.origin.clone();
        // File reads and the TLS check: off the runtime's worker threads.
        let loaded = tokio::task::spawn_blocking(move || origin.load())
            .await
            .unwrap_or_else(|error| Err(one_error("", format!("the reload failed: {error}"))));
        let mut new = loaded.map_err(ReloadError::Refused)?;
        let changed = diff::changed_keys(&running.raw, &new.raw);
        let restart: Vec<ConfigError> = diff::needing_restart(&changed)
            .into_iter()
            .map(|key| ConfigError {
                location: new.source.clone(),
                key: key.to_owned(),
                message: "changing this needs a restart; the running value stays (restart, or put the old value back and reload)".into(),
            })
            .collect();
        if !restart.is_empty() {
            return Err(ReloadError::Refused(ConfigErrors(restart)));
        }
        let services = crate::services::assemble(&new)
            .map_err(|error| ReloadError::Refused(one_error(&new.source, error.to_string())))?;
        let tls_sha256 = match self.inner.swaps.tls.clone() {
            Some(tls) => Some(
                tokio::task::spawn_blocking(move || tls.reload())
                    .await
                    .map_err(|error| {
                        ReloadError::Refused(one_error("", format!("the reload failed: {error}")))
                    })?
                    .map_err(|error| {
                        ReloadError::Refused(ConfigErrors(vec![ConfigError {
                            location: new.source.clone(),
                            key: format!("tls.{}", error.field()),
                            message: error.to_string(),
                        }]))
                    })?,
            ),
            None => None,
        };
        if let (Some(sha256), Some(tls)) = (&tls_sha256, &self.inner.swaps.tls) {
            tracing::info!(
                cert = %tls.cert_path().display(),
                %sha256,
                "reloaded the TLS certificate; new connections use it"
            );
        }
        // From here on nothing fails: swap everything in.
        let swaps = &self.inner.swaps;
        let names = |config: &Config| -> Vec<String> {
            config
                .apps
                .iter()
                .map(|app| app.policy.name.to_string())
                .collect()
        };
        let (old_names, new_names) = (names(running), names(&new));
        let added_apps: Vec<String> = new_names
            .iter()
            .filter(|name| !old_names.contains(name))
            .cloned()
            .collect();
        let removed_apps: Vec<String> = old_names
            .iter()
            .filter(|name| !new_names.contains(name))
            .cloned()
            .collect();
        for events in services.apps.iter().filter_map(|app| app.events.as_ref()) {
            events.start(&swaps.events.0, swaps.events.1.clone());
        }
        for hooks in services
            .apps
            .iter()
            .filter_map(|app| app.pusher_webhooks.as_ref())
        {
            hooks.start(&swaps.events.0, swaps.events.1.clone());
        }
        swaps.hub.replace_apps(Apps::new(
            services.apps.clone(),
            services.dynamic_apps.clone(),
        ));
        swaps.keys.store(Arc::new(ApiKeys::new(
            new.apps.iter().map(|app| &app.policy),
            &new.admin_keys,
            new.api_exposure(),
        )));
        // The connection limit was sized from the open-file limit at start.
        new.limits.max_connections = running.limits.max_connections;
        swaps.gateway.store(Arc::new(GatewayLive::new(&new)));
        swaps.pushserve.store(new.pushserve.clone().map(Arc::new));
        // A removed app's name may still be served as a dynamic app: only close
        // connections of names the new configuration no longer knows.
        let closed = removed_apps
            .iter()
            .filter(|name| swaps.hub.app(name).is_err())
            .map(|name| swaps.hub.close_app(name, &Disconnect::APP_REMOVED))
            .sum();
        let generation = lock(&self.inner.status).generation + 1;
        *running = new;
        Ok(Applied {
            generation,
            changed,
            added_apps,
            removed_apps,
            closed,
            tls_sha256,
        })
    }
}

fn one_error(location: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        location: location.to_owned(),
        key: String::new(),
        message,
    }])
}

/// Reload on each SIGHUP and SIGUSR1 (seed 002's smooth reload) until `shutdown`. The
/// outcome is logged by [`Reloader::reload`]; a refused reload leaves the server as it was.
pub async fn on_signals(reloader: Reloader, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hangup), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install the SIGHUP/SIGUSR1 handlers");
        return;
    };
    loop {
        let trigger = tokio::select! {
            received = hangup.recv() => match received { Some(()) => "SIGHUP", None => return },
            received = usr1.recv() => match received { Some(()) => "SIGUSR1", None => return },
            _ = shutdown.cancelled() => return,
        };
        let _ = reloader.reload(trigger).await;
    }
}
