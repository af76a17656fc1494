//! Connection registry and fan-out of the reference relay.
//!
//! Deliberately the simplest correct design: one mutex over all apps, one
//! bounded queue per connection, serialize once per publish, and drop a
//! connection whose queue is full rather than buffering without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_tungstenite::tungstenite::Message;

use crate::clock::unix_millis;
use crate::relay::frame::MsgFrame;

/// A `POST /v1/push` body.
#[derive(Debug, Deserialize)]
pub struct PushRequest {
    /// Target app.
    pub app: String,
    /// `"*"` for every connection of the app, otherwise a user name.
    pub to: String,
    /// Application event name.
    #[serde(default)]
    pub event: String,
    /// Any JSON, forwarded verbatim (missing means `null`).
    pub data: Option<Box<RawValue>>,
}

/// Result of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Message id.
    pub id: u64,
    /// Connections the frame was queued to.
    pub delivered: u64,
}

/// A connection's handle in the registry.
pub struct Registration {
    /// Connection id (sent in the welcome frame).
    pub id: u64,
    /// Frames to write to this connection; closes when the hub drops the connection.
    pub rx: mpsc::Receiver<Message>,
}

/// One connected client as seen by the hub.
struct Member {
    user: String,
    tx: mpsc::Sender<Message>,
}

/// All connections and channel offsets of one app.
#[derive(Default)]
struct App {
    conns: HashMap<u64, Member>,
    users: HashMap<String, Vec<u64>>,
    offsets: HashMap<String, u64>,
}

impl App {
    /// Removes connection `id` from both indexes.
    fn remove(&mut self, id: u64) {
        if let Some(m) = self.conns.remove(&id) {
            if let Some(ids) = self.users.get_mut(&m.user) {
                ids.retain(|&c| c != id);
                if ids.is_empty() {
                    self.users.remove(&m.user);
                }
            }
        }
    }
}

/// The relay's state.
pub struct Hub {
    apps: Mutex<HashMap<String, App>>,
    next_conn: AtomicU64,
    next_msg: AtomicU64,
    epoch: String,
    queue: usize,
}

impl Hub {
    /// An empty hub whose connections queue at most `queue` frames each.
    pub fn new(queue: usize) -> Self {
        Self {
            apps: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            next_msg: AtomicU64::new(1),
            epoch: format!("{:x}", unix_millis()),
            queue: queue.max(1),
        }
    }

    /// Adds a connection of `user` in `app`.
    pub fn register(&self, app: &str, user: &str) -> Result<Registration> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue);
        let mut apps = self.apps.lock().map_err(|_| anyhow!("hub lock poisoned"))?;
        let a = apps.entry(app.to_string()).or_default();
        a.conns.insert(
            id,
            Member {
                user: user.to_string(),
                tx,
            },
        );
        a.users.entry(user.to_string()).or_default().push(id);
        Ok(Registration { id, rx })
    }

    /// Removes a connection (no-op if the hub already dropped it).
    pub fn unregister(&self, app: &str, id: u64) {
        if let Ok(mut apps) = self.apps.lock() {
            if let Some(a) = apps.get_mut(app) {
                a.remove(id);
            }
        }
    }

    /// Queues one message to its recipients; drops recipients whose queue is full.
    pub fn publish(&self, req: &PushRequest) -> Result<PushOutcome> {
        let id = self.next_msg.fetch_add(1, Ordering::Relaxed);
        let id_text = id.to_string();
        let null = RawValue::NULL;
        let data = req.data.as_deref().unwrap_or(null);
        let broadcast = req.to == "*";
        let ch = if broadcast {
            format!("{}:all", req.app)
        } else {
            format!("{}:user:{}", req.app, req.to)
        };

        let mut apps = self.apps.lock().map_err(|_| anyhow!("hub lock poisoned"))?;
        let app = apps.entry(req.app.clone()).or_default();
        let off_slot = app.offsets.entry(ch.clone()).or_insert(0);
        let off = *off_slot;
        *off_slot += 1;
        let frame = Message::Text(
            MsgFrame {
                kind: "msg",
                ch: &ch,
                epoch: &self.epoch,
                off,
                id: &id_text,
                event: &req.event,
                data,
                ts: unix_millis(),
            }
            .encode()?,
        );

        let targets: Vec<u64> = if broadcast {
            app.conns.keys().copied().collect()
        } else {
            app.users.get(&req.to).cloned().unwrap_or_default()
        };
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        for cid in targets {
            let Some(member) = app.conns.get(&cid) else {
                continue;
            };
            match member.tx.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(TrySendError::Full(_)) => overflowed.push(cid),
                Err(TrySendError::Closed(_)) => {}
            }
        }
        for cid in overflowed {
            app.remove(cid);
        }
        Ok(PushOutcome { id, delivered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(to: &str, data: &str) -> PushRequest {
        PushRequest {
            app: "demo".into(),
            to: to.into(),
            event: "e".into(),
            data: Some(RawValue::from_string(data.into()).unwrap()),
        }
    }

    #[test]
    fn broadcast_and_unicast_routing() {
        let hub = Hub::new(8);
        let mut a = hub.register("demo", "alice").unwrap();
        let mut a2 = hub.register("demo", "alice").unwrap();
        let mut b = hub.register("demo", "bob").unwrap();
        let mut other = hub.register("other", "alice").unwrap();

        assert_eq!(hub.publish(&req("*", "1")).unwrap().delivered, 3);
        assert_eq!(hub.publish(&req("alice", "2")).unwrap().delivered, 2);
        assert_eq!(hub.publish(&req("nobody", "3")).unwrap().delivered, 0);

        let text = |m: Message| m.into_text().unwrap().to_string();
        let first = text(a.rx.try_recv().unwrap());
        assert!(first.contains(r#""ch":"demo:all""#), "{first}");
        assert!(first.contains(r#""off":0"#));
        let second = text(a.rx.try_recv().unwrap());
        assert!(second.contains(r#""ch":"demo:user:alice""#), "{second}");
        assert!(second.contains(r#""data":2"#));
        assert!(a2.rx.try_recv().is_ok() && a2.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_err());
        assert!(other.rx.try_recv().is_err());

        // The next broadcast on the same channel gets the next offset.
        hub.publish(&req("*", "4")).unwrap();
        assert!(text(b.rx.try_recv().unwrap()).contains(r#""off":1"#));
    }

    #[test]
    fn full_queue_drops_the_connection() {
        let hub = Hub::new(1);
        let mut slow = hub.register("demo", "s").unwrap();
        assert_eq!(hub.publish(&req("*", "1")).unwrap().delivered, 1);
        assert_eq!(hub.publish(&req("*", "2")).unwrap().delivered, 0);
        assert!(slow.rx.try_recv().is_ok());
        // The sender was dropped: the receiver now reports closed.
        assert!(matches!(
            slow.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(hub.publish(&req("*", "3")).unwrap().delivered, 0);
    }

    #[test]
    fn unregister_removes_user_index() {
        let hub = Hub::new(4);
        let r = hub.register("demo", "x").unwrap();
        hub.unregister("demo", r.id);
        assert_eq!(hub.publish(&req("x", "1")).unwrap().delivered, 0);
        assert_eq!(hub.publish(&req("*", "1")).unwrap().delivered, 0);
    }
}
