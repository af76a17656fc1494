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
//!   first connection entered with ([`Presence::enter`]); it goes with the member's
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
//! it), the purging node reports it to the hub ([`PresenceEvents::members_gone`]), and
//! when it takes a room scope's last connection, the room vacated
//! ([`PresenceEvents::scopes_vacated`]); the removal is one script in the scope's slot,
//! so of several nodes purging the same dead node at once exactly one reports each. A
//! live entry or exit ([`Presence::enter`], [`Presence::exit`]) is one script there too,
//! which tells whether it was the user's first (last) connection and the scope's.
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

use crate::engine::{EngineError, Entered, Left, Member, Presence, PresenceEvents, RemoteConn};
use crate::node::{conn_name, node_id};
use crate::redis::RedisConnections;
use crate::redis::Script;
use crate::sync::lock;

/// Separates the parts of a stored value or field (never in a scope or a connection name).
const SEP: char = '|';

/// A room entry, atomic in its scope's slot: its two records, the member's info (when
/// given) unless the user already shows one, and whether the entry is now the user's only
/// connection there and the scope's only one (first). Whether the records were new does
/// not matter: the heartbeat writing this node's entries again (at start, or when Redis
/// forgot) may have written them a moment before, and each connection enters once.
/// KEYS: conns, user, info; ARGV: connection, `since|user`, since, user, [info].
/// Answers `{first_of_user, first_in_scope}`.
static ENTER: Script = Script::fixed(
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
     redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) \
     if ARGV[5] then redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) end \
     local first_of_user, first_in_scope = 0, 0 \
     if redis.call('HLEN', KEYS[2]) == 1 then first_of_user = 1 end \
     if redis.call('HLEN', KEYS[1]) == 1 then first_in_scope = 1 end \
     return {first_of_user, first_in_scope}",
);

/// The removal of one connection's entries in its scope (an exit, a leave, a purge, a
/// failed one retried), atomic in the scope's slot: whether it took the user's last
/// connection there (its info goes with it) and the scope's last, told to this call alone
/// (a removal of what is gone already decides neither), and whether the user showed info
/// (a member was removed). KEYS: conns, user, info; ARGV: connection, user. Answers
/// `{last_of_user, last_in_scope, member_removed}`.
static EXIT: Script = Script::fixed(
    "local in_scope = redis.call('HDEL', KEYS[1], ARGV[1]) \
     local of_user = redis.call('HDEL', KEYS[2], ARGV[1]) \
     local last_of_user, last_in_scope, member = 0, 0, 0 \
     if of_user == 1 and redis.call('HLEN', KEYS[2]) == 0 then \
       last_of_user = 1 \
       member = redis.call('HDEL', KEYS[3], ARGV[2]) \
     end \
     if in_scope == 1 and redis.call('HLEN', KEYS[1]) == 0 then last_in_scope = 1 end \
     return {last_of_user, last_in_scope, member}",
);

/// The flags a script answered, in order (absent ones false).
fn flags<const N: usize>(reply: fred::types::Value) -> [bool; N] {
    let mut flags = [false; N];
    for (flag, value) in flags.iter_mut().zip(reply.into_array()) {
        *flag = value.as_u64() == Some(1);
    }
    flags
}

/// What one removal of an entry ([`EXIT`]) changed.
#[derive(Debug, Clone, Copy, Default)]
struct Removal {
    left: Left,
    /// The user's last connection went and it showed info: a member was removed.
    member_gone: bool,
}

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
    /// The member's info, for an entry of [`Presence::enter`] with info.
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
            // A leave that failed: if it took a member's last connection or the scope's,
            // the hub was never told, so it hears of it as of a member gone, a scope
            // vacated.
            let removal = self.erase(&entry).await?;
            let mut gone = BTreeMap::new();
            if removal.member_gone {
                gone.insert(entry.scope.to_string(), vec![entry.user.to_string()]);
            }
            let mut vacated = Vec::new();
            if removal.left.last_in_scope {
                vacated.push(entry.scope.to_string());
            }
            self.report(gone, vacated);
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
    /// last connection in a scope went with it and the room scopes it left empty. Safe to
    /// run on several nodes at once, and again after a failure halfway: each removal is
    /// atomic and reports only what it removed, so each member gone and each scope vacated
    /// is reported once.
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
        let mut vacated: Vec<String> = Vec::new();
        let mut failed = None;
        let mut running = FuturesUnordered::new();
        loop {
            // After a failure, the removals under way finish and no more start: Redis is
            // likely away, and the next heartbeat purges the rest.
            while failed.is_none() && running.len() < PURGE_CONCURRENCY {
                let Some((scope, user, conn)) = todo.pop() else {
                    break;
                };
                running.push(async move {
                    let removal = self.remove(node, scope, user, conn).await?;
                    Ok::<_, EngineError>((scope, user, removal))
                });
            }
            match running.next().await {
                Some(Ok((scope, user, removal))) => {
                    if removal.member_gone {
                        gone.entry(scope.to_owned())
                            .or_default()
                            .push(user.to_owned());
                    }
                    if removal.left.last_in_scope {
                        vacated.push(scope.to_owned());
                    }
                }
                Some(Err(error)) => failed = Some(error),
                None => break,
            }
        }
        // Reported even when another removal failed: these are removed, and no later
        // purge would report them again.
        self.report(gone, vacated);
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

    /// Tell the hub's handler, if it gave one, of the members gone from each scope and of
    /// the room scopes vacated (an app's own scope is no room: its emptying is not told).
    fn report(&self, gone: BTreeMap<String, Vec<String>>, mut vacated: Vec<String>) {
        let Some(events) = self.events.get() else {
            return;
        };
        for (scope, mut users) in gone {
            users.sort_unstable();
            events.members_gone(&scope, &users);
        }
        vacated.retain(|scope| self.keys.scopes_of(scope).is_some());
        if !vacated.is_empty() {
            vacated.sort_unstable();
            events.scopes_vacated(&vacated);
        }
    }

    /// Remove connection `conn` (its name) of `user` in `scope`, which `node` registered:
    /// its entries and, with its last connection there, the user's info ([`EXIT`], whose
    /// answer this is, told to this call alone); then the node's record of it and its
    /// member of the scopes index.
    async fn remove(
        &self,
        node: &str,
        scope: &str,
        user: &str,
        conn: &str,
    ) -> Result<Removal, EngineError> {
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
        let (reply, _, _) = tokio::try_join!(
            EXIT.run(
                self.pool().next(),
                keys,
                vec![conn.to_owned(), user.to_owned()]
            ),
            self.pool()
                .hdel::<i64, _, _>(self.keys.node(node), member.as_str()),
            index,
        )
        .map_err(unavailable)?;
        let [last_of_user, last_in_scope, member_gone] = flags(reply);
        Ok(Removal {
            left: Left {
                last_of_user,
                last_in_scope,
            },
            member_gone,
        })
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

    /// Remove one of this node's entries ([`RedisPresence::remove`]).
    async fn erase(&self, entry: &Entry) -> Result<Removal, EngineError> {
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

    /// Every user's entries asked together (pipelined on one connection: one round
    /// trip), and one liveness check for all of them.
    async fn connections_each(
        &self,
        scope: &str,
        users: &[&str],
    ) -> Result<Vec<usize>, EngineError> {
        let reads = users.iter().map(|user| {
            self.pool()
                .hkeys::<Vec<String>, _>(self.keys.user(scope, user))
        });
        let conns = futures_util::future::try_join_all(reads)
            .await
            .map_err(unavailable)?;
        let named: Vec<(usize, String)> = conns
            .into_iter()
            .enumerate()
            .flat_map(|(at, names)| names.into_iter().map(move |name| (at, name)))
            .collect();
        let mut counts = vec![0; users.len()];
        for (at, _) in self.alive(named, |(_, name)| name.as_str()).await? {
            counts[at] += 1;
        }
        Ok(counts)
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

    /// One [`ENTER`] in the scope's slot, sent with the node's record of the entry and
    /// its member of the scopes index.
    async fn enter(
        &self,
        scope: &str,
        user: &str,
        conn: u64,
        since_ms: u64,
        info: Option<&str>,
    ) -> Result<Entered, EngineError> {
        let entry = Entry {
            scope: scope.into(),
            user: user.into(),
            conn,
        };
        lock(&self.mine).insert(
            entry.clone(),
            Joined {
                since_ms,
                info: info.map(Arc::from),
            },
        );
        let name = conn_name(conn);
        let member = member_of(scope, &name);
        let keys = vec![
            self.keys.conns(scope),
            self.keys.user(scope, user),
            self.keys.info(scope),
        ];
        let mut args = vec![
            name.clone(),
            format!("{since_ms}{SEP}{user}"),
            since_ms.to_string(),
            user.to_owned(),
        ];
        args.extend(info.map(str::to_owned));
        let entered = async {
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
            let (reply, _, _) = tokio::try_join!(
                ENTER.run(self.pool().next(), keys, args),
                self.pool()
                    .hset::<i64, _, _>(self.keys.node(node_id()), (member.as_str(), user)),
                index,
            )?;
            let [first_of_user, first_in_scope] = flags(reply);
            Ok::<_, fred::error::Error>(Entered {
                first_of_user,
                first_in_scope,
            })
        };
        match entered.await {
            Ok(entered) => Ok(entered),
            Err(error) => {
                lock(&self.mine).remove(&entry);
                lock(&self.stale).insert(entry);
                Err(unavailable(error))
            }
        }
    }

    /// One [`EXIT`] in the scope's slot, sent with the removal of the node's record of
    /// the entry and of its member of the scopes index. A failed exit is retried by the
    /// heartbeat, which then reports what it took (a member gone, a scope vacated).
    async fn exit(&self, scope: &str, user: &str, conn: u64) -> Result<Left, EngineError> {
        let entry = Entry {
            scope: scope.into(),
            user: user.into(),
            conn,
        };
        lock(&self.mine).remove(&entry);
        match self.erase(&entry).await {
            Ok(removal) => Ok(removal.left),
            Err(error) => {
                lock(&self.stale).insert(entry);
                Err(error)
            }
        }
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

    /// Records what presence reports of members gone and scopes vacated.
    #[derive(Default)]
    struct Gone {
        reports: Mutex<Vec<(String, Vec<String>)>>,
        vacated: Mutex<Vec<Vec<String>>>,
    }

    impl PresenceEvents for Gone {
        fn members_gone(&self, scope: &str, users: &[String]) {
            lock(&self.reports).push((scope.to_owned(), users.to_vec()));
        }

        fn scopes_vacated(&self, scopes: &[String]) {
            lock(&self.vacated).push(scopes.to_vec());
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
            .enter(room, "u1", 1, 10, Some(r#"{"name":"one"}"#))
            .await
            .unwrap();
        presence.enter(room, "u2", 2, 10, Some("{}")).await.unwrap();
        presence.exit(room, "u2", 2).await.unwrap();
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

    /// Two nodes entering two users (a member, a plain one) into one scope at once: exactly
    /// one entry is each user's first and one the scope's first; exiting at once: exactly
    /// one exit is each user's last and one the scope's last. Meanwhile a scope
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
            // Conns 0, 1, 4, 5 are member u's, 2, 3, 6, 7 plain v's; each node enters
            // two of each.
            let user = |i: u64| if i % 4 < 2 { "u" } else { "v" };
            let mut joins = tokio::task::JoinSet::new();
            for i in 0..8u64 {
                let node = if i % 2 == 0 { a.clone() } else { b.clone() };
                joins.spawn(async move {
                    let info = (user(i) == "u").then(|| format!("{{\"i\":{i}}}"));
                    let entered = node
                        .enter(scope, user(i), round * 100 + i, i, info.as_deref())
                        .await
                        .unwrap();
                    (user(i), entered)
                });
            }
            let entered = joins.join_all().await;
            for who in ["u", "v"] {
                let firsts = entered
                    .iter()
                    .filter(|(user, entered)| *user == who && entered.first_of_user)
                    .count();
                assert_eq!(firsts, 1, "round {round}: {who}'s entries told first");
            }
            let occupied = entered.iter().filter(|(_, e)| e.first_in_scope).count();
            assert_eq!(occupied, 1, "round {round}: entries told the scope's first");
            let members = a.members(scope).await.unwrap();
            assert_eq!(members.len(), 2);
            assert_eq!((members[0].conns, members[1].conns), (4, 4));
            assert!(members[1].info.is_none(), "v entered plainly");
            let mut leaves = tokio::task::JoinSet::new();
            for i in 0..8u64 {
                let node = if i % 2 == 0 { a.clone() } else { b.clone() };
                leaves.spawn(async move {
                    let left = node.exit(scope, user(i), round * 100 + i).await.unwrap();
                    (user(i), left)
                });
            }
            let left = leaves.join_all().await;
            for who in ["u", "v"] {
                let lasts = left
                    .iter()
                    .filter(|(user, left)| *user == who && left.last_of_user)
                    .count();
                assert_eq!(lasts, 1, "round {round}: {who}'s exits told last");
            }
            let vacated = left.iter().filter(|(_, l)| l.last_in_scope).count();
            assert_eq!(vacated, 1, "round {round}: exits told the scope's last");
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
                node.enter("chat:room:both", "x", base + i, 1, Some("{}"))
                    .await
                    .unwrap();
                node.exit("chat:room:both", "x", base + i).await.unwrap();
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
    /// The room scopes whose last connection it held are reported vacated once too, a room
    /// still held by a live node and an app's scope are not.
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
        a.enter(room, "kept", 1, 10, Some(r#"{"live":true}"#))
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
        a.enter(room, "later", 2, 10, Some("{}")).await.unwrap();
        foreign_in(&redis, "deadnode", dead, room, "later", "l", 5, Some("{}"));
        assert!(!a.exit(room, "later", 2).await.unwrap().last_of_user);
        expected.insert((room.to_owned(), "later".to_owned()), 1);
        foreign_in(&redis, "deadnode", dead, room, "plain", "p", 5, None);
        let plain_room = "app:room:plain";
        foreign_in(&redis, "deadnode", dead, plain_room, "plain", "p", 5, None);
        foreign_in(
            &redis, "deadnode", dead, plain_room, "plain2", "p2", 5, None,
        );
        foreign_in(&redis, "deadnode", dead, "app", "plain", "p", 5, None);
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
        let mut vacated: Vec<String> = lock(&gone_a.vacated)
            .iter()
            .chain(lock(&gone_b.vacated).iter())
            .flatten()
            .cloned()
            .collect();
        vacated.sort_unstable();
        assert_eq!(vacated, [plain_room, other], "scopes vacated");
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
            lock(&gone_a.vacated)
                .iter()
                .chain(lock(&gone_b.vacated).iter())
                .map(Vec::len)
                .sum::<usize>(),
            2
        );
        assert_eq!(
            gone_b.counted().values().sum::<usize>() + gone_a.counted().values().sum::<usize>(),
            41
        );
        assert!(a.exit(room, "kept", 1).await.unwrap().last_of_user);
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

    /// A member's failed exit (Redis away) is finished by a heartbeat, which reports the
    /// member gone when it was its last connection, and the room vacated when it was the
    /// room's.
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
        assert!(
            presence
                .enter(room, "u1", 1, 10, Some("{}"))
                .await
                .unwrap()
                .first_of_user
        );
        redis.stop();
        let left =
            tokio::time::timeout(Duration::from_secs(10), presence.exit(room, "u1", 1)).await;
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
        assert_eq!(*lock(&gone.vacated), [vec![room.to_owned()]]);
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
            assert!(
                presence
                    .enter(&room, "u1", i, 10, Some(r#"{"a":1}"#))
                    .await
                    .unwrap()
                    .first_of_user
            );
            assert!(
                presence
                    .enter(&room, "u2", 100 + i, 10, Some("{}"))
                    .await
                    .unwrap()
                    .first_of_user
            );
            assert!(
                !presence
                    .enter(&room, "u2", 200 + i, 10, Some("{}"))
                    .await
                    .unwrap()
                    .first_of_user
            );
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
            assert!(presence.exit(&room, "u1", i).await.unwrap().last_of_user);
            assert!(
                !presence
                    .exit(&room, "u2", 100 + i)
                    .await
                    .unwrap()
                    .last_of_user
            );
            assert!(
                presence
                    .exit(&room, "u2", 200 + i)
                    .await
                    .unwrap()
                    .last_of_user
            );
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
