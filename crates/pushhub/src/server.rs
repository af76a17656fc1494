//! Running a server: the hub, its listeners (plain or TLS), and graceful shutdown.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::extract::ConnectInfo;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::admin_control::{Control, HistorySetup};
use crate::api::front::Front;
use crate::api::{self, ApiContext};
use crate::config::Config;
use crate::disconnect::Disconnect;
use crate::engine;
use crate::gateway::{self, GatewayState, TcpGateway};
use crate::http_conn::{self, IncomingRequest, Protocols};
use crate::http_error::ApiError;
use crate::hub::{Apps, Hub};
use crate::rates::Rates;
use crate::reload::{Reloader, Swaps};
use crate::scheduler::own_listeners::OwnListeners;
use crate::scheduler::{StartError, Timers};
use crate::stats::Stats;
use crate::store::StoreError;
use crate::tls::Tls;
use crate::transport::connections::Connections;
use crate::transport::tcp::{self, TcpContext, TcpFramer};
use crate::transport::ws::connection::WsSettings;
use crate::transport::ws::WsContext;
use crate::upgrade::{Launch, Role, Upgrader};

/// Already-bound listeners; binding happens in the caller so tests can use port 0.
pub struct Listeners {
    /// Client listener.
    pub client: TcpListener,
    /// API listener; `None` serves the API on the client listener (single-port mode).
    pub api: Option<TcpListener>,
    /// Raw TCP listener (native dialect); `None` when `tcp_listen` is unset.
    pub tcp: Option<TcpListener>,
    /// push-serve's own port (`[pushserve] addr`): its `/ws`, `/access` and `/push` only;
    /// `None` when unset.
    pub pushserve: Option<TcpListener>,
    /// The certificate of the listeners that `config.tls` puts under TLS; `None` when TLS
    /// is off. Shared with whoever reloads it (SIGHUP), so new handshakes see a new one.
    pub tls: Option<Arc<Tls>>,
    /// Called once every listener accepts and the timer store is open: the moment a
    /// daemon tells its foreground process that it serves (`serve --daemon`).
    pub on_ready: Option<Box<dyn FnOnce() + Send>>,
    /// How this process was started, so an upgrade can start its successor the same way;
    /// `None` refuses upgrades (an embedded server).
    pub launch: Option<Launch>,
}

/// Serve until `shutdown` fires; then stop accepting, close every client with 1001 (going
/// away), and give clients, in-flight API requests and timer calls up to `shutdown_grace`.
/// When an upgrade fired it ([`Upgrader`]), clients are closed with 1012 (reconnect now)
/// instead, the histories kept in memory are written for the successor, and the successor
/// is told once every store is closed.
/// Accept errors (such as running out of file descriptors) are logged and retried, so
/// serving fails only at start, when the timer store in `data_dir` cannot be opened.
pub async fn serve(
    mut config: Config,
    mut listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    // Timers never call pushhub itself: the guard learns every address it is bound to.
    let own = OwnListeners::new(
        [
            Some(&listeners.client),
            listeners.api.as_ref(),
            listeners.tcp.as_ref(),
            listeners.pushserve.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|listener| listener.local_addr().ok()),
    );
    config.timers.targets = Arc::new(config.timers.targets.as_ref().clone().refusing_own(own));
    let redis = connect_redis(&config).await?;
    let timers = start_timers(&config, redis.as_deref()).await?;
    let upgrader = Upgrader::new(
        listeners.launch.take(),
        listener_fds(&listeners),
        shutdown.clone(),
    );
    let stats = Arc::new(Stats::default());
    let tracker = TaskTracker::new();
    let history = open_history_log(&config).await?;
    let history_log = history.as_ref().map(|(log, _)| log.clone());
    // Lifecycle webhooks outlive the connections, so the disconnects that shutdown
    // causes are sent too: they stop once every connection has ended.
    let (events_tracker, events_stop) = (TaskTracker::new(), CancellationToken::new());
    let control = Control::new(
        Rates::start(stats.clone(), shutdown.clone()),
        HistorySetup {
            engine: config.engine,
            store: config.history_store,
            fsync: config.history_fsync,
            log: history_log.clone(),
        },
        events_tracker.clone(),
        config.shutdown_grace,
    );
    let timers_done = {
        let control = control.clone();
        tokio::spawn(
            timers
                .clone()
                .run(shutdown.clone(), move || control.grace()),
        )
    };
    let snapshot = take_snapshot(&config, history.is_some()).await;
    let (engine, memory_histories) = engine::from_config(
        config.engine,
        redis.clone(),
        config.limits.max_history_bytes,
        history,
        snapshot,
        &tracker,
        shutdown.clone(),
    )?;
    let engine = crate::metrics::timed::engine(engine);
    if !engine.nodes.ready(REDIS_START_WAIT).await {
        tracing::error!("not hearing the other nodes yet; serving anyway and retrying");
    }
    let services = crate::services::assemble(&config)?;
    for events in services.apps.iter().filter_map(|app| app.events.as_ref()) {
        events.start(&events_tracker, events_stop.clone());
    }
    for hooks in services
        .apps
        .iter()
        .filter_map(|app| app.pusher_webhooks.as_ref())
    {
        hooks.start(&events_tracker, events_stop.clone());
    }
    // Moved, not copied: the hub alone holds the apps, so a reload that replaces them
    // lets their event sinks go once their last connection ends.
    let hub = Hub::new(
        Apps::new(services.apps, services.dynamic_apps),
        engine,
        stats.clone(),
    );
    let connections = Connections::with_address_limit(config.limits.max_connections_per_ip);
    let ws = WsContext {
        settings: WsSettings {
            write_timeout: config.limits.write_timeout,
        },
        stats: stats.clone(),
        connections: connections.clone(),
        tracker: tracker.clone(),
    };
    let gateway_state = GatewayState::new(hub.clone(), ws.clone(), &config);
    // One framer for the server's life, shared by every raw TCP connection and message.
    let tcp_framer: &'static TcpFramer =
        Box::leak(Box::new(TcpFramer::new(config.tcp_framing.clone())));
    let tcp_gateway = TcpGateway::new(gateway_state.clone(), tcp_framer);
    let keys = Arc::new(ArcSwap::from_pointee(crate::api::auth::ApiKeys::new(
        config.apps.iter().map(|app| &app.policy),
        &config.admin_keys,
        config.api_exposure(),
    )));
    let pushserve_live = Arc::new(ArcSwapOption::from_pointee(config.pushserve.clone()));
    let reloader = Reloader::new(
        config.clone(),
        Swaps {
            hub: hub.clone(),
            keys: keys.clone(),
            gateway: gateway_state.live(),
            pushserve: pushserve_live.clone(),
            tls: listeners.tls.clone(),
            events: (events_tracker.clone(), events_stop.clone()),
        },
    );
    tokio::spawn(crate::reload::on_signals(
        reloader.clone(),
        shutdown.clone(),
    ));
    let api_state = Arc::new(ApiContext {
        hub: hub.clone(),
        max_body_bytes: config.limits.max_body_bytes,
        max_batch: config.limits.max_batch,
        max_batch_body_bytes: config.limits.max_batch_body_bytes,
        started: Instant::now(),
        keys,
        pushserve: pushserve_live,
        timers,
        reloader,
        shutdown: shutdown.clone(),
        control: control.clone(),
        upgrader: upgrader.clone(),
    });
    // push-serve's own port: its client and API endpoints, under TLS with the clients'.
    let pushserve = gateway::pushserve_router(gateway_state.clone())
        .merge(api::pushserve_router(api_state.clone()));
    let gateway = gateway::router(gateway_state);
    let api = api::router(api_state);
    // Which listeners speak TLS (single-port mode: the client listener's choice, which
    // the configuration check made equal to the API's), and which HTTP/2 as well: every
    // one that serves the API (push-serve's port serves its `/push`).
    let tls_on = |on: fn(&crate::config::RawTls) -> bool| {
        config
            .tls
            .as_ref()
            .filter(|t| on(t))
            .and(listeners.tls.clone())
    };
    let mut routers = match listeners.api {
        Some(api_listener) => {
            // The demo page on the client listener may call a loopback API (gateway/demo.rs).
            let front = Front {
                origins: gateway::demo::allowed_origins(&listeners.client, &api_listener),
                metrics: true,
            };
            vec![
                (
                    listeners.client,
                    refusing_oversized_heads(with_fallbacks(gateway)),
                    tls_on(|t| t.client),
                    Protocols::Http1,
                    true,
                ),
                (
                    api_listener,
                    api_fallbacks(front.clone().apply(api), &front),
                    tls_on(|t| t.api),
                    Protocols::Http1And2,
                    false,
                ),
            ]
        }
        None => {
            let front = Front {
                origins: None,
                metrics: true,
            };
            let routes = front
                .without_metrics()
                .apply(gateway)
                .merge(front.clone().apply(api));
            vec![(
                listeners.client,
                api_fallbacks(routes, &front),
                tls_on(|t| t.client),
                Protocols::Http1And2,
                true,
            )]
        }
    };
    if let Some(listener) = listeners.pushserve {
        routers.push((
            listener,
            refusing_oversized_heads(with_fallbacks(pushserve)),
            tls_on(|t| t.client),
            Protocols::Http1And2,
            true,
        ));
    }
    let mut accepting: Vec<_> = routers
        .into_iter()
        .map(|(listener, router, tls, protocols, peers)| {
            tokio::spawn(run_listener(
                listener,
                router,
                tls,
                protocols,
                peers,
                shutdown.clone(),
            ))
        })
        .collect();
    if let Some(listener) = listeners.tcp {
        let ctx = TcpContext {
            framing: config.tcp_framing.clone(),
            framer: tcp_framer,
            control: TcpGateway::control(),
            settings: ws.settings,
            outbox: config.limits.outbox,
            stats,
            connections: connections.clone(),
            tracker: tracker.clone(),
            tls: tls_on(|t| t.tcp),
        };
        let refusals = tcp_gateway.clone();
        let accept = move || tcp_gateway.client();
        let refuse = move |reason| refusals.refusal(reason);
        accepting.push(tokio::spawn(tcp::serve(
            listener,
            ctx,
            shutdown.clone(),
            accept,
            refuse,
        )));
    }
    if let Some(on_ready) = listeners.on_ready {
        on_ready();
    }
    crate::upgrade::systemd::notify("READY=1\nSTATUS=serving");

    shutdown.cancelled().await;
    let grace = control.grace();
    let deadline = tokio::time::Instant::now() + grace;
    let handover = upgrader.take_handover();
    let goodbye = match &handover {
        Some(_) => Disconnect::RESTART,
        None => {
            crate::upgrade::systemd::notify("STOPPING=1");
            Disconnect::SHUTDOWN
        }
    };
    tracing::info!(
        connections = connections.len(),
        code = goodbye.code,
        "closing every client connection"
    );
    connections.close_all(goodbye);
    tracker.close();
    let drained = tokio::time::timeout_at(deadline, async {
        for listener in &mut accepting {
            let _ = listener.await;
        }
        if handover.is_some() {
            // Once every client's handler has let go of the hub, nothing publishes any
            // more: the goodbyes still lingering (waiting for each client's close reply)
            // need not hold up the successor, which waits for this process's stores.
            while hub.stats().connections() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            tracker.wait().await;
        }
        hub.settle().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            "shutdown grace period ended with connections or requests still open"
        );
        accepting.iter().for_each(|listener| listener.abort());
    }
    events_stop.cancel();
    events_tracker.close();
    let flush = if control.forced() {
        Duration::ZERO
    } else {
        EVENTS_FLUSH
    };
    let _ = tokio::time::timeout_at(deadline + flush, events_tracker.wait()).await;
    let _ = timers_done.await;
    // Last: nothing publishes any more. A clean close lets a successor open the log.
    if let Some(log) = history_log {
        match log.close().await {
            Ok(()) => tracing::info!("history log closed cleanly"),
            Err(error) => tracing::error!(%error, "history log: closing failed"),
        }
    }
    if let Some(handover) = handover {
        if let Some(broker) = memory_histories {
            write_snapshot(&config, &broker).await;
        }
        handover.release().await;
        // The goodbyes finish while the successor serves: exiting now would reset
        // connections whose close reply is still on its way, and clients would read a
        // lost connection (1006) rather than 1012.
        let _ = tokio::time::timeout_at(deadline, tracker.wait()).await;
    }
    Ok(())
}

/// Each listener's role and descriptor, for an upgrade to hand over.
fn listener_fds(listeners: &Listeners) -> Vec<(Role, RawFd)> {
    [
        (Role::Client, Some(&listeners.client)),
        (Role::Api, listeners.api.as_ref()),
        (Role::Tcp, listeners.tcp.as_ref()),
        (Role::PushServe, listeners.pushserve.as_ref()),
    ]
    .into_iter()
    .filter_map(|(role, listener)| Some((role, listener?.as_raw_fd())))
    .collect()
}

/// The histories an upgrade left in `data_dir`, when they live in memory only (with the
/// log, `durable`, the log has them); read and deleted off the runtime. A snapshot that
/// cannot be read is reported and its channels start afresh.
async fn take_snapshot(config: &Config, durable: bool) -> Option<crate::store::history::Restored> {
    use crate::store::history::snapshot;
    if config.engine != engine::EngineKind::Memory || durable {
        return None;
    }
    let dir = config.data_dir.clone();
    match tokio::task::spawn_blocking(move || snapshot::take(&dir)).await {
        Ok(Ok(restored)) => restored,
        Ok(Err(error)) => {
            tracing::error!(%error, "channels start in new epochs (resuming clients get recovered:false)");
            None
        }
        Err(error) => {
            tracing::error!(%error, "reading the history snapshot failed");
            None
        }
    }
}

/// Write every channel's history for the successor of an upgrade (off the runtime).
async fn write_snapshot(config: &Config, broker: &Arc<engine::memory::MemoryBroker>) {
    let started = Instant::now();
    let streams = broker.snapshot();
    let channels = streams.len();
    let dir = config.data_dir.clone();
    let written =
        tokio::task::spawn_blocking(move || crate::store::history::snapshot::write(&dir, &streams))
            .await;
    match written {
        Ok(Ok(bytes)) => tracing::info!(
            channels,
            bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "upgrade: history snapshot written for the new process"
        ),
        Ok(Err(error)) => {
            tracing::error!(%error, "upgrade: the new process starts every channel in a new epoch")
        }
        Err(error) => tracing::error!(%error, "upgrade: writing the history snapshot failed"),
    }
}

/// Open the durable history log when the memory engine keeps histories on disk (off the
/// runtime: it reads every segment back).
async fn open_history_log(
    config: &Config,
) -> Result<
    Option<(
        Arc<crate::store::history::HistoryLog>,
        crate::store::history::Restored,
    )>,
    StartError,
> {
    use crate::store::history::{HistoryLog, HistoryStore, LogOptions, SEGMENT_BYTES};
    if config.engine != engine::EngineKind::Memory || config.history_store != HistoryStore::Disk {
        return Ok(None);
    }
    let dir = config.data_dir.clone();
    let options = LogOptions {
        fsync: config.history_fsync,
        segment_bytes: SEGMENT_BYTES,
    };
    let opened = tokio::task::spawn_blocking(move || HistoryLog::open(&dir, options))
        .await
        .map_err(|e| StoreError::Backend(format!("opening the history log: {e}")))??;
    Ok(Some((Arc::new(opened.0), opened.1)))
}

/// How long start-up waits for Redis before serving anyway (reporting it unhealthy and
/// refusing publishes with `engine_unavailable` until it answers).
const REDIS_START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The connections to Redis when the engine is Redis, connected (or still trying: a
/// Redis that is down at start is reported and retried, not fatal).
async fn connect_redis(
    config: &Config,
) -> Result<Option<Arc<crate::redis::RedisConnections>>, StartError> {
    let Some(settings) = &config.redis else {
        return Ok(None);
    };
    let connections = crate::redis::RedisConnections::build(settings)
        .map_err(|error| StartError::Engine(engine::EngineError::Unavailable(error.to_string())))?;
    for url in connections.connect(REDIS_START_WAIT).await {
        tracing::error!(redis = %url, "Redis does not answer yet; serving anyway and retrying");
    }
    Ok(Some(Arc::new(connections)))
}

/// Open the timer store and schedule its pending timers and cron jobs: in Redis when
/// the engine is Redis (every node claims from it), else the embedded store in `data_dir`
/// (opened off the runtime: opening after a crash repairs the file).
async fn start_timers(
    config: &Config,
    redis: Option<&crate::redis::RedisConnections>,
) -> Result<Timers, StartError> {
    let store = match (redis, &config.redis) {
        (Some(connections), Some(settings)) => {
            Arc::new(crate::store::RedisStore::new(connections, settings.lease)).stores()
        }
        _ => {
            let dir = config.data_dir.clone();
            let cache_bytes = config.timers.store_cache_bytes;
            tokio::task::spawn_blocking(move || crate::store::open(&dir, cache_bytes))
                .await
                .map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??
        }
    };
    let timers = Timers::start(store, config.timers.clone(), &config.data_dir).await?;
    let pending = timers.snapshot().pending;
    let jobs = timers.cron_snapshot().jobs;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        pending,
        jobs,
        store = timers.snapshot().store,
        "timer store open; {pending} pending timer(s) scheduled, {jobs} cron job(s)"
    );
    Ok(timers)
}

/// 404 `not_found`: no route has the request's path.
async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/api.md",
    )
}

/// 405 `method_not_allowed`: a route has the path, not the method.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see docs/api.md",
    )
}

fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The fallbacks of a router serving the API, each through `front`'s pass (without
/// metrics) as the routes are: its answers carry request ids too.
fn api_fallbacks(router: Router, front: &Front) -> Router {
    let front = axum::middleware::from_fn_with_state(
        Arc::new(front.without_metrics()),
        crate::api::front::pass,
    );
    router
        .fallback(not_found.layer(front.clone()))
        .method_not_allowed_fallback(method_not_allowed.layer(front))
}

/// A client listener's routes, refusing heads too large (the API's do it in their pass).
fn refusing_oversized_heads(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(
        crate::parse_errors::refuse_oversized_heads,
    ))
}

/// How long the last lifecycle events may take to send once connections have ended.
const EVENTS_FLUSH: Duration = Duration::from_secs(2);

/// Accept HTTP connections (HTTP/1.1 with upgrades, and HTTP/2 where `protocols` says so)
/// until `shutdown`, then wait for requests in flight. Upgraded connections leave hyper at
/// the upgrade and are not waited for here. With `tls`, each socket first completes a TLS
/// handshake in its own task, within [`crate::tls::HANDSHAKE_TIMEOUT`]; a failed one (a
/// plain HTTP client, a port scanner, an untrusted certificate) is logged at debug level
/// and dropped.
///
/// Served with hyper directly rather than `axum::serve` so an upgraded connection is the
/// `TcpStream` (or TLS stream) it started as, and so header reads have a deadline
/// ([`http_conn`]).
///
/// With `peers`, handlers see each socket's peer as `ConnectInfo` (the client transports'
/// per-address limits); the API's routes read no address, and skip the per-request
/// insertion.
async fn run_listener(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    protocols: Protocols,
    peers: bool,
    shutdown: CancellationToken,
) {
    let requests = TaskTracker::new();
    while let Some(stream) = tcp::next_socket(&listener, &shutdown).await {
        let shutdown = shutdown.clone();
        let peer = stream.peer_addr().ok().filter(|_| peers);
        let router = router
            .clone()
            .map_request(move |mut request: IncomingRequest| {
                if let Some(peer) = peer {
                    request.extensions_mut().insert(ConnectInfo(peer));
                }
                request
            });
        // Plain sockets go to hyper as they are: the TLS path costs them nothing.
        let Some(tls) = tls.clone() else {
            requests.spawn(http_conn::serve_plain(stream, router, protocols, shutdown));
            continue;
        };
        requests.spawn(async move {
            let stream = tokio::select! {
                handshake = tls.accept_http(stream, protocols) => match handshake {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            http_conn::serve_tls(stream, router, shutdown).await;
        });
    }
    drop(listener);
    requests.close();
    requests.wait().await;
}
