//! Local subscriptions: which connections on this node are in which channel.
//!
//! Sharded by user: all connections of one user live in one shard, so a push to a user
//! locks one shard, while a push to `all` or a group visits the shards one at a time.
//! A publish to 100k connections therefore never holds one lock for its whole duration,
//! and a connect waits at most for one shard's share of a fan-out. (The memory broker
//! keeps its side of that promise too: a connecting client reads a channel's history
//! while a delivery on it is still running; see `engine::memory`.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::listed_members::ListedMembers;
use super::outbox::{Frame, Outbox, Queued, Unsent};
use super::render::{Render, RenderCache, RenderStore};
use crate::disconnect::Disconnect;
use crate::engine::{Publication, RemoteConn, StreamPosition};
use crate::stable_hash::stable_hash;
use crate::sync::lock;

/// Identity of one connection on this node.
pub type ConnId = u64;

/// Shards: enough that 2–16 cores rarely meet on one lock, few enough that a broadcast's
/// walk over all of them is cheap.
const SHARDS: usize = 32;

/// Ids of shared messages (pushed to several channels at once) a connection remembers
/// having taken, to take each once although it arrives through each of its channels.
/// Those arrivals follow each other closely (one multi-channel publish), so a few suffice.
const RECENT_SHARED: usize = 4;

/// The last [`RECENT_SHARED`] shared message ids a connection took.
#[derive(Default)]
struct RecentShared {
    ids: [Option<Arc<str>>; RECENT_SHARED],
    next: usize,
}

impl RecentShared {
    /// Remember `id`; false when it was already remembered.
    fn insert(&mut self, id: &Arc<str>) -> bool {
        let known = self
            .ids
            .iter()
            .flatten()
            .any(|seen| Arc::ptr_eq(seen, id) || seen == id);
        if !known {
            self.ids[self.next] = Some(id.clone());
            self.next = (self.next + 1) % RECENT_SHARED;
        }
        !known
    }
}

/// A room a connection joined after connecting.
struct JoinedRoom {
    channel: Arc<str>,
    /// Where the join's history read reached: a live publication at or below it was
    /// replayed already (or came before the join). Cleared by the room's first live
    /// publication past it, after which none at or below it can come (one channel's
    /// publications arrive in offset order).
    replayed_to: Option<StreamPosition>,
    /// The members the join listed, while member events may still race that list.
    listed: Option<Box<ListedMembers>>,
}

impl JoinedRoom {
    fn new(channel: Arc<str>) -> Self {
        Self {
            channel,
            replayed_to: None,
            listed: None,
        }
    }
}

/// What fan-out needs of a connection: where to queue, in which format, and whether it is
/// still catching up.
///
/// A subscriber starts out *recovering*: live publications are held back while the hub
/// reads what the connection missed, then [`Subscriber::go_live`] queues the held ones
/// that the replay did not cover. Holding and going live share one lock, so no publication
/// slips between replay and live, and none arrives twice.
pub struct Subscriber {
    /// The connection's id.
    pub id: ConnId,
    /// Its send queue.
    pub outbox: Arc<Outbox>,
    /// Its wire format.
    pub renderer: Arc<dyn Render>,
    recovering: AtomicBool,
    held: Mutex<Option<Vec<Arc<Publication>>>>,
    /// Where the connection's recovery left each channel: a live publication at or below
    /// that position was replayed to it already (or came before it connected), so it is
    /// skipped. It can still arrive: a publication is in the history before its delivery
    /// ends, and a client may recover in between.
    recovered_to: OnceLock<Vec<(Arc<str>, StreamPosition)>>,
    /// Room channels the connection joined after connecting; changed only under its
    /// user's shard lock, so a close and a server-side join never miss each other.
    rooms: Mutex<Vec<JoinedRoom>>,
    /// True while some room's `replayed_to` is set, so a connection with none pays one
    /// load per live publication rather than a lock.
    replaying_rooms: AtomicBool,
    /// True while some room's `listed` is set, so member events to a connection with none
    /// pass without a lock.
    listing_rooms: AtomicBool,
    /// Shared messages taken lately; allocated on the first one, so a connection that
    /// only ever gets single-channel pushes pays one pointer for it.
    shared: Mutex<Option<Box<RecentShared>>>,
    /// When it connected (milliseconds since the Unix epoch): kick-oldest compares it with
    /// the user's connections on other nodes.
    since_ms: u64,
    /// How it came, for the operator's view of it.
    detail: ConnDetail,
    /// True when it sits in its user's shard (it came with a user): only then does a
    /// server-side join of its user ([`Registry::join_room_all`]) reach it. A connection
    /// that came without one keeps its rooms in its own shard, out of that walk.
    homed_by_user: bool,
}

/// How a connection came, as operators see it (`GET /v1/apps/{app}/users?conns=true`):
/// labels the transport and dialect gave, never consulted by the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnDetail {
    /// `websocket`, `sse`, `poll` or `tcp`.
    pub transport: &'static str,
    /// `native`, `jdserver`, `pushserve`, `mswoole`...
    pub dialect: &'static str,
    /// The client's address (port 0 when a trusted proxy forwarded only its IP).
    pub addr: Option<std::net::SocketAddr>,
}

/// One of this node's connections of a user, as [`crate::hub::Hub::user_conns`] reports it.
#[derive(Debug, Clone)]
pub struct ConnSnapshot {
    /// The connection's id on this node.
    pub id: ConnId,
    /// How it came.
    pub detail: ConnDetail,
    /// When it connected (milliseconds since the Unix epoch).
    pub since_ms: u64,
    /// Frames waiting in its send queue.
    pub queued: usize,
    /// Bytes waiting in its send queue.
    pub queued_bytes: usize,
}

impl Subscriber {
    /// A subscriber that holds live publications until [`Subscriber::go_live`].
    pub fn new(id: ConnId, outbox: Arc<Outbox>, renderer: Arc<dyn Render>) -> Self {
        Self {
            id,
            outbox,
            renderer,
            recovering: AtomicBool::new(true),
            held: Mutex::new(Some(Vec::new())),
            recovered_to: OnceLock::new(),
            rooms: Mutex::new(Vec::new()),
            replaying_rooms: AtomicBool::new(false),
            listing_rooms: AtomicBool::new(false),
            shared: Mutex::new(None),
            since_ms: 0,
            detail: ConnDetail::default(),
            homed_by_user: true,
        }
    }

    /// The same subscriber, sitting in its user's shard (`true`) or in its own.
    pub fn homed_by_user(mut self, homed: bool) -> Self {
        self.homed_by_user = homed;
        self
    }

    /// The same subscriber, come as `detail` says.
    pub fn described(mut self, detail: ConnDetail) -> Self {
        self.detail = detail;
        self
    }

    /// What an operator sees of it now.
    pub fn snapshot(&self) -> ConnSnapshot {
        let (queued, queued_bytes) = self.outbox.depth();
        ConnSnapshot {
            id: self.id,
            detail: self.detail,
            since_ms: self.since_ms,
            queued,
            queued_bytes,
        }
    }

    /// The same subscriber, connected at `since_ms` (milliseconds since the Unix epoch).
    pub fn connected_at(mut self, since_ms: u64) -> Self {
        self.since_ms = since_ms;
        self
    }

    /// False when `publication`'s message reached this connection already through another
    /// channel (a push to several targets the connection is in); true otherwise, and the
    /// message now counts as taken. Unshared messages skip the check entirely. The check
    /// is the receiver's, so it holds whichever node published each channel's copy.
    fn first_arrival(&self, publication: &Publication) -> bool {
        if !publication.message.shared {
            return true;
        }
        lock(&self.shared)
            .get_or_insert_with(Default::default)
            .insert(&publication.message.id)
    }

    /// Hand a live publication over: queued (rendered through `cache`) for `unsent` to
    /// write, or held while the connection recovers. False when the connection is closing
    /// or already had it.
    pub fn offer(
        &self,
        publication: &Arc<Publication>,
        cache: &mut RenderCache<'_>,
        unsent: &mut Unsent,
    ) -> bool {
        if self.not_for_me(publication) || !self.first_arrival(publication) {
            return false;
        }
        if self.recovering.load(Ordering::Acquire) {
            let mut held = lock(&self.held);
            if let Some(held) = held.as_mut() {
                if held.len() >= self.outbox.limits().max_messages {
                    self.outbox.close(Disconnect::SLOW_CONSUMER);
                    return false;
                }
                held.push(publication.clone());
                return true;
            }
        }
        if self.recovered(publication) || !self.member_news(publication) {
            return false;
        }
        let queued = self.outbox.queue(Frame {
            bytes: cache.get(self.renderer.as_ref()),
            publication: Some(publication.clone()),
        });
        match queued {
            Queued::Refused => false,
            Queued::Behind => true,
            Queued::First => {
                unsent.add(self.outbox.clone());
                true
            }
        }
    }

    /// True when the connection's recovery, or the join of the room it came through,
    /// covered `publication`.
    fn recovered(&self, publication: &Publication) -> bool {
        // Offsets start at 1: a publication at 0 is live-only (a push to one connection,
        // a member change), in no history, so no recovery covered it.
        if publication.position.offset == 0 {
            return false;
        }
        let at_connect = self.recovered_to.get().is_some_and(|positions| {
            positions
                .iter()
                .any(|(channel, top)| covers(channel, top, publication))
        });
        at_connect || (self.replaying_rooms.load(Ordering::Acquire) && self.replayed(publication))
    }

    /// True when a room join's replay covered `publication`; a publication of the room
    /// past that replay ends the room's check.
    fn replayed(&self, publication: &Publication) -> bool {
        let mut rooms = lock(&self.rooms);
        let mut covered = false;
        for room in rooms.iter_mut() {
            let Some(top) = &room.replayed_to else {
                continue;
            };
            if room.channel == publication.channel {
                covered = covers(&room.channel, top, publication);
                if !covered {
                    room.replayed_to = None;
                }
            }
        }
        if rooms.iter().all(|room| room.replayed_to.is_none()) {
            self.replaying_rooms.store(false, Ordering::Release);
        }
        covered
    }

    /// False for a member event the member list its room join answered with already told
    /// (see [`ListedMembers`]); true for anything else.
    fn member_news(&self, publication: &Publication) -> bool {
        let Some(change) = &publication.message.member else {
            return true;
        };
        if !self.listing_rooms.load(Ordering::Acquire) {
            return true;
        }
        let now = std::time::Instant::now();
        let mut rooms = lock(&self.rooms);
        let mut news = true;
        for room in rooms.iter_mut() {
            let Some(listed) = &mut room.listed else {
                continue;
            };
            if listed.expired(now) {
                room.listed = None;
            } else if room.channel == publication.channel {
                news = listed.take(&change.user, change.joined);
            }
        }
        if rooms.iter().all(|room| room.listed.is_none()) {
            self.listing_rooms.store(false, Ordering::Release);
        }
        news
    }

    /// The join of room channel `room` listed `users` as its members: member events of
    /// the room that list already told are dropped for a while (see [`ListedMembers`]).
    /// Called while the join holds live publications, so the held ones are checked too.
    pub fn listed_members<'a>(&self, room: &str, users: impl Iterator<Item = &'a str>) {
        let mut rooms = lock(&self.rooms);
        if let Some(joined) = rooms.iter_mut().find(|r| &*r.channel == room) {
            joined.listed = Some(Box::new(ListedMembers::new(users)));
            self.listing_rooms.store(true, Ordering::Release);
        }
    }

    /// True for a publication this connection never takes: one whose message excludes it
    /// (it sent it, or its backend said so), or a member change its format does not show.
    fn not_for_me(&self, publication: &Publication) -> bool {
        let message = &publication.message;
        let excluded = message
            .exclude
            .as_deref()
            .is_some_and(|name| super::parse_conn_name(name) == Ok(Some(self.id)));
        excluded || (message.member.is_some() && !self.renderer.shows_members())
    }

    /// Queue `publication` now (replay) as `bytes`, its encoding in this connection's
    /// format. A shared message replayed through one channel counts as taken, so its live
    /// copy through another is skipped.
    pub fn replay(&self, publication: &Arc<Publication>, bytes: Bytes) -> bool {
        if self.not_for_me(publication) {
            return false;
        }
        self.first_arrival(publication);
        self.outbox.push(Frame {
            bytes,
            publication: Some(publication.clone()),
        })
    }

    /// Stop holding: the connection's recovery reached `recovered_to` (a position per
    /// channel). Queue the held publications past it, in order (encoded through `store`,
    /// shared with every other connection of the format), then deliver live ones
    /// directly, skipping any the recovery covered.
    pub fn go_live(&self, recovered_to: Vec<(Arc<str>, StreamPosition)>, store: &RenderStore) {
        let _ = self.recovered_to.set(recovered_to);
        self.release(store);
    }

    /// Whether the connection is in room channel `room`: what a room `send` asks, since
    /// only members may talk in a room.
    pub fn in_room(&self, room: &str) -> bool {
        lock(&self.rooms).iter().any(|r| &*r.channel == room)
    }

    /// Hold live publications again, as at connect, while the hub reads what the
    /// connection missed in a room it joins; [`Subscriber::room_live`] or
    /// [`Subscriber::release`] ends it. A connection joins one room at a time.
    pub fn hold(&self) {
        let mut held = lock(&self.held);
        held.get_or_insert_with(Vec::new);
        self.recovering.store(true, Ordering::Release);
    }

    /// Stop holding after joining room channel `room`, whose replay reached `replayed_to`:
    /// like [`Subscriber::go_live`], live publications of the room at or below it are
    /// skipped from now on.
    pub fn room_live(&self, room: &str, replayed_to: StreamPosition, store: &RenderStore) {
        // Offsets start at 1: below the empty position there is nothing to skip.
        if replayed_to.offset > 0 {
            let mut rooms = lock(&self.rooms);
            if let Some(joined) = rooms.iter_mut().find(|r| &*r.channel == room) {
                joined.replayed_to = Some(replayed_to);
                self.replaying_rooms.store(true, Ordering::Release);
            }
        }
        self.release(store);
    }

    /// Stop holding: queue the held publications the recoveries did not cover, in order,
    /// then deliver live ones directly.
    pub fn release(&self, store: &RenderStore) {
        let mut held = lock(&self.held);
        for publication in held.take().unwrap_or_default() {
            if !self.recovered(&publication)
                && !self.not_for_me(&publication)
                && self.member_news(&publication)
            {
                let bytes = store.get(&publication, self.renderer.as_ref());
                self.outbox.push(Frame {
                    bytes,
                    publication: Some(publication),
                });
            }
        }
        self.recovering.store(false, Ordering::Release);
    }
}

/// True when `publication` of `channel` is at or below `top` in the same epoch.
fn covers(channel: &str, top: &StreamPosition, publication: &Publication) -> bool {
    publication.position.offset <= top.offset
        && *channel == *publication.channel
        && top.epoch == publication.position.epoch
}

type Members = HashMap<ConnId, Arc<Subscriber>>;

/// How many connections one user may hold (on every node together), and what happens to
/// the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimit {
    /// Most connections at once (at least 1).
    pub max: usize,
    /// True: the oldest connection makes room for the newest (one device per user, as
    /// the seeds did); false: the newest is refused.
    pub kick_oldest: bool,
}

/// Connections a newcomer pushes out under kick-oldest.
#[derive(Default)]
pub struct PushedOut {
    /// On this node.
    pub here: Vec<Arc<Subscriber>>,
    /// On other nodes, by name.
    pub elsewhere: Vec<String>,
}

/// One of a user's connections, on this node or another.
enum Held<'a> {
    Here(&'a Arc<Subscriber>),
    There(&'a str),
}

impl Held<'_> {
    /// The other node's connection name; local ones have none (their ids order them).
    fn name(&self) -> &str {
        match self {
            Held::Here(_) => "",
            Held::There(name) => name,
        }
    }
}

/// The user already holds as many connections as its limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFull;
/// One shard: channel name → its members in this shard.
type Shard = Mutex<HashMap<Arc<str>, Members>>;

/// Connections per channel, sharded by user.
pub struct Registry {
    shards: Box<[Shard]>,
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
        stable_hash(app) ^ stable_hash(user).rotate_left(17)
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

    /// Like [`Registry::subscribe`], but first hold the user to `limit` connections,
    /// counted in its user channel (`channels[0]`) on this node, atomically with
    /// subscribing, plus `elsewhere`: its connections on other nodes that are older than
    /// `sub` (so of two newcomers on two nodes at once, only the newer one counts the
    /// other). Returns the connections to push out to make room (kick-oldest: the oldest
    /// wherever they are), or `Err` when the newcomer must be refused.
    pub fn subscribe_within(
        &self,
        home: u64,
        channels: &[Arc<str>],
        sub: &Arc<Subscriber>,
        limit: Option<UserLimit>,
        elsewhere: &[RemoteConn],
    ) -> Result<PushedOut, UserFull> {
        let mut shard = lock(self.shard(home));
        let mut pushed_out = PushedOut::default();
        if let (Some(limit), Some(user_channel)) = (limit, channels.first()) {
            let local = shard.get(user_channel);
            let count = local.map_or(0, HashMap::len) + elsewhere.len();
            if count >= limit.max {
                if !limit.kick_oldest {
                    return Err(UserFull);
                }
                let mut oldest: Vec<(u64, ConnId, Held)> = local
                    .into_iter()
                    .flat_map(HashMap::values)
                    .map(|s| (s.since_ms, s.id, Held::Here(s)))
                    .chain(
                        elsewhere
                            .iter()
                            .map(|r| (r.since_ms, 0, Held::There(r.name.as_str()))),
                    )
                    .collect();
                oldest.sort_unstable_by(|a, b| (a.0, a.1, a.2.name()).cmp(&(b.0, b.1, b.2.name())));
                for (_, _, held) in oldest.into_iter().take(count + 1 - limit.max) {
                    match held {
                        Held::Here(sub) => pushed_out.here.push(sub.clone()),
                        Held::There(name) => pushed_out.elsewhere.push(name.to_owned()),
                    }
                }
            }
        }
        for channel in channels {
            shard
                .entry(channel.clone())
                .or_default()
                .insert(sub.id, sub.clone());
        }
        Ok(pushed_out)
    }

    /// Take `sub` out of `channels` and every room it joined; empty channels are
    /// forgotten. Returns the rooms it was in.
    pub fn unsubscribe(&self, home: u64, channels: &[Arc<str>], sub: &Subscriber) -> Vec<Arc<str>> {
        let mut shard = lock(self.shard(home));
        let rooms: Vec<Arc<str>> = std::mem::take(&mut *lock(&sub.rooms))
            .into_iter()
            .map(|room| room.channel)
            .collect();
        for channel in channels.iter().chain(&rooms) {
            remove_member(&mut shard, channel, sub.id);
        }
        rooms
    }

    /// Put `sub` in room channel `room`. False when it already was.
    pub fn join_room(&self, home: u64, room: &Arc<str>, sub: &Arc<Subscriber>) -> bool {
        let mut shard = lock(self.shard(home));
        let mut rooms = lock(&sub.rooms);
        if rooms.iter().any(|r| r.channel == *room) {
            return false;
        }
        rooms.push(JoinedRoom::new(room.clone()));
        shard
            .entry(room.clone())
            .or_default()
            .insert(sub.id, sub.clone());
        true
    }

    /// Take `sub` out of room channel `room`. False when it was not in it.
    pub fn leave_room(&self, home: u64, room: &Arc<str>, sub: &Subscriber) -> bool {
        let mut shard = lock(self.shard(home));
        let mut rooms = lock(&sub.rooms);
        let Some(at) = rooms.iter().position(|r| r.channel == *room) else {
            return false;
        };
        rooms.swap_remove(at);
        remove_member(&mut shard, room, sub.id);
        true
    }

    /// Put every connection in `user_channel` (one user's) in room channel `room`, at
    /// once, so a connection closing meanwhile is either joined and then left, or never
    /// joined. Returns the ids of those that were not in it yet.
    pub fn join_room_all(&self, home: u64, user_channel: &str, room: &Arc<str>) -> Vec<ConnId> {
        let mut shard = lock(self.shard(home));
        let members: Vec<Arc<Subscriber>> = match shard.get(user_channel) {
            Some(members) => members.values().cloned().collect(),
            None => return Vec::new(),
        };
        let mut joined = Vec::new();
        for sub in members.into_iter().filter(|sub| sub.homed_by_user) {
            let mut rooms = lock(&sub.rooms);
            if !rooms.iter().any(|r| r.channel == *room) {
                rooms.push(JoinedRoom::new(room.clone()));
                joined.push(sub.id);
                shard
                    .entry(room.clone())
                    .or_default()
                    .insert(sub.id, sub.clone());
            }
        }
        joined
    }

    /// Take every connection in `user_channel` out of room channel `room`. Returns the ids
    /// of those that were in it.
    pub fn leave_room_all(&self, home: u64, user_channel: &str, room: &Arc<str>) -> Vec<ConnId> {
        let mut shard = lock(self.shard(home));
        let members: Vec<Arc<Subscriber>> = match shard.get(user_channel) {
            Some(members) => members.values().cloned().collect(),
            None => return Vec::new(),
        };
        let mut left = Vec::new();
        for sub in members.into_iter().filter(|sub| sub.homed_by_user) {
            let mut rooms = lock(&sub.rooms);
            if let Some(at) = rooms.iter().position(|r| r.channel == *room) {
                rooms.swap_remove(at);
                left.push(sub.id);
                remove_member(&mut shard, room, sub.id);
            }
        }
        left
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

/// Take `id` out of `channel` in `shard`, forgetting the channel when it empties.
fn remove_member(shard: &mut HashMap<Arc<str>, Members>, channel: &str, id: ConnId) {
    if let Some(members) = shard.get_mut(channel) {
        members.remove(&id);
        if members.is_empty() {
            shard.remove(channel);
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{FormatId, OutboxLimits};

    struct Plain(FormatId);

    impl Render for Plain {
        fn format(&self) -> FormatId {
            self.0
        }
        fn kind(&self) -> (&'static str, &'static str) {
            ("test", "test")
        }
        fn render(&self, _: &Publication) -> Bytes {
            Bytes::new()
        }
    }

    fn subscriber(id: ConnId) -> Arc<Subscriber> {
        Arc::new(Subscriber::new(
            id,
            Arc::new(Outbox::new(OutboxLimits {
                max_messages: 1,
                max_bytes: 1,
            })),
            Arc::new(Plain(FormatId::unique())),
        ))
    }

    /// Subscriber 1, live, with a queue roomy enough for a test, rendering through
    /// `renderer`.
    fn live_subscriber(renderer: Arc<dyn Render>, store: &RenderStore) -> Arc<Subscriber> {
        let limits = OutboxLimits {
            max_messages: 100,
            max_bytes: 100_000,
        };
        let sub = Arc::new(Subscriber::new(1, Arc::new(Outbox::new(limits)), renderer));
        sub.go_live(Vec::new(), store);
        sub
    }

    /// Offer `publication` to `sub` as a fan-out does.
    fn offer(sub: &Subscriber, store: &RenderStore, publication: &Arc<Publication>) -> bool {
        sub.offer(
            publication,
            &mut RenderCache::new(publication, store),
            &mut Unsent::default(),
        )
    }

    /// Kick-oldest picks the oldest connections wherever they are, local ones by their
    /// connect time; refuse-newest counts the other nodes' connections too.
    #[test]
    fn the_user_limit_counts_and_kicks_across_nodes() {
        let registry = Registry::new();
        let channels: Vec<Arc<str>> = vec!["a:user:1".into()];
        let local = Arc::new(
            Arc::try_unwrap(subscriber(1))
                .ok()
                .unwrap()
                .connected_at(100),
        );
        let remote = |name: &str, since_ms| RemoteConn {
            name: name.into(),
            since_ms,
        };
        let kick = Some(UserLimit {
            max: 2,
            kick_oldest: true,
        });
        registry
            .subscribe_within(0, &channels, &local, kick, &[])
            .unwrap();
        let elsewhere = [remote("nodeb-1", 50), remote("nodeb-2", 150)];
        let pushed = registry
            .subscribe_within(0, &channels, &subscriber(2), kick, &elsewhere)
            .unwrap();
        assert_eq!(pushed.elsewhere, ["nodeb-1"]);
        assert_eq!(
            pushed.here.iter().map(|s| s.id).collect::<Vec<_>>(),
            [1],
            "the local connection from 100 is older than the remote one from 150"
        );
        let refuse = Some(UserLimit {
            max: 3,
            kick_oldest: false,
        });
        let refused =
            registry.subscribe_within(0, &channels, &subscriber(3), refuse, &elsewhere[..1]);
        assert!(refused.is_err(), "two here and one elsewhere make three");
    }

    #[test]
    fn members_per_channel_and_cleanup() {
        let registry = Registry::new();
        let all: Arc<str> = "a:all".into();
        let (u1, u2): (Arc<str>, Arc<str>) = ("a:user:1".into(), "a:user:2".into());
        let (h1, h2) = (Registry::home("a", "1"), Registry::home("a", "2"));
        let (s1, s2) = (subscriber(1), subscriber(2));
        registry.subscribe(h1, &[u1.clone(), all.clone()], &s1);
        registry.subscribe(h1, &[u1.clone(), all.clone()], &s2);
        registry.subscribe(h2, &[u2.clone(), all.clone()], &subscriber(3));
        let members = |channel: &str, home| {
            let mut ids = Vec::new();
            registry.for_each(channel, home, |s| ids.push(s.id));
            ids.sort();
            ids
        };
        assert_eq!(members("a:all", None), [1, 2, 3]);
        assert_eq!(members("a:user:1", Some(h1)), [1, 2]);
        let room: Arc<str> = "a:room:r".into();
        assert!(registry.join_room(h1, &room, &s1));
        assert!(
            !registry.join_room(h1, &room, &s1),
            "joining twice is one join"
        );
        assert_eq!(registry.join_room_all(h1, "a:user:1", &room), [2]);
        assert_eq!(members("a:room:r", None), [1, 2]);
        assert!(registry.leave_room(h1, &room, &s2));
        assert_eq!(members("a:room:r", None), [1]);
        assert_eq!(
            registry.unsubscribe(h1, &[u1.clone(), all.clone()], &s1),
            std::slice::from_ref(&room),
            "closing leaves the rooms too"
        );
        assert!(members("a:room:r", None).is_empty());
        registry.unsubscribe(h1, &[u1.clone(), all.clone()], &s2);
        assert!(members("a:user:1", Some(h1)).is_empty());
        assert_eq!(members("a:all", None), [3]);
        let shard = lock(registry.shard(h1));
        assert!(
            !shard.contains_key("a:user:1"),
            "empty channels are forgotten"
        );
    }

    /// A broadcast visits one shard at a time, so connects to the other shards proceed
    /// while it runs: the broadcast here waits, mid-walk, for a connect to finish.
    #[test]
    fn broadcast_does_not_block_connects_to_other_shards() {
        let registry = Arc::new(Registry::new());
        let all: Arc<str> = "a:all".into();
        let users: Vec<u64> = (0..200)
            .map(|u| Registry::home("a", &u.to_string()))
            .collect();
        for (id, home) in users.iter().enumerate() {
            registry.subscribe(*home, std::slice::from_ref(&all), &subscriber(id as ConnId));
        }
        let mut connected = false;
        let mut visited = 0;
        registry.for_each("a:all", None, |sub| {
            visited += 1;
            if connected {
                return;
            }
            let busy_shard = users[sub.id as usize] % SHARDS as u64;
            let Some(home) = (0..)
                .map(|u: u64| Registry::home("b", &u.to_string()))
                .find(|h| h % SHARDS as u64 != busy_shard)
            else {
                return;
            };
            let registry = registry.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                registry.subscribe(home, &["b:user:x".into()], &subscriber(10_000));
                let _ = tx.send(());
            });
            connected = rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok();
        });
        assert!(
            connected,
            "a connect to another shard waited for the broadcast"
        );
        assert_eq!(visited, 200);
    }

    use crate::hub::render::tests::Counting;

    /// A replay to thousands of reconnecting clients encodes each message once per format.
    #[test]
    fn replay_and_live_share_one_encoding_per_format() {
        let store = RenderStore::new();
        let renderer = Arc::new(Counting(FormatId::unique(), Default::default()));
        let publication = Arc::new(Publication::new(
            "a:all".into(),
            crate::engine::StreamPosition::empty(),
            Arc::new(crate::hub::Message::for_test("x")),
        ));
        let limits = OutboxLimits {
            max_messages: 10,
            max_bytes: 1000,
        };
        let subscribers: Vec<Subscriber> = (0..5)
            .map(|id| Subscriber::new(id, Arc::new(Outbox::new(limits)), renderer.clone()))
            .collect();
        for subscriber in &subscribers {
            let bytes = store.get(&publication, renderer.as_ref());
            assert!(subscriber.replay(&publication, bytes));
            subscriber.go_live(Vec::new(), &store);
            let mut unsent = Unsent::default();
            assert!(subscriber.offer(
                &publication,
                &mut RenderCache::new(&publication, &store),
                &mut unsent
            ));
        }
        assert_eq!(renderer.1.load(Ordering::Relaxed), 1);
    }

    fn at(channel: &str, epoch: &str, offset: u64) -> Arc<Publication> {
        Arc::new(Publication::new(
            channel.into(),
            StreamPosition {
                epoch: epoch.into(),
                offset,
            },
            Arc::new(crate::hub::Message::for_test("x")),
        ))
    }

    /// A room join holds the connection's live messages while the history is read, then
    /// lets through only what the replay did not cover, held or live; the room's first
    /// message past the replay ends the check.
    #[test]
    fn a_room_join_skips_what_its_replay_covered() {
        let store = RenderStore::new();
        let registry = Registry::new();
        let home = Registry::home("a", "1");
        let sub = live_subscriber(
            Arc::new(Counting(FormatId::unique(), Default::default())),
            &store,
        );
        registry.subscribe(home, &["a:user:1".into()], &sub);
        let offer = |p: &Arc<Publication>| offer(&sub, &store, p);
        let room: Arc<str> = "a:room:r".into();
        sub.hold();
        assert!(registry.join_room(home, &room, &sub));
        for publication in [
            at("a:room:r", "e", 4),
            at("a:room:r", "e", 5),
            at("a:user:1", "u", 1),
        ] {
            assert!(offer(&publication), "held while the join reads the history");
        }
        sub.room_live(
            &room,
            StreamPosition {
                epoch: "e".into(),
                offset: 4,
            },
            &store,
        );
        let mut frames = Vec::new();
        sub.outbox.drain(&mut frames);
        let queued: Vec<(String, u64)> = frames
            .iter()
            .filter_map(|f| f.publication.as_ref())
            .map(|p| (p.channel.to_string(), p.position.offset))
            .collect();
        assert_eq!(queued, [("a:room:r".into(), 5), ("a:user:1".into(), 1)]);
        assert!(
            !sub.replaying_rooms.load(Ordering::Acquire),
            "offset 5 ended the check"
        );
        assert!(offer(&at("a:room:r", "e", 6)));

        let other: Arc<str> = "a:room:s".into();
        sub.hold();
        assert!(registry.join_room(home, &other, &sub));
        sub.room_live(
            &other,
            StreamPosition {
                epoch: "f".into(),
                offset: 9,
            },
            &store,
        );
        assert!(
            !offer(&at("a:room:s", "f", 9)),
            "replayed already: skipped live"
        );
        assert!(offer(&at("a:room:s", "f", 10)));
        assert!(!sub.replaying_rooms.load(Ordering::Acquire));
    }

    /// Renders nothing, but takes member events.
    struct ShowsMembers(FormatId);

    impl Render for ShowsMembers {
        fn format(&self) -> FormatId {
            self.0
        }
        fn kind(&self) -> (&'static str, &'static str) {
            ("test", "test")
        }
        fn render(&self, _: &Publication) -> Bytes {
            Bytes::new()
        }
        fn shows_members(&self) -> bool {
            true
        }
    }

    fn member_event(channel: &str, user: &str, joined: bool) -> Arc<Publication> {
        Arc::new(Publication::new(
            channel.into(),
            StreamPosition::empty(),
            Arc::new(crate::hub::Message {
                member: Some(crate::engine::MemberChange {
                    user: user.into(),
                    joined,
                }),
                ..crate::hub::Message::for_test("x")
            }),
        ))
    }

    /// A member that entered while another connection joined is both in the joiner's list
    /// and announced to it: the announcement is dropped, held or live, and later events
    /// pass as long as they change what the joiner knows.
    #[test]
    fn member_events_the_joiners_list_told_already_are_dropped() {
        let store = RenderStore::new();
        let registry = Registry::new();
        let home = Registry::home("a", "1");
        let sub = live_subscriber(Arc::new(ShowsMembers(FormatId::unique())), &store);
        let offer = |p: &Arc<Publication>| offer(&sub, &store, p);
        let taken = || {
            let mut frames = Vec::new();
            sub.outbox.drain(&mut frames);
            frames
                .iter()
                .filter_map(|f| f.publication.as_ref()?.message.member.clone())
                .map(|change| format!("{}{}", if change.joined { "+" } else { "-" }, change.user))
                .collect::<Vec<_>>()
        };
        let room: Arc<str> = "a:room:presence-r".into();
        sub.hold();
        assert!(registry.join_room(home, &room, &sub));
        assert!(
            offer(&member_event(&room, "b", true)),
            "held during the join"
        );
        assert!(
            offer(&member_event(&room, "x", true)),
            "held during the join"
        );
        sub.listed_members(&room, ["a", "b"].into_iter());
        sub.room_live(&room, StreamPosition::empty(), &store);
        assert_eq!(taken(), ["+x"], "b was in the list; x was not");

        assert!(
            !offer(&member_event(&room, "b", true)),
            "b came late from a node"
        );
        assert!(offer(&member_event(&room, "a", false)));
        assert!(!offer(&member_event(&room, "a", false)));
        assert!(offer(&member_event(&room, "a", true)), "a came back");
        assert!(
            offer(&member_event("a:room:other", "b", true)),
            "another room's list was not read"
        );
        assert_eq!(taken(), ["-a", "+a", "+b"]);
    }

    fn shared_message(id: &str, channel: &str) -> Arc<Publication> {
        Arc::new(Publication::new(
            channel.into(),
            crate::engine::StreamPosition::empty(),
            Arc::new(crate::hub::Message {
                id: id.into(),
                shared: true,
                ..crate::hub::Message::for_test("x")
            }),
        ))
    }

    /// A push to several targets a connection is in reaches it once, by message id, even
    /// when other shared pushes arrive in between (as they may from other nodes).
    #[test]
    fn a_shared_message_is_taken_once_whatever_channels_it_comes_through() {
        let store = RenderStore::new();
        let sub = live_subscriber(
            Arc::new(Counting(FormatId::unique(), Default::default())),
            &store,
        );
        let offer = |p: &Arc<Publication>| offer(&sub, &store, p);
        assert!(offer(&shared_message("m1", "a:user:1")));
        assert!(offer(&shared_message("m2", "a:user:1")));
        assert!(offer(&shared_message("m3", "a:user:1")));
        assert!(!offer(&shared_message("m1", "a:all")), "m1 came twice");
        assert!(!offer(&shared_message("m3", "a:group:g")), "m3 came twice");
        assert!(offer(&shared_message("m4", "a:all")));
        let single = Arc::new(Publication::new(
            "a:all".into(),
            crate::engine::StreamPosition::empty(),
            Arc::new(crate::hub::Message::for_test("x")),
        ));
        assert!(
            offer(&single) && offer(&single),
            "unshared messages are not tracked"
        );
    }
}
