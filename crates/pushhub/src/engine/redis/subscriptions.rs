//! Subscriptions of one deployment: counted per channel, and kept in line with Redis by
//! one task that owns the subscriber connection's channel set. Whatever arrives together
//! (a connect storm) goes out as one `SUBSCRIBE` of many channels (in a cluster, one
//! `SSUBSCRIBE` per slot, all at once); after a reconnect the task subscribes everything
//! again. Every channel it subscribes gets its stream top read (where the dispatcher
//! starts it), and every channel on a check (periodic, after a reconnect) too, which the
//! dispatcher compares with what it handed over, filling any gap.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{HashesInterface, PubsubInterface};
use fred::types::Value;
use futures_util::future::{join_all, try_join_all};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::engine::{EngineError, StreamPosition};
use crate::sync::lock;

/// Most channels in one subscribe command (and top reads in flight at once).
const CHUNK: usize = 1_000;

/// How soon a failed subscription sync or top read is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Work for the subscription task.
pub enum Op {
    /// These channels' counts crossed zero: subscribe or unsubscribe them, then answer.
    Sync(Vec<Arc<str>>, oneshot::Sender<Result<(), String>>),
    /// Subscribe what is missing and read every subscribed channel's top (the periodic
    /// check for idle channels, or after the dispatcher fell behind).
    Check,
    /// The subscriber connection was re-established: it holds no subscription now.
    Reconnected,
}

/// What the subscription task tells the dispatcher.
pub enum Note {
    /// The channel was just subscribed, and its stream top then read at this position.
    Subscribed(Arc<str>, StreamPosition),
    /// A check read the channel's stream top at this position.
    Top(Arc<str>, StreamPosition),
    /// The channel was unsubscribed: forget where it stood.
    Forget(Arc<str>),
}

/// One deployment's subscriber connection and subscription counts.
pub struct Lane {
    /// The subscriber connection.
    pub subscriber: SubscriberClient,
    /// True on a Redis Cluster: sharded pub/sub.
    pub sharded: bool,
    counts: Mutex<HashMap<Arc<str>, usize>>,
    ops: mpsc::UnboundedSender<Op>,
    notes: mpsc::UnboundedSender<Note>,
}

/// The receiving ends a lane's tasks take.
pub struct LaneReceivers {
    /// For the subscription task.
    pub ops: mpsc::UnboundedReceiver<Op>,
    /// For the dispatcher.
    pub notes: mpsc::UnboundedReceiver<Note>,
}

impl Lane {
    /// A lane over `subscriber`, with the receivers for its tasks.
    pub fn new(subscriber: SubscriberClient, sharded: bool) -> (Self, LaneReceivers) {
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (notes, notes_rx) = mpsc::unbounded_channel();
        let lane = Self {
            subscriber,
            sharded,
            counts: Mutex::default(),
            ops,
            notes,
        };
        (
            lane,
            LaneReceivers {
                ops: ops_rx,
                notes: notes_rx,
            },
        )
    }

    /// True while `channel` is subscribed (counted above zero).
    pub fn is_subscribed(&self, channel: &str) -> bool {
        lock(&self.counts).contains_key(channel)
    }

    /// Count one subscribe (`up`) or unsubscribe of each channel; the channels whose count
    /// crossed zero.
    pub fn count<'a>(
        &self,
        channels: impl Iterator<Item = &'a Arc<str>>,
        up: bool,
    ) -> Vec<Arc<str>> {
        let mut counts = lock(&self.counts);
        let mut crossed = Vec::new();
        for channel in channels {
            if up {
                let count = counts.entry(channel.clone()).or_default();
                *count += 1;
                if *count == 1 {
                    crossed.push(channel.clone());
                }
            } else if let Some(count) = counts.get_mut(channel) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(channel);
                    crossed.push(channel.clone());
                }
            }
        }
        crossed
    }

    /// Bring Redis in line with the counts of `channels`, batched with whatever else is
    /// waiting.
    pub async fn sync(&self, channels: Vec<Arc<str>>) -> Result<(), EngineError> {
        if channels.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.send(Op::Sync(channels, done));
        match answer.await {
            Ok(result) => result.map_err(EngineError::Unavailable),
            Err(_) => Err(EngineError::Unavailable(
                "the broker is shutting down".into(),
            )),
        }
    }

    /// Queue work for the subscription task (gone only at shutdown).
    pub fn send(&self, op: Op) {
        let _ = self.ops.send(op);
    }

    fn desired(&self) -> Vec<Arc<str>> {
        lock(&self.counts).keys().cloned().collect()
    }
}

/// The subscription task of lane `index`: runs until `shutdown`.
pub async fn run(
    inner: Arc<Inner>,
    index: usize,
    mut ops: mpsc::UnboundedReceiver<Op>,
    shutdown: CancellationToken,
) {
    let mut actual: HashSet<Arc<str>> = HashSet::new();
    // True when Redis lost the subscriptions in `actual` (the connection was re-opened)
    // and they have not been made again yet.
    let mut lost = false;
    let mut retry: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            op = ops.recv() => match op {
                Some(op) => op,
                None => return,
            },
            _ = sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => Op::Check,
            _ = shutdown.cancelled() => return,
        };
        let mut batch = vec![first];
        while let Ok(op) = ops.try_recv() {
            batch.push(op);
        }
        let mut touched = Vec::new();
        let mut waiters = Vec::new();
        let mut check = false;
        for op in batch {
            match op {
                Op::Sync(channels, done) => {
                    touched.extend(channels);
                    waiters.push(done);
                }
                Op::Check => check = true,
                Op::Reconnected => {
                    lost = true;
                    check = true;
                }
            }
        }
        let lane = &inner.lanes[index];
        if check {
            touched.extend(lane.desired());
            touched.extend(actual.iter().cloned());
        }
        let (result, tops_read) =
            apply(&inner, index, &mut actual, &mut lost, touched, check).await;
        if let Err(error) = &result {
            tracing::warn!(redis = %inner.url(index), %error, "subscription sync failed; retrying");
        }
        retry = (result.is_err() || !tops_read).then(|| Instant::now() + RETRY_AFTER);
        for done in waiters {
            let _ = done.send(result.clone());
        }
    }
}

/// Subscribe and unsubscribe what differs between the counts and `actual` (everything
/// again when `lost`), then read the tops of the channels just subscribed (and of all
/// others on a `check`). An unreadable top is not an error for the callers: the
/// subscription stands. Also says whether every top was read (if not, the task checks
/// again soon).
async fn apply(
    inner: &Inner,
    index: usize,
    actual: &mut HashSet<Arc<str>>,
    lost: &mut bool,
    mut touched: Vec<Arc<str>>,
    check: bool,
) -> (Result<(), String>, bool) {
    let lane = &inner.lanes[index];
    touched.sort_unstable();
    touched.dedup();
    let (add, remove): (Vec<_>, Vec<_>) = touched
        .into_iter()
        .filter(|channel| lane.is_subscribed(channel) != actual.contains(channel))
        .partition(|channel| lane.is_subscribed(channel));
    if !remove.is_empty() {
        if let Err(error) = command(inner, lane, &remove, false).await {
            return (Err(error), true);
        }
        for channel in remove {
            actual.remove(&channel);
            let _ = lane.notes.send(Note::Forget(channel));
        }
    }
    let again: Vec<Arc<str>> = if *lost {
        actual.iter().cloned().collect()
    } else {
        Vec::new()
    };
    let subscribe: Vec<Arc<str>> = add.iter().chain(&again).cloned().collect();
    if !subscribe.is_empty() {
        if let Err(error) = command(inner, lane, &subscribe, true).await {
            return (Err(error), true);
        }
    }
    *lost = false;
    let checked: Vec<Arc<str>> = if check {
        actual.iter().cloned().collect()
    } else {
        Vec::new()
    };
    actual.extend(add.iter().cloned());
    let reads = add
        .into_iter()
        .map(|channel| (channel, true))
        .chain(checked.into_iter().map(|channel| (channel, false)))
        .collect::<Vec<_>>();
    for chunk in reads.chunks(CHUNK) {
        let tops = join_all(chunk.iter().map(|(channel, _)| top(inner, index, channel))).await;
        for ((channel, new), top) in chunk.iter().zip(tops) {
            let Some(top) = top else {
                tracing::warn!(redis = %inner.url(index), %channel, "stream tops unreadable; reading them again");
                return (Ok(()), false);
            };
            let note = if *new {
                Note::Subscribed(channel.clone(), top)
            } else {
                Note::Top(channel.clone(), top)
            };
            let _ = lane.notes.send(note);
        }
    }
    (Ok(()), true)
}

/// `SUBSCRIBE` (or `UNSUBSCRIBE`) `channels` on the lane's subscriber, in chunks; on a
/// cluster `SSUBSCRIBE` per slot, concurrently.
async fn command(
    inner: &Inner,
    lane: &Lane,
    channels: &[Arc<str>],
    subscribe: bool,
) -> Result<(), String> {
    let failed = |error: fred::error::Error| error.to_string();
    for chunk in channels.chunks(CHUNK) {
        let names: Vec<String> = chunk
            .iter()
            .map(|channel| inner.keys.channel(channel).pubsub)
            .collect();
        if lane.sharded {
            let groups = fred::util::group_by_hash_slot(names).map_err(failed)?;
            try_join_all(groups.into_values().map(|group| {
                let group: Vec<_> = group.into_iter().collect();
                async move {
                    if subscribe {
                        lane.subscriber.ssubscribe(group).await
                    } else {
                        lane.subscriber.sunsubscribe(group).await
                    }
                }
            }))
            .await
            .map_err(failed)?;
        } else if subscribe {
            lane.subscriber.subscribe(names).await.map_err(failed)?;
        } else {
            lane.subscriber.unsubscribe(names).await.map_err(failed)?;
        }
    }
    Ok(())
}

/// The stream top of `channel` (the empty position when it has no stream), or `None`
/// when Redis did not answer.
async fn top(inner: &Inner, index: usize, channel: &str) -> Option<StreamPosition> {
    let keys = inner.keys.channel(channel);
    let reply: Value = inner
        .client(index)
        .hmget(keys.meta, vec!["e", "o"])
        .await
        .ok()?;
    let mut parts = reply.into_array().into_iter();
    let epoch = parts.next().and_then(|v| v.as_string());
    let offset = parts.next().and_then(|v| v.as_u64()).unwrap_or(0);
    Some(match epoch {
        Some(epoch) if !epoch.is_empty() => StreamPosition {
            epoch: epoch.into(),
            offset,
        },
        _ => StreamPosition::empty(),
    })
}
