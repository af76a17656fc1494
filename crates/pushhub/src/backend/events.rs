//! Lifecycle webhooks: connects, disconnects (with reason and duration) and room joins and
//! leaves, POSTed to the app's backend in batches.
//!
//! MSwoole ran `onClose` controllers inside the server and kept Redis sets to clean up
//! after users who vanished; a backend that gets these events keeps its own view instead.
//! Events never wait for the backend: they go into a bounded queue (full: new events are
//! dropped and counted), a task per app sends them in batches (at most
//! `max_batch` events, at most `max_delay` after the first), signed, and retries a failed
//! batch with backoff while new events queue up behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::call::{BackendClient, CallError};
use crate::sync::lock;
use crate::work_counters::{CallRecord, LatencySnapshot};

/// One thing that happened to a connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// A connection attached.
    Connect {
        /// The user.
        user: Arc<str>,
        /// The connection (a `welcome`'s `conn`).
        conn: String,
        /// When, in milliseconds since the Unix epoch.
        ts: u64,
    },
    /// A connection ended.
    Disconnect {
        /// The user.
        user: Arc<str>,
        /// The connection.
        conn: String,
        /// When.
        ts: u64,
        /// The close code (docs/protocol.md), e.g. 1000 when the client closed.
        code: u16,
        /// The close reason.
        reason: String,
        /// How long the connection was attached, in milliseconds.
        duration_ms: u64,
        /// The rooms it was in, and so left.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        rooms: Vec<String>,
        /// The controllers a backend asked to name when this connection ends
        /// (MSwoole's `fdAddController`; see `crate::close_notes`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        controllers: Vec<String>,
        /// The keys a backend asked to name when this connection ends (MSwoole's
        /// `fdAddCloseKey`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        close_keys: Vec<String>,
    },
    /// A connection joined a room (by its own `join` or the API).
    Join {
        /// The user.
        user: Arc<str>,
        /// The connection.
        conn: String,
        /// When.
        ts: u64,
        /// The room.
        room: String,
    },
    /// A connection left a room (by its own `leave` or the API).
    Leave {
        /// The user.
        user: Arc<str>,
        /// The connection.
        conn: String,
        /// When.
        ts: u64,
        /// The room.
        room: String,
    },
}

/// One app's lifecycle webhook, as configured.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Where batches are POSTed.
    pub url: reqwest::Url,
    /// Most events in one request.
    pub max_batch: usize,
    /// Longest an event waits for its batch to fill.
    pub max_delay: Duration,
    /// Most events waiting to be sent; beyond it the oldest are dropped.
    pub queue: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// Attempts per batch before it is dropped.
    pub max_attempts: u32,
}

/// The body of one request.
#[derive(Serialize)]
struct Batch<'a> {
    app: &'a str,
    events: &'a [Event],
}

/// Counters of one app's events, for logs and stats.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Events the backend accepted.
    pub sent: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events dropped because their batch failed every attempt.
    pub failed: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retries: AtomicU64,
    /// Events in the batch being sent now (0 or a batch's size).
    pub in_flight: AtomicU64,
    /// How each request ended and how long it took: the app's `webhook` record, which
    /// `/metrics` reads too.
    pub requests: Arc<CallRecord>,
}

/// A copy of an app's webhook queue, for `GET /v1/tasks`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WebhookQueue {
    /// Where the events go.
    pub url: String,
    /// Events waiting for their batch.
    pub queued: u64,
    /// The queue's bound.
    pub max_queued: usize,
    /// Events in the batch being sent.
    pub in_flight: u64,
    /// Events the backend accepted since start.
    pub sent: u64,
    /// Events dropped after every attempt of their batch failed.
    pub failed: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Attempts that failed and were tried again.
    pub retries: u64,
    /// How long requests took.
    pub latency: LatencySnapshot,
}

/// Where an app's events go: a bounded queue, drained by [`EventSink::start`]'s task.
///
/// The task holds the queue's receiving end and the [`Shipper`], never the sink itself:
/// when a reload replaces the app and the last connection admitted under the old one
/// ends, the old sink is dropped, its queue closes, and its task sends what is left and
/// ends. Reloads therefore never pile up sending tasks.
pub struct EventSink {
    shipper: Arc<Shipper>,
    sender: mpsc::Sender<Event>,
    receiver: Mutex<Option<mpsc::Receiver<Event>>>,
}

/// What sends an app's batches: its settings, client and counters, shared by the sink
/// and its task.
struct Shipper {
    app: Arc<str>,
    settings: EventSettings,
    backend: BackendClient,
    counters: EventCounters,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventSink({})", self.shipper.settings.url)
    }
}

impl EventSink {
    /// A sink for `app`'s events as `settings` says, sent through `backend`; its requests
    /// go in the app's `webhook` record.
    pub fn new(app: Arc<str>, settings: EventSettings, backend: BackendClient) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue.max(1));
        let counters = EventCounters {
            requests: crate::work_counters::calls("webhook", Some(&app)),
            ..EventCounters::default()
        };
        Self {
            shipper: Arc::new(Shipper {
                app,
                settings,
                backend,
                counters,
            }),
            sender,
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Queue `event` without waiting; a full queue drops it (counted, and logged once
    /// per hundred drops), so a slow backend never slows a connection.
    pub fn emit(&self, event: Event) {
        if self.sender.try_send(event).is_err() {
            let dropped = self.counters().dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped % 100 == 1 {
                tracing::warn!(
                    app = &*self.shipper.app,
                    dropped,
                    "lifecycle event queue full: dropping events"
                );
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> &EventCounters {
        &self.shipper.counters
    }

    /// The queue as it stands now.
    pub fn queue(&self) -> WebhookQueue {
        let c = self.counters();
        let bound = self.sender.max_capacity();
        WebhookQueue {
            url: self.shipper.settings.url.to_string(),
            queued: bound.saturating_sub(self.sender.capacity()) as u64,
            max_queued: bound,
            in_flight: c.in_flight.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            latency: c.requests.latency(),
        }
    }

    /// Start sending: one task, tracked by `tracker`, that ends when `stop` fires (the
    /// server fires it once connections have ended, so their disconnects go out too) or
    /// once this sink is dropped, after one last attempt at what is queued. Starting
    /// twice does nothing.
    pub fn start(&self, tracker: &TaskTracker, stop: CancellationToken) {
        let Some(receiver) = lock(&self.receiver).take() else {
            return;
        };
        let shipper = self.shipper.clone();
        tracker.spawn(async move { shipper.run(receiver, stop).await });
    }
}

impl Shipper {
    async fn run(&self, mut receiver: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(self.settings.max_batch);
        loop {
            let first = tokio::select! {
                event = receiver.recv() => event,
                _ = shutdown.cancelled() => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.settings.max_delay;
            while batch.len() < self.settings.max_batch {
                tokio::select! {
                    event = receiver.recv() => match event {
                        Some(event) => batch.push(event),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.cancelled() => break,
                }
            }
            self.counters
                .in_flight
                .store(batch.len() as u64, Ordering::Relaxed);
            self.deliver(&batch, &shutdown).await;
            self.counters.in_flight.store(0, Ordering::Relaxed);
            batch.clear();
        }
        // Stopping: every connection has ended (their disconnects are queued); one
        // attempt for whatever is left.
        while let Ok(event) = receiver.try_recv() {
            batch.push(event);
        }
        for chunk in batch.chunks(self.settings.max_batch.max(1)) {
            let _ = self.attempt(chunk).await;
        }
    }

    /// Send `batch`, retrying with exponential backoff (and jitter) until it is accepted,
    /// attempts run out, or the server shuts down.
    async fn deliver(&self, batch: &[Event], shutdown: &CancellationToken) {
        let delivered = super::retry::with_backoff(
            self.settings.max_attempts,
            shutdown,
            ("lifecycle webhook", &self.app, batch.len()),
            || self.attempt(batch),
            || {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            },
        )
        .await;
        if delivered {
            return;
        }
        self.counters
            .failed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        tracing::error!(
            app = &*self.app,
            events = batch.len(),
            "lifecycle events dropped after every attempt failed"
        );
    }

    /// One request; `Err` says why it did not count as delivered.
    async fn attempt(&self, batch: &[Event]) -> Result<(), String> {
        let body = serde_json::to_vec(&Batch {
            app: &self.app,
            events: batch,
        })
        .map_err(|e| e.to_string())?;
        let sent = tokio::time::timeout(
            self.settings.timeout,
            self.backend.post(&self.settings.url, body),
        );
        let sent = self
            .counters
            .requests
            .time(sent, super::call::outcome)
            .await;
        match sent {
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            )),
            Ok(Err(error @ (CallError::Unreachable | CallError::TooLarge))) => {
                Err(error.to_string())
            }
            Ok(Ok((200..=299, _))) => {
                self.counters
                    .sent
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(Ok((status, _))) => Err(format!("the backend answered HTTP {status}")),
        }
    }
}
