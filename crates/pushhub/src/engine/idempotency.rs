//! Idempotent publishes: a push retried with the same idempotency key within a window is
//! published once, and the retry gets the first push's answer again.
//!
//! Backends retry a push whose answer was lost; without this every retry would be one more
//! message in every client's history. The key is claimed before the publish (so two
//! concurrent tries cannot both publish) and settled with the answer after it. The memory
//! engine keeps keys in this process, bounded in number; the Redis engine keeps them in
//! Redis with a TTL, so a retry that lands on another node is answered the same.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{EngineError, StreamPosition};
use crate::sync::lock;

/// How long a settled key answers retries: a retry later than this publishes again.
pub const WINDOW: Duration = Duration::from_secs(600);

/// How long a claimed key whose publish never settled (its caller went away halfway)
/// blocks retries before one may publish.
pub const PENDING_FOR: Duration = Duration::from_secs(30);

/// How long a retry waits for a concurrent first try to settle before it is told to come
/// back ([`Claim::Busy`]).
pub const WAIT_FOR_FIRST: Duration = Duration::from_secs(5);

/// Most keys the memory engine keeps; past it the oldest go first (a retry of one of them
/// publishes again, as after the window).
pub const MAX_MEMORY_KEYS: usize = 100_000;

/// The answer of a first publish, kept for its retries: plain data with a stable
/// serialized form (the Redis engine stores it as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The message id.
    pub id: String,
    /// Connections it reached.
    pub delivered: u64,
    /// Each channel and the position the message got there.
    pub positions: Vec<(String, StreamPosition)>,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody published with this key within the window: the caller publishes, then
    /// [`Idempotency::settle`]s (or [`Idempotency::release`]s when the publish failed).
    First,
    /// A push with this key was published: its answer.
    Done(Outcome),
    /// A first try with this key is still publishing after [`WAIT_FOR_FIRST`].
    Busy,
}

/// Idempotency keys, claimed and settled; keys are already scoped by the caller (an app's
/// keys never meet another's).
#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Claim `key`; waits up to [`WAIT_FOR_FIRST`] while another try holds it.
    async fn claim(&self, key: &str) -> Result<Claim, EngineError>;

    /// Record the first try's answer: retries within [`WINDOW`] get it.
    async fn settle(&self, key: &str, outcome: &Outcome) -> Result<(), EngineError>;

    /// Give up a claim whose publish failed: the next try publishes.
    async fn release(&self, key: &str) -> Result<(), EngineError>;
}

/// Keys held in this process: the memory engine's.
#[derive(Default)]
pub struct MemoryIdempotency {
    state: Mutex<Keys>,
    /// Wakes the retries waiting on a first try whenever any try settles or gives up, so
    /// a retry answers as soon as its first try has.
    settled: Notify,
}

#[derive(Default)]
struct Keys {
    by_key: HashMap<String, (Instant, Option<Outcome>)>,
    /// Keys in claim order, with the instant they were claimed (the first to go when full
    /// or expired; a stale entry whose key was claimed again since is skipped).
    order: VecDeque<(Instant, String)>,
}

impl Keys {
    /// Drop expired keys and, past the bound, the oldest.
    fn prune(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let live = self
                .by_key
                .get(key)
                .filter(|(claimed, _)| claimed == at)
                .map(|(_, outcome)| outcome.is_some());
            let expired = match live {
                None => true,
                Some(true) => now.duration_since(*at) >= WINDOW,
                Some(false) => now.duration_since(*at) >= PENDING_FOR,
            };
            if !expired && self.by_key.len() < MAX_MEMORY_KEYS {
                break;
            }
            if live.is_some() {
                self.by_key.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// Claim `key` now, or say what holds it.
    fn claim(&mut self, key: &str, now: Instant) -> Option<Claim> {
        self.prune(now);
        match self.by_key.get(key) {
            Some((_, Some(outcome))) => Some(Claim::Done(outcome.clone())),
            Some((claimed, None)) if now.duration_since(*claimed) < PENDING_FOR => None,
            _ => {
                self.by_key.insert(key.to_owned(), (now, None));
                self.order.push_back((now, key.to_owned()));
                Some(Claim::First)
            }
        }
    }
}

#[async_trait]
impl Idempotency for MemoryIdempotency {
    async fn claim(&self, key: &str) -> Result<Claim, EngineError> {
        let deadline = Instant::now() + WAIT_FOR_FIRST;
        loop {
            // Listening before looking: a settle between the look and the wait still wakes.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let now = Instant::now();
            if let Some(claim) = lock(&self.state).claim(key, now) {
                return Ok(claim);
            }
            if now >= deadline {
                return Ok(Claim::Busy);
            }
            // Past the deadline the loop looks once more: a first try that went away
            // unsettled may have expired meanwhile.
            let _ = tokio::time::timeout_at(deadline, settled).await;
        }
    }

    async fn settle(&self, key: &str, outcome: &Outcome) -> Result<(), EngineError> {
        if let Some((_, slot)) = lock(&self.state).by_key.get_mut(key) {
            *slot = Some(outcome.clone());
        }
        self.settled.notify_waiters();
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), EngineError> {
        lock(&self.state).by_key.remove(key);
        self.settled.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: &str) -> Outcome {
        Outcome {
            id: id.into(),
            delivered: 1,
            positions: vec![(
                "a:user:1".into(),
                StreamPosition {
                    epoch: "e".into(),
                    offset: 3,
                },
            )],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_settled_key_answers_within_the_window_and_publishes_again_after() {
        let keys = MemoryIdempotency::default();
        assert_eq!(keys.claim("k").await.unwrap(), Claim::First);
        keys.settle("k", &outcome("m-1")).await.unwrap();
        assert_eq!(keys.claim("k").await.unwrap(), Claim::Done(outcome("m-1")));
        tokio::time::advance(WINDOW).await;
        assert_eq!(keys.claim("k").await.unwrap(), Claim::First);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_key_makes_a_retry_wait_then_busy_and_a_release_frees_it() {
        let keys = MemoryIdempotency::default();
        assert_eq!(keys.claim("k").await.unwrap(), Claim::First);
        assert_eq!(keys.claim("k").await.unwrap(), Claim::Busy);
        keys.release("k").await.unwrap();
        assert_eq!(keys.claim("k").await.unwrap(), Claim::First);
        tokio::time::advance(PENDING_FOR).await;
        assert_eq!(keys.claim("k").await.unwrap(), Claim::First);
    }

    /// A retry waiting on a first try answers the moment it settles, not a poll later.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_retry_answers_as_soon_as_the_first_try_settles() {
        let keys = std::sync::Arc::new(MemoryIdempotency::default());
        assert_eq!(keys.claim("k").await.unwrap(), Claim::First);
        let retry = tokio::spawn({
            let keys = keys.clone();
            async move { keys.claim("k").await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let settled_at = Instant::now();
        keys.settle("k", &outcome("m-1")).await.unwrap();
        assert_eq!(retry.await.unwrap(), Claim::Done(outcome("m-1")));
        assert_eq!(
            Instant::now(),
            settled_at,
            "the retry waited past the settle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_oldest_first() {
        let keys = MemoryIdempotency::default();
        for i in 0..MAX_MEMORY_KEYS + 10 {
            let key = i.to_string();
            assert_eq!(keys.claim(&key).await.unwrap(), Claim::First);
            keys.settle(&key, &outcome("m")).await.unwrap();
        }
        assert!(lock(&keys.state).by_key.len() <= MAX_MEMORY_KEYS);
        assert_eq!(keys.claim("0").await.unwrap(), Claim::First);
        assert_eq!(
            keys.claim(&(MAX_MEMORY_KEYS + 9).to_string())
                .await
                .unwrap(),
            Claim::Done(outcome("m"))
        );
    }
}
