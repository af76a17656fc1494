//! The in-memory engine: the default, single node only (use a Redis engine to scale out).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Broker, DeliverLocal, EngineError, Presence, StreamPosition};
use crate::hub::message::Message;

/// Number of independently locked stream maps, so publishes to different channels from
/// different threads rarely contend.
const STREAM_SHARDS: usize = 16;

#[derive(Debug)]
struct Stream {
    epoch: Arc<str>,
    offset: u64,
}

/// Channel streams held in this process. Offsets live as long as the process; a restart
/// starts every channel in a new epoch, which is exactly what clients need to know.
pub struct MemoryBroker {
    shards: Box<[Mutex<HashMap<String, Stream>>]>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self {
            shards: (0..STREAM_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    /// The shard holding `channel`. A std mutex is right here: nothing awaits while it is held.
    fn shard(&self, channel: &str) -> MutexGuard<'_, HashMap<String, Stream>> {
        let index = crate::hub::registry::hash_str(channel) as usize % self.shards.len();
        lock(&self.shards[index])
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

/// A new random epoch name: short, URL-safe, unlikely to repeat across restarts.
fn new_epoch() -> Arc<str> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| alphabet[fastrand::usize(..alphabet.len())] as char)
        .collect::<String>()
        .into()
}

/// Lock a mutex, recovering the data if another thread panicked while holding it: the maps
/// here stay consistent at every step, so a poisoned lock carries no broken invariant.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish(
        &self,
        channel: &str,
        _message: &Message,
        deliver: DeliverLocal<'_>,
    ) -> Result<StreamPosition, EngineError> {
        let mut streams = self.shard(channel);
        let stream = streams.entry(channel.to_owned()).or_insert_with(|| Stream {
            epoch: new_epoch(),
            offset: 0,
        });
        stream.offset += 1;
        let position = StreamPosition {
            epoch: stream.epoch.clone(),
            offset: stream.offset,
        };
        deliver(&position);
        Ok(position)
    }

    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError> {
        let mut streams = self.shard(channel);
        let stream = streams.entry(channel.to_owned()).or_insert_with(|| Stream {
            epoch: new_epoch(),
            offset: 0,
        });
        Ok(StreamPosition {
            epoch: stream.epoch.clone(),
            offset: stream.offset,
        })
    }
}

/// Online users of every app, counted per connection.
#[derive(Default)]
pub struct MemoryPresence {
    apps: Mutex<HashMap<String, BTreeMap<String, usize>>>,
}

#[async_trait]
impl Presence for MemoryPresence {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn join(&self, app: &str, user: &str, _conn: u64) -> Result<(), EngineError> {
        let mut apps = lock(&self.apps);
        *apps
            .entry(app.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_default() += 1;
        Ok(())
    }

    async fn leave(&self, app: &str, user: &str, _conn: u64) -> Result<(), EngineError> {
        let mut apps = lock(&self.apps);
        if let Some(users) = apps.get_mut(app) {
            if let Some(count) = users.get_mut(user) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    users.remove(user);
                }
            }
            if users.is_empty() {
                apps.remove(app);
            }
        }
        Ok(())
    }

    async fn users(&self, app: &str) -> Result<Vec<(String, usize)>, EngineError> {
        let apps = lock(&self.apps);
        Ok(apps
            .get(app)
            .map(|users| users.iter().map(|(u, c)| (u.clone(), *c)).collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::message::Message;

    #[tokio::test]
    async fn offsets_grow_by_one_per_channel_and_epoch_is_stable() {
        let broker = MemoryBroker::new();
        let msg = Message::for_test("x");
        let mut delivered = Vec::new();
        let mut deliver = |p: &StreamPosition| delivered.push(p.offset);
        let a1 = broker.publish("a", &msg, &mut deliver).await.unwrap();
        let a2 = broker.publish("a", &msg, &mut deliver).await.unwrap();
        let b1 = broker.publish("b", &msg, &mut deliver).await.unwrap();
        assert_eq!(delivered, [1, 2, 1]);
        assert_eq!((a1.offset, a2.offset, b1.offset), (1, 2, 1));
        assert_eq!(a1.epoch, a2.epoch);
        assert_eq!(broker.position("a").await.unwrap(), a2);
        assert_eq!(broker.position("never").await.unwrap().offset, 0);
    }

    #[tokio::test]
    async fn presence_counts_connections_and_forgets_empty_users() {
        let presence = MemoryPresence::default();
        presence.join("app", "u1", 1).await.unwrap();
        presence.join("app", "u1", 2).await.unwrap();
        presence.join("app", "u2", 3).await.unwrap();
        assert_eq!(
            presence.users("app").await.unwrap(),
            vec![("u1".to_owned(), 2), ("u2".to_owned(), 1)]
        );
        presence.leave("app", "u1", 1).await.unwrap();
        presence.leave("app", "u1", 2).await.unwrap();
        assert_eq!(
            presence.users("app").await.unwrap(),
            vec![("u2".to_owned(), 1)]
        );
        presence.leave("app", "u2", 3).await.unwrap();
        assert!(presence.users("app").await.unwrap().is_empty());
    }
}
