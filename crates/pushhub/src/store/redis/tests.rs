//! The store contract and the claiming races, against a real redis-server.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pushhub_testkit::RedisServer;

use super::RedisStore;
use crate::redis::{RedisConnections, RedisSettings};
use crate::store::contract::{self, new_timer};
use crate::store::{JobChange, JobClaims, JobStore, TimerClaims, TimerState, TimerStore};

/// A store on `url` under `prefix`, connected, with leases of `lease`.
async fn store(url: &str, prefix: &str, lease: Duration) -> Arc<RedisStore> {
    let settings = RedisSettings {
        urls: vec![url.to_owned()],
        prefix: prefix.to_owned(),
        ..RedisSettings::default()
    };
    let connections = RedisConnections::build(&settings).unwrap();
    assert!(connections.connect(Duration::from_secs(5)).await.is_empty());
    Arc::new(RedisStore::new(&connections, lease))
}

#[tokio::test]
async fn redis_store_keeps_the_timer_contract() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    contract::check(|_| {
        let url = url.clone();
        async move { store(&url, "contract", Duration::from_secs(30)).await as Arc<dyn TimerStore> }
    })
    .await;
}

#[tokio::test]
async fn redis_store_keeps_the_job_contract() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    contract::check_jobs(|_| {
        let url = url.clone();
        async move {
            let store = store(&url, "jobs", Duration::from_secs(30)).await;
            (
                store.clone() as Arc<dyn JobStore>,
                store as Arc<dyn TimerStore>,
            )
        }
    })
    .await;
}

/// Two stores on one Redis claim the same 2,000 due timers at once: each timer goes to
/// exactly one of them, and none is left.
#[tokio::test]
async fn two_nodes_racing_claim_each_due_timer_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let lease = Duration::from_secs(30);
    let a = store(&redis.url(), "race", lease).await;
    let b = store(&redis.url(), "race", lease).await;
    let mut created = HashSet::new();
    for i in 0..2000 {
        let timer = a
            .create(new_timer("app", 1000 + i % 7, None))
            .await
            .unwrap();
        created.insert(timer.timer.id);
    }
    let race = |store: Arc<RedisStore>| async move {
        let mut got = Vec::new();
        loop {
            let claimed = store.claim_due(10_000, 37).await.unwrap();
            if claimed.timers.is_empty() {
                return got;
            }
            for timer in claimed.timers {
                assert_eq!((timer.state, timer.attempts), (TimerState::Running, 1));
                got.push(timer.id);
            }
        }
    };
    let (got_a, got_b) = tokio::join!(race(a.clone()), race(b.clone()));
    let mut all = got_a.clone();
    all.extend(&got_b);
    let unique: HashSet<_> = all.iter().copied().collect();
    println!(
        "claimed: a {}, b {}, duplicated {}, lost {}",
        got_a.len(),
        got_b.len(),
        all.len() - unique.len(),
        created.difference(&unique).count()
    );
    assert_eq!(all.len(), unique.len(), "a timer was claimed twice");
    assert_eq!(unique, created, "a due timer was not claimed");
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both raced");
    // Racing single starts: one wins.
    let t = a.create(new_timer("app", 5, None)).await.unwrap().timer.id;
    let (x, y) = tokio::join!(a.begin_attempt(t), b.begin_attempt(t));
    assert_eq!(
        [x.unwrap().is_some(), y.unwrap().is_some()]
            .iter()
            .filter(|won| **won)
            .count(),
        1
    );
}

/// A store that stops renewing (its node died) loses its timers to another store once
/// the lease has run out, and not before; a live store's renewals keep them.
#[tokio::test]
async fn a_lease_that_runs_out_hands_the_timer_over() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let lease = Duration::from_secs(3);
    let dead = store(&redis.url(), "lease", lease).await;
    let live = store(&redis.url(), "lease", lease).await;
    let id = dead
        .create(new_timer("app", 1, None))
        .await
        .unwrap()
        .timer
        .id;
    let now = crate::scheduler::unix_ms();
    assert_eq!(dead.claim_due(now, 10).await.unwrap().timers.len(), 1);
    assert!(live
        .claim_due(now + 2_000, 10)
        .await
        .unwrap()
        .timers
        .is_empty());
    let taken = live.claim_due(now + 3_100, 10).await.unwrap().timers;
    assert_eq!(
        taken.iter().map(|t| (t.id, t.attempts)).collect::<Vec<_>>(),
        [(id, 2)]
    );
    // The late finish of the dead node's attempt changes nothing.
    let after = dead
        .finish_attempt(id, attempt(), crate::store::Next::Succeeded, now + 4_000)
        .await
        .unwrap();
    assert_eq!(after, Some(TimerState::Running));
    // Renewed leases hold.
    live.renew(now + 3_100).await.unwrap();
    assert!(dead
        .claim_due(now + 5_000, 10)
        .await
        .unwrap()
        .timers
        .is_empty());
    let done = live
        .finish_attempt(id, attempt(), crate::store::Next::Succeeded, now + 5_000)
        .await
        .unwrap();
    assert_eq!(done, Some(TimerState::Succeeded));
}

fn attempt() -> crate::store::Attempt {
    crate::store::Attempt {
        number: 1,
        started_ms: 1,
        duration_ms: 1,
        status: Some(200),
        error: None,
        response: None,
    }
}

/// Two stores claim one cron fire time: one gets it; a run whose lease runs out is
/// reaped and its fire time is due again.
#[tokio::test]
async fn one_node_claims_each_cron_fire_time() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let lease = Duration::from_secs(3);
    let a = store(&redis.url(), "cron", lease).await;
    let b = store(&redis.url(), "cron", lease).await;
    let job = a
        .put_job(
            contract::definition("app", "j", "* * * * * *"),
            false,
            Some(1000),
            1,
        )
        .await
        .unwrap()
        .job;
    let due = b.due_jobs(1500, 10).await.unwrap();
    assert_eq!((due.jobs, due.scheduled), (1, 1));
    assert_eq!(
        due.due
            .iter()
            .map(|(at, j)| (*at, j.id))
            .collect::<Vec<_>>(),
        [(1000, job.id)]
    );
    let start = || JobChange::Start {
        next_ms: Some(2000),
    };
    let (x, y) = tokio::join!(
        a.claim_run("app", "j", job.id, 1000, start(), 1500),
        b.claim_run("app", "j", job.id, 1000, start(), 1500)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        u8::from(x.is_some()) + u8::from(y.is_some()),
        1,
        "one claim wins"
    );
    let started = x.or(y).unwrap();
    assert_eq!(
        (started.runs, started.running, started.next_ms),
        (1, 1, Some(2000))
    );
    // Nobody renews (no lease task runs here): after the lease, the run is reaped and
    // its fire time is due again, once.
    let now = crate::scheduler::unix_ms();
    let due = b.due_jobs(now + 3_500, 10).await.unwrap().due;
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].0, due[0].1.running), (1000, 0));
}

/// On a Redis Cluster (three masters) every key shares the `{sched}` slot, so the scripts
/// run where their keys live.
#[tokio::test]
async fn redis_store_keeps_the_contracts_on_a_cluster() {
    let Some(cluster) = pushhub_testkit::RedisCluster::start() else {
        return;
    };
    let url = cluster.url();
    contract::check(|_| {
        let url = url.clone();
        async move { store(&url, "contract", Duration::from_secs(30)).await as Arc<dyn TimerStore> }
    })
    .await;
    contract::check_jobs(|_| {
        let url = url.clone();
        async move {
            let store = store(&url, "jobs", Duration::from_secs(30)).await;
            (
                store.clone() as Arc<dyn JobStore>,
                store as Arc<dyn TimerStore>,
            )
        }
    })
    .await;
}
