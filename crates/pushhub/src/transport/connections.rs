//! Every live client connection of a server, so shutdown can close them all, and how many
//! each client address holds, so one host cannot take them all.
//!
//! Connections are told to close through their outbox, the one thing their task already
//! waits on. Waiting on a shared cancellation token instead would make every one of
//! thousands of tasks register with one shared waiter list on every wake-up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use slab::Slab;

use crate::disconnect::Disconnect;
use crate::hub::Outbox;
use crate::sync::lock;

#[derive(Default)]
struct Inner {
    live: Slab<Arc<Outbox>>,
    closed: Option<Disconnect>,
    per_address: HashMap<IpAddr, usize>,
}

/// The set of live connections' outboxes.
#[derive(Default, Clone)]
pub struct Connections {
    inner: Arc<Mutex<Inner>>,
    /// Most connections one client address may hold; 0: no limit.
    max_per_address: usize,
}

/// Keeps a connection in the set (and counted against its address); leaving happens on
/// drop.
pub struct Registration {
    set: Connections,
    key: usize,
    address: Option<IpAddr>,
}

impl Connections {
    /// An empty set that lets one client address hold at most `max_per_address`
    /// connections (0: any number).
    pub fn with_address_limit(max_per_address: usize) -> Self {
        Self {
            max_per_address,
            ..Self::default()
        }
    }

    /// Add `outbox`, the connection of a client at `address` (when known and limited).
    /// If the set was already closed, the connection is told to close at once. Refused
    /// with [`Disconnect::ADDRESS_FULL`] when the address holds its limit already; the
    /// check and the count happen under one lock, so racing connections cannot overshoot.
    pub fn register(
        &self,
        outbox: &Arc<Outbox>,
        address: Option<IpAddr>,
    ) -> Result<Registration, Disconnect> {
        let mut inner = lock(&self.inner);
        let address = address.filter(|_| self.max_per_address > 0);
        if let Some(ip) = address {
            let held = inner.per_address.entry(ip).or_default();
            if *held >= self.max_per_address {
                return Err(Disconnect::ADDRESS_FULL.with_reason(format!(
                    "too many connections from this address (at most {})",
                    self.max_per_address
                )));
            }
            *held += 1;
        }
        Ok(self.insert(&mut inner, outbox, address))
    }

    /// Add `outbox` without counting it against an address: a connection that is only
    /// being told why it is refused.
    pub fn register_refused(&self, outbox: &Arc<Outbox>) -> Registration {
        let mut inner = lock(&self.inner);
        self.insert(&mut inner, outbox, None)
    }

    fn insert(
        &self,
        inner: &mut Inner,
        outbox: &Arc<Outbox>,
        address: Option<IpAddr>,
    ) -> Registration {
        if let Some(reason) = &inner.closed {
            outbox.close(reason.clone());
        }
        let key = inner.live.insert(outbox.clone());
        Registration {
            set: self.clone(),
            key,
            address,
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
        let mut inner = lock(&self.set.inner);
        inner.live.try_remove(self.key);
        if let Some(ip) = self.address {
            if let Some(held) = inner.per_address.get_mut(&ip) {
                *held -= 1;
                if *held == 0 {
                    inner.per_address.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::OutboxLimits;

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(OutboxLimits {
            max_messages: 1,
            max_bytes: 1,
        }))
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_slots_back() {
        let set = Connections::with_address_limit(2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = set.register(&outbox(), Some(a)).unwrap();
        let _second = set.register(&outbox(), Some(a)).unwrap();
        let refused = set.register(&outbox(), Some(a)).err().unwrap();
        assert_eq!(refused.code, Disconnect::ADDRESS_FULL.code);
        assert!(
            set.register(&outbox(), Some(b)).is_ok(),
            "other addresses are not affected"
        );
        assert!(
            set.register(&outbox(), None).is_ok(),
            "unknown addresses are not limited"
        );
        drop(first);
        assert!(set.register(&outbox(), Some(a)).is_ok());
        assert!(Connections::default().register(&outbox(), Some(a)).is_ok());
    }
}
