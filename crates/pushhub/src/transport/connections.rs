//! Every live client connection of a server, so shutdown can close them all.
//!
//! Connections are told to close through their outbox, the one thing their task already
//! waits on. Waiting on a shared cancellation token instead would make every one of
//! thousands of tasks register with one shared waiter list on every wake-up.

use std::sync::{Arc, Mutex};

use slab::Slab;

use crate::disconnect::Disconnect;
use crate::hub::Outbox;
use crate::sync::lock;

#[derive(Default)]
struct Inner {
    live: Slab<Arc<Outbox>>,
    closed: Option<Disconnect>,
}

/// The set of live connections' outboxes.
#[derive(Default, Clone)]
pub struct Connections {
    inner: Arc<Mutex<Inner>>,
}

/// Keeps a connection in the set; leaving the set happens on drop.
pub struct Registration {
    set: Connections,
    key: usize,
}

impl Connections {
    /// Add `outbox`. If the set was already closed, the connection is told to close at once.
    pub fn register(&self, outbox: &Arc<Outbox>) -> Registration {
        let mut inner = lock(&self.inner);
        if let Some(reason) = &inner.closed {
            outbox.close(reason.clone());
        }
        let key = inner.live.insert(outbox.clone());
        Registration {
            set: self.clone(),
            key,
        }
    }

    /// Tell every connection, present and future, to close with `reason`.
    pub fn close_all(&self, reason: Disconnect) {
        let mut inner = lock(&self.inner);
        inner.closed = Some(reason.clone());
        for (_, outbox) in inner.live.iter() {
            outbox.close(reason.clone());
        }
    }

    /// How many connections are live (attached to the hub or not).
    pub fn len(&self) -> usize {
        lock(&self.inner).live.len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.set.inner).live.try_remove(self.key);
    }
}
