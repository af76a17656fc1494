//! Many nodes, one service: three `pushhub serve --engine redis` processes on one real
//! Redis (standalone with AOF, Sentinel-watched, or a Redis Cluster), clients of every
//! dialect spread over them, and the failures the Redis engine must survive — a node
//! killed with SIGKILL, Redis killed and restarted, a Sentinel failover — with every
//! message id counted: `lost` and `duplicated` are printed and must be zero.
//!
//! Each test is skipped loudly when Redis is not installed (and fails under `CI=true`).

use std::time::Duration;

use pushhub_testkit::{RedisCluster, RedisOptions, RedisServer, SentinelGroup};

use crate::counting::clients::Dialect;
use crate::counting::harness::{publish, Cluster, Expected, Outcome, Publisher};

/// Time between two publishes of the background publisher.
const EVERY: Duration = Duration::from_millis(10);

/// Publish `{"seq": seq}` to `to` through node `via`, recording the outcome.
async fn push(cluster: &Cluster, expected: &mut Expected, via: usize, to: &str, seq: u64) {
    let outcome = publish(&crate::util::http(), cluster.endpoints[via].api, to, seq).await;
    expected.record(to, seq, outcome);
}

/// Publish through node `via` until a publish is accepted, for at most `limit`: a node
/// that cannot publish again after Redis came back is wedged.
async fn push_until_accepted(
    cluster: &Cluster,
    expected: &mut Expected,
    via: usize,
    mut seq: u64,
    limit: Duration,
) -> u64 {
    let http = crate::util::http();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match publish(&http, cluster.endpoints[via].api, "*", seq).await {
            Outcome::Accepted => {
                expected.broadcast.insert(seq);
                return seq + 1;
            }
            Outcome::Refused => {
                expected.refused.insert(seq);
            }
            Outcome::Other(what) => expected.other.push(format!("seq {seq}: {what}")),
        }
        seq += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {via} still refuses publishes {limit:?} later: {:?}\n{}",
            expected.other,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The end of a failure test: a publish accepted again through every node within `limit`
/// (no node wedged), every publish answered 200 or 503 `engine_unavailable`, and the
/// clients' tally clean (nothing lost, nothing twice, every resume recovered).
async fn finish_after_failure(
    cluster: Cluster,
    mut expected: Expected,
    name: &str,
    limit: Duration,
) {
    let mut seq = 1_000_000;
    for via in 0..3 {
        seq = push_until_accepted(&cluster, &mut expected, via, seq, limit).await;
    }
    assert!(
        expected.other.is_empty(),
        "publishes answered neither 200 nor 503 engine_unavailable: {:?}",
        expected.other
    );
    cluster.finish(name, &expected).await.assert_clean(true);
}

/// Wait until node `via` answers `/healthz` with 200, for at most `limit`.
async fn wait_healthy(cluster: &Cluster, via: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (status, body) = cluster.node(via).get("/healthz").await;
        if status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {via} still unhealthy after {limit:?}: {status} {body}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_through_node_1_reaches_every_dialect_on_nodes_2_and_3() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Cluster::start(&redis.url(), 3);
    cluster.spawn_clients(&Dialect::ALL, &[1, 2], 1);
    cluster.wait_ready().await;
    let mut expected = Expected::default();
    for seq in 0..5 {
        push(&cluster, &mut expected, 0, "*", seq).await;
    }
    for (index, (_, user)) in cluster.users().into_iter().enumerate() {
        push(&cluster, &mut expected, 0, &user, 100 + index as u64).await;
    }
    assert!(
        expected.refused.is_empty() && expected.other.is_empty(),
        "{expected:?}"
    );
    cluster
        .finish("push through node 1", &expected)
        .await
        .assert_clean(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_a_node_while_publishing_its_clients_resume_on_another_without_loss() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Cluster::start(&redis.url(), 3);
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1, 2], 2);
    cluster.wait_ready().await;
    let publisher = Publisher::start(&cluster.endpoints, &[0, 2], 0, EVERY);
    publisher.wait_more(50, Duration::from_secs(20)).await;
    cluster.kill(1);
    publisher.wait_more(150, Duration::from_secs(30)).await;
    let expected = publisher.stop().await;
    assert!(
        expected.refused.is_empty() && expected.other.is_empty(),
        "nodes 1 and 3 refused publishes: {:?} {:?}",
        expected.refused,
        expected.other
    );
    let tally = cluster.finish("kill -9 node 2", &expected).await;
    tally.assert_clean(true);
    for dialect in Dialect::RESUMING {
        assert!(
            tally.row(dialect).reconnects >= 2,
            "{dialect:?}: node 2's two clients moved: {:?}",
            tally.row(dialect)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_mid_stream_loses_no_accepted_publish() {
    let Some(mut redis) = RedisServer::start_with(RedisOptions {
        aof: true,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let mut cluster = Cluster::start(&redis.url(), 3);
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1, 2], 1);
    cluster.wait_ready().await;
    let publisher = Publisher::start(&cluster.endpoints, &[0, 1, 2], 0, EVERY);
    publisher.wait_more(50, Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| redis.kill());
    // Longer than the 5 s command timeout: publishes waiting on Redis must be refused.
    tokio::time::sleep(Duration::from_secs(7)).await;
    tokio::task::block_in_place(|| redis.restart());
    let accepted_at_restart = publisher.expected.lock().unwrap().broadcast.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while publisher.expected.lock().unwrap().broadcast.len() < accepted_at_restart + 60 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes are not accepted again 30 s after Redis came back: {:?}\n{}",
            publisher.expected.lock().unwrap().other,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = publisher.stop().await;
    finish_after_failure(
        cluster,
        expected,
        "Redis killed and restarted (AOF)",
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_reported_on_healthz_and_publishes_get_503_until_it_returns() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let cluster = Cluster::start(&redis.url(), 2);
    for via in 0..2 {
        wait_healthy(&cluster, via, Duration::from_secs(15)).await;
    }
    let http = crate::util::http();
    assert!(matches!(
        publish(&http, cluster.endpoints[0].api, "*", 0).await,
        Outcome::Accepted
    ));
    tokio::task::block_in_place(|| redis.kill());
    for via in 0..2 {
        let node = cluster.node(via);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = node.get("/healthz").await;
            if status == 503 {
                assert!(body.to_string().contains("redis"), "{body}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {via} still healthy 15 s after Redis died: {status} {body}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let outcome = publish(&http, cluster.endpoints[via].api, "*", 1).await;
        assert!(
            matches!(outcome, Outcome::Refused),
            "node {via}: {outcome:?}"
        );
    }
    tokio::task::block_in_place(|| redis.restart());
    let mut expected = Expected::default();
    for via in 0..2 {
        push_until_accepted(&cluster, &mut expected, via, 2, Duration::from_secs(20)).await;
        // The subscription connection is probed on its own schedule: healthy again within
        // the probe's bound, not necessarily at the first accepted publish.
        wait_healthy(&cluster, via, Duration::from_secs(15)).await;
    }
}

/// Redis down while a node starts: the node serves anyway, and once Redis is back it
/// subscribes, reports healthy and delivers, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_started_while_redis_is_down_delivers_once_it_returns() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    tokio::task::block_in_place(|| redis.kill());
    let mut cluster = Cluster::start(&redis.url(), 2);
    tokio::task::block_in_place(|| redis.restart());
    for via in 0..2 {
        wait_healthy(&cluster, via, Duration::from_secs(20)).await;
    }
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1], 1);
    cluster.wait_ready().await;
    let mut expected = Expected::default();
    for seq in 0..4 {
        push(&cluster, &mut expected, seq as usize % 2, "*", seq).await;
    }
    assert!(
        expected.refused.is_empty() && expected.other.is_empty(),
        "{expected:?}"
    );
    cluster
        .finish("node started while Redis was down", &expected)
        .await
        .assert_clean(true);
}

/// A Sentinel group of a master and `replicas` replicas, configured as
/// docs/operations.md asks: a master without a replica refuses writes at once.
fn sentinel_group(replicas: usize) -> Option<SentinelGroup> {
    let group = SentinelGroup::start_with_replicas(replicas)?;
    let master = group.server(group.master_port()).expect("the master");
    for (name, value) in [
        ("min-replicas-to-write", "1"),
        ("min-replicas-max-lag", "10"),
    ] {
        let answer = master.cli(&["CONFIG", "SET", name, value]);
        assert!(answer.contains("OK"), "CONFIG SET {name}: {answer}");
    }
    Some(group)
}

/// A planned failover with one replica: the new master has none until the Sentinels make
/// the old master its replica (10–20 s: they wait to be sure it is back), and every publish
/// is refused until then rather than accepted unreplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_mid_stream_loses_nothing_and_wedges_no_node() {
    let Some(group) = sentinel_group(1) else {
        return;
    };
    let mut cluster = Cluster::start(&group.url(), 3);
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1, 2], 1);
    cluster.wait_ready().await;
    let publisher = Publisher::start(&cluster.endpoints, &[0, 1, 2], 0, EVERY);
    publisher.wait_more(50, Duration::from_secs(20)).await;
    let old = group.master_port();
    let new = tokio::task::block_in_place(|| group.failover());
    assert_ne!(old, new);
    publisher.wait_more(150, Duration::from_secs(30)).await;
    let expected = publisher.stop().await;
    finish_after_failure(
        cluster,
        expected,
        "Sentinel failover",
        Duration::from_secs(40),
    )
    .await;
}

/// The master dies (SIGKILL) and the Sentinels promote one of its two replicas: an
/// unplanned failover, where a replica may lack the master's last writes (accepted ones
/// it holds: each was answered once every replica held it). The other replica follows
/// the new master, so publishes are accepted again within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_master_killed_mid_stream_loses_no_accepted_publish() {
    let Some(group) = sentinel_group(2) else {
        return;
    };
    let mut cluster = Cluster::start(&group.url(), 3);
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1, 2], 1);
    cluster.wait_ready().await;
    let publisher = Publisher::start(&cluster.endpoints, &[0, 1, 2], 0, EVERY);
    publisher.wait_more(50, Duration::from_secs(20)).await;
    let old = group.master_port();
    let pid = group
        .server(old)
        .and_then(|s| s.pid())
        .expect("the master runs");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while group.master_port() == old {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Sentinels did not promote the replica within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.wait_more(150, Duration::from_secs(60)).await;
    let expected = publisher.stop().await;
    finish_after_failure(
        cluster,
        expected,
        "Sentinel master killed",
        Duration::from_secs(20),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_with_sharded_pubsub_reaches_users_on_every_slot_and_node() {
    let Some(redis) = RedisCluster::start() else {
        return;
    };
    let mut cluster = Cluster::start(&redis.url(), 3);
    cluster.spawn_clients(&Dialect::RESUMING, &[0, 1, 2], 4);
    cluster.wait_ready().await;
    let held = cluster
        .users()
        .iter()
        .filter(|(dialect, _)| dialect.holds_connection())
        .count();
    let per_master: Vec<usize> = redis
        .nodes()
        .iter()
        .map(|node| {
            node.cli(&["PUBSUB", "SHARDCHANNELS"])
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        })
        .collect();
    assert!(
        per_master.iter().sum::<usize>() >= held && per_master.iter().all(|&n| n > 0),
        "{held} users hold a connection: every master must hold some of their shard \
         channels (SSUBSCRIBE), yet they hold {per_master:?}"
    );
    let mut expected = Expected::default();
    for seq in 0..5 {
        push(&cluster, &mut expected, seq as usize % 3, "*", seq).await;
    }
    // Each user's push goes through the node after its own, so it crosses nodes.
    for home in 0..3 {
        for user in cluster.users_on(home) {
            let seq = 10_000 + expected.to_user.len() as u64;
            push(&cluster, &mut expected, (home + 1) % 3, &user, seq).await;
        }
    }
    assert!(
        expected.refused.is_empty() && expected.other.is_empty(),
        "{expected:?}"
    );
    cluster
        .finish("Redis Cluster", &expected)
        .await
        .assert_clean(true);
}
