//! The Redis broker against real Redis servers started by each test: the shared broker
//! contract, then what only a broker across nodes must survive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushhub_testkit::{RedisCluster, RedisServer, SentinelGroup};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{stream, RedisBroker};
use crate::engine::contract::{self, KEEP};
use crate::engine::{
    Broker, BrokerEvents, EngineError, HistoryPolicy, HistoryRequest, Message, Publication,
    StreamPosition,
};
use crate::redis::{RedisConnections, RedisSettings};
use crate::sync::lock;

/// One node's broker; its tasks stop when it is dropped.
struct Node {
    broker: Arc<RedisBroker>,
    shutdown: CancellationToken,
    _tracker: TaskTracker,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A broker on `urls`, once it reports healthy.
async fn node(urls: &[String]) -> Node {
    let settings = RedisSettings {
        urls: urls.to_vec(),
        prefix: "t".into(),
        command_timeout: Duration::from_secs(2),
        ..RedisSettings::default()
    };
    let connections = RedisConnections::build(&settings).unwrap();
    assert!(connections
        .connect(Duration::from_secs(10))
        .await
        .is_empty());
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let broker =
        Arc::new(RedisBroker::start(Arc::new(connections), &tracker, shutdown.clone()).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Err(reason) = broker.health().await {
        assert!(tokio::time::Instant::now() < deadline, "{reason}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Node {
        broker,
        shutdown,
        _tracker: tracker,
    }
}

// The shared broker contract, each test on its own Redis.
contract::contract_suite!({
    let Some(server) = RedisServer::start() else {
        return;
    };
    let node = node(&[server.url()]).await;
    let broker = node.broker.clone();
    ((server, node), broker)
});

/// Records every position handed over, per channel.
#[derive(Default)]
struct Positions {
    seen: Mutex<HashMap<Arc<str>, Vec<StreamPosition>>>,
}

impl BrokerEvents for Positions {
    fn publication(&self, publication: &Arc<Publication>) {
        lock(&self.seen)
            .entry(publication.channel.clone())
            .or_default()
            .push(publication.position.clone());
    }
}

impl Positions {
    fn of(&self, channel: &str) -> Vec<StreamPosition> {
        lock(&self.seen).get(channel).cloned().unwrap_or_default()
    }

    /// Wait up to `limit` until `channel` has `count` hand-overs.
    async fn wait_for(&self, channel: &str, count: usize, limit: Duration) -> Vec<StreamPosition> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.of(channel).len() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.of(channel)
    }
}

fn registered(node: &Node) -> Arc<Positions> {
    let positions = Arc::new(Positions::default());
    node.broker.register_events(positions.clone());
    positions
}

fn channels(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|n| Arc::from(*n)).collect()
}

fn message(id: &str) -> Arc<Message> {
    Arc::new(Message {
        id: id.into(),
        ..Message::for_test(id)
    })
}

/// Offsets `1..=total` expected: how many are missing and how many came more than once
/// (both printed, both must be zero), and whether they came in order.
fn count_loss(seen: &[StreamPosition], total: u64) -> (u64, u64, bool) {
    let mut counts = HashMap::new();
    for position in seen {
        *counts.entry(position.offset).or_insert(0u64) += 1;
    }
    let lost = (1..=total).filter(|o| !counts.contains_key(o)).count() as u64;
    let duplicated = counts.values().map(|c| c - 1).sum();
    let ordered = seen.windows(2).all(|w| w[0].offset < w[1].offset);
    println!("lost={lost} duplicated={duplicated} ordered={ordered}");
    (lost, duplicated, ordered)
}

/// Publications lost on the subscriber connection while it reconnects (killed with
/// `CLIENT KILL TYPE pubsub`) are filled from the stream, in order, none twice; the last
/// one of an idle channel too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_is_filled_after_the_subscriber_connection_is_killed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let node = node(&[server.url()]).await;
    let seen = registered(&node);
    let (busy, idle) = (channels(&["busy"]), channels(&["idle"]));
    node.broker.subscribe(&busy).await.unwrap();
    node.broker.subscribe(&idle).await.unwrap();
    let keep = HistoryPolicy { size: 1000, ..KEEP };
    for i in 0..20 {
        node.broker
            .publish(&busy, &message(&format!("{i}")), keep)
            .await
            .unwrap();
    }
    assert_eq!(
        seen.wait_for("busy", 20, Duration::from_secs(5))
            .await
            .len(),
        20
    );
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_ne!(killed.trim(), "0", "a subscriber connection was killed");
    for i in 20..60 {
        node.broker
            .publish(&busy, &message(&format!("{i}")), keep)
            .await
            .unwrap();
    }
    node.broker
        .publish(&idle, &message("only"), keep)
        .await
        .unwrap();
    let got = seen.wait_for("busy", 60, Duration::from_secs(15)).await;
    let (lost, duplicated, ordered) = count_loss(&got, 60);
    assert_eq!((lost, duplicated, ordered), (0, 0, true));
    let idle_seen = seen.wait_for("idle", 1, Duration::from_secs(15)).await;
    assert_eq!(count_loss(&idle_seen, 1), (0, 0, true));
}

/// Two nodes publishing to one channel at once: offsets gap-free, and each node hands
/// over every publication in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_publishing_at_once_keep_one_order() {
    const EACH: u64 = 150;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (node(&[server.url()]).await, node(&[server.url()]).await);
    let (seen_a, seen_b) = (registered(&a), registered(&b));
    let c = channels(&["shared"]);
    a.broker.subscribe(&c).await.unwrap();
    b.broker.subscribe(&c).await.unwrap();
    let mut tasks = Vec::new();
    for broker in [
        a.broker.clone(),
        b.broker.clone(),
        a.broker.clone(),
        b.broker.clone(),
    ] {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                broker
                    .publish(&c, &message(&format!("{i}")), KEEP)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for seen in [seen_a, seen_b] {
        let got = seen
            .wait_for("shared", 4 * EACH as usize, Duration::from_secs(10))
            .await;
        assert_eq!(count_loss(&got, 4 * EACH), (0, 0, true));
    }
}

/// A flushed Redis loses the streams (and its scripts): the next publish starts a new
/// epoch at offset 1, the node hands it over, and a client from the old epoch learns it
/// cannot recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_starts_a_new_epoch() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let node = node(&[server.url()]).await;
    let seen = registered(&node);
    let c = channels(&["f"]);
    node.broker.subscribe(&c).await.unwrap();
    let mut old = StreamPosition::empty();
    for i in 0..3 {
        old = node
            .broker
            .publish(&c, &message(&format!("{i}")), KEEP)
            .await
            .unwrap()
            .remove(0);
    }
    seen.wait_for("f", 3, Duration::from_secs(5)).await;
    assert!(server.cli(&["FLUSHALL"]).contains("OK"));
    assert!(
        server.cli(&["SCRIPT", "FLUSH"]).contains("OK"),
        "NOSCRIPT is handled too"
    );
    let new = node
        .broker
        .publish(&c, &message("new"), KEEP)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.offset, 1);
    assert_ne!(new.epoch, old.epoch);
    let got = seen.wait_for("f", 4, Duration::from_secs(5)).await;
    assert_eq!(got.last(), Some(&new));
    let answer = node
        .broker
        .history(&[HistoryRequest {
            channel: c[0].clone(),
            since: Some(old),
            limit: None,
        }])
        .await
        .unwrap()
        .remove(0);
    assert!(!answer.complete);
    assert_eq!(answer.top, new);
}

/// History keeps the newest `size` messages and drops those older than the TTL; a
/// client from before what was dropped cannot recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_by_size_and_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let node = node(&[server.url()]).await;
    registered(&node);
    let c = channels(&["t"]);
    for i in 0..5 {
        node.broker
            .publish(&c, &message(&format!("{i}")), KEEP)
            .await
            .unwrap();
    }
    let read = |since| HistoryRequest {
        channel: c[0].clone(),
        since,
        limit: None,
    };
    let all = node
        .broker
        .history(&[read(Some(StreamPosition::empty()))])
        .await
        .unwrap();
    assert!(!all[0].complete, "offsets 1 and 2 were trimmed");
    let top = all[0].top.clone();
    let at_two = StreamPosition {
        offset: 2,
        ..top.clone()
    };
    let kept = node.broker.history(&[read(Some(at_two))]).await.unwrap();
    assert!(kept[0].complete);
    let offsets: Vec<u64> = kept[0].missed.iter().map(|p| p.position.offset).collect();
    assert_eq!(offsets, [3, 4, 5]);
    assert_eq!(&*kept[0].missed[0].message.id, "2");
    assert_eq!(kept[0].missed[0].message.data.get(), "\"2\"");
    assert_eq!(server.cli(&["XLEN", "t:{t}:s"]).trim(), "3");

    let short = HistoryPolicy {
        size: 10,
        ttl: Duration::from_millis(900),
        max_bytes: usize::MAX,
    };
    let s = channels(&["short"]);
    let first = node
        .broker
        .publish(&s, &message("a"), short)
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.broker.publish(&s, &message("b"), short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = node
        .broker
        .history(&[HistoryRequest {
            channel: s[0].clone(),
            since: Some(first.clone()),
            limit: None,
        }])
        .await
        .unwrap()
        .remove(0);
    assert!(answer.complete, "the first was seen; the second is kept");
    assert_eq!(answer.missed.len(), 1);
    let from_start = node
        .broker
        .history(&[HistoryRequest {
            channel: s[0].clone(),
            since: Some(StreamPosition::empty()),
            limit: None,
        }])
        .await
        .unwrap()
        .remove(0);
    assert!(!from_start.complete, "the first is past its TTL");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let forgotten = node
        .broker
        .history(&[
            read(None),
            HistoryRequest {
                channel: s[0].clone(),
                since: None,
                limit: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        forgotten[1].top,
        StreamPosition::empty(),
        "an idle channel is forgotten after its TTL"
    );
}

/// Redis Cluster: channels spread over slots, sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_with_sharded_pubsub() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let node = node(&[cluster.url()]).await;
    let seen = registered(&node);
    let names: Vec<String> = (0..20).map(|i| format!("c:user:{i}")).collect();
    let all: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_str())).collect();
    node.broker.subscribe(&all).await.unwrap();
    for round in 0..3 {
        node.broker
            .publish(&all, &message(&format!("{round}")), KEEP)
            .await
            .unwrap();
    }
    for name in &names {
        let got = seen.wait_for(name, 3, Duration::from_secs(10)).await;
        assert_eq!(count_loss(&got, 3), (0, 0, true), "{name}");
    }
    let shard_channels: usize = cluster
        .nodes()
        .iter()
        .map(|server| {
            server
                .cli(&["PUBSUB", "SHARDCHANNELS"])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .sum();
    assert_eq!(
        shard_channels, 20,
        "every channel is a sharded subscription"
    );
    let history = node
        .broker
        .history(&[HistoryRequest {
            channel: all[7].clone(),
            since: Some(StreamPosition::empty()),
            limit: None,
        }])
        .await
        .unwrap();
    assert!(history[0].complete && history[0].missed.len() == 3);
}

/// A Sentinel-watched master: publish and subscribe work through the Sentinels' answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_publish_and_subscribe() {
    let Some(group) = SentinelGroup::start() else {
        return;
    };
    let node = node(&[group.url()]).await;
    let seen = registered(&node);
    let c = channels(&["s"]);
    node.broker.subscribe(&c).await.unwrap();
    for i in 0..5 {
        node.broker
            .publish(&c, &message(&format!("{i}")), KEEP)
            .await
            .unwrap();
    }
    let got = seen.wait_for("s", 5, Duration::from_secs(10)).await;
    assert_eq!(count_loss(&got, 5), (0, 0, true));
}

/// Two independent deployments: channels are spread over both by the consistent hash,
/// and one push to channels on both reaches every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_share_the_channels() {
    let (Some(one), Some(two)) = (RedisServer::start(), RedisServer::start()) else {
        return;
    };
    let node = node(&[one.url(), two.url()]).await;
    let seen = registered(&node);
    let names: Vec<String> = (0..20).map(|i| format!("d:user:{i}")).collect();
    let all: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_str())).collect();
    node.broker.subscribe(&all).await.unwrap();
    node.broker
        .publish(&all, &message("m"), KEEP)
        .await
        .unwrap();
    for name in &names {
        assert_eq!(
            seen.wait_for(name, 1, Duration::from_secs(5)).await.len(),
            1,
            "{name}"
        );
    }
    for server in [&one, &two] {
        let keys: usize = server.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(
            keys >= 2,
            "each deployment holds some channels ({keys} keys)"
        );
    }
}

/// Redis down: publish and history fail fast with `Unavailable`, health says why; back
/// again: healthy, resubscribed, and publications flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_recovers() {
    let Some(mut server) = RedisServer::start_with(pushhub_testkit::RedisOptions {
        aof: true,
        ..Default::default()
    }) else {
        return;
    };
    let node = node(&[server.url()]).await;
    let seen = registered(&node);
    let c = channels(&["o"]);
    node.broker.subscribe(&c).await.unwrap();
    node.broker
        .publish(&c, &message("before"), KEEP)
        .await
        .unwrap();
    seen.wait_for("o", 1, Duration::from_secs(5)).await;
    server.kill();
    let started = std::time::Instant::now();
    let refused = node.broker.publish(&c, &message("during"), KEEP).await;
    assert!(
        matches!(refused, Err(EngineError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let history = node
        .broker
        .history(&[HistoryRequest {
            channel: c[0].clone(),
            since: None,
            limit: None,
        }])
        .await;
    assert!(history.is_err());
    let reason = node.broker.health().await.unwrap_err();
    assert!(reason.contains("redis"), "{reason}");
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while node.broker.health().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "healthy again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Healthy says the node reaches Redis again; a pool connection not yet found dead
    // may still refuse one publish (refused, never queued): a backend retries it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let published = node.broker.publish(&c, &message("after"), KEEP).await;
        if published.is_ok()
            && seen
                .wait_for("o", 2, Duration::from_millis(500))
                .await
                .len()
                >= 2
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resubscribed after the outage (last publish: {published:?})"
        );
        if published.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let got = seen.of("o");
    assert_eq!(got[1].offset, 2, "the AOF kept the stream: offsets go on");
}

/// Commands run for one publish of `targets` (after each was published to once, so no
/// stream is new): `(round trips the node sent, commands Redis ran in all)`.
async fn publish_cost(server: &RedisServer, node: &Node, targets: &[Arc<str>]) -> (u64, u64) {
    let before = server.command_calls();
    node.broker
        .publish(targets, &message("m"), KEEP)
        .await
        .unwrap();
    let after = server.command_calls();
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    let total = after.keys().map(|name| delta(name)).sum();
    (delta("evalsha"), total)
}

/// Redis commands per publish are the same whatever the number of channels' subscribers
/// (nodes), and grow only with the number of channels; printed for the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_per_publish_do_not_grow_with_nodes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let users = channels(&["m:user:1", "m:user:2", "m:user:3"]);
    let a = node(&[server.url()]).await;
    let seen_a = registered(&a);
    a.broker.subscribe(&users).await.unwrap();
    a.broker
        .publish(&users, &message("warm"), KEEP)
        .await
        .unwrap();
    seen_a.wait_for("m:user:3", 1, Duration::from_secs(5)).await;
    let one_node_one_user = publish_cost(&server, &a, &users[..1]).await;
    let one_node_three_users = publish_cost(&server, &a, &users).await;
    let b = node(&[server.url()]).await;
    let seen_b = registered(&b);
    b.broker.subscribe(&users).await.unwrap();
    let two_nodes_one_user = publish_cost(&server, &a, &users[..1]).await;
    let two_nodes_three_users = publish_cost(&server, &a, &users).await;
    println!(
        "commands per publish (round trips, commands run): 1 node: user 1 {one_node_one_user:?}, \
         users 1,2,3 {one_node_three_users:?}; 2 nodes: user 1 {two_nodes_one_user:?}, \
         users 1,2,3 {two_nodes_three_users:?}"
    );
    assert_eq!(one_node_one_user.0, 1, "one round trip per channel");
    assert_eq!(one_node_three_users.0, 3);
    assert_eq!(one_node_one_user, two_nodes_one_user);
    assert_eq!(one_node_three_users, two_nodes_three_users);
    assert_eq!(one_node_three_users.1, 3 * one_node_one_user.1);
    let got = seen_b.wait_for("m:user:1", 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2, "the second node received both");
}

/// A connect storm: 15,000 users' channels subscribed by 15,000 concurrent calls go to
/// Redis in a few batched `SUBSCRIBE`s, well within 5 s; printed for the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_storm_subscribes_in_batches() {
    const USERS: usize = 15_000;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let node = node(&[server.url()]).await;
    registered(&node);
    let before = server.command_calls();
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..USERS)
        .map(|user| {
            let broker = node.broker.clone();
            tokio::spawn(async move {
                let mine = channels(&[&format!("s:user:{user}")]);
                broker.subscribe(&mine).await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let took = started.elapsed();
    let after = server.command_calls();
    let subscribes = after.get("subscribe").unwrap_or(&0) - before.get("subscribe").unwrap_or(&0);
    let subscribed: usize = server
        .cli(&["PUBSUB", "CHANNELS", "t:*"])
        .lines()
        .filter(|l| !l.is_empty())
        .count();
    println!("connect storm: {USERS} channels subscribed in {took:?} with {subscribes} SUBSCRIBE commands");
    assert_eq!(subscribed, USERS);
    assert!(subscribes < 100, "{subscribes} SUBSCRIBE commands");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A TCP relay in front of Redis that can wedge the connections open at a moment (they
/// stay open and forward nothing) while later ones pass: a connection that goes silent
/// without closing, the silent-loss case the probe must catch.
struct Relay {
    port: u16,
    /// Connections accepted before this count are wedged.
    wedged_before: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let wedged_before = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (wedged, count) = (wedged_before.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let number = count.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(forward(ri, wo, number, wedged.clone()));
                tokio::spawn(forward(ro, wi, number, wedged.clone()));
            }
        });
        Self {
            port,
            wedged_before,
            accepted,
        }
    }

    /// Wedge every connection open now; later ones pass.
    fn wedge(&self) {
        self.wedged_before
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Copy `from` to `to` until either closes; once connection `number` is wedged, what it
/// reads is swallowed.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    number: u64,
    wedged_before: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let wedged = number < wedged_before.load(Ordering::SeqCst);
        if !wedged && to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// A node whose connections to Redis go silent without closing notices within 10 s,
/// reconnects, and hands over everything published meanwhile by another node, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_subscriber_connection_is_replaced_and_its_gap_filled() {
    const TOTAL: u64 = 40;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let relay = Relay::start(server.port()).await;
    let listener = node(&[format!("redis://127.0.0.1:{}/0", relay.port)]).await;
    let publisher = node(&[server.url()]).await;
    let seen = registered(&listener);
    registered(&publisher);
    let c = channels(&["w"]);
    let keep = HistoryPolicy { size: 1000, ..KEEP };
    listener.broker.subscribe(&c).await.unwrap();
    publisher
        .broker
        .publish(&c, &message("0"), keep)
        .await
        .unwrap();
    seen.wait_for("w", 1, Duration::from_secs(5)).await;
    relay.wedge();
    let wedged_at = std::time::Instant::now();
    for i in 1..TOTAL {
        publisher
            .broker
            .publish(&c, &message(&format!("{i}")), keep)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = seen
        .wait_for("w", TOTAL as usize, Duration::from_secs(15))
        .await;
    println!("caught up {:?} after the wedge", wedged_at.elapsed());
    assert_eq!(count_loss(&got, TOTAL), (0, 0, true));
    assert!(wedged_at.elapsed() < Duration::from_secs(15));
}

/// A stream that goes back in the same epoch (Redis lost its latest publications, as a
/// failover to a replica that had not caught up does; simulated by lowering the top) is
/// noticed on the next check: it gets a new epoch, and what is published next reaches
/// every node instead of being dropped as already seen, without what they had handed
/// over coming again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_went_back_gets_a_new_epoch() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let node = node(&[server.url()]).await;
    let seen = registered(&node);
    let c = channels(&["back"]);
    node.broker.subscribe(&c).await.unwrap();
    let mut before = StreamPosition::empty();
    for i in 0..5 {
        before = node
            .broker
            .publish(&c, &message(&format!("{i}")), KEEP)
            .await
            .unwrap()
            .remove(0);
    }
    seen.wait_for("back", 5, Duration::from_secs(5)).await;
    assert_eq!(server.cli(&["HSET", "t:{back}:m", "o", "2"]).trim(), "0");
    // A reconnect makes the node check every stream top at once.
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let renewed = loop {
        let top = node
            .broker
            .history(&[HistoryRequest {
                channel: c[0].clone(),
                since: None,
                limit: None,
            }])
            .await
            .unwrap()
            .remove(0)
            .top;
        if top.epoch != before.epoch {
            break top;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the epoch was not renewed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(renewed.offset, 2);
    let next = node
        .broker
        .publish(&c, &message("next"), KEEP)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (next.epoch.clone(), next.offset),
        (renewed.epoch.clone(), 3)
    );
    let got = seen.wait_for("back", 6, Duration::from_secs(5)).await;
    assert_eq!(got.last(), Some(&next), "handed over, not dropped as seen");
}

/// Nodes that learn of a renewed epoch from a publication (another node renewed it) read
/// on from where the stream was renewed: what they had handed over, which kept its
/// offsets, is not handed over again in the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_still_in_the_old_epoch_read_on_from_the_renewal() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (one, two) = (node(&[server.url()]).await, node(&[server.url()]).await);
    let (seen_one, seen_two) = (registered(&one), registered(&two));
    let c = channels(&["renewed"]);
    one.broker.subscribe(&c).await.unwrap();
    two.broker.subscribe(&c).await.unwrap();
    let keep = HistoryPolicy { size: 100, ..KEEP };
    let mut before = StreamPosition::empty();
    for i in 0..5 {
        before = one
            .broker
            .publish(&c, &message(&format!("{i}")), keep)
            .await
            .unwrap()
            .remove(0);
    }
    for seen in [&seen_one, &seen_two] {
        assert_eq!(
            seen.wait_for("renewed", 5, Duration::from_secs(5))
                .await
                .len(),
            5
        );
    }
    // Redis lost offsets 3 to 5, and a third node renewed the epoch.
    assert_eq!(server.cli(&["HSET", "t:{renewed}:m", "o", "2"]).trim(), "0");
    let renewed = stream::renew_if_rewound(&one.broker.inner, &c[0], &before)
        .await
        .unwrap();
    assert_ne!(renewed.epoch, before.epoch);
    let next = one
        .broker
        .publish(&c, &message("next"), keep)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (next.epoch.clone(), next.offset),
        (renewed.epoch.clone(), 3)
    );
    for (name, seen) in [("one", &seen_one), ("two", &seen_two)] {
        let got = seen.wait_for("renewed", 6, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 6, "{name} handed over {got:?}");
        assert_eq!(got.last(), Some(&next), "{name}");
    }
}

/// Behind Sentinel a publish is accepted only once a replica holds it: with no replica
/// following the master, it is refused (and says why) instead of accepted and then lost
/// by the next failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_publish_without_a_replica_is_refused() {
    let Some(group) = SentinelGroup::start() else {
        return;
    };
    let node = node(&[group.url()]).await;
    let c = channels(&["lonely"]);
    node.broker
        .publish(&c, &message("with"), KEEP)
        .await
        .unwrap();
    let master = group.master_port();
    for replica in group.servers().iter().filter(|s| s.port() != master) {
        assert!(replica.cli(&["REPLICAOF", "NO", "ONE"]).contains("OK"));
    }
    let refused = node
        .broker
        .publish(&c, &message("without"), KEEP)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not confirmed by a replica"),
        "{refused}"
    );
    // Once the probe saw the master alone, a publish is refused before it is written, so
    // it is not delivered later either.
    let keep = HistoryPolicy { size: 100, ..KEEP };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    let unwritten = loop {
        attempt += 1;
        let id = format!("attempt-{attempt}");
        let refused = node
            .broker
            .publish(&c, &message(&id), keep)
            .await
            .unwrap_err()
            .to_string();
        if refused.contains("nothing was written") {
            break id;
        }
        assert!(tokio::time::Instant::now() < deadline, "{refused}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stream =
        group
            .server(master)
            .expect("the master")
            .cli(&["XRANGE", "t:{lonely}:s", "-", "+"]);
    assert!(
        !stream.contains(&format!("\"{unwritten}\"")),
        "{unwritten} was refused before it was written: {stream}"
    );
}

/// A Sentinel failover while a node publishes: no publication the node accepted is lost
/// with the old master (counted by message id in the new master's stream; what the
/// failover could not take is refused and counted), the node follows the Sentinels to the
/// new master and hands over what is published there (no wedged node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_stream_ends_on_the_new_master() {
    let Some(group) = SentinelGroup::start() else {
        return;
    };
    // Nothing configured on Redis: the node itself waits for the replica (`WAIT`) before
    // it accepts a publish, so what the failover promotes holds everything accepted.
    let node = node(&[group.url()]).await;
    let seen = registered(&node);
    let c = channels(&["fo"]);
    let keep = HistoryPolicy {
        size: 10_000,
        ..KEEP
    };
    node.broker.subscribe(&c).await.unwrap();
    let publisher = tokio::spawn({
        let broker = node.broker.clone();
        let c = c.clone();
        async move {
            let (mut accepted, mut refused) = (Vec::new(), 0u64);
            for i in 0..150 {
                match broker.publish(&c, &message(&format!("m{i}")), keep).await {
                    Ok(_) => accepted.push(format!("m{i}")),
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, refused)
        }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (port, group) = tokio::task::spawn_blocking(move || (group.failover(), group))
        .await
        .unwrap();
    let (accepted, refused) = publisher.await.unwrap();
    let master = group.server(port).expect("the new master");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (after, took) = loop {
        if let Ok(mut at) = node.broker.publish(&c, &message("after"), keep).await {
            let at = at.remove(0);
            if master.cli(&["HGET", "t:{fo}:m", "o"]).trim() == at.offset.to_string() {
                break (at, deadline - tokio::time::Instant::now());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never wrote to the new master"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stream = master.cli(&["XRANGE", "t:{fo}:s", "-", "+"]);
    let lost = accepted
        .iter()
        .filter(|id| !stream.contains(&format!("\"id\":\"{id}\"")))
        .count();
    println!(
        "failover: accepted={} refused={refused} accepted-but-lost-by-redis={lost}; \
         writing to the new master {:?} after the failover returned",
        accepted.len(),
        Duration::from_secs(30) - took,
    );
    let got = seen.wait_for("fo", 1, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.of("fo").contains(&after) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node hands over what the new master publishes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!got.is_empty());
    assert_eq!(
        lost, 0,
        "the node followed the Sentinels before Redis lost anything"
    );
}
