//! The in-memory engine: the default, single node only (use a Redis engine to scale out).
//!
//! Histories are bounded per channel (size, TTL) and in bytes, in total and per app, by a
//! [`HistoryBudget`]: the oldest kept messages are evicted first, and a client resuming
//! from before an evicted message is told recovery is impossible, as for any other gap.
//! With a [`HistoryLog`] (`history_store = "disk"`) every publication is written to the
//! data directory before anyone sees it, and the streams come back after a restart
//! ([`durable`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::budget::{Charge, HistoryBudget, ShardQueues};
use super::{
    BatchPublish, Broker, BrokerEvents, BrokerStats, EngineError, Entered, HistoryPolicy,
    HistoryRequest, Left, Member, Message, Presence, Publication, Recovery, RemoteConn,
    StreamPosition,
};
use crate::stable_hash::stable_hash;
use crate::store::history::HistoryLog;
use crate::sync::lock;

mod durable;

/// Number of independently locked stream maps, so publishes to different channels from
/// different threads rarely contend.
const STREAM_SHARDS: usize = 16;

/// How long a channel without history keeps its epoch and offset after its last publish.
const STREAM_IDLE_WITHOUT_HISTORY: Duration = Duration::from_secs(300);

/// How often expired history and idle streams are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Whose turn it is to deliver on one channel: held by a publish from before it takes its
/// offset until its local delivery is done, so deliveries follow offset order while the
/// stream itself stays free for readers (a connecting client's recovery) and for other
/// channels' publishes. An async lock: a publish waiting behind a large fan-out to the
/// same channel parks its task, not a worker thread.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// How a publish found its channel's turn.
enum Taken {
    /// Free: taken, the publications named and kept in the same look at the stream.
    Kept(
        tokio::sync::OwnedMutexGuard<()>,
        Vec<Arc<Publication>>,
        AfterKeep,
    ),
    /// Free: taken and the publications named; their records go to the log first.
    Named(tokio::sync::OwnedMutexGuard<()>, Vec<Arc<Publication>>),
    /// Held by another publish: to wait for.
    Waiting(Turn),
}

/// What keeping a run of publications leaves to do once the shard's lock is released.
#[derive(Debug, Default)]
struct AfterKeep {
    /// Someone here is subscribed to the channel: the publications are handed over.
    subscribed: bool,
    /// The bytes the app holds now and its bound, when history is kept.
    app_bytes: Option<(usize, usize)>,
}

/// What a kept message is counted as, beyond its payload and channel name: the entry, the
/// publication and their places in the eviction queues.
const KEPT_OVERHEAD_BYTES: usize = 192;

/// Over a history bound, eviction frees this fraction of the bound (1/64) beyond what the
/// bound needs: histories then hold between 98.4 % and 100 % of it.
const EVICTION_SLACK: usize = 64;

/// A message kept in a channel's history, with when it was kept and what it costs.
#[derive(Debug)]
struct Kept {
    at: Instant,
    publication: Arc<Publication>,
    charge: Charge,
}

/// The bytes a kept publication is counted as: its payload (JSON data and event name),
/// its channel name and [`KEPT_OVERHEAD_BYTES`]. A message pushed to several channels is
/// counted in each (they share one payload, so this errs on the safe side); the frames
/// rendered for clients from a kept publication are not counted.
fn kept_bytes(publication: &Publication) -> usize {
    let message = &publication.message;
    message.data.get().len()
        + message.event.as_deref().map_or(0, str::len)
        + publication.channel.len()
        + KEPT_OVERHEAD_BYTES
}

#[derive(Debug)]
struct Stream {
    epoch: Arc<str>,
    offset: u64,
    history: VecDeque<Kept>,
    last_publish: Instant,
    keep_for: Duration,
    ttl: Duration,
    turn: Turn,
}

impl Stream {
    fn new(now: Instant) -> Self {
        Self::with_turn(now, Turn::default())
    }

    fn with_turn(now: Instant, turn: Turn) -> Self {
        Self {
            epoch: new_epoch(),
            offset: 0,
            history: VecDeque::new(),
            last_publish: now,
            keep_for: STREAM_IDLE_WITHOUT_HISTORY,
            ttl: Duration::ZERO,
            turn,
        }
    }

    /// A stream idle past its keep time is forgotten, swept or not.
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_publish) >= self.keep_for
    }

    /// Expired, and no publish is using or waiting for its turn: its entry may go (a
    /// publish in flight keeps it, so one channel never has two turns).
    fn forgettable(&self, now: Instant) -> bool {
        self.expired(now) && Arc::strong_count(&self.turn) == 1
    }

    /// Drop messages past their TTL and those the budget evicted. Both are a prefix of
    /// the history: it is in offset order, and the budget evicts each channel's oldest
    /// first. What is left still starts after a gap a resuming client is told about.
    fn trim(&mut self, now: Instant) {
        while self
            .history
            .front()
            .is_some_and(|kept| kept.charge.evicted() || now.duration_since(kept.at) >= self.ttl)
        {
            self.history.pop_front();
        }
    }

    /// The publications `first` and `rest` become at the next offsets (in a new epoch
    /// when the stream was idle past its keep time), before anything is changed but that
    /// renewal: the caller holds the channel's turn, so the offsets stay free for it.
    fn next_publications(
        &mut self,
        channel: &Arc<str>,
        first: &Arc<Message>,
        rest: &[(&Arc<Message>, HistoryPolicy)],
        now: Instant,
    ) -> Vec<Arc<Publication>> {
        if self.expired(now) {
            *self = Self::with_turn(now, self.turn.clone());
        }
        let mut publications = Vec::with_capacity(rest.len() + 1);
        let messages = std::iter::once(first).chain(rest.iter().map(|(message, _)| *message));
        for (offset, message) in (self.offset + 1..).zip(messages) {
            let position = StreamPosition {
                epoch: self.epoch.clone(),
                offset,
            };
            publications.push(Arc::new(Publication::new(
                channel.clone(),
                position,
                Arc::clone(message),
            )));
        }
        publications
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch.clone(),
            offset: self.offset,
        }
    }

    /// What a client at `since` lacks (at most `limit` of it), if the history still
    /// covers it.
    fn recover(&self, since: Option<&StreamPosition>, limit: Option<usize>) -> Recovery {
        let top = self.position();
        let Some(since) = since else {
            return Recovery {
                top,
                missed: Vec::new(),
                complete: true,
            };
        };
        let from = if since.is_empty() {
            0
        } else if since.epoch == self.epoch {
            since.offset
        } else {
            return incomplete(top);
        };
        if from > top.offset {
            return incomplete(top);
        }
        let oldest = self
            .history
            .front()
            .map_or(top.offset + 1, |kept| kept.publication.position.offset);
        if oldest > from + 1 {
            return incomplete(top);
        }
        // Offsets in the history are consecutive, so the first one missed sits at a
        // known index.
        let skip = usize::try_from(from + 1 - oldest).unwrap_or(usize::MAX);
        Recovery {
            missed: self
                .history
                .iter()
                .skip(skip)
                .take(limit.unwrap_or(usize::MAX))
                .map(|kept| kept.publication.clone())
                .collect(),
            top,
            complete: true,
        }
    }
}

fn incomplete(top: StreamPosition) -> Recovery {
    Recovery {
        top,
        missed: Vec::new(),
        complete: false,
    }
}

/// Channel streams held in this process: offsets, epochs and bounded histories. Without
/// a log, a restart starts every channel in a new epoch, which is exactly what clients
/// need to know; with one, the streams live on.
/// Single node only: it hands publications to this process's hub alone (a Redis engine
/// scales out).
pub struct MemoryBroker {
    shards: Box<[Mutex<Shard>]>,
    events: OnceLock<Arc<dyn BrokerEvents>>,
    budget: HistoryBudget,
    /// Where histories are made durable (`history_store = "disk"`); `None` keeps them in
    /// memory only.
    log: Option<Arc<HistoryLog>>,
}

/// One shard: streams and subscription counts by channel name, with its kept messages in
/// eviction order.
#[derive(Default)]
struct Shard {
    streams: HashMap<Arc<str>, Stream>,
    subscribed: HashMap<Arc<str>, usize>,
    queues: ShardQueues,
}

impl MemoryBroker {
    /// An empty broker whose histories hold at most `max_history_bytes` over all channels
    /// (each app's own bound comes with its [`HistoryPolicy`]).
    pub fn new(max_history_bytes: usize) -> Self {
        Self {
            shards: (0..STREAM_SHARDS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            events: OnceLock::new(),
            budget: HistoryBudget::new(max_history_bytes),
            log: None,
        }
    }

    /// The shard holding `channel`. A std mutex is right here: nothing awaits while it is held.
    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let index = stable_hash(channel) as usize % self.shards.len();
        lock(&self.shards[index])
    }

    /// Drop expired history entries and forget idle streams.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let mut live = 0;
            shard.streams.retain(|_, stream| {
                stream.trim(now);
                live += stream.history.len();
                !stream.forgettable(now)
            });
            shard.queues.compact(live);
        }
        self.budget.forget_idle_apps();
    }

    /// Evict the oldest kept messages once `app` (holding `app_bytes`) holds more than
    /// `max_app` bytes, or all apps together more than the total bound: down to
    /// [`EVICTION_SLACK`] below the bound, so that a steady ingest at the bound looks over
    /// the shards once per some thousand evictions rather than once per publish.
    fn enforce_bounds(&self, app: &str, app_bytes: usize, max_app: usize, now: Instant) {
        if app_bytes > max_app {
            let target = max_app - max_app / EVICTION_SLACK;
            self.evict_oldest(Some(app), now, |held| held <= target);
        }
        if self.budget.over_total() {
            let slack = self.budget.max_total() / EVICTION_SLACK;
            self.evict_oldest(None, now, |_| self.budget.below_total_by(slack));
        }
    }

    /// Evict the oldest kept messages (of `app`, or of any app), oldest first over all
    /// shards, until `enough` (given the bytes the evicted message's app holds now) says
    /// so or nothing is kept. Each shard knows its own oldest; those are read once, one
    /// shard at a time, and then serve as lower bounds (a shard's oldest only gets newer):
    /// the shard with the smallest one is locked, its real oldest read again, and it
    /// evicts as long as that is no newer than every other shard's bound. So a run of
    /// evictions takes one lock per shard switch, not one per shard per eviction, and
    /// never holds two shard locks at once.
    fn evict_oldest(&self, app: Option<&str>, now: Instant, mut enough: impl FnMut(usize) -> bool) {
        let mut fronts: Vec<Option<Instant>> = self
            .shards
            .iter()
            .map(|shard| lock(shard).queues.oldest(app))
            .collect();
        loop {
            let Some((index, _)) = fronts
                .iter()
                .enumerate()
                .filter_map(|(index, front)| Some((index, (*front)?)))
                .min_by_key(|(_, at)| *at)
            else {
                return;
            };
            let next = fronts
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .filter_map(|(_, front)| *front)
                .min();
            let mut shard = lock(&self.shards[index]);
            loop {
                let oldest = shard.queues.oldest(app);
                if oldest.zip(next).is_some_and(|(at, next)| at > next) {
                    fronts[index] = oldest;
                    break;
                }
                // Another publish may have evicted what was read: then the shard's next
                // oldest is looked at, or the next shard.
                let Some((channel, app_bytes)) = shard.queues.evict_oldest(app) else {
                    fronts[index] = None;
                    break;
                };
                self.budget.evicted(1);
                if let Some(stream) = shard.streams.get_mut(&channel) {
                    stream.trim(now);
                }
                if enough(app_bytes) {
                    return;
                }
            }
        }
    }

    /// Publish `items` (messages with their history policies) to one channel, in order:
    /// offsets, history and hand-over under the channel's turn, taken once for all of
    /// them. With a durable log, the publications' records are handed to the kernel (in
    /// one append) before they become visible (their offsets, the history, the hand-over),
    /// so a killed process never forgets a publication that anyone saw.
    ///
    /// The channel is looked up once when its turn is free (the usual case): the same
    /// look takes the turn, names the offsets and, without a log to write first, keeps
    /// the publications. A turn another publish holds is waited for, and the stream is
    /// looked at again once it is this publish's.
    async fn publish_run(
        &self,
        channel: &Arc<str>,
        items: &[(&Arc<Message>, HistoryPolicy)],
    ) -> Result<Vec<StreamPosition>, EngineError> {
        let Some(((first, _), rest)) = items.split_first() else {
            return Ok(Vec::new());
        };
        let taken = {
            let now = Instant::now();
            let mut shard = self.shard(channel);
            let Shard {
                streams,
                subscribed,
                queues,
            } = &mut *shard;
            let stream = streams
                .entry(channel.clone())
                .or_insert_with(|| Stream::new(now));
            match stream.turn.clone().try_lock_owned() {
                Ok(turn) => {
                    let publications = stream.next_publications(channel, first, rest, now);
                    if self.log.is_none() {
                        let kept = self.keep(stream, subscribed, queues, &publications, items);
                        Taken::Kept(turn, publications, kept)
                    } else {
                        Taken::Named(turn, publications)
                    }
                }
                Err(_) => Taken::Waiting(stream.turn.clone()),
            }
        };
        // Nothing below awaits but the turn and the log: once it is this publish's turn,
        // the offsets, the history and the hand-over happen together, even if the caller
        // stops waiting.
        let (_turn, publications, kept) = match taken {
            Taken::Kept(turn, publications, kept) => (turn, publications, kept),
            Taken::Named(turn, publications) => {
                self.write_log(&publications, items).await?;
                let kept = self.keep_again(&publications, items);
                (turn, publications, kept)
            }
            Taken::Waiting(turn) => {
                let held = turn.clone().lock_owned().await;
                let publications = self.next_publications(channel, first, rest, &turn);
                self.write_log(&publications, items).await?;
                let kept = self.keep_again(&publications, items);
                (held, publications, kept)
            }
        };
        self.hand_over(&publications, kept);
        Ok(publications
            .iter()
            .map(|publication| publication.position.clone())
            .collect())
    }

    /// Hand the publications' records to the log, when there is one.
    async fn write_log(
        &self,
        publications: &[Arc<Publication>],
        items: &[(&Arc<Message>, HistoryPolicy)],
    ) -> Result<(), EngineError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let now = durable::wall_ms();
        let bodies = publications
            .iter()
            .zip(items)
            .map(|(publication, (_, history))| HistoryLog::body(publication, *history, now))
            .collect();
        log.append(bodies)
            .await
            .map_err(|error| EngineError::Unavailable(error.to_string()))
    }

    /// Publish `message` to one channel.
    async fn publish_one(
        &self,
        channel: &Arc<str>,
        message: &Arc<Message>,
        history: HistoryPolicy,
    ) -> Result<StreamPosition, EngineError> {
        let mut positions = self.publish_run(channel, &[(message, history)]).await?;
        positions
            .pop()
            .ok_or_else(|| EngineError::Unavailable("nothing published".into()))
    }

    /// The publications `first` and `rest` become at the channel's next offsets, looked
    /// up once the caller holds the channel's turn (waited for: the stream may have been
    /// forgotten meanwhile, and is then made again with that turn).
    fn next_publications(
        &self,
        channel: &Arc<str>,
        first: &Arc<Message>,
        rest: &[(&Arc<Message>, HistoryPolicy)],
        turn: &Turn,
    ) -> Vec<Arc<Publication>> {
        let now = Instant::now();
        let mut shard = self.shard(channel);
        shard
            .streams
            .entry(channel.clone())
            .or_insert_with(|| Stream::with_turn(now, turn.clone()))
            .next_publications(channel, first, rest, now)
    }

    /// Keep `publications` (named under the turn, their records written) in their
    /// stream: one more look at it, for all of them.
    fn keep_again(
        &self,
        publications: &[Arc<Publication>],
        items: &[(&Arc<Message>, HistoryPolicy)],
    ) -> AfterKeep {
        let Some(channel) = publications.first().map(|p| p.channel.clone()) else {
            return AfterKeep::default();
        };
        let mut shard = self.shard(&channel);
        let Shard {
            streams,
            subscribed,
            queues,
        } = &mut *shard;
        // The turn held keeps the stream (see `forgettable`).
        match streams.get_mut(&channel) {
            Some(stream) => self.keep(stream, subscribed, queues, publications, items),
            None => AfterKeep::default(),
        }
    }

    /// Make `publications` the channel's top and keep them in its history, under the
    /// shard's lock; what happens after the lock is released is in the answer.
    fn keep(
        &self,
        stream: &mut Stream,
        subscribed: &HashMap<Arc<str>, usize>,
        queues: &mut ShardQueues,
        publications: &[Arc<Publication>],
        items: &[(&Arc<Message>, HistoryPolicy)],
    ) -> AfterKeep {
        let now = Instant::now();
        let mut after = AfterKeep::default();
        for (publication, (_, history)) in publications.iter().zip(items) {
            let channel = &publication.channel;
            stream.offset = publication.position.offset;
            stream.last_publish = now;
            if history.is_off() {
                stream.history.clear();
                stream.keep_for = STREAM_IDLE_WITHOUT_HISTORY;
                continue;
            }
            stream.ttl = history.ttl;
            stream.keep_for = history.ttl;
            let (charge, held) = self.budget.charge(
                queues,
                &publication.message.app,
                channel,
                kept_bytes(publication),
                now,
            );
            after.app_bytes = Some((held, history.max_bytes));
            stream.history.push_back(Kept {
                at: now,
                publication: publication.clone(),
                charge,
            });
            while stream.history.len() > history.size {
                stream.history.pop_front();
            }
            stream.trim(now);
        }
        after.subscribed = publications
            .first()
            .is_some_and(|p| subscribed.contains_key(&p.channel));
        after
    }

    /// What follows keeping `publications`, with only their channel's turn held: over a
    /// bound, the oldest kept messages go, each under its own shard's lock (eviction looks
    /// at every shard, one at a time); then the publications are handed over. In the history (and at the
    /// top) before anyone gets them, and handed over while only this channel's turn is
    /// held: a client connecting now finds them in its recovery or gets them live, never
    /// neither, without waiting for the fan-out.
    fn hand_over(&self, publications: &[Arc<Publication>], kept: AfterKeep) {
        if let (Some((app_bytes, max_app)), Some(first)) = (kept.app_bytes, publications.first()) {
            self.enforce_bounds(&first.message.app, app_bytes, max_app, Instant::now());
        }
        if kept.subscribed {
            if let Some(events) = self.events.get() {
                for publication in publications {
                    events.publication(publication);
                }
            }
        }
    }

    /// One channel's answer to a history request.
    fn recover(&self, request: &HistoryRequest) -> Recovery {
        let now = Instant::now();
        let mut shard = self.shard(&request.channel);
        let streams = &mut shard.streams;
        if streams
            .get(&request.channel)
            .is_some_and(|s| s.forgettable(now))
        {
            streams.remove(&request.channel);
        }
        match streams.get_mut(&request.channel) {
            Some(stream) => {
                stream.trim(now);
                stream.recover(request.since.as_ref(), request.limit)
            }
            None => Recovery {
                top: StreamPosition::empty(),
                missed: Vec::new(),
                complete: request.since.as_ref().is_none_or(StreamPosition::is_empty),
            },
        }
    }
}

/// Sweep `broker` every second until `shutdown` fires.
pub async fn sweep_periodically(
    broker: Arc<MemoryBroker>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {
                broker.sweep();
                // Cut short by shutdown, a compaction leaves records twice, which
                // reading the log back tolerates.
                tokio::select! {
                    () = broker.compact_if_needed() => {}
                    () = shutdown.cancelled() => return,
                }
            }
            _ = shutdown.cancelled() => return,
        }
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

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn register_events(&self, events: Arc<dyn BrokerEvents>) {
        if self.events.set(events).is_err() {
            tracing::error!("a second events handler was registered with the memory broker");
        }
    }

    async fn subscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        for channel in channels {
            *self
                .shard(channel)
                .subscribed
                .entry(channel.clone())
                .or_default() += 1;
        }
        Ok(())
    }

    async fn unsubscribe(&self, channels: &[Arc<str>]) -> Result<(), EngineError> {
        for channel in channels {
            let mut shard = self.shard(channel);
            if let Some(count) = shard.subscribed.get_mut(channel) {
                *count -= 1;
                if *count == 0 {
                    shard.subscribed.remove(channel);
                }
            }
        }
        Ok(())
    }

    async fn publish(
        &self,
        channels: &[Arc<str>],
        message: &Arc<Message>,
        history: HistoryPolicy,
    ) -> Result<Vec<StreamPosition>, EngineError> {
        if self.log.is_some() && channels.len() > 1 {
            // Each channel waits for the log on its own turn, so a push to many users
            // shares group commits rather than waiting for one write per channel.
            return futures_util::future::try_join_all(
                channels
                    .iter()
                    .map(|channel| self.publish_one(channel, message, history)),
            )
            .await;
        }
        let mut positions = Vec::with_capacity(channels.len());
        for channel in channels {
            positions.push(self.publish_one(channel, message, history).await?);
        }
        Ok(positions)
    }

    async fn publish_batch(
        &self,
        batch: &[BatchPublish],
    ) -> Vec<Result<Vec<StreamPosition>, EngineError>> {
        // Each channel once, in the order the batch first names it, with the publishes
        // (batch index, place among that publish's channels) that go there.
        let mut runs: Vec<(&Arc<str>, Vec<(usize, usize)>)> = Vec::new();
        let mut run_of: HashMap<&str, usize> = HashMap::new();
        for (index, publish) in batch.iter().enumerate() {
            for (place, channel) in publish.channels.iter().enumerate() {
                let run = *run_of.entry(channel).or_insert_with(|| {
                    runs.push((channel, Vec::new()));
                    runs.len() - 1
                });
                runs[run].1.push((index, place));
            }
        }
        let mut results: Vec<Result<Vec<StreamPosition>, EngineError>> = batch
            .iter()
            .map(|publish| Ok(vec![StreamPosition::empty(); publish.channels.len()]))
            .collect();
        for (channel, uses) in runs {
            let items: Vec<_> = uses
                .iter()
                .map(|&(index, _)| (&batch[index].message, batch[index].history))
                .collect();
            match self.publish_run(channel, &items).await {
                Ok(positions) => {
                    for (&(index, place), position) in uses.iter().zip(positions) {
                        if let Ok(slots) = &mut results[index] {
                            slots[place] = position;
                        }
                    }
                }
                Err(error) => {
                    for &(index, _) in &uses {
                        results[index] = Err(EngineError::Unavailable(error.to_string()));
                    }
                }
            }
        }
        results
    }

    async fn history(&self, requests: &[HistoryRequest]) -> Result<Vec<Recovery>, EngineError> {
        Ok(requests.iter().map(|r| self.recover(r)).collect())
    }

    fn stats(&self) -> BrokerStats {
        let mut stats = BrokerStats::default();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            stats.streams += shard.streams.len() as u64;
            stats.history_messages += shard
                .streams
                .values()
                .map(|s| s.history.len() as u64)
                .sum::<u64>();
        }
        let budget = self.budget.stats();
        stats.history_bytes = budget.bytes;
        stats.history_evictions = budget.evictions;
        stats
    }
}

/// Online users of every scope (an app, a room channel), counted per connection, with
/// the info members entered with. One lock over it all, so an entry's or an exit's
/// answers (first or last of the user, of the scope) are exact.
#[derive(Default)]
pub struct MemoryPresence {
    scopes: Mutex<HashMap<String, Scope>>,
}

/// One occupied scope: it exists while it holds a connection.
#[derive(Default)]
struct Scope {
    /// Each user's connection count (never zero).
    users: BTreeMap<String, usize>,
    /// Each member's info (from its first connection's entry).
    infos: HashMap<String, Arc<str>>,
}

impl MemoryPresence {
    /// Count one more connection of `user` in `scope` (with the member's info, unless it
    /// shows one already).
    fn add(&self, scope: &str, user: &str, info: Option<&str>) -> Entered {
        let mut scopes = lock(&self.scopes);
        let state = scopes.entry(scope.to_owned()).or_default();
        let first_in_scope = state.users.is_empty();
        let count = state.users.entry(user.to_owned()).or_default();
        *count += 1;
        let first_of_user = *count == 1;
        if let Some(info) = info {
            state
                .infos
                .entry(user.to_owned())
                .or_insert_with(|| info.into());
        }
        Entered {
            first_of_user,
            first_in_scope,
        }
    }

    /// Count one connection of `user` in `scope` less: its info and the scope go with the
    /// last.
    fn remove(&self, scope: &str, user: &str) -> Left {
        let mut scopes = lock(&self.scopes);
        let Some(state) = scopes.get_mut(scope) else {
            return Left::default();
        };
        let Some(count) = state.users.get_mut(user) else {
            return Left::default();
        };
        *count -= 1;
        let last_of_user = *count == 0;
        if last_of_user {
            state.users.remove(user);
            state.infos.remove(user);
        }
        let last_in_scope = state.users.is_empty();
        if last_in_scope {
            scopes.remove(scope);
        }
        Left {
            last_of_user,
            last_in_scope,
        }
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn spans_nodes(&self) -> bool {
        false
    }

    async fn join(
        &self,
        scope: &str,
        user: &str,
        _conn: u64,
        _since_ms: u64,
    ) -> Result<(), EngineError> {
        self.add(scope, user, None);
        Ok(())
    }

    async fn leave(&self, scope: &str, user: &str, _conn: u64) -> Result<(), EngineError> {
        self.remove(scope, user);
        Ok(())
    }

    async fn users(&self, scope: &str) -> Result<Vec<(String, usize)>, EngineError> {
        let scopes = lock(&self.scopes);
        Ok(scopes
            .get(scope)
            .map(|state| state.users.iter().map(|(u, c)| (u.clone(), *c)).collect())
            .unwrap_or_default())
    }

    async fn user_count(&self, scope: &str) -> Result<usize, EngineError> {
        Ok(lock(&self.scopes)
            .get(scope)
            .map_or(0, |state| state.users.len()))
    }

    async fn connections(&self, scope: &str, user: &str) -> Result<usize, EngineError> {
        let scopes = lock(&self.scopes);
        Ok(scopes
            .get(scope)
            .and_then(|state| state.users.get(user))
            .copied()
            .unwrap_or(0))
    }

    async fn total(&self, scope: &str) -> Result<usize, EngineError> {
        let scopes = lock(&self.scopes);
        Ok(scopes
            .get(scope)
            .map_or(0, |state| state.users.values().sum()))
    }

    async fn elsewhere(&self, _scope: &str, _user: &str) -> Result<Vec<RemoteConn>, EngineError> {
        Ok(Vec::new())
    }

    async fn online_elsewhere(&self, _scope: &str, _conn: &str) -> Result<bool, EngineError> {
        Ok(false)
    }

    async fn nodes(&self) -> Result<Vec<String>, EngineError> {
        Ok(vec![crate::node::node_id().to_owned()])
    }

    async fn enter(
        &self,
        scope: &str,
        user: &str,
        _conn: u64,
        _since_ms: u64,
        info: Option<&str>,
    ) -> Result<Entered, EngineError> {
        Ok(self.add(scope, user, info))
    }

    async fn exit(&self, scope: &str, user: &str, _conn: u64) -> Result<Left, EngineError> {
        Ok(self.remove(scope, user))
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, EngineError> {
        let scopes = lock(&self.scopes);
        Ok(scopes
            .get(scope)
            .map(|state| {
                state
                    .users
                    .iter()
                    .map(|(user, conns)| Member {
                        user: user.clone(),
                        conns: *conns,
                        info: state.infos.get(user).cloned(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn scopes(&self, prefix: &str) -> Result<Vec<(String, usize)>, EngineError> {
        let scopes = lock(&self.scopes);
        let mut occupied: Vec<(String, usize)> = scopes
            .iter()
            .filter(|(scope, _)| scope.starts_with(prefix))
            .map(|(scope, state)| (scope.clone(), state.users.values().sum()))
            .collect();
        occupied.sort_unstable();
        Ok(occupied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::contract::{self, Recorder, KEEP};

    const UNBOUNDED: usize = usize::MAX;

    // The shared broker contract, run against the memory engine.
    contract::contract_suite!(((), Arc::new(MemoryBroker::new(UNBOUNDED))));

    // The shared presence contract for members and scopes, run against the memory engine.
    crate::engine::presence_contract::presence_suite!((
        (),
        Arc::new(MemoryPresence::default()) as Arc<dyn Presence>
    ));

    async fn publish(
        broker: &MemoryBroker,
        channel: &str,
        policy: HistoryPolicy,
    ) -> StreamPosition {
        let message = Arc::new(Message::for_test("x"));
        broker
            .publish(&[Arc::from(channel)], &message, policy)
            .await
            .unwrap()
            .remove(0)
    }

    async fn recover(
        broker: &MemoryBroker,
        channel: &str,
        since: Option<StreamPosition>,
    ) -> Recovery {
        let request = HistoryRequest {
            channel: channel.into(),
            since,
            limit: None,
        };
        broker.history(&[request]).await.unwrap().remove(0)
    }

    /// Run `future` to completion on a runtime of the calling thread's own.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn offsets(recovery: &Recovery) -> Vec<u64> {
        recovery.missed.iter().map(|p| p.position.offset).collect()
    }

    /// Blocks the first hand-over until released.
    struct Stall {
        started: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl BrokerEvents for Stall {
        fn publication(&self, _: &Arc<Publication>) {
            if let Some(started) = lock(&self.started).take() {
                started.send(()).unwrap();
                lock(&self.release).recv().unwrap();
            }
        }
    }

    /// A client connecting while a large fan-out runs reads the channel at once, and
    /// already finds the message being delivered; a second publish to the channel waits
    /// its turn, so hand-over keeps offset order.
    #[test]
    fn recovery_does_not_wait_for_a_delivery_in_progress() {
        use std::future::Future as _;
        let broker = Arc::new(MemoryBroker::new(UNBOUNDED));
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        broker.register_events(Arc::new(Stall {
            started: Mutex::new(Some(started_tx)),
            release: Mutex::new(release_rx),
        }));
        block_on(broker.subscribe(&[Arc::from("a")])).unwrap();
        let fanout = std::thread::spawn({
            let broker = broker.clone();
            move || block_on(publish(&broker, "a", KEEP))
        });
        started.recv().unwrap();
        let (read_tx, read) = std::sync::mpsc::channel();
        std::thread::spawn({
            let broker = broker.clone();
            move || {
                let recovery = block_on(recover(&broker, "a", None));
                let _ = read_tx.send(recovery.top.offset);
            }
        });
        let Ok(top) = read.recv_timeout(Duration::from_secs(5)) else {
            release.send(()).unwrap();
            panic!("the reader waited for the delivery");
        };
        assert_eq!(top, 1, "the message being delivered is already visible");
        let mut second = std::pin::pin!(publish(&broker, "a", KEEP));
        let waker = futures_util::task::noop_waker();
        let waiting = second
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
            .is_pending();
        release.send(()).unwrap();
        assert_eq!(fanout.join().unwrap().offset, 1);
        assert!(
            waiting,
            "a second publish overtook the delivery in progress"
        );
        assert_eq!(block_on(second).offset, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn history_expires_and_idle_streams_are_forgotten() {
        let broker = MemoryBroker::new(UNBOUNDED);
        broker.register_events(Arc::new(Recorder::default()));
        let short = HistoryPolicy {
            size: 10,
            ttl: Duration::from_secs(5),
            max_bytes: UNBOUNDED,
        };
        let first = publish(&broker, "e", short).await;
        tokio::time::advance(Duration::from_secs(3)).await;
        publish(&broker, "e", short).await;
        tokio::time::advance(Duration::from_secs(3)).await;
        broker.sweep();
        let stats = broker.stats();
        assert_eq!((stats.streams, stats.history_messages), (1, 1));
        let r = recover(&broker, "e", Some(first.clone())).await;
        assert!(r.complete, "offset 2 is still kept");
        assert_eq!(offsets(&r), [2]);
        tokio::time::advance(Duration::from_secs(3)).await;
        broker.sweep();
        assert_eq!(
            broker.stats(),
            BrokerStats::default(),
            "bytes given back too"
        );
        let r = recover(&broker, "e", Some(first.clone())).await;
        assert!(!r.complete);
        let again = publish(&broker, "e", short).await;
        assert_eq!(again.offset, 1);
        assert_ne!(
            again.epoch, first.epoch,
            "a forgotten stream starts a new epoch"
        );
    }

    /// A message of `bytes` payload bytes pushed by `app` to `channel`.
    async fn publish_sized(
        broker: &MemoryBroker,
        app: &str,
        channel: &str,
        bytes: usize,
        policy: HistoryPolicy,
    ) -> StreamPosition {
        let mut message = Message::for_test(&"x".repeat(bytes));
        message.app = app.into();
        broker
            .publish(&[Arc::from(channel)], &Arc::new(message), policy)
            .await
            .unwrap()
            .remove(0)
    }

    /// Over the bound on all apps, the oldest message anywhere goes first; its channel
    /// keeps its epoch and offsets, and a client resuming from before the evicted message
    /// is told recovery is impossible, while one past it still recovers exactly.
    #[tokio::test]
    async fn the_byte_bound_evicts_the_oldest_and_resuming_across_it_reports_the_loss() {
        const PAYLOAD: usize = 10_000;
        let broker = MemoryBroker::new(3 * PAYLOAD + 2_000);
        let first = publish_sized(&broker, "a", "a:user:1", PAYLOAD, KEEP).await;
        let second = publish_sized(&broker, "a", "a:user:1", PAYLOAD, KEEP).await;
        publish_sized(&broker, "a", "a:user:2", PAYLOAD, KEEP).await;
        assert_eq!(broker.stats().history_evictions, 0);
        publish_sized(&broker, "a", "a:user:3", PAYLOAD, KEEP).await;
        let stats = broker.stats();
        assert_eq!((stats.history_messages, stats.history_evictions), (3, 1));
        assert!(stats.history_bytes <= (3 * PAYLOAD + 2_000) as u64);
        let before_gap = StreamPosition {
            epoch: first.epoch.clone(),
            offset: 0,
        };
        let r = recover(&broker, "a:user:1", Some(before_gap)).await;
        assert!(!r.complete, "offset 1 was evicted");
        assert_eq!(r.top, second, "the stream lives on in its epoch");
        let r = recover(&broker, "a:user:1", Some(first)).await;
        assert!(r.complete);
        assert_eq!(offsets(&r), [2]);
    }

    /// An app's own bound evicts its own oldest messages and leaves other apps' alone.
    #[tokio::test]
    async fn an_apps_byte_bound_touches_only_that_app() {
        const PAYLOAD: usize = 10_000;
        let broker = MemoryBroker::new(UNBOUNDED);
        let small = HistoryPolicy {
            max_bytes: 2 * PAYLOAD + 1_000,
            ..KEEP
        };
        let quiet = publish_sized(&broker, "quiet", "quiet:all", PAYLOAD, KEEP).await;
        let old = publish_sized(&broker, "busy", "busy:user:1", PAYLOAD, small).await;
        for user in 2..5 {
            publish_sized(
                &broker,
                "busy",
                &format!("busy:user:{user}"),
                PAYLOAD,
                small,
            )
            .await;
        }
        assert_eq!(broker.stats().history_evictions, 2);
        let r = recover(&broker, "busy:user:1", Some(StreamPosition::empty())).await;
        assert!(!r.complete, "{old:?} was evicted");
        let r = recover(&broker, "quiet:all", Some(StreamPosition::empty())).await;
        assert!(r.complete);
        assert_eq!(r.missed[0].position, quiet);
    }

    /// Many channels, each with one big message: memory held stays at the bound however
    /// many are pushed, and evicting costs no scan (each publish evicts about one).
    #[tokio::test]
    async fn distinct_channels_cannot_grow_history_past_the_bound() {
        const PAYLOAD: usize = 100_000;
        const BOUND: usize = 1_000_000;
        let broker = MemoryBroker::new(BOUND);
        for user in 0..200 {
            publish_sized(&broker, "a", &format!("a:user:{user}"), PAYLOAD, KEEP).await;
            assert!(broker.stats().history_bytes <= BOUND as u64);
        }
        let stats = broker.stats();
        assert_eq!(stats.history_messages, 9);
        assert_eq!(stats.history_evictions, 191);
        assert_eq!(
            stats.streams, 200,
            "evicted channels keep their epoch and offset"
        );
    }

    /// Eviction follows keeping order over all shards: of 64 channels (spread over the
    /// shards) with one message each, the ones still kept are the newest.
    #[tokio::test]
    async fn eviction_takes_the_oldest_over_all_shards() {
        const PAYLOAD: usize = 10_000;
        const BOUND: usize = 100_000;
        let broker = MemoryBroker::new(BOUND);
        for user in 0..64 {
            publish_sized(&broker, "a", &format!("a:user:{user}"), PAYLOAD, KEEP).await;
        }
        let kept = broker.stats().history_messages as usize;
        assert!((1..10).contains(&kept), "{kept} kept");
        for user in 0..64 {
            let r = recover(
                &broker,
                &format!("a:user:{user}"),
                Some(StreamPosition::empty()),
            )
            .await;
            assert_eq!(r.complete, user >= 64 - kept, "user {user}, {kept} kept");
        }
    }

    #[tokio::test]
    async fn without_history_offsets_still_count() {
        let broker = MemoryBroker::new(UNBOUNDED);
        let off = HistoryPolicy {
            size: 0,
            ttl: Duration::from_secs(60),
            max_bytes: UNBOUNDED,
        };
        publish(&broker, "f", off).await;
        let second = publish(&broker, "f", off).await;
        assert_eq!(second.offset, 2);
        assert_eq!(broker.stats().history_messages, 0);
        let since = StreamPosition {
            epoch: second.epoch.clone(),
            offset: 1,
        };
        assert!(!recover(&broker, "f", Some(since)).await.complete);
    }

    #[tokio::test]
    async fn presence_counts_connections_and_forgets_empty_users() {
        let presence = MemoryPresence::default();
        presence.join("app", "u1", 1, 0).await.unwrap();
        presence.join("app", "u1", 2, 0).await.unwrap();
        presence.join("app", "u2", 3, 0).await.unwrap();
        assert_eq!(
            presence.users("app").await.unwrap(),
            vec![("u1".to_owned(), 2), ("u2".to_owned(), 1)]
        );
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 2);
        assert_eq!(presence.total("app").await.unwrap(), 3);
        assert_eq!(presence.user_count("app").await.unwrap(), 2);
        // One node: no other node's connection is ever online.
        let own = crate::node::conn_name(1);
        assert!(!presence.online_elsewhere("app", &own).await.unwrap());
        presence.leave("app", "u1", 1).await.unwrap();
        presence.leave("app", "u1", 2).await.unwrap();
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 0);
        assert_eq!(
            presence.users("app").await.unwrap(),
            vec![("u2".to_owned(), 1)]
        );
        presence.leave("app", "u2", 3).await.unwrap();
        assert!(presence.users("app").await.unwrap().is_empty());
        assert_eq!(presence.connections("nope", "u2").await.unwrap(), 0);
    }
}
