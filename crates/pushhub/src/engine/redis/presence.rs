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
//! - `P:presence:node:N`: hash, `scope|connection name` → user: everything node `N`
//!   registered, so any node can purge a dead node's entries without it.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fred::clients::Pool;
use fred::interfaces::{HashesInterface, KeysInterface, SortedSetsInterface};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{EngineError, Presence, RemoteConn};
use crate::node::{conn_name, node_id};
use crate::redis::RedisConnections;
use crate::sync::lock;

/// Separates the parts of a stored value or field (never in a scope or a connection name).
const SEP: char = '|';

/// One entry this node registered: connection `conn` of `user` in `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry {
    scope: Arc<str>,
    user: Arc<str>,
    conn: u64,
}

/// Presence of every node, kept in Redis.
pub struct RedisPresence {
    connections: Arc<RedisConnections>,
    keys: Keys,
    ttl: Duration,
    /// This node's entries and when each connected, to write them again if Redis forgot.
    mine: Mutex<HashMap<Entry, u64>>,
    /// Entries whose leave failed (Redis away): removed at the next heartbeat.
    stale: Mutex<HashSet<Entry>>,
    /// Set when Redis forgot this node, until all its entries are written again.
    rewrite: AtomicBool,
    /// Every node's heartbeat deadline (ms since the epoch) as last read from Redis.
    deadlines: Mutex<HashMap<String, u64>>,
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

    fn node(&self, node: &str) -> String {
        format!("{}:presence:node:{node}", self.prefix)
    }
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
            let entries: Vec<(Entry, u64)> = lock(&self.mine)
                .iter()
                .map(|(entry, since)| (entry.clone(), *since))
                .collect();
            if !entries.is_empty() {
                tracing::info!(
                    entries = entries.len(),
                    "Redis does not know this node (yet); writing its presence entries"
                );
            }
            for (entry, since) in entries {
                self.write(&entry, since).await?;
                // A leave while this was written must not be undone by it.
                if !lock(&self.mine).contains_key(&entry) {
                    self.erase(&entry).await?;
                }
            }
            self.rewrite.store(false, Ordering::Relaxed);
        }
        let stale: Vec<Entry> = lock(&self.stale).iter().cloned().collect();
        for entry in stale {
            self.erase(&entry).await?;
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

    /// Remove every entry of `node`, then the node itself. Safe to run on several nodes
    /// at once, and again after a failure halfway.
    async fn purge(&self, node: &str) -> Result<(), EngineError> {
        let node_key = self.keys.node(node);
        let entries: HashMap<String, String> =
            self.pool().hgetall(&node_key).await.map_err(unavailable)?;
        for (field, user) in &entries {
            let Some((scope, conn)) = field.rsplit_once(SEP) else {
                continue;
            };
            let removed = tokio::try_join!(
                self.pool().hdel::<i64, _, _>(self.keys.conns(scope), conn),
                self.pool()
                    .hdel::<i64, _, _>(self.keys.user(scope, user), conn),
            );
            removed.map_err(unavailable)?;
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

    /// Write one entry's three records (pipelined: sent together on one connection).
    async fn write(&self, entry: &Entry, since_ms: u64) -> Result<(), EngineError> {
        let conn = conn_name(entry.conn);
        let written = tokio::try_join!(
            self.pool().hset::<i64, _, _>(
                self.keys.conns(&entry.scope),
                (conn.as_str(), format!("{since_ms}{SEP}{}", entry.user)),
            ),
            self.pool().hset::<i64, _, _>(
                self.keys.user(&entry.scope, &entry.user),
                (conn.as_str(), since_ms.to_string()),
            ),
            self.pool().hset::<i64, _, _>(
                self.keys.node(node_id()),
                (format!("{}{SEP}{conn}", entry.scope), &*entry.user),
            ),
        );
        written.map(drop).map_err(unavailable)
    }

    /// Remove one entry's three records.
    async fn erase(&self, entry: &Entry) -> Result<(), EngineError> {
        let conn = conn_name(entry.conn);
        let erased = tokio::try_join!(
            self.pool()
                .hdel::<i64, _, _>(self.keys.conns(&entry.scope), conn.as_str()),
            self.pool()
                .hdel::<i64, _, _>(self.keys.user(&entry.scope, &entry.user), conn.as_str()),
            self.pool().hdel::<i64, _, _>(
                self.keys.node(node_id()),
                format!("{}{SEP}{conn}", entry.scope)
            ),
        );
        erased.map(drop).map_err(unavailable)
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
        lock(&self.mine).insert(entry.clone(), since_ms);
        let written = self.write(&entry, since_ms).await;
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
        erased
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
        let settings = RedisSettings {
            urls: vec![redis.url()],
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
        let conn = format!("{node}-{conn}");
        redis.cli(&["ZADD", "t:presence:nodes", &expires_ms.to_string(), node]);
        redis.cli(&[
            "HSET",
            "t:presence:{app}:conns",
            &conn,
            &format!("{since}|{user}"),
        ]);
        redis.cli(&[
            "HSET",
            &format!("t:presence:{{app}}:user:{user}"),
            &conn,
            &since.to_string(),
        ]);
        redis.cli(&[
            "HSET",
            &format!("t:presence:node:{node}"),
            &format!("app|{conn}"),
            user,
        ]);
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
    /// writes this node's entries again; a clean stop removes them.
    #[tokio::test]
    async fn registers_again_after_redis_forgot_and_retires_at_shutdown() {
        let Some(redis) = RedisServer::start() else {
            return;
        };
        let (presence, stop) = presence(&redis, Duration::from_secs(3)).await;
        presence.join("app", "u1", 1, 10).await.unwrap();
        redis.cli(&["FLUSHALL"]);
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 0);
        let back =
            eventually(|| redis.cli(&["HLEN", "t:presence:{app}:user:u1"]).trim() == "1").await;
        assert!(back, "the entry was not written again");
        assert_eq!(presence.connections("app", "u1").await.unwrap(), 1);
        stop.cancel();
        let gone =
            eventually(|| redis.cli(&["HLEN", "t:presence:{app}:conns"]).trim() == "0").await;
        assert!(gone, "a clean stop left its presence behind");
    }
}
