//! Local subscriptions: which connections on this node are in which channel.
//!
//! Sharded by user: all connections of one user live in one shard, so a push to a user
//! locks one shard, while a push to `all` or a group visits the shards one at a time.
//! A publish to 100k connections therefore never holds one lock for its whole duration,
//! and a connect waits at most for one shard's share of a fan-out.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use super::outbox::Outbox;
use super::render::Render;
use crate::engine::memory::lock;

/// Identity of one connection on this node.
pub type ConnId = u64;

/// Shards: enough that 2–16 cores rarely meet on one lock, few enough that a broadcast's
/// walk over all of them is cheap.
const SHARDS: usize = 32;

/// What fan-out needs of a connection: where to queue, and in which format.
pub struct Subscriber {
    /// The connection's id.
    pub id: ConnId,
    /// Its send queue.
    pub outbox: Arc<Outbox>,
    /// Its wire format.
    pub renderer: Arc<dyn Render>,
}

type Members = HashMap<ConnId, Arc<Subscriber>>;
/// One shard: channel name → its members in this shard.
type Shard = Mutex<HashMap<Arc<str>, Members>>;

/// Connections per channel, sharded by user.
pub struct Registry {
    shards: Box<[Shard]>,
}

/// A stable hash for sharding; not for security.
pub fn hash_str(s: &str) -> u64 {
    static STATE: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let mut h = STATE
        .get_or_init(std::hash::RandomState::new)
        .build_hasher();
    h.write(s.as_bytes());
    h.finish()
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The shard key of a user: every connection and the user channel of one user share it.
    pub fn home(app: &str, user: &str) -> u64 {
        hash_str(app) ^ hash_str(user).rotate_left(17)
    }

    fn shard(&self, home: u64) -> &Shard {
        &self.shards[(home % SHARDS as u64) as usize]
    }

    /// Put `sub` in every channel of `channels`, in its user's shard.
    pub fn subscribe(&self, home: u64, channels: &[Arc<str>], sub: &Arc<Subscriber>) {
        let mut shard = lock(self.shard(home));
        for channel in channels {
            shard
                .entry(channel.clone())
                .or_default()
                .insert(sub.id, sub.clone());
        }
    }

    /// Take connection `id` out of `channels`; empty channels are forgotten.
    pub fn unsubscribe(&self, home: u64, channels: &[Arc<str>], id: ConnId) {
        let mut shard = lock(self.shard(home));
        for channel in channels {
            if let Some(members) = shard.get_mut(channel) {
                members.remove(&id);
                if members.is_empty() {
                    shard.remove(channel);
                }
            }
        }
    }

    /// Call `f` for each local member of `channel`. With `home`, only that user's shard is
    /// visited (user channels); without, every shard, one lock at a time.
    pub fn for_each(&self, channel: &str, home: Option<u64>, mut f: impl FnMut(&Arc<Subscriber>)) {
        let mut visit = |shard: &Shard| {
            let shard = lock(shard);
            if let Some(members) = shard.get(channel) {
                members.values().for_each(&mut f);
            }
        };
        match home {
            Some(home) => visit(self.shard(home)),
            None => self.shards.iter().for_each(visit),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}
