//! Presence on Redis: who is online on every node, and a dead node forgotten within
//! `[redis] presence_ttl`.
//!
//! Keys (all under the prefix; the `{scope}` hash tag keeps a scope's keys on one
//! Redis Cluster slot):
//! - `P:presence:nodes`: sorted set of live nodes, scored by when each one's heartbeat
//!   runs out (milliseconds since the epoch). Each node refreshes its own score every
//!   third of the TTL: one command per node, however many connections it holds.
//! - `P:presence:{scope}:conns`: hash, connection name → `since_ms|user`. Reading a
//!   scope's users (an app's, a room's) is one `HGETALL` of it, never a scan.
//! - `P:presence:{scope}:user:U`: hash, connection name → `since_ms`, for one user's
//!   count and its connections on other nodes (the per-user limit, kicks).
//! - `P:presence:{scope}:info`: hash, user → the info (JSON text) a member showed when its
//!   first connection joined with [`Presence::join_member`]; it goes with the member's
//!   last connection, atomically with it, so one leaver (or one purger) alone removes it.
//! - `P:presence:node:N`: hash, `scope|connection name` → user: everything node `N`
//!   registered, so any node can purge a dead node's entries without it.
//! - `P:presence:{app}:scopes`: sorted set, every score 0 so that it is ordered by name,
//!   of `scope|connection name` for each connection in a room scope of app `app` (a scope
//!   `app:…`): [`Presence::scopes`] reads one range of it by name, never a scan. One
//!   member per connection rather than one per scope, because a member is then written
//!   and removed only by its connection's node (or by the purge of that node when it
//!   died), each time idempotently: two nodes joining and leaving one scope at once touch
//!   different members, so no interleaving can leave a stale scope behind or drop a live
//!   one, and a write that failed halfway is finished by the retry of the entry. It lives
//!   in the app's slot, apart from the scope's keys: nothing updates both in one script.
//!
//! When a purge takes a member's last connection in a scope (and the member's info with
//! it), the purging node reports it to the hub ([`PresenceEvents::members_gone`]); the
//! removal is one script in the scope's slot, so of several nodes purging the same dead
//! node at once exactly one reports each member.
//!
//! A connection's name starts with its node's name, so readers drop the entries of nodes
//! whose heartbeat ran out at once; the entries themselves are purged by whichever node
//! next sees the dead node (each looks every heartbeat). Node clocks must agree to well
//! within the TTL (they do on NTP-synchronised hosts).
//!
//! Readers do not ask Redis which nodes live each time: every heartbeat reads all the
//! nodes' deadlines, and a deadline only moves forward while its node lives, so a
//! remembered one still to come proves the node alive. Only an entry of a node that looks
//! dead or is unknown (one that started since) makes a reader read the deadlines again, so
//! a push to a user costs one command, not two.
//!
//! Entries this node holds are mirrored in memory: when its heartbeat finds that Redis
//! forgot it (a Redis restarted without persistence, or this node was purged after a long
//! stall), it writes them all again; leaves that failed while Redis was away are retried.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fred::clients::Pool;
use fred::interfaces::{HashesInterface, KeysInterface, SortedSetsInterface};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{EngineError, Member, Presence, PresenceEvents, RemoteConn};
use crate::node::{conn_name, node_id};
use crate::redis::RedisConnections;
use crate::redis::Script;
use crate::sync::lock;

/// Separates the parts of a stored value or field (never in a scope or a connection name).
const SEP: char = '|';

/// A member's join, atomic in its scope's slot: its two records, its info unless the user
/// already shows one, and how many connections the user now holds there (1: the member
/// was added). KEYS: conns, user, info; ARGV: connection, `since|user`, since, user, info.
static JOIN_MEMBER: Script = Script::fixed(
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
     redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) \
     redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) \
     return redis.call('HLEN', KEYS[2])",
);

/// A member's leave, atomic in its scope's slot: 1 when it took the user's last
/// connection there (the member was removed, and its info goes). KEYS: conns, user, info;
/// ARGV: connection, user.
static LEAVE_MEMBER: Script = Script::fixed(
    "redis.call('HDEL', KEYS[1], ARGV[1]) \
     local removed = redis.call('HDEL', KEYS[2], ARGV[1]) \
     if redis.call('HLEN', KEYS[2]) > 0 then return 0 end \
     redis.call('HDEL', KEYS[3], ARGV[2]) \
     return removed",
);

/// The removal of one connection's entries in its scope (a purge, or a leave retried),
/// atomic in the scope's slot: 1 when it took the user's last connection there and the
/// user showed info (a member, now removed with its info), told to this call alone.
/// KEYS: conns, user, info; ARGV: connection, user.
static REMOVE: Script = Script::fixed(
    "redis.call('HDEL', KEYS[1], ARGV[1]) \
     if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 or redis.call('HLEN', KEYS[2]) > 0 then \
       return 0 \
     end \
     return redis.call('HDEL', KEYS[3], ARGV[2])",
);

/// How many of a dead node's entries a purge removes at once.
const PURGE_CONCURRENCY: usize = 32;

/// One entry this node registered: connection `conn` of `user` in `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry {
    scope: Arc<str>,
    user: Arc<str>,
    conn: u64,
}

/// What this node keeps of one of its entries, to write it again when Redis forgot it.
#[derive(Debug, Clone)]
struct Joined {
    since_ms: u64,
    /// The member's info, for an entry of [`Presence::join_member`].
    info: Option<Arc<str>>,
}

/// Presence of every node, kept in Redis.
pub struct RedisPresence {
    connections: Arc<RedisConnections>,
    keys: Keys,
    ttl: Duration,
    /// This node's entries, when each connected and its info, to write them again if
    /// Redis forgot.
    mine: Mutex<HashMap<Entry, Joined>>,
    /// Entries whose leave failed (Redis away): removed at the next heartbeat.
    stale: Mutex<HashSet<Entry>>,
    /// Set when Redis forgot this node, until all its entries are written again.
    rewrite: AtomicBool,
    /// Every node's heartbeat deadline (ms since the epoch) as last read from Redis.
    deadlines: Mutex<HashMap<String, u64>>,
    /// The hub's handler for members a purge removed.
    events: OnceLock<Arc<dyn PresenceEvents>>,
}

/// Key names under one prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn nodes(&self) -> String {
        format!("{}:presence:nodes", self.prefix)
    }

    fn conns(&self, scope: &str) -> String {
        format!("{}:presence:{{{scope}}}:conns", self.prefix)
    }

    fn user(&self, scope: &str, user: &str) -> String {
        format!("{}:presence:{{{scope}}}:user:{user}", self.prefix)
    }

    fn info(&self, scope: &str) -> String {
        format!("{}:presence:{{{scope}}}:info", self.prefix)
    }

    fn node(&self, node: &str) -> String {
        format!("{}:presence:node:{node}", self.prefix)
    }

    /// The index of the room scopes of `scope`'s app, when `scope` (or a prefix of scopes)
    /// names one: `app:…`.
    fn scopes_of(&self, scope: &str) -> Option<String> {
        scope
            .split_once(':')
            .map(|(app, _)| format!("{}:presence:{{{app}}}:scopes", self.prefix))
    }
}

/// How a node's record and the scopes index name connection `conn` in `scope`.
fn member_of(scope: &str, conn: &str) -> String {
    format!("{scope}{SEP}{conn}")
}

/// The exclusive upper bound, by name, of the strings that start with `prefix` (its last
/// character that has a successor, incremented), or `+` when there is none.
fn above(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return format!("({}", chars.into_iter().collect::<String>());
        }
    }
    "+".into()
}

fn unavailable(error: fred::error::Error) -> EngineError {
    EngineError::Unavailable(format!("redis presence: {error}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node part of a connection name.
fn node_of(conn: &str) -> &str {
    conn.split_once('-').map_or(conn, |(node, _)| node)
}

impl RedisPresence {
    /// Presence over `connections`, heartbeating (and purging dead nodes) on `tracker`
    /// until `shutdown`; then this node marks itself dead and removes its entries.
    pub fn start(
        connections: Arc<RedisConnections>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let presence = Arc::new(Self {
            keys: Keys {
                prefix: connections.prefix().to_owned(),
            },
            ttl: connections.presence_ttl(),
            connections,
            mine: Mutex::default(),
            stale: Mutex::default(),
            rewrite: AtomicBool::new(false),
            deadlines: Mutex::default(),
            events: OnceLock::new(),
        });
        tracker.spawn(presence.clone().heartbeat(shutdown));
        presence
    }

    /// Presence lives on the first configured deployment: it is small next to the
    /// channel streams that several deployments share out.
    fn pool(&self) -> &Pool {
        &self.connections.shards()[0].pool
    }

    /// Beat every third of the TTL until `shutdown`, then leave.
    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.ttl / 3).max(Duration::from_millis(200));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.beat().await {
                tracing::warn!(%error, "presence heartbeat failed; retrying");
            }
        }
        if let Err(error) = self.retire().await {
            tracing::warn!(%error, "could not remove this node's presence at shutdown");
        }
    }

    /// One heartbeat: say this node lives (writing its entries again when Redis had
    /// forgotten it), finish failed leaves, and purge nodes whose heartbeat ran out.
    async fn beat(&self) -> Result<(), EngineError> {
        let expires = now_ms() + self.ttl.as_millis() as u64;
        let added: i64 = self
            .pool()
            .zadd(
                self.keys.nodes(),
                None,
                None,
                false,
                false,
                (expires as f64, node_id()),
            )
            .await
            .map_err(unavailable)?;
        if added > 0 {
            self.rewrite.store(true, Ordering::Relaxed);
        }
        if self.rewrite.load(Ordering::Relaxed) {
            let entries: Vec<(Entry, Joined)> = lock(&self.mine)
                .iter()
                .map(|(entry, joined)| (entry.clone(), joined.clone()))
                .collect();
            if !entries.is_empty() {
                tracing::info!(
                    entries = entries.len(),
                    "Redis does not know this node (yet); writing its presence entries"
                );
            }
            for (entry, joined) in entries {
                self.write(&entry, &joined).await?;
                // A leave while this was written must not be undone by it.
                if !lock(&self.mine).contains_key(&entry) {
                    self.erase(&entry).await?;
                }
            }
            self.rewrite.store(false, Ordering::Relaxed);
        }
        let stale: Vec<Entry> = lock(&self.stale).iter().cloned().collect();
        for entry in stale {
            // A member's leave that failed: if it took the member's last connection, the
            // hub was never told, so it hears of it as of a member gone.
            if self.erase(&entry).await? {
                self.report(BTreeMap::from([(
                    entry.scope.to_string(),
                    vec![entry.user.to_string()],
                )]));
            }
            lock(&self.stale).remove(&entry);
        }
        let now = now_ms();
        let dead: Vec<String> = self
            .read_deadlines()
            .await?
            .into_iter()
            .filter(|(_, deadline)| *deadline < now)
            .map(|(node, _)| node)
            .collect();
        for node in dead {
            self.purge(&node).await?;
        }
        Ok(())
    }

    /// Read every node's heartbeat deadline from Redis (one command), remembering them
    /// for readers.
    async fn read_deadlines(&self) -> Result<HashMap<String, u64>, EngineError> {
        let scored: Vec<(String, f64)> = self
            .pool()
            .zrange(self.keys.nodes(), 0, -1, None, false, None, true)
            .await
            .map_err(unavailable)?;
        let deadlines: HashMap<String, u64> = scored
            .into_iter()
            .map(|(node, deadline)| (node, deadline as u64))
            .collect();
        lock(&self.deadlines).clone_from(&deadlines);
        Ok(deadlines)
    }

    /// Whether `node` lives by the deadlines remembered: `None` when they cannot tell
    /// (a deadline passed, which a heartbeat since may have moved, or a node not seen yet).
    fn known_alive(&self, node: &str, now: u64) -> Option<bool> {
        if node == node_id() {
            return Some(true);
        }
        lock(&self.deadlines)
            .get(node)
            .and_then(|deadline| (*deadline >= now).then_some(true))
    }

    /// Mark this node dead and purge its entries (a clean shutdown: its connections are
    /// closing, and readers stop counting them at once).
    async fn retire(&self) -> Result<(), EngineError> {
        let _: i64 = self
            .pool()
            .zadd(
                self.keys.nodes(),
                None,
                None,
                false,
                false,
                (0.0, node_id()),
            )
            .await
            .map_err(unavailable)?;
        self.purge(node_id()).await
    }

    /// Remove every entry of `node`, then the node itself, and report the members whose
    /// last connection in a scope went with it. Safe to run on several nodes at once, and
    /// again after a failure halfway: each removal is atomic and reports only what it
    /// removed, so each member gone is reported once.
    async fn purge(&self, node: &str) -> Result<(), EngineError> {
        let node_key = self.keys.node(node);
        let entries: HashMap<String, String> =
            self.pool().hgetall(&node_key).await.map_err(unavailable)?;
        let mut todo: Vec<(&str, &str, &str)> = Vec::with_capacity(entries.len());
        for (field, user) in &entries {
            if let Some((scope, conn)) = field.rsplit_once(SEP) {
                todo.push((scope, user, conn));
            }
        }
        let mut gone: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut failed = None;
        let mut running = FuturesUnordered::new();
        loop {
            // After a failure, the removals under way finish and no more start: Redis is
            // likely away, and the next heartbeat purges the rest.
            while failed.is_none() && running.len() < PURGE_CONCURRENCY {
                let Some((scope, user, conn)) = todo.pop() else {
                    break;
                };
                running.push(self.remove_member(node, scope, user, conn));
            }
            match running.next().await {
                Some(Ok(Some((scope, user)))) => gone.entry(scope).or_default().push(user),
                Some(Ok(None)) => {}
                Some(Err(error)) => failed = Some(error),
                None => break,
            }
        }
        // Reported even when another removal failed: these are removed, and no later
        // purge would report them again.
        self.report(gone);
        if let Some(error) = failed {
            return Err(error);
        }
        let _: i64 = self.pool().del(&node_key).await.map_err(unavailable)?;
        let _: i64 = self
            .pool()
            .zrem(self.keys.nodes(), node)
            .await
            .map_err(unavailable)?;
        if !entries.is_empty() && node != node_id() {
            tracing::info!(
                node,
                entries = entries.len(),
                "purged a dead node's presence"
            );
        }
        Ok(())
    }

    /// Tell the hub's handler, if it gave one, of the members gone from each scope.
    fn report(&self, gone: BTreeMap<String, Vec<String>>) {
        let Some(events) = self.events.get() else {
            return;
        };
        for (scope, mut users) in gone {
            users.sort_unstable();
            events.members_gone(&scope, &users);
        }
    }

    /// [`RedisPresence::remove`], answering the scope and user of a member gone.
    async fn remove_member(
        &self,
        node: &str,
        scope: &str,
        user: &str,
        conn: &str,
    ) -> Result<Option<(String, String)>, EngineError> {
        let gone = self.remove(node, scope, user, conn).await?;
        Ok(gone.then(|| (scope.to_owned(), user.to_owned())))
    }

    /// Remove connection `conn` (its name) of `user` in `scope`, which `node` registered:
    /// its entries and, with its last connection there, the user's info (true: the member
    /// is gone, told to this call alone); then the node's record of it and its member of
    /// the scopes index.
    async fn remove(
        &self,
        node: &str,
        scope: &str,
        user: &str,
        conn: &str,
    ) -> Result<bool, EngineError> {
        let keys = vec![
            self.keys.conns(scope),
            self.keys.user(scope, user),
            self.keys.info(scope),
        ];
        let member = member_of(scope, conn);
        let index = async {
            match self.keys.scopes_of(scope) {
                Some(key) => self.pool().zrem::<i64, _, _>(key, member.as_str()).await,
                None => Ok(0),
            }
        };
        let (gone, _, _) = tokio::try_join!(
            REMOVE.run(
                self.pool().next(),
                keys,
                vec![conn.to_owned(), user.to_owned()]
            ),
            self.pool()
                .hdel::<i64, _, _>(self.keys.node(node), member.as_str()),
            index,
        )
        .map_err(unavailable)?;
        Ok(gone.as_u64() == Some(1))
    }

    /// Write one entry's records (pipelined: sent together on one connection): its two
    /// entries, the node's record, its info unless the user shows one already, and its
    /// member of the scopes index.
    async fn write(&self, entry: &Entry, joined: &Joined) -> Result<(), EngineError> {
        let conn = conn_name(entry.conn);
        let member = member_of(&entry.scope, &conn);
        let info = async {
            match &joined.info {
                Some(info) => {
                    self.pool()
                        .hsetnx::<i64, _, _, _>(self.keys.info(&entry.scope), &*entry.user, &**info)
                        .await
                }
                None => Ok(0),
            }
        };
        let index = async {
            match self.keys.scopes_of(&entry.scope) {
                Some(key) => {
                    self.pool()
                        .zadd::<i64, _, _>(key, None, None, false, false, (0.0, member.as_str()))
                        .await
                }
                None => Ok(0),
            }
        };
        let written = tokio::try_join!(
            self.pool().hset::<i64, _, _>(
                self.keys.conns(&entry.scope),
                (
                    conn.as_str(),
                    format!("{}{SEP}{}", joined.since_ms, entry.user)
                ),
            ),
            self.pool().hset::<i64, _, _>(
                self.keys.user(&entry.scope, &entry.user),
                (conn.as_str(), joined.since_ms.to_string()),
            ),
            self.pool()
                .hset::<i64, _, _>(self.keys.node(node_id()), (member.as_str(), &*entry.user),),
            info,
            index,
        );
        written.map(drop).map_err(unavailable)
    }

    /// Remove one of this node's entries ([`RedisPresence::remove`]): true when it took a
    /// member's last connection in its scope.
    async fn erase(&self, entry: &Entry) -> Result<bool, EngineError> {
        self.remove(node_id(), &entry.scope, &entry.user, &conn_name(entry.conn))
            .await
    }

    /// Nodes whose heartbeat has not run out, read from Redis now (this one always
    /// counts as alive).
    async fn live_nodes(&self) -> Result<HashSet<String>, EngineError> {
        let now = now_ms();
        let mut live: HashSet<String> = self
            .read_deadlines()
            .await?
            .into_iter()
            .filter(|(_, deadline)| *deadline >= now)
            .map(|(node, _)| node)
            .collect();
        live.insert(node_id().to_owned());
        Ok(live)
    }

    /// Of `conns`, those whose node lives: decided from the remembered deadlines when
    /// they tell, else from a fresh read of them.
    async fn alive<T>(
        &self,
        conns: Vec<T>,
        name: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, EngineError> {
        let now = now_ms();
        if conns
            .iter()
            .all(|conn| self.known_alive(node_of(name(conn)), now).is_some())
        {
            return Ok(conns);
        }
        let live = self.live_nodes().await?;
        Ok(conns
            .into_iter()
            .filter(|conn| live.contains(node_of(name(conn))))
            .collect())
    }

    /// A hash of connection name → value, with the entries of dead nodes left out.
    async fn live_entries(&self, key: String) -> Result<Vec<(String, String)>, EngineError> {
        let entries: HashMap<String, String> =
            self.pool().hgetall(key).await.map_err(unavailable)?;
        self.alive(entries.into_iter().collect(), |(conn, _)| conn.as_str())
            .await
    }
}

#[async_trait]
impl Presence for RedisPresence {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn spans_nodes(&self) -> bool {
        true
    }

    async fn join(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
    ) -> Result<(), EngineError> {
        let entry = Entry {
            scope: scope.into(),
            user: user.into(),
            conn,
        };
        let joined = Joined {
            since_ms,
            info: None,
        };
        lock(&self.mine).insert(entry.clone(), joined.clone());
        let written = self.write(&entry, &joined).await;
        if written.is_err() {
            lock(&self.mine).remove(&entry);
            lock(&self.stale).insert(entry);
        }
        written
    }

    async fn leave(&self, scope: &str, user: &str, conn: u64) -> Result<(), EngineError> {
        let entry = Entry {
            scope: scope.into(),
            user: user.into(),
            conn,
        };
        lock(&self.mine).remove(&entry);
        let erased = self.erase(&entry).await;
        if erased.is_err() {
            lock(&self.stale).insert(entry);
        }
        erased.map(drop)
    }

    async fn users(&self, scope: &str) -> Result<Vec<(String, usize)>, EngineError> {
        let mut users: BTreeMap<String, usize> = BTreeMap::new();
        for (_, value) in self.live_entries(self.keys.conns(scope)).await? {
            if let Some((_, user)) = value.split_once(SEP) {
                *users.entry(user.to_owned()).or_default() += 1;
            }
        }
        Ok(users.into_iter().collect())
    }

    async fn connections(&self, scope: &str, user: &str) -> Result<usize, EngineError> {
        let conns: Vec<String> = self
            .pool()
            .hkeys(self.keys.user(scope, user))
            .await
            .map_err(unavailable)?;
        Ok(self.alive(conns, String::as_str).await?.len())
    }

    /// Counts the scope's entries as stored: a dead node's are included until a node
    /// purges them (within a heartbeat period after its TTL ran out).
    async fn total(&self, scope: &str) -> Result<usize, EngineError> {
        self.pool()
            .hlen::<usize, _>(self.keys.conns(scope))
            .await
            .map_err(unavailable)
    }

    async fn elsewhere(&self, scope: &str, user: &str) -> Result<Vec<RemoteConn>, EngineError> {
        let mut remote: Vec<RemoteConn> = self
            .live_entries(self.keys.user(scope, user))
            .await?
            .into_iter()
            .filter(|(conn, _)| node_of(conn) != node_id())
            .map(|(name, since)| RemoteConn {
                since_ms: since.parse().unwrap_or(0),
                name,
            })
            .collect();
        remote.sort_by(|a, b| (a.since_ms, &a.name).cmp(&(b.since_ms, &b.name)));
        Ok(remote)
    }

    /// One `HEXISTS`: the entry (and whether its node's heartbeat still runs, read
    /// again only when the remembered deadlines cannot tell).
    async fn online_elsewhere(&self, scope: &str, conn: &str) -> Result<bool, EngineError> {
        if node_of(conn) == node_id() {
            return Ok(false);
        }
        let held: bool = self
            .pool()
            .hexists(self.keys.conns(scope), conn)
            .await
            .map_err(unavailable)?;
        Ok(held && !self.alive(vec![conn], |conn| *conn).await?.is_empty())
    }

    async fn nodes(&self) -> Result<Vec<String>, EngineError> {
        let mut nodes: Vec<String> = self.live_nodes().await?.into_iter().collect();
        nodes.sort_unstable();
        Ok(nodes)
    }

    async fn join_member(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
        info: &str,
    ) -> Result<bool, EngineError> {
        let entry = Entry {
            scope: scope.into(),
            user: user.into(),
            conn,
        };
        lock(&self.mine).insert(
            entry.clone(),
            Joined {
                since_ms,
                info: Some(info.into()),
            },
        );
        let name = conn_name(conn);
        let member = member_of(scope, &name);
        let keys = vec![
            self.keys.conns(scope),
            self.keys.user(scope, user),
            self.keys.info(scope),
        ];
        let args = vec![
            name.clone(),
            format!("{since_ms}{SEP}{user}"),
            since_ms.to_string(),
            user.to_owned(),
            info.to_owned(),
        ];
        let joined = async {
            let index = async {
                match self.keys.scopes_of(scope) {
                    Some(key) => {
                        self.pool()
                            .zadd::<i64, _, _>(
                                key,
                                None,
                                None,
                                false,
                                false,
                                (0.0, member.as_str()),
                            )
                            .await
                    }
                    None => Ok(0),
                }
            };
            let (held, _, _) = tokio::try_join!(
                JOIN_MEMBER.run(self.pool().next(), keys, args),
                self.pool()
                    .hset::<i64, _, _>(self.keys.node(node_id()), (member.as_str(), user)),
                index,
            )?;
            Ok::<_, fred::error::Error>(held.as_u64() == Some(1))
        };
        match joined.await {
            Ok(first) => Ok(first),
            Err(error) => {
                lock(&self.mine).remove(&entry);
                lock(&self.stale).insert(entry);
                Err(unavailable(error))
            }
        }
    }

    async fn leave_member(&self, scope: &str, user: &str, conn: u64) -> Result<bool, EngineError> {
        let entry = Entry {
            scope: scope.into(),
            user: user.into(),
            conn,
        };
        lock(&self.mine).remove(&entry);
        let name = conn_name(conn);
        let member = member_of(scope, &name);
        let keys = vec![
            self.keys.conns(scope),
            self.keys.user(scope, user),
            self.keys.info(scope),
        ];
        let left = async {
            let index = async {
                match self.keys.scopes_of(scope) {
                    Some(key) => self.pool().zrem::<i64, _, _>(key, member.as_str()).await,
                    None => Ok(0),
                }
            };
            let (last, _, _) = tokio::try_join!(
                LEAVE_MEMBER.run(
                    self.pool().next(),
                    keys,
                    vec![name.clone(), user.to_owned()],
                ),
                self.pool()
                    .hdel::<i64, _, _>(self.keys.node(node_id()), member.as_str()),
                index,
            )?;
            Ok::<_, fred::error::Error>(last.as_u64() == Some(1))
        };
        left.await.map_err(|error| {
            lock(&self.stale).insert(entry);
            unavailable(error)
        })
    }

    async fn members(&self, scope: &str) -> Result<Vec<Member>, EngineError> {
        let (entries, infos) =
            tokio::try_join!(self.live_entries(self.keys.conns(scope)), async {
                self.pool()
                    .hgetall::<HashMap<String, String>, _>(self.keys.info(scope))
                    .await
                    .map_err(unavailable)
            },)?;
        let mut members: BTreeMap<String, usize> = BTreeMap::new();
        for (_, value) in entries {
            if let Some((_, user)) = value.split_once(SEP) {
                *members.entry(user.to_owned()).or_default() += 1;
            }
        }
        Ok(members
            .into_iter()
            .map(|(user, conns)| Member {
                info: infos.get(&user).map(|info| Arc::from(info.as_str())),
                user,
                conns,
            })
            .collect())
    }

    /// One range of the app's scopes index by name (`prefix` must name the app: `app:…`;
    /// the scopes of apps themselves are not indexed), the connections of dead nodes left
    /// out as [`Presence::users`] leaves them out.
    async fn scopes(&self, prefix: &str) -> Result<Vec<(String, usize)>, EngineError> {
        let Some(index) = self.keys.scopes_of(prefix) else {
            return Err(EngineError::Unavailable(format!(
                "redis presence lists the scopes of one app: the prefix {prefix:?} names none (`app:…`)"
            )));
        };
        let members: Vec<String> = self
            .pool()
            .zrangebylex(index, format!("[{prefix}"), above(prefix), None)
            .await
            .map_err(unavailable)?;
        let members: Vec<(String, String)> = members
            .into_iter()
            .filter(|member| member.starts_with(prefix))
            .filter_map(|member| {
                member
                    .rsplit_once(SEP)
                    .map(|(scope, conn)| (scope.to_owned(), conn.to_owned()))
            })
            .collect();
        let mut scopes: BTreeMap<String, usize> = BTreeMap::new();
        for (scope, _) in self.alive(members, |(_, conn)| conn.as_str()).await? {
            *scopes.entry(scope).or_default() += 1;
        }
        Ok(scopes.into_iter().collect())
    }

    fn register_events(&self, events: Arc<dyn PresenceEvents>) {
        if self.events.set(events).is_err() {
            tracing::warn!("presence events registered twice; the first handler stays");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::RedisSettings;
    use pushhub_testkit::RedisServer;

    /// Presence on `redis` with heartbeats every third of `ttl`, its task stopped by the
    /// returned token.
    async fn presence(
        redis: &RedisServer,
        ttl: Duration,
    ) -> (Arc<RedisPresence>, CancellationToken) {
        presence_on(redis.url(), ttl).await
    }

    /// Presence on the Redis at `url` (a server, a cluster), as [`presence`].
    async fn presence_on(url: String, ttl: Duration) -> (Arc<RedisPresence>, CancellationToken) {
        let settings = RedisSettings {
            urls: vec![url],
            prefix: "t".into(),
            presence_ttl: ttl,
            ..RedisSettings::default()
        };
        let connections = RedisConnections::build(&settings).unwrap();
        assert!(connections.connect(Duration::from_secs(5)).await.is_empty());
        let stop = CancellationToken::new();
        let presence =
            RedisPresence::start(Arc::new(connections), &TaskTracker::new(), stop.clone());
        (presence, stop)
    }

    /// True once `ready` holds, polled for up to 5 s without blocking the heartbeat task.
    async fn eventually(mut ready: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if ready() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready()
    }

    // The shared presence contract for members and scopes, each test on its own Redis.
    crate::engine::presence_contract::presence_suite!({
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(30)).await;
        ((stop.drop_guard(), redis), presence as Arc<dyn Presence>)
    });

    /// Write connection `conn` of `user` in scope `app` as node `node` would, with its
    /// heartbeat running out at `expires_ms`.
    fn foreign(
        redis: &RedisServer,
        node: &str,
        expires_ms: u64,
        user: &str,
        conn: &str,
        since: u64,
    ) {
        foreign_in(redis, node, expires_ms, "app", user, conn, since, None);
    }

    /// Write connection `conn` of `user` in `scope` as node `node` would (as a member
    /// showing `info`, when given), with its heartbeat running out at `expires_ms`.
    #[allow(clippy::too_many_arguments)]
    fn foreign_in(
        redis: &RedisServer,
        node: &str,
        expires_ms: u64,
        scope: &str,
        user: &str,
        conn: &str,
        since: u64,
        info: Option<&str>,
    ) {
        let conn = format!("{node}-{conn}");
        redis.cli(&["ZADD", "t:presence:nodes", &expires_ms.to_string(), node]);
        redis.cli(&[
            "HSET",
            &format!("t:presence:{{{scope}}}:conns"),
            &conn,
            &format!("{since}|{user}"),
        ]);
        redis.cli(&[
            "HSET",
            &format!("t:presence:{{{scope}}}:user:{user}"),
            &conn,
            &since.to_string(),
        ]);
        redis.cli(&[
            "HSET",
            &format!("t:presence:node:{node}"),
            &format!("{scope}|{conn}"),
            user,
        ]);
        if let Some(info) = info {
            redis.cli(&[
                "HSETNX",
                &format!("t:presence:{{{scope}}}:info"),
                user,
                info,
            ]);
        }
        if let Some((app, _)) = scope.split_once(':') {
            redis.cli(&[
                "ZADD",
                &format!("t:presence:{{{app}}}:scopes"),
                "0",
                &format!("{scope}|{conn}"),
            ]);
        }
    }

    /// Records what presence reports of members gone.
    #[derive(Default)]
    struct Gone {
        reports: Mutex<Vec<(String, Vec<String>)>>,
    }

    impl PresenceEvents for Gone {
        fn members_gone(&self, scope: &str, users: &[String]) {
            lock(&self.reports).push((scope.to_owned(), users.to_vec()));
        }
    }

    impl Gone {
        /// Each (scope, user) reported, with how many times.
        fn counted(&self) -> BTreeMap<(String, String), usize> {
            let mut counted = BTreeMap::new();
            for (scope, users) in lock(&self.reports).iter() {
                for user in users {
                    *counted.entry((scope.clone(), user.clone())).or_default() += 1;
                }
            }
            counted
        }
    }

    fn scoped(list: &[(&str, usize)]) -> Vec<(String, usize)> {
        list.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    /// Joins and leaves are counted per user and per scope, and a user whose last
    /// connection left is gone.
    #[tokio::test]
    async fn counts_connections_per_user_and_scope() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(30)).await;
        presence.join("app", "u1", 1, 10).await.unwrap();
        presence.join("app", "u1", 2, 11).await.unwrap();
        presence.join("app", "u2", 3, 12).await.unwrap();
        presence.join("app:room:r", "u2", 3, 13).await.unwrap();
        assert_eq!(
            presence.users("app").await.unwrap(),
            [("u1".to_owned(), 2), ("u2".to_owned(), 1)]
        );
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 2);
        assert_eq!(presence.total("app").await.unwrap(), 3);
        assert_eq!(
            presence.users("app:room:r").await.unwrap(),
            [("u2".to_owned(), 1)]
        );
        assert!(presence.elsewhere("app", "u1").await.unwrap().is_empty());
        presence.leave("app", "u1", 1).await.unwrap();
        presence.leave("app", "u1", 2).await.unwrap();
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 0);
        assert_eq!(presence.users("app").await.unwrap(), [("u2".to_owned(), 1)]);
        stop.cancel();
    }

    /// Another live node's connections count and show as elsewhere, oldest first; once
    /// its heartbeat has run out they stop counting at once, before any heartbeat of this
    /// node has purged them. While every node's deadline is known and still to come, a
    /// reader asks Redis nothing about nodes.
    #[tokio::test]
    async fn other_nodes_count_until_their_heartbeat_runs_out() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        // Heartbeats every 10 s: wait for the first (it reads the deadlines), so that the
        // next comes after this test.
        let (presence, stop) = presence(&redis, Duration::from_secs(30)).await;
        let beaten = eventually(|| redis.command_calls().contains_key("zrange")).await;
        assert!(beaten, "the first heartbeat did not run");
        presence.join("app", "u1", 1, 500).await.unwrap();
        let alive_until = now_ms() + 2_000;
        foreign(&redis, "othernod", alive_until, "u1", "7", 300);
        foreign(&redis, "othernod", alive_until, "u1", "8", 100);
        // A node not seen before: read once, then remembered.
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 3);
        let node_reads = |calls: &BTreeMap<String, u64>| -> u64 {
            ["zrange", "zrangebyscore", "zscore"]
                .iter()
                .filter_map(|read| calls.get(*read))
                .sum()
        };
        let before = redis.command_calls();
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 3);
        assert!(presence
            .online_elsewhere("app", "othernod-7")
            .await
            .unwrap());
        let after = redis.command_calls();
        assert_eq!(node_reads(&after), node_reads(&before), "{after:?}");
        assert!(!presence
            .online_elsewhere("app", "othernod-9")
            .await
            .unwrap());
        assert!(!presence
            .online_elsewhere("other", "othernod-7")
            .await
            .unwrap());
        assert!(!presence
            .online_elsewhere("app", &conn_name(1))
            .await
            .unwrap());
        let elsewhere = presence.elsewhere("app", "u1").await.unwrap();
        assert_eq!(
            elsewhere,
            [
                RemoteConn {
                    name: "othernod-8".into(),
                    since_ms: 100
                },
                RemoteConn {
                    name: "othernod-7".into(),
                    since_ms: 300
                },
            ]
        );
        // The node stops beating: its heartbeat runs out.
        while now_ms() <= alive_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(presence.users("app").await.unwrap(), [("u1".to_owned(), 1)]);
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 1);
        assert!(presence.elsewhere("app", "u1").await.unwrap().is_empty());
        assert!(!presence
            .online_elsewhere("app", "othernod-7")
            .await
            .unwrap());
        assert_eq!(
            redis.cli(&["HLEN", "t:presence:{app}:conns"]).trim(),
            "3",
            "left out by the readers, not purged yet"
        );
        stop.cancel();
    }

    /// A node whose heartbeat ran out is purged from Redis by the next heartbeat of a
    /// live one, and never counted meanwhile.
    #[tokio::test]
    async fn dead_nodes_are_purged() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(3)).await;
        presence.join("app", "u1", 1, 500).await.unwrap();
        foreign(&redis, "deadnode", now_ms() - 1, "u1", "7", 300);
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 1);
        let purged = eventually(|| {
            redis.cli(&["HLEN", "t:presence:{app}:conns"]).trim() == "1"
                && redis.cli(&["EXISTS", "t:presence:node:deadnode"]).trim() == "0"
                && redis
                    .cli(&["ZSCORE", "t:presence:nodes", "deadnode"])
                    .trim()
                    .is_empty()
        })
        .await;
        assert!(purged, "the dead node's entries were not purged");
        assert_eq!(presence.total("app").await.unwrap(), 1);
        stop.cancel();
    }

    /// When Redis forgets everything (restarted without persistence), the next heartbeat
    /// writes this node's entries again, members' info and the scopes index included; a
    /// clean stop removes them.
    #[tokio::test]
    async fn registers_again_after_redis_forgot_and_retires_at_shutdown() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(3)).await;
        presence.join("app", "u1", 1, 10).await.unwrap();
        let room = "app:room:presence-m";
        presence
            .join_member(room, "u1", 1, 10, r#"{"name":"one"}"#)
            .await
            .unwrap();
        presence.join_member(room, "u2", 2, 10, "{}").await.unwrap();
        presence.leave_member(room, "u2", 2).await.unwrap();
        redis.cli(&["FLUSHALL"]);
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 0);
        let back = eventually(|| {
            redis.cli(&["HLEN", "t:presence:{app}:user:u1"]).trim() == "1"
                && redis.cli(&["ZCARD", "t:presence:{app}:scopes"]).trim() == "1"
        })
        .await;
        assert!(back, "the entries were not written again");
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 1);
        assert_eq!(
            presence.members(room).await.unwrap(),
            [Member {
                user: "u1".into(),
                conns: 1,
                info: Some(r#"{"name":"one"}"#.into())
            }]
        );
        assert_eq!(
            presence.scopes("app:room:").await.unwrap(),
            scoped(&[(room, 1)])
        );
        stop.cancel();
        let gone = eventually(|| redis.cli(&["DBSIZE"]).trim() == "0").await;
        assert!(
            gone,
            "a clean stop left its presence behind: {}",
            redis.cli(&["KEYS", "*"])
        );
    }

    /// The bound above a prefix's names: every name starting with it sorts below it,
    /// and what follows them all does not.
    #[test]
    fn the_bound_above_a_prefix() {
        assert_eq!(above("chat:room:"), "(chat:room;");
        assert_eq!(above("a\u{d7ff}"), "(a\u{e000}");
        assert_eq!(above(&format!("a{}", char::MAX)), "(b");
        assert_eq!(above(&char::MAX.to_string()), "+");
        for name in ["chat:room:x", "chat:room:\u{10ffff}", "chat:room:"] {
            assert!(name < &above("chat:room:")[1..], "{name}");
        }
        assert!("chat:room;" >= &above("chat:room:")[1..]);
    }

    /// Two nodes joining one user into one scope at once: exactly one join is the
    /// member's first; leaving at once: exactly one leave is its last. Meanwhile a scope
    /// one node keeps joining and leaving while the other stays stays listed, and a scope
    /// both leave is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_racing_agree_on_first_and_last() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (a, stop_a) = presence(&redis, Duration::from_secs(30)).await;
        let (b, stop_b) = presence(&redis, Duration::from_secs(30)).await;
        let scope = "chat:room:presence-race";
        for round in 0..20u64 {
            let mut joins = tokio::task::JoinSet::new();
            for i in 0..8u64 {
                let node = if i % 2 == 0 { a.clone() } else { b.clone() };
                joins.spawn(async move {
                    node.join_member(scope, "u", round * 100 + i, i, &format!("{{\"i\":{i}}}"))
                        .await
                        .unwrap()
                });
            }
            let firsts = joins.join_all().await.into_iter().filter(|f| *f).count();
            assert_eq!(firsts, 1, "round {round}: joins told first");
            let members = a.members(scope).await.unwrap();
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].conns, 8);
            let mut leaves = tokio::task::JoinSet::new();
            for i in 0..8u64 {
                let node = if i % 2 == 0 { a.clone() } else { b.clone() };
                leaves.spawn(async move {
                    node.leave_member(scope, "u", round * 100 + i)
                        .await
                        .unwrap()
                });
            }
            let lasts = leaves.join_all().await.into_iter().filter(|l| *l).count();
            assert_eq!(lasts, 1, "round {round}: leaves told last");
            assert!(b.members(scope).await.unwrap().is_empty());
            assert_eq!(
                redis
                    .cli(&["HLEN", "t:presence:{chat:room:presence-race}:info"])
                    .trim(),
                "0"
            );
        }
        // The scopes index under the same races: one node churns while the other stays...
        b.join("chat:room:stays", "v", 9_000, 1).await.unwrap();
        let churn = {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..50u64 {
                    a.join("chat:room:stays", "w", 10_000 + i, 1).await.unwrap();
                    a.leave("chat:room:stays", "w", 10_000 + i).await.unwrap();
                }
            })
        };
        // ...and both come and go in another scope at once.
        let both = |node: Arc<RedisPresence>, base: u64| async move {
            for i in 0..50u64 {
                node.join_member("chat:room:both", "x", base + i, 1, "{}")
                    .await
                    .unwrap();
                node.leave_member("chat:room:both", "x", base + i)
                    .await
                    .unwrap();
            }
        };
        let (churned, _, _) = tokio::join!(churn, both(a.clone(), 20_000), both(b.clone(), 30_000));
        churned.unwrap();
        assert_eq!(
            a.scopes("chat:room:").await.unwrap(),
            scoped(&[("chat:room:stays", 1)])
        );
        assert_eq!(
            redis.cli(&["ZCARD", "t:presence:{chat}:scopes"]).trim(),
            "1"
        );
        b.leave("chat:room:stays", "v", 9_000).await.unwrap();
        assert!(b.scopes("chat:room:").await.unwrap().is_empty());
        assert_eq!(
            redis.cli(&["ZCARD", "t:presence:{chat}:scopes"]).trim(),
            "0"
        );
        stop_a.cancel();
        stop_b.cancel();
    }

    /// A dead node's members whose last connection in a scope went with it are reported
    /// exactly once, though two nodes purge it at once; a member still connected on a live
    /// node, and a user that joined without info, are not; the info of those reported goes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_nodes_members_are_reported_once() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (a, stop_a) = presence(&redis, Duration::from_secs(30)).await;
        let (b, stop_b) = presence(&redis, Duration::from_secs(30)).await;
        let (gone_a, gone_b) = (Arc::new(Gone::default()), Arc::new(Gone::default()));
        a.register_events(gone_a.clone());
        b.register_events(gone_b.clone());
        // Both first heartbeats are over (they run at start), so neither purges on its own
        // during the test.
        let beaten = eventually(|| redis.command_calls().get("zrange").copied() >= Some(2)).await;
        assert!(beaten, "the first heartbeats did not run");
        let room = "app:room:presence-p";
        let other = "app:room:presence-q";
        a.join_member(room, "kept", 1, 10, r#"{"live":true}"#)
            .await
            .unwrap();
        let dead = now_ms() - 1;
        let mut expected = BTreeMap::new();
        for i in 0..40 {
            let user = format!("u{i}");
            let info = format!(r#"{{"n":{i}}}"#);
            let scope = if i % 2 == 0 { room } else { other };
            foreign_in(
                &redis,
                "deadnode",
                dead,
                scope,
                &user,
                &format!("{i}a"),
                5,
                Some(&info),
            );
            foreign_in(
                &redis,
                "deadnode",
                dead,
                scope,
                &user,
                &format!("{i}b"),
                6,
                Some(&info),
            );
            expected.insert((scope.to_owned(), user), 1);
        }
        foreign_in(&redis, "deadnode", dead, room, "kept", "k", 5, Some("{}"));
        // A member whose live connection leaves first: not its last (the dead one is not
        // purged yet), so the purge reports it.
        a.join_member(room, "later", 2, 10, "{}").await.unwrap();
        foreign_in(&redis, "deadnode", dead, room, "later", "l", 5, Some("{}"));
        assert!(!a.leave_member(room, "later", 2).await.unwrap());
        expected.insert((room.to_owned(), "later".to_owned()), 1);
        foreign_in(&redis, "deadnode", dead, room, "plain", "p", 5, None);
        assert_eq!(
            a.members(room).await.unwrap(),
            [Member {
                user: "kept".into(),
                conns: 1,
                info: Some(r#"{"live":true}"#.into())
            }],
            "a dead node's connections are left out before the purge"
        );
        let (purged_a, purged_b) = tokio::join!(a.purge("deadnode"), b.purge("deadnode"));
        purged_a.unwrap();
        purged_b.unwrap();
        let mut reported = gone_a.counted();
        for (key, count) in gone_b.counted() {
            *reported.entry(key).or_default() += count;
        }
        assert_eq!(reported, expected);
        for gone in [&gone_a, &gone_b] {
            for (_, users) in lock(&gone.reports).iter() {
                assert!(users.windows(2).all(|w| w[0] < w[1]), "{users:?}");
            }
        }
        assert_eq!(
            redis
                .cli(&["HKEYS", "t:presence:{app:room:presence-p}:info"])
                .trim(),
            "kept"
        );
        assert_eq!(
            redis
                .cli(&["HLEN", "t:presence:{app:room:presence-q}:info"])
                .trim(),
            "0"
        );
        assert_eq!(
            redis.cli(&["EXISTS", "t:presence:node:deadnode"]).trim(),
            "0"
        );
        // A purge again (another node late to it) reports nothing more.
        b.purge("deadnode").await.unwrap();
        assert_eq!(
            gone_b.counted().values().sum::<usize>() + gone_a.counted().values().sum::<usize>(),
            41
        );
        assert!(a.leave_member(room, "kept", 1).await.unwrap());
        stop_a.cancel();
        stop_b.cancel();
    }

    /// The scopes index leaves out a dead node's connections as soon as its heartbeat ran
    /// out, and loses them when a heartbeat purges it.
    #[tokio::test]
    async fn scopes_leave_out_a_dead_node_and_lose_it_at_the_purge() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(3)).await;
        presence.join("app:room:y", "u1", 1, 10).await.unwrap();
        let alive_until = now_ms() + 1_500;
        foreign_in(
            &redis,
            "othernod",
            alive_until,
            "app:room:x",
            "u2",
            "1",
            5,
            None,
        );
        foreign_in(
            &redis,
            "othernod",
            alive_until,
            "app:room:y",
            "u2",
            "1",
            5,
            None,
        );
        foreign_in(
            &redis,
            "othernod",
            alive_until,
            "app:room:y",
            "u3",
            "2",
            5,
            Some("{}"),
        );
        assert_eq!(
            presence.scopes("app:room:").await.unwrap(),
            scoped(&[("app:room:x", 1), ("app:room:y", 3)])
        );
        while now_ms() <= alive_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            presence.scopes("app:room:").await.unwrap(),
            scoped(&[("app:room:y", 1)])
        );
        let purged =
            eventually(|| redis.cli(&["ZCARD", "t:presence:{app}:scopes"]).trim() == "1").await;
        assert!(purged, "the dead node's index members were not purged");
        assert_eq!(
            presence.scopes("app:room:").await.unwrap(),
            scoped(&[("app:room:y", 1)])
        );
        assert!(
            presence.scopes("app").await.is_err(),
            "a prefix naming no app"
        );
        stop.cancel();
    }

    /// A member's failed leave (Redis away) is finished by a heartbeat, which reports the
    /// member gone when it was its last connection.
    #[tokio::test]
    async fn a_failed_leave_is_finished_and_reported_by_a_heartbeat() {
        let Some(mut redis) = RedisServer::start_with(pushhub_testkit::RedisOptions {
            aof: true,
            ..Default::default()
        }) else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(3)).await;
        let gone = Arc::new(Gone::default());
        presence.register_events(gone.clone());
        let room = "app:room:presence-f";
        assert!(presence.join_member(room, "u1", 1, 10, "{}").await.unwrap());
        redis.stop();
        let left = tokio::time::timeout(
            Duration::from_secs(10),
            presence.leave_member(room, "u1", 1),
        )
        .await;
        assert!(
            !matches!(left, Ok(Ok(_))),
            "a leave with Redis away succeeded"
        );
        redis.restart();
        let reported = eventually(|| !lock(&gone.reports).is_empty()).await;
        assert!(reported, "the member's removal was not reported");
        assert_eq!(
            *lock(&gone.reports),
            [(room.to_owned(), vec!["u1".to_owned()])]
        );
        assert!(presence.members(room).await.unwrap().is_empty());
        assert!(presence.scopes("app:room:").await.unwrap().is_empty());
        stop.cancel();
    }

    /// Redis Cluster: rooms spread over slots (and masters), the index in its app's slot;
    /// members and scopes answer as on one server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_and_scopes_on_redis_cluster() {
        let Some(cluster) = pushhub_testkit::RedisCluster::start() else {
            return;
        };
        let (presence, stop) = presence_on(cluster.url(), Duration::from_secs(30)).await;
        for i in 0..30u64 {
            let room = format!("c:room:presence-{i}");
            assert!(presence
                .join_member(&room, "u1", i, 10, r#"{"a":1}"#)
                .await
                .unwrap());
            assert!(presence
                .join_member(&room, "u2", 100 + i, 10, "{}")
                .await
                .unwrap());
            assert!(!presence
                .join_member(&room, "u2", 200 + i, 10, "{}")
                .await
                .unwrap());
            presence
                .join(&format!("c:room:plain-{i}"), "u3", 300 + i, 10)
                .await
                .unwrap();
        }
        let masters_used = cluster
            .nodes()
            .iter()
            .filter(|server| server.cli(&["DBSIZE"]).trim() != "0")
            .count();
        assert!(masters_used >= 2, "rooms on {masters_used} master(s)");
        let all = presence.scopes("c:room:").await.unwrap();
        assert_eq!(all.len(), 60);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let members_only = presence.scopes("c:room:presence-").await.unwrap();
        assert_eq!(members_only.len(), 30);
        assert!(members_only.iter().all(|(_, conns)| *conns == 3));
        assert_eq!(
            presence.members("c:room:presence-7").await.unwrap(),
            [
                Member {
                    user: "u1".into(),
                    conns: 1,
                    info: Some(r#"{"a":1}"#.into())
                },
                Member {
                    user: "u2".into(),
                    conns: 2,
                    info: Some("{}".into())
                },
            ]
        );
        for i in 0..30u64 {
            let room = format!("c:room:presence-{i}");
            assert!(presence.leave_member(&room, "u1", i).await.unwrap());
            assert!(!presence.leave_member(&room, "u2", 100 + i).await.unwrap());
            assert!(presence.leave_member(&room, "u2", 200 + i).await.unwrap());
        }
        assert_eq!(presence.scopes("c:room:").await.unwrap().len(), 30);
        assert!(presence
            .scopes("c:room:presence-")
            .await
            .unwrap()
            .is_empty());
        stop.cancel();
    }
}
