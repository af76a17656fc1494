//! Which channels this node wants from the broker: the count of local connections in each
//! channel, so the hub subscribes a channel when its first local connection joins and
//! unsubscribes it when the last one leaves (one broker subscription per node per channel,
//! however many connections share it).
//!
//! Sharded by channel (a stable hash), so connects of different users rarely meet on one
//! lock; a std mutex, since nothing awaits while it is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::stable_hash::stable_hash;
use crate::sync::lock;

const SHARDS: usize = 32;

/// One shard: local connections per channel.
type Counts = Mutex<HashMap<Arc<str>, usize>>;

/// Local connection counts per channel.
pub struct Interest {
    shards: Box<[Counts]>,
}

impl Interest {
    /// No interest in anything.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, channel: &str) -> &Counts {
        &self.shards[stable_hash(channel) as usize % SHARDS]
    }

    /// One more local connection in each of `channels`; returns those that had none (the
    /// broker must now subscribe them).
    pub fn join(&self, channels: &[Arc<str>]) -> Vec<Arc<str>> {
        let mut first = Vec::new();
        for channel in channels {
            let mut shard = lock(self.shard(channel));
            let count = shard.entry(channel.clone()).or_default();
            *count += 1;
            if *count == 1 {
                first.push(channel.clone());
            }
        }
        first
    }

    /// One local connection fewer in each of `channels`; returns those that now have none
    /// (the broker may unsubscribe them).
    pub fn leave(&self, channels: &[Arc<str>]) -> Vec<Arc<str>> {
        let mut last = Vec::new();
        for channel in channels {
            let mut shard = lock(self.shard(channel));
            if let Some(count) = shard.get_mut(channel) {
                *count -= 1;
                if *count == 0 {
                    shard.remove(channel);
                    last.push(channel.clone());
                }
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_join_and_last_leave_are_reported_once() {
        let interest = Interest::new();
        let (a, b): (Arc<str>, Arc<str>) = ("x:all".into(), "x:user:1".into());
        assert_eq!(
            interest.join(&[a.clone(), b.clone()]),
            [a.clone(), b.clone()]
        );
        assert_eq!(
            interest.join(std::slice::from_ref(&a)),
            Vec::<Arc<str>>::new()
        );
        assert_eq!(interest.leave(&[a.clone(), b.clone()]), [b]);
        assert_eq!(
            interest.leave(std::slice::from_ref(&a)),
            [a.clone()].as_slice()
        );
        assert!(interest.leave(&[a]).is_empty(), "no interest left to drop");
    }
}
