//! Pusher's webhooks (issue 19, point 4): what happened to an app's Pusher channels,
//! POSTed to the backends its `[apps.NAME.pusher] webhooks` name, in Pusher's format so
//! the SDKs' webhook checks (`pusher.webhook(request).isValid()`, Laravel's) accept them:
//!
//! ```text
//! POST url
//! Content-Type: application/json
//! X-Pusher-Key: <app key>
//! X-Pusher-Signature: <HMAC-SHA256 of the body with the app secret, hex>
//!
//! {"time_ms":1765000000123,"events":[{"name":"channel_occupied","channel":"news"}, …]}
//! ```
//!
//! As with the lifecycle webhook ([`super::events`]) nothing waits for the backend: each
//! webhook has a bounded queue (full: events are dropped and counted) and a task that
//! sends batches (at most `max_batch` events, at most `max_delay` after the first),
//! retrying a failed batch with exponential backoff up to `max_attempts`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::pusher::PusherSecret;
use crate::sync::lock;

/// One thing that happened to a Pusher channel, as Pusher names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum PusherEvent {
    /// The channel got its first subscriber, on any node.
    ChannelOccupied {
        /// The channel.
        channel: String,
    },
    /// The channel lost its last subscriber, on every node.
    ChannelVacated {
        /// The channel.
        channel: String,
    },
    /// A user joined a presence channel (its first connection there).
    MemberAdded {
        /// The channel.
        channel: String,
        /// The member's user id.
        user_id: String,
    },
    /// A user left a presence channel (its last connection there).
    MemberRemoved {
        /// The channel.
        channel: String,
        /// The member's user id.
        user_id: String,
    },
    /// A client sent a `client-` event.
    ClientEvent {
        /// The channel.
        channel: String,
        /// The event's name.
        event: String,
        /// Its data, as the client sent it.
        data: String,
        /// The sender's socket id.
        socket_id: String,
        /// The sender's user id, on a presence channel.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A client subscribed to a `cache-` channel that had no event to replay.
    CacheMiss {
        /// The channel.
        channel: String,
    },
}

/// The hub's room changes, as Pusher's webhooks tell them.
impl crate::hub::room_watch::RoomWatch for PusherWebhooks {
    fn occupied(&self, room: &str) {
        self.emit(PusherEvent::ChannelOccupied {
            channel: room.to_owned(),
        });
    }

    fn vacated(&self, room: &str) {
        self.emit(PusherEvent::ChannelVacated {
            channel: room.to_owned(),
        });
    }

    fn member_added(&self, room: &str, user: &str) {
        self.emit(PusherEvent::MemberAdded {
            channel: room.to_owned(),
            user_id: user.to_owned(),
        });
    }

    fn member_removed(&self, room: &str, user: &str) {
        self.emit(PusherEvent::MemberRemoved {
            channel: room.to_owned(),
            user_id: user.to_owned(),
        });
    }
}

impl PusherEvent {
    /// The event's Pusher name, as `event_types` lists it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ChannelOccupied { .. } => "channel_occupied",
            Self::ChannelVacated { .. } => "channel_vacated",
            Self::MemberAdded { .. } => "member_added",
            Self::MemberRemoved { .. } => "member_removed",
            Self::ClientEvent { .. } => "client_event",
            Self::CacheMiss { .. } => "cache_miss",
        }
    }
}

/// Every event name Pusher's webhooks have, as `event_types` may list them.
pub const EVENT_TYPES: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
];

/// One webhook, as configured.
#[derive(Debug, Clone)]
pub struct PusherWebhookSettings {
    /// Where batches are POSTed.
    pub url: reqwest::Url,
    /// The events it wants ([`EVENT_TYPES`]).
    pub event_types: Vec<&'static str>,
    /// Most events in one request.
    pub max_batch: usize,
    /// Longest an event waits for its batch to fill.
    pub max_delay: Duration,
    /// Most events waiting; more are dropped.
    pub queue: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// Attempts per batch before it is dropped.
    pub max_attempts: u32,
}

/// Counters of one webhook.
#[derive(Debug, Default)]
pub struct PusherWebhookCounters {
    /// Events the backend accepted.
    pub sent: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events dropped because their batch failed every attempt.
    pub failed: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retries: AtomicU64,
}

/// The body of one request.
#[derive(Serialize)]
struct Body<'a> {
    time_ms: u64,
    events: &'a [PusherEvent],
}

/// What signs and sends one webhook's batches.
struct Sender {
    app: Arc<str>,
    key: Arc<str>,
    secret: Arc<str>,
    settings: PusherWebhookSettings,
    client: reqwest::Client,
    counters: PusherWebhookCounters,
}

/// One webhook: its queue, and the receiving end its task takes at [`Self::start`].
struct Webhook {
    sender: Arc<Sender>,
    queue: mpsc::Sender<PusherEvent>,
    receiver: Mutex<Option<mpsc::Receiver<PusherEvent>>>,
}

/// An app's Pusher webhooks. Dropping it (a reload replaced the app and its last
/// connection ended) closes the queues; each task sends what is left and ends.
pub struct PusherWebhooks {
    hooks: Vec<Webhook>,
}

impl std::fmt::Debug for PusherWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .hooks
            .iter()
            .map(|hook| hook.sender.settings.url.to_string())
            .collect();
        write!(f, "PusherWebhooks({urls:?})")
    }
}

impl PusherWebhooks {
    /// The webhooks of `app`, whose Pusher `key` and `secret` sign them, sent with
    /// `client`.
    pub fn new(
        app: Arc<str>,
        (key, secret): (Arc<str>, Arc<str>),
        settings: Vec<PusherWebhookSettings>,
        client: reqwest::Client,
    ) -> Self {
        let hooks = settings
            .into_iter()
            .map(|settings| {
                let (queue, receiver) = mpsc::channel(settings.queue.max(1));
                Webhook {
                    sender: Arc::new(Sender {
                        app: app.clone(),
                        key: key.clone(),
                        secret: secret.clone(),
                        settings,
                        client: client.clone(),
                        counters: PusherWebhookCounters::default(),
                    }),
                    queue,
                    receiver: Mutex::new(Some(receiver)),
                }
            })
            .collect();
        Self { hooks }
    }

    /// Queue `event` for every webhook that wants its kind, without waiting.
    pub fn emit(&self, event: PusherEvent) {
        for hook in &self.hooks {
            if !hook.sender.settings.event_types.contains(&event.kind()) {
                continue;
            }
            if hook.queue.try_send(event.clone()).is_err() {
                let counters = &hook.sender.counters;
                let dropped = counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped % 100 == 1 {
                    tracing::warn!(
                        app = &*hook.sender.app,
                        dropped,
                        "Pusher webhook queue full: dropping events"
                    );
                }
            }
        }
    }

    /// The counters of each webhook, in the configuration's order.
    pub fn counters(&self) -> impl Iterator<Item = &PusherWebhookCounters> {
        self.hooks.iter().map(|hook| &hook.sender.counters)
    }

    /// Start sending: a task per webhook, tracked by `tracker`, that ends when `stop`
    /// fires or the webhooks are dropped, after one last attempt at what is queued.
    /// Starting twice does nothing.
    pub fn start(&self, tracker: &TaskTracker, stop: CancellationToken) {
        for hook in &self.hooks {
            let Some(receiver) = lock(&hook.receiver).take() else {
                continue;
            };
            let sender = hook.sender.clone();
            let stop = stop.clone();
            tracker.spawn(async move { sender.run(receiver, stop).await });
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Sender {
    async fn run(&self, mut receiver: mpsc::Receiver<PusherEvent>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(self.settings.max_batch);
        loop {
            let first = tokio::select! {
                event = receiver.recv() => event,
                _ = stop.cancelled() => None,
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
                    _ = stop.cancelled() => break,
                }
            }
            self.deliver(&batch, &stop).await;
            batch.clear();
        }
        while let Ok(event) = receiver.try_recv() {
            batch.push(event);
        }
        for chunk in batch.chunks(self.settings.max_batch.max(1)) {
            let _ = self.attempt(chunk).await;
        }
    }

    /// Send `batch`, retrying with exponential backoff (and jitter) until it is accepted,
    /// attempts run out, or the server stops.
    async fn deliver(&self, batch: &[PusherEvent], stop: &CancellationToken) {
        let delivered = super::retry::with_backoff(
            self.settings.max_attempts,
            stop,
            ("Pusher webhook", &self.app, batch.len()),
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
            "Pusher webhook events dropped after every attempt failed"
        );
    }

    /// One signed request; `Err` says why it did not count as delivered.
    async fn attempt(&self, batch: &[PusherEvent]) -> Result<(), String> {
        let body = serde_json::to_vec(&Body {
            time_ms: now_ms(),
            events: batch,
        })
        .map_err(|e| e.to_string())?;
        let signature = PusherSecret {
            key: &self.key,
            secret: &self.secret,
        }
        .webhook_signature(&body);
        let request = self
            .client
            .post(self.settings.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Pusher-Key", &*self.key)
            .header("X-Pusher-Signature", signature)
            .body(body)
            .send();
        match tokio::time::timeout(self.settings.timeout, request).await {
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            )),
            Ok(Err(error)) => Err(format!("the backend is unreachable: {error}")),
            Ok(Ok(response)) if response.status().is_success() => {
                self.counters
                    .sent
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(Ok(response)) => Err(format!("the backend answered HTTP {}", response.status())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tokio::sync::mpsc::UnboundedSender;

    /// A real HTTP backend on a free port: answers 500 to its first `fail_first`
    /// requests, then 200, and hands over every request's headers and body.
    async fn backend(
        fail_first: usize,
    ) -> (
        reqwest::Url,
        mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>, StatusCode)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(AtomicU64::new(0));
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, seen): (UnboundedSender<_>, _) = (tx.clone(), seen.clone());
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst) as usize;
                let status = if n < fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                let _ = tx.send((headers, body.to_vec(), status));
                status
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = reqwest::Url::parse(&format!("http://{addr}/hook")).unwrap();
        (url, rx)
    }

    fn settings(url: reqwest::Url, event_types: &[&'static str]) -> PusherWebhookSettings {
        PusherWebhookSettings {
            url,
            event_types: event_types.to_vec(),
            max_batch: 10,
            max_delay: Duration::from_millis(100),
            queue: 100,
            timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }

    async fn next(
        rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>, StatusCode)>,
    ) -> (HeaderMap, Vec<u8>, StatusCode) {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a request within 10 s")
            .expect("the backend runs")
    }

    #[tokio::test]
    async fn batches_are_signed_in_pushers_format_and_retried() {
        let (url, mut requests) = backend(1).await;
        let hooks = PusherWebhooks::new(
            "chat".into(),
            ("chat-key".into(), "chat-secret".into()),
            vec![settings(url, EVENT_TYPES)],
            crate::outbound::client().unwrap(),
        );
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        hooks.emit(PusherEvent::ChannelOccupied {
            channel: "news".into(),
        });
        hooks.emit(PusherEvent::MemberAdded {
            channel: "presence-room".into(),
            user_id: "ann".into(),
        });
        hooks.emit(PusherEvent::ClientEvent {
            channel: "private-chat".into(),
            event: "client-typing".into(),
            data: "{}".into(),
            socket_id: "1.2".into(),
            user_id: None,
        });
        hooks.start(&tracker, stop.clone());

        let (_, failed_body, status) = next(&mut requests).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (headers, body, status) = next(&mut requests).await;
        assert_eq!(status, StatusCode::OK);
        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let retried: serde_json::Value = serde_json::from_slice(&failed_body).unwrap();
        assert_eq!(sent["events"], retried["events"], "the same batch, again");
        assert!(sent["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(
            sent["events"],
            serde_json::json!([
                {"name": "channel_occupied", "channel": "news"},
                {"name": "member_added", "channel": "presence-room", "user_id": "ann"},
                {"name": "client_event", "channel": "private-chat", "event": "client-typing",
                 "data": "{}", "socket_id": "1.2"},
            ])
        );
        assert_eq!(headers["x-pusher-key"], "chat-key");
        assert_eq!(headers["content-type"], "application/json");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"chat-secret").unwrap();
        mac.update(&body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(headers["x-pusher-signature"], expected.as_str());
        let counters = hooks.counters().next().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counters.sent.load(Ordering::Relaxed) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "the answer counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(counters.retries.load(Ordering::Relaxed), 1);
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn each_webhook_gets_the_events_it_asks_for_and_a_dead_backend_costs_nothing_else() {
        let (wanted, mut requests) = backend(0).await;
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead =
            reqwest::Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        let mut dead = settings(dead, EVENT_TYPES);
        dead.max_attempts = 2;
        let hooks = PusherWebhooks::new(
            "chat".into(),
            ("k".into(), "s".into()),
            vec![settings(wanted, &["channel_vacated", "cache_miss"]), dead],
            crate::outbound::client().unwrap(),
        );
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        hooks.start(&tracker, stop.clone());
        hooks.emit(PusherEvent::ChannelOccupied {
            channel: "a".into(),
        });
        hooks.emit(PusherEvent::ChannelVacated {
            channel: "a".into(),
        });
        hooks.emit(PusherEvent::CacheMiss {
            channel: "cache-b".into(),
        });
        let mut names = Vec::new();
        while names.len() < 2 {
            let (_, body, _) = next(&mut requests).await;
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for event in body["events"].as_array().unwrap() {
                names.push(event["name"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(names, ["channel_vacated", "cache_miss"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let dead = hooks.counters().nth(1).unwrap();
        while dead.failed.load(Ordering::Relaxed) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dead webhook gave up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dead.retries.load(Ordering::Relaxed), 1);
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
