//! Prometheus metrics: what `GET /metrics` on the API listener shows.
//!
//! Two kinds of numbers, kept apart so the fan-out pays nothing for being measured:
//! - **Read at scrape time** ([`scrape`]): the counters the hot paths already keep as
//!   plain atomics ([`crate::stats::Stats`]), the broker's, timers' and cron's snapshots,
//!   presence and the process itself. Nothing is recorded per delivery for them.
//!   Outgoing HTTP calls are read the same way, from the records `GET /v1/tasks` reads
//!   ([`crate::work_counters`]).
//! - **Recorded where they happen** ([`Metrics`]): rare or per-request events with a
//!   latency (API requests, engine round trips, auth failures) and connection counts by
//!   kind. These go into one process-wide set, as the
//!   `metrics` crate's global recorder does, because several of them happen in services
//!   that configuration builds before any server exists (backend clients, webhooks): a
//!   process runs one server.
//!
//! Labels are bounded by construction: apps are the configured ones (apps created on
//! first use share the label `_dynamic`), endpoints are route templates, the rest are
//! fixed vocabularies. Nothing is ever labelled by user, connection, channel or raw path.

pub mod http;
pub mod process;
pub mod scrape;
pub mod timed;

use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::sync::lock;

/// The label value of every app created on first use (`dynamic_apps`): their names come
/// from clients, so they never become labels of their own.
pub const DYNAMIC_APP: &str = "_dynamic";

/// Every latency histogram has the outgoing calls' buckets (0.5 ms to 30 s, covering a
/// loopback engine call and a backend that is about to time out alike).
fn latency_histogram() -> Histogram {
    Histogram::new(crate::work_counters::LATENCY_BUCKETS)
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// A client connection's kind: which app, over which transport, in which dialect.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    /// A configured app's name, or [`DYNAMIC_APP`].
    pub app: String,
    /// `websocket`, `sse`, `poll` or `tcp`.
    pub transport: &'static str,
    /// `native`, `jdserver`, `pushserve` or `mswoole`.
    pub dialect: &'static str,
}

/// One API request: the route template (never the raw path), the method and the status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The matched route, such as `/v1/apps/{app}/users` (requests for no route at all
    /// reach the listener's fallback, outside the API router, and are not counted).
    pub endpoint: http::Endpoint,
    /// The HTTP method (a standard one, or `other`).
    pub method: &'static str,
    /// The status code answered.
    pub status: u16,
}

/// One engine operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    /// `broker` or `presence`.
    pub part: &'static str,
    /// The engine (`memory`, `redis`).
    pub engine: &'static str,
    /// The operation (`publish`, `history`, `subscribe`, `join`, ...).
    pub op: &'static str,
}

/// One refused client credential or API key.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `client` (a connecting client) or `api` (a request on the API listener).
    pub source: &'static str,
    /// Why, from a fixed list (see docs/operations.md, "Monitoring").
    pub reason: &'static str,
}

/// The metrics recorded where their events happen (see the module doc).
#[derive(Debug)]
pub struct Metrics {
    /// Client connections attached now, by kind.
    pub connections: Family<ConnLabels, Gauge>,
    /// API request latency by endpoint, method and status.
    pub api_requests: Latencies<ApiLabels>,
    /// Engine round trips.
    pub engine: Latencies<EngineLabels>,
    /// Engine operations that failed.
    pub engine_errors: Family<EngineLabels, Counter>,
    /// Refused credentials.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Every connection kind [`connections`](Self::connections) has a gauge for: the
    /// family cannot be walked, and `pushhub status` adds them up by transport and
    /// dialect. Bounded as the labels are.
    conn_kinds: Mutex<HashSet<ConnLabels>>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    connections: Family::default(),
    api_requests: Family::new_with_constructor(latency_histogram),
    engine: Family::new_with_constructor(latency_histogram),
    engine_errors: Family::default(),
    auth_failures: Family::default(),
    conn_kinds: Mutex::default(),
});

/// The process's recorded metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    /// The gauge of connections of this kind, to raise while one is attached.
    pub fn connection_gauge(&self, labels: ConnLabels) -> Gauge {
        if self.connections.get(&labels).is_none() {
            lock(&self.conn_kinds).insert(labels.clone());
        }
        self.connections.get_or_create_owned(&labels)
    }

    /// Connections attached to this node now by transport and dialect (every app
    /// together), read from the same gauges `/metrics` shows; sorted, kinds with none
    /// left out.
    pub fn connections_by_kind(&self) -> Vec<(&'static str, &'static str, i64)> {
        let kinds: Vec<ConnLabels> = lock(&self.conn_kinds).iter().cloned().collect();
        let mut sums: BTreeMap<(&'static str, &'static str), i64> = BTreeMap::new();
        for labels in kinds {
            if let Some(gauge) = self.connections.get(&labels) {
                *sums.entry((labels.transport, labels.dialect)).or_default() += gauge.get();
            }
        }
        sums.into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|((transport, dialect), count)| (transport, dialect, count))
            .collect()
    }

    /// Count a refused credential.
    pub fn auth_failure(&self, source: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthLabels { source, reason })
            .inc();
    }

    /// Put every recorded family into `registry`, for one scrape.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections",
            "Client connections attached to this node now, by app, transport and dialect",
            self.connections.clone(),
        );
        registry.register_with_unit(
            "api_request_duration",
            "API requests by route template, method and status, with their latency",
            Unit::Seconds,
            self.api_requests.clone(),
        );
        registry.register_with_unit(
            "engine_duration",
            "Engine round trips (broker and presence operations) by engine and operation",
            Unit::Seconds,
            self.engine.clone(),
        );
        registry.register(
            "engine_errors",
            "Engine operations that failed (the engine was unavailable)",
            self.engine_errors.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused client credentials and API keys, by source and reason",
            self.auth_failures.clone(),
        );
    }
}
