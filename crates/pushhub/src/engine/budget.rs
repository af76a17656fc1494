//! The memory engine's bound on history bytes: what every kept message costs, and which
//! messages go first when the server or one app holds too much.
//!
//! Size and TTL bound each channel, but nothing bounded the sum: pushes of 1 MB to 400
//! distinct users held 400 MB until their TTL. A [`HistoryBudget`] counts the bytes of
//! every message kept in any channel's history, in total and per app. Each shard of the
//! broker keeps its kept messages in keeping order in [`ShardQueues`], under the lock the
//! publish already holds, so counting costs the publish path no lock of its own. When a
//! bound is exceeded, the broker evicts the oldest kept message (over all shards for the
//! total bound, within the app for the app's bound) by comparing the shards' oldest, one
//! per shard: eviction costs time in the number of messages evicted, never a scan over
//! channels.
//!
//! Each kept message holds a [`Charge`]. Dropping it (TTL, size, a forgotten stream)
//! gives its bytes back; eviction takes them back first, so bytes are never counted
//! twice. The queues may still name messages that left their channel some other way:
//! those entries are skipped when reached and compacted away when they outnumber the
//! live ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::sync::lock;

/// Queues are compacted when they hold more than twice the shard's live entries plus this
/// many: amortised O(1) per kept message, and no work at all for small queues.
const COMPACT_SLACK: usize = 1024;

/// Bytes counted, in total or for one app. Shared by every charge, so a charge gives its
/// bytes back without taking a lock.
#[derive(Debug, Default)]
pub struct Held(AtomicUsize);

impl Held {
    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// One app's count, with the count of all apps it adds to: what a kept message gives
/// its bytes back to. One shared handle per message, so keeping one costs a single
/// reference count.
#[derive(Debug)]
struct AppHeld {
    app: Held,
    total: Arc<Held>,
}

/// One kept message's cost, shared between its history entry's [`Charge`] and the queues.
#[derive(Debug)]
struct Token {
    bytes: usize,
    live: AtomicBool,
    held: Arc<AppHeld>,
}

impl Token {
    /// Give the bytes back, once: true for the caller that did.
    fn release(&self) -> bool {
        let was_live = self.live.swap(false, Relaxed);
        if was_live {
            self.held.total.0.fetch_sub(self.bytes, Relaxed);
            self.held.app.0.fetch_sub(self.bytes, Relaxed);
        }
        was_live
    }

    fn is_live(&self) -> bool {
        self.live.load(Relaxed)
    }
}

/// What one kept message costs the budget, held by its history entry: dropped when the
/// entry leaves its channel, giving the bytes back.
#[derive(Debug)]
pub struct Charge(Arc<Token>);

impl Charge {
    /// True once the budget evicted the message: its channel must drop it and report
    /// the gap to clients resuming from before it.
    pub fn evicted(&self) -> bool {
        !self.0.is_live()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A kept message in eviction order, with when it was kept and the channel keeping it.
#[derive(Debug)]
struct Entry {
    at: Instant,
    token: Arc<Token>,
    channel: Arc<str>,
}

/// Kept messages of one app in one shard, oldest first.
#[derive(Debug)]
struct AppQueue {
    held: Arc<AppHeld>,
    entries: VecDeque<Entry>,
}

/// The kept messages of one shard of the broker, oldest first, overall and per app. Used
/// only under the shard's lock.
#[derive(Debug, Default)]
pub struct ShardQueues {
    all: VecDeque<Entry>,
    apps: HashMap<Arc<str>, AppQueue>,
}

impl ShardQueues {
    /// When the oldest live message kept here (of `app`, or of any app) was kept.
    pub fn oldest(&mut self, app: Option<&str>) -> Option<Instant> {
        let entries = self.entries(app)?;
        drop_dead_front(entries);
        entries.front().map(|entry| entry.at)
    }

    /// Evict the oldest live message kept here (of `app`, or of any app): its bytes are
    /// given back now. Returns its channel, which must drop it, and the bytes its app
    /// holds now.
    pub fn evict_oldest(&mut self, app: Option<&str>) -> Option<(Arc<str>, usize)> {
        let entries = self.entries(app)?;
        while let Some(entry) = entries.pop_front() {
            if entry.token.release() {
                return Some((entry.channel, entry.token.held.app.bytes()));
            }
        }
        None
    }

    fn entries(&mut self, app: Option<&str>) -> Option<&mut VecDeque<Entry>> {
        match app {
            None => Some(&mut self.all),
            Some(app) => self.apps.get_mut(app).map(|queue| &mut queue.entries),
        }
    }

    /// Drop entries of messages that left their channel some other way (TTL, size, a
    /// forgotten stream), given that the shard's channels keep `live` messages now, and
    /// the queues of apps that keep nothing here. Cheap when there is little to drop:
    /// entries at the fronts go one by one, the rest only once they outnumber the live.
    pub fn compact(&mut self, live: usize) {
        compact(&mut self.all, live);
        self.apps.retain(|_, queue| {
            compact(&mut queue.entries, live);
            !queue.entries.is_empty()
        });
    }
}

fn drop_dead_front(entries: &mut VecDeque<Entry>) {
    while entries.front().is_some_and(|entry| !entry.token.is_live()) {
        entries.pop_front();
    }
}

fn compact(entries: &mut VecDeque<Entry>, live: usize) {
    drop_dead_front(entries);
    if entries.len() > 2 * live + COMPACT_SLACK {
        entries.retain(|entry| entry.token.is_live());
    }
}

/// Counts of what a budget holds, for `/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Bytes of history held now.
    pub bytes: u64,
    /// Messages evicted by a bound since start.
    pub evictions: u64,
}

/// The bound on history bytes of one memory broker: in total over all apps, and per app
/// (given with each publish, from the app's settings).
#[derive(Debug)]
pub struct HistoryBudget {
    max_total: usize,
    total: Arc<Held>,
    evictions: AtomicU64,
    /// Each app's count, shared by its queues in every shard; looked up only when an app
    /// first keeps a message in a shard.
    apps: Mutex<HashMap<Arc<str>, Arc<AppHeld>>>,
}

impl HistoryBudget {
    /// A budget that keeps at most `max_total` bytes of history over all apps.
    pub fn new(max_total: usize) -> Self {
        Self {
            max_total,
            total: Arc::default(),
            evictions: AtomicU64::new(0),
            apps: Mutex::default(),
        }
    }

    /// Count `bytes` of a message of `app` kept now in `channel`, whose shard keeps
    /// `queues`. Messages of one channel must be charged in their offset order (the
    /// channel's turn ensures it), so that eviction takes a channel's oldest first.
    /// Returns the charge for the history entry and the bytes the app holds now, to
    /// check against the app's bound.
    pub fn charge(
        &self,
        queues: &mut ShardQueues,
        app: &Arc<str>,
        channel: &Arc<str>,
        bytes: usize,
        at: Instant,
    ) -> (Charge, usize) {
        // Looked up by reference, once: cloning the app's name for every publish would
        // bounce its reference count between the threads publishing for that app.
        let ShardQueues { all, apps } = queues;
        if let Some(queue) = apps.get_mut(app.as_ref()) {
            return self.keep(queue, all, channel, bytes, at);
        }
        let held = lock(&self.apps)
            .entry(app.clone())
            .or_insert_with(|| {
                Arc::new(AppHeld {
                    app: Held::default(),
                    total: self.total.clone(),
                })
            })
            .clone();
        let queue = apps.entry(app.clone()).or_insert(AppQueue {
            held,
            entries: VecDeque::new(),
        });
        self.keep(queue, all, channel, bytes, at)
    }

    /// [`Self::charge`] once the app's queue in the shard is found.
    fn keep(
        &self,
        queue: &mut AppQueue,
        all: &mut VecDeque<Entry>,
        channel: &Arc<str>,
        bytes: usize,
        at: Instant,
    ) -> (Charge, usize) {
        self.total.0.fetch_add(bytes, Relaxed);
        let app_bytes = queue.held.app.0.fetch_add(bytes, Relaxed) + bytes;
        let token = Arc::new(Token {
            bytes,
            live: AtomicBool::new(true),
            held: queue.held.clone(),
        });
        let entry = || Entry {
            at,
            token: token.clone(),
            channel: channel.clone(),
        };
        queue.entries.push_back(entry());
        all.push_back(entry());
        (Charge(token), app_bytes)
    }

    /// True while all apps together hold more than the total bound.
    pub fn over_total(&self) -> bool {
        self.total.bytes() > self.max_total
    }

    /// True once all apps together hold at most `bytes` less than the total bound.
    pub fn below_total_by(&self, bytes: usize) -> bool {
        self.total.bytes() <= self.max_total.saturating_sub(bytes)
    }

    /// The bound on all apps together.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Count `count` evictions.
    pub fn evicted(&self, count: u64) {
        self.evictions.fetch_add(count, Relaxed);
    }

    /// Forget the counts of apps that keep nothing anywhere.
    pub fn forget_idle_apps(&self) {
        lock(&self.apps).retain(|_, held| Arc::strong_count(held) > 1);
    }

    /// Bytes held and evictions so far.
    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            bytes: self.total.bytes() as u64,
            evictions: self.evictions.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn charges_count_until_dropped_or_evicted_and_never_twice() {
        let budget = HistoryBudget::new(250);
        let mut queues = ShardQueues::default();
        let app = name("a");
        let now = Instant::now();
        let (first, held) = budget.charge(&mut queues, &app, &name("a:user:1"), 100, now);
        assert_eq!(held, 100);
        let (second, _) = budget.charge(&mut queues, &app, &name("a:user:2"), 100, now);
        assert!(!budget.over_total());
        let (_third, held) = budget.charge(&mut queues, &app, &name("a:user:3"), 100, now);
        assert!(budget.over_total());
        assert_eq!(held, 300);
        assert_eq!(queues.evict_oldest(None), Some((name("a:user:1"), 200)));
        assert!(first.evicted() && !second.evicted());
        assert_eq!(budget.stats().bytes, 200);
        drop(first);
        assert_eq!(
            budget.stats().bytes,
            200,
            "an evicted charge is not given back twice"
        );
        drop(second);
        assert_eq!(budget.stats().bytes, 100);
        assert_eq!(
            queues.evict_oldest(Some("a")),
            Some((name("a:user:3"), 0)),
            "the app's queue skips what left some other way"
        );
        assert_eq!(queues.evict_oldest(None), None);
    }

    #[test]
    fn an_apps_queue_holds_only_that_apps_messages() {
        let budget = HistoryBudget::new(usize::MAX);
        let mut queues = ShardQueues::default();
        let (big, small) = (name("big"), name("small"));
        let now = Instant::now();
        let (other, _) = budget.charge(&mut queues, &small, &name("small:all"), 100, now);
        let (old, _) = budget.charge(&mut queues, &big, &name("big:user:1"), 100, now);
        assert_eq!(queues.oldest(Some("big")), Some(now));
        assert_eq!(
            queues.evict_oldest(Some("big")),
            Some((name("big:user:1"), 0))
        );
        assert!(old.evicted() && !other.evicted());
        assert_eq!(
            budget.stats().bytes,
            100,
            "the other app's message is still held"
        );
        assert_eq!(queues.oldest(Some("big")), None);
        assert_eq!(queues.oldest(Some("nobody")), None);
    }

    #[test]
    fn entries_of_messages_gone_otherwise_are_compacted_away() {
        let budget = HistoryBudget::new(usize::MAX);
        let mut queues = ShardQueues::default();
        let app = name("a");
        let now = Instant::now();
        let (oldest, _) = budget.charge(&mut queues, &app, &name("a:keep"), 1, now);
        for _ in 0..3 * COMPACT_SLACK {
            drop(budget.charge(&mut queues, &app, &name("a:all"), 1, now));
        }
        queues.compact(1);
        assert_eq!(queues.all.len(), 1);
        assert_eq!(queues.apps[&app].entries.len(), 1);
        assert!(!oldest.evicted());
        drop(oldest);
        queues.compact(0);
        assert!(queues.all.is_empty() && queues.apps.is_empty());
        budget.forget_idle_apps();
        assert!(lock(&budget.apps).is_empty());
    }
}
