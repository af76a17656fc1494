//! The memory engine's bound on history bytes: what every kept message costs, and which
//! messages go first when the server or one app holds too much.
//!
//! Size and TTL bound each channel, but nothing bounded the sum: pushes of 1 MB to 400
//! distinct users held 400 MB until their TTL. A [`HistoryBudget`] counts the bytes of
//! every message kept in any channel's history, in total and per app, and keeps them in
//! the order they were kept. When a bound is exceeded, the oldest kept messages (over all
//! channels for the total bound, within the app for the app's bound) are marked evicted,
//! and their channels drop them: eviction costs time in the number of messages evicted,
//! never a scan over channels.
//!
//! Each kept message holds a [`Charge`]. Dropping it (TTL, size, a forgotten stream)
//! gives its bytes back; eviction takes them back first, so bytes are never counted
//! twice. The queues may still name messages that left their channel some other way:
//! those entries are skipped when reached and compacted away when they outnumber the
//! live ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// Queues are compacted when they hold more than twice their live entries plus this many:
/// amortised O(1) per kept message, and no work at all for small queues.
const COMPACT_SLACK: usize = 1024;

/// Bytes and messages counted, in total or for one app. Shared by every charge, so a
/// charge can give its bytes back without taking a lock.
#[derive(Debug, Default)]
struct Held {
    bytes: AtomicUsize,
    messages: AtomicUsize,
}

impl Held {
    fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Relaxed);
        self.messages.fetch_add(1, Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Relaxed);
        self.messages.fetch_sub(1, Relaxed);
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }
}

/// One kept message's cost, shared between its history entry's [`Charge`] and the queues.
#[derive(Debug)]
struct Token {
    bytes: usize,
    live: AtomicBool,
    held: Arc<Held>,
    app_held: Arc<Held>,
}

impl Token {
    /// Give the bytes back, once: true for the caller that did.
    fn release(&self) -> bool {
        let was_live = self.live.swap(false, Relaxed);
        if was_live {
            self.held.sub(self.bytes);
            self.app_held.sub(self.bytes);
        }
        was_live
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
        !self.0.live.load(Relaxed)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A kept message in eviction order, with the channel that keeps it.
#[derive(Debug)]
struct Entry {
    token: Arc<Token>,
    channel: Arc<str>,
}

/// Kept messages of one app, oldest first.
#[derive(Debug, Default)]
struct AppQueue {
    held: Arc<Held>,
    entries: VecDeque<Entry>,
}

#[derive(Debug, Default)]
struct Queues {
    all: VecDeque<Entry>,
    apps: HashMap<Arc<str>, AppQueue>,
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
    held: Arc<Held>,
    evictions: AtomicU64,
    queues: Mutex<Queues>,
}

impl HistoryBudget {
    /// A budget that keeps at most `max_total` bytes of history over all apps.
    pub fn new(max_total: usize) -> Self {
        Self {
            max_total,
            held: Arc::default(),
            evictions: AtomicU64::new(0),
            queues: Mutex::default(),
        }
    }

    /// Count `bytes` of a message newly kept in `channel` of `app`, then evict the
    /// oldest messages until `app` holds at most `max_app` bytes and all apps together at
    /// most the total bound (the new message included: one larger than a bound is not
    /// kept). Returns the charge for the message's history entry and the channels that
    /// must now drop evicted messages (a channel may be named more than once).
    ///
    /// Messages of one channel must be charged in their offset order (the channel's turn
    /// ensures it), so that eviction always takes a channel's oldest first.
    pub fn charge(
        &self,
        app: &Arc<str>,
        channel: &Arc<str>,
        bytes: usize,
        max_app: usize,
    ) -> (Charge, Vec<Arc<str>>) {
        let mut queues = lock(&self.queues);
        let app_queue = queues.apps.entry(app.clone()).or_default();
        let token = Arc::new(Token {
            bytes,
            live: AtomicBool::new(true),
            held: self.held.clone(),
            app_held: app_queue.held.clone(),
        });
        self.held.add(bytes);
        app_queue.held.add(bytes);
        let entry = || Entry {
            token: token.clone(),
            channel: channel.clone(),
        };
        app_queue.entries.push_back(entry());
        let mut victims = Vec::new();
        evict_over(
            &mut app_queue.entries,
            &app_queue.held,
            max_app,
            &mut victims,
        );
        queues.all.push_back(entry());
        evict_over(&mut queues.all, &self.held, self.max_total, &mut victims);
        self.evictions.fetch_add(victims.len() as u64, Relaxed);
        (Charge(token), victims)
    }

    /// Drop queue entries of messages that left their channel some other way (TTL, size,
    /// a forgotten stream), and the queues of apps that keep nothing. Cheap when there is
    /// little to drop: entries at the fronts go one by one, the rest only once they
    /// outnumber the live ones.
    pub fn compact(&self) {
        let mut queues = lock(&self.queues);
        let Queues { all, apps } = &mut *queues;
        compact(all, &self.held);
        apps.retain(|_, app_queue| {
            compact(&mut app_queue.entries, &app_queue.held);
            !app_queue.entries.is_empty() || Arc::strong_count(&app_queue.held) > 1
        });
    }

    /// Bytes held and evictions so far.
    pub fn stats(&self) -> BudgetStats {
        BudgetStats {
            bytes: self.held.bytes() as u64,
            evictions: self.evictions.load(Relaxed),
        }
    }
}

/// Pop the oldest of `entries` until `held` is within `max`, naming each evicted message's
/// channel in `victims`. Entries of messages already gone are skipped.
fn evict_over(entries: &mut VecDeque<Entry>, held: &Held, max: usize, victims: &mut Vec<Arc<str>>) {
    while held.bytes() > max {
        let Some(entry) = entries.pop_front() else {
            return;
        };
        if entry.token.release() {
            victims.push(entry.channel);
        }
    }
}

/// Drop the entries of messages already gone from the front of `entries`, and from all of
/// it once they outnumber the `held` live ones.
fn compact(entries: &mut VecDeque<Entry>, held: &Held) {
    while entries
        .front()
        .is_some_and(|entry| !entry.token.live.load(Relaxed))
    {
        entries.pop_front();
    }
    if entries.len() > 2 * held.messages.load(Relaxed) + COMPACT_SLACK {
        entries.retain(|entry| entry.token.live.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    const UNBOUNDED: usize = usize::MAX;

    #[test]
    fn the_total_bound_evicts_the_oldest_over_all_channels() {
        let budget = HistoryBudget::new(250);
        let app = name("a");
        let (first, none) = budget.charge(&app, &name("a:user:1"), 100, UNBOUNDED);
        assert!(none.is_empty());
        let (second, none) = budget.charge(&app, &name("a:user:2"), 100, UNBOUNDED);
        assert!(none.is_empty());
        let (third, victims) = budget.charge(&app, &name("a:user:3"), 100, UNBOUNDED);
        assert_eq!(victims, [name("a:user:1")]);
        assert!(first.evicted() && !second.evicted() && !third.evicted());
        assert_eq!(
            budget.stats(),
            BudgetStats {
                bytes: 200,
                evictions: 1
            }
        );
        drop(first);
        assert_eq!(
            budget.stats().bytes,
            200,
            "an evicted charge is not given back twice"
        );
        let (huge, victims) = budget.charge(&app, &name("a:user:4"), 1000, UNBOUNDED);
        assert!(
            huge.evicted(),
            "a message over the bound on its own is not kept"
        );
        assert_eq!(victims.len(), 3);
        assert_eq!(budget.stats().bytes, 0);
    }

    #[test]
    fn an_apps_bound_evicts_only_its_own_oldest() {
        let budget = HistoryBudget::new(UNBOUNDED);
        let (big, small) = (name("big"), name("small"));
        let (other, _) = budget.charge(&small, &name("small:all"), 100, 150);
        let (old, _) = budget.charge(&big, &name("big:user:1"), 100, 150);
        let (new, victims) = budget.charge(&big, &name("big:user:2"), 100, 150);
        assert_eq!(victims, [name("big:user:1")]);
        assert!(old.evicted() && !new.evicted() && !other.evicted());
    }

    #[test]
    fn messages_gone_by_ttl_give_their_bytes_back_and_leave_no_queue_behind() {
        let budget = HistoryBudget::new(UNBOUNDED);
        let app = name("a");
        for round in 0..10 {
            let charges: Vec<Charge> = (0..COMPACT_SLACK)
                .map(|_| budget.charge(&app, &name("a:all"), 1, UNBOUNDED).0)
                .collect();
            assert_eq!(budget.stats().bytes, COMPACT_SLACK as u64, "round {round}");
            drop(charges);
            assert_eq!(budget.stats().bytes, 0);
            budget.compact();
        }
        let queues = lock(&budget.queues);
        assert!(queues.all.is_empty() && queues.apps.is_empty());
    }

    #[test]
    fn entries_gone_from_the_middle_are_compacted_once_they_outnumber_live_ones() {
        let budget = HistoryBudget::new(UNBOUNDED);
        let app = name("a");
        let (oldest, _) = budget.charge(&app, &name("a:keep"), 1, UNBOUNDED);
        for _ in 0..3 * COMPACT_SLACK {
            drop(budget.charge(&app, &name("a:all"), 1, UNBOUNDED));
        }
        budget.compact();
        assert_eq!(lock(&budget.queues).all.len(), 1);
        assert!(!oldest.evicted());
    }

    #[test]
    fn stale_entries_are_skipped_so_eviction_counts_only_what_it_evicts() {
        let budget = HistoryBudget::new(150);
        let app = name("a");
        drop(budget.charge(&app, &name("a:user:1"), 100, UNBOUNDED));
        let (kept, _) = budget.charge(&app, &name("a:user:2"), 100, UNBOUNDED);
        let (newest, victims) = budget.charge(&app, &name("a:user:3"), 100, UNBOUNDED);
        assert_eq!(victims, [name("a:user:2")]);
        assert!(kept.evicted() && !newest.evicted());
        assert_eq!(budget.stats().evictions, 1);
    }
}
