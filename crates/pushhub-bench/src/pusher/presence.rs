//! `pushhub-bench pusher-presence`: one presence channel of `--members` members (10,000
//! by default).
//!
//! 1. Build-up: every member connects, signs its subscription with the app's secret and
//!    subscribes, `--concurrency` subscribes in flight. Each join is announced to every
//!    member already in (n²/2 `member_added` in all), so the build-up is timed, with the
//!    server's CPU. It is over once every member knows every member: the `count` of its
//!    own `subscription_succeeded` plus the `member_added` it got is at least n. Fewer is
//!    a lost member; more is a member that joined while this one subscribed, both in its
//!    list and announced to it (pusher-js would fire `pusher:member_added` for it again).
//!    Either fails the run.
//! 2. A late joiner's member list must be every member (checked id by id).
//! 3. `--samples` new members, one at a time, each into a room at rest (the one before
//!    has been announced gone to every member) and `--sample-gap-ms` after that, each timed from
//!    sending `pusher:subscribe` to its `subscription_succeeded` (p50/p99/max), then
//!    unsubscribed: every member must get exactly one `member_added` and one
//!    `member_removed` for each.
//! 4. `--leavers` members close their connection: every other member must get one
//!    `member_removed` for each, and know n − leavers members in the end.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::conn;
use super::percentile_ms;
use crate::proc_stats;

/// The channel every member subscribes to.
const CHANNEL: &str = "presence-bench";

/// Arguments of `pushhub-bench pusher-presence`.
#[derive(clap::Args, Debug, Clone)]
pub struct PresenceArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// Members to build the channel up to.
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// Subscribes in flight during the build-up.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// New members timed at full size, one at a time.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Pause between two timed new members, after the first one's leave has reached every
    /// member.
    #[arg(long, default_value_t = 50)]
    pub sample_gap_ms: u64,
    /// Members that leave at the end.
    #[arg(long, default_value_t = 100)]
    pub leavers: usize,
    /// `memory` or `redis` (a fresh redis-server from pushhub-testkit).
    #[arg(long, default_value = "memory")]
    pub engine: String,
    /// Where the server's log and config go.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
}

/// What one member saw.
#[derive(Default)]
struct Seen {
    /// `count` of its own `subscription_succeeded`.
    initial: AtomicU64,
    added: AtomicU64,
    removed: AtomicU64,
}

impl Seen {
    /// Members it knows of now.
    fn known(&self) -> i64 {
        (self.initial.load(Ordering::Relaxed) + self.added.load(Ordering::Relaxed)) as i64
            - self.removed.load(Ordering::Relaxed) as i64
    }
}

/// Shared by every member task.
struct Members {
    seen: Vec<Seen>,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    /// Subscribe times (µs) during the build-up, in join order.
    build_latencies: std::sync::Mutex<Vec<u64>>,
}

/// The result, printed as JSON at the end.
#[derive(Debug, Serialize)]
struct PresenceResult {
    engine: String,
    members: usize,
    build_secs: f64,
    build_member_added: u64,
    build_server_cpu_secs: f64,
    build_subscribe_p50_ms_last_1000: f64,
    build_subscribe_p99_ms_last_1000: f64,
    build_missing: usize,
    build_announced_twice: usize,
    build_extra_member_added: i64,
    late_joiner_list_ok: bool,
    late_joiner_subscribe_ms: f64,
    late_joiner_frame_bytes: usize,
    samples: usize,
    subscribe_p50_ms: f64,
    subscribe_p99_ms: f64,
    subscribe_max_ms: f64,
    sample_wrong_counts: usize,
    leavers: usize,
    leave_wrong_counts: usize,
    server_rss_mib: f64,
}

/// Run the scenario and print the result.
pub async fn run(args: PresenceArgs) -> Result<()> {
    ensure!(
        args.members > args.leavers,
        "--members must exceed --leavers"
    );
    crate::limits::raise_nofile()?;
    let tag = format!("pusher-presence-{}", args.engine);
    let bench = super::start(&args.pushhub_bin, &args.log_dir, &tag, &args.engine).await?;
    let (addr, pid) = (bench.ws_addr, bench.server.pid);
    let n = args.members;
    println!(
        "pusher-presence: pushhub pid {pid} ({} engine), {n} members, {} subscribes in flight; log {}",
        args.engine,
        args.concurrency,
        bench.server.log_path.display()
    );
    let members = Arc::new(Members {
        seen: (0..n).map(|_| Seen::default()).collect(),
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        build_latencies: std::sync::Mutex::new(Vec::with_capacity(n)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (leave_tx, leave_rx) = watch::channel(false);

    // 1. Build-up.
    let cpu0 = proc_stats::cpu_micros(pid).unwrap_or(0);
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let leave = (i < args.leavers).then(|| leave_rx.clone());
            tokio::spawn(member(
                addr,
                i,
                members.clone(),
                permits.clone(),
                stop_rx.clone(),
                leave,
            ))
        })
        .collect();
    let mut last_report = Instant::now();
    loop {
        let done = members.subscribed.load(Ordering::Relaxed);
        let failed = members.failed.load(Ordering::Relaxed);
        ensure!(failed == 0, "{failed} members failed to subscribe");
        if done == n {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  {done} members after {:.0} s",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        sleep(Duration::from_millis(20)).await;
    }
    let subscribed_secs = start.elapsed().as_secs_f64();
    let target = n as i64 * n as i64;
    wait_until(Duration::from_secs(600), || total_known(&members) >= target).await;
    // The sum can be reached early by members told twice: wait for each one (a member
    // still short after 30 s more lost one).
    wait_until(Duration::from_secs(30), || {
        members.seen.iter().all(|s| s.known() >= n as i64)
    })
    .await;
    let build_secs = start.elapsed().as_secs_f64();
    let build_server_cpu_secs = proc_stats::cpu_micros(pid)
        .unwrap_or(0)
        .saturating_sub(cpu0) as f64
        / 1e6;
    let build_member_added: u64 = members
        .seen
        .iter()
        .map(|s| s.added.load(Ordering::Relaxed))
        .sum();
    // Fewer than n: a member was neither in the list nor announced (lost). More than n: a
    // member that joined while this one subscribed was both in its list and announced.
    let build_missing = members.seen.iter().filter(|s| s.known() < n as i64).count();
    let build_announced_twice = members.seen.iter().filter(|s| s.known() > n as i64).count();
    let build_extra_member_added: i64 = members
        .seen
        .iter()
        .map(|s| (s.known() - n as i64).max(0))
        .sum();
    let (build_p50, build_p99) = {
        let all = members.build_latencies.lock().expect("not poisoned");
        let mut last: Vec<u64> = all[all.len().saturating_sub(1000)..].to_vec();
        last.sort_unstable();
        (percentile_ms(&last, 50.0), percentile_ms(&last, 99.0))
    };
    println!(
        "  build-up: {n} members subscribed in {subscribed_secs:.1} s, every member knew every member after {build_secs:.1} s; {build_member_added} member_added (n(n-1)/2 = {}), server CPU {build_server_cpu_secs:.1} s; subscribe time of the last 1000 joins p50 {build_p50:.1} ms p99 {build_p99:.1} ms; members missing one: {build_missing}; members told twice of one: {build_announced_twice} ({build_extra_member_added} extra member_added)",
        n * (n - 1) / 2
    );

    // 2. A late joiner's list. From here on each member is checked against what it had
    // seen at this point.
    let before_churn = snapshot(&members);
    let (late_ok, late_ms, late_bytes) = late_joiner(addr, n).await?;
    println!(
        "  late joiner: member list {} ({late_bytes} bytes), subscribed in {late_ms:.1} ms",
        if late_ok { "has every member" } else { "WRONG" }
    );

    // 3. Timed new members at full size, each into a room at rest: the one before has
    // been announced gone to every member (its 20,000 deliveries are out), so what is
    // timed is one join of a 10,000-member room, not a queue behind the last one's events.
    let since = |before: &[(u64, u64)], i: usize| {
        let s = &members.seen[i];
        (
            s.added.load(Ordering::Relaxed) - before[i].0,
            s.removed.load(Ordering::Relaxed) - before[i].1,
        )
    };
    let settled = |left: u64| (0..n).all(|i| since(&before_churn, i).1 >= left);
    wait_until(Duration::from_secs(60), || settled(1)).await;
    let mut times = Vec::with_capacity(args.samples);
    for j in 0..args.samples {
        times.push(sample(addr, n + 1 + j).await?);
        wait_until(Duration::from_secs(60), || settled(2 + j as u64)).await;
        sleep(Duration::from_millis(args.sample_gap_ms)).await;
    }
    times.sort_unstable();
    let churn = 1 + args.samples as u64;
    wait_until(Duration::from_secs(120), || {
        (0..n).all(|i| since(&before_churn, i).1 >= churn)
    })
    .await;
    sleep(Duration::from_millis(500)).await;
    let sample_wrong_counts = (0..n)
        .filter(|&i| since(&before_churn, i) != (churn, churn))
        .count();
    let (p50, p99, max) = (
        percentile_ms(&times, 50.0),
        percentile_ms(&times, 99.0),
        percentile_ms(&times, 100.0),
    );
    println!(
        "  {} new members at {n}: subscribe p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; members not told exactly once of each join and leave: {sample_wrong_counts}",
        args.samples
    );

    // 4. Leavers.
    let before_leave = snapshot(&members);
    leave_tx.send_replace(true);
    let stay = n - args.leavers;
    let remaining = args.leavers..n;
    let leaves = args.leavers as u64;
    wait_until(Duration::from_secs(120), || {
        remaining
            .clone()
            .all(|i| since(&before_leave, i).1 >= leaves)
    })
    .await;
    sleep(Duration::from_millis(500)).await;
    let leave_wrong_counts = remaining
        .clone()
        .filter(|&i| since(&before_leave, i) != (0, leaves))
        .count();
    println!(
        "  {} members left: of the {stay} others, not told exactly once of each: {leave_wrong_counts}",
        args.leavers
    );
    let server_rss_mib = proc_stats::rss_bytes(pid).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    stop_tx.send_replace(true);
    for task in tasks {
        task.await??;
    }
    bench.server.stop().await?;
    let result = PresenceResult {
        engine: args.engine.clone(),
        members: n,
        build_secs,
        build_member_added,
        build_server_cpu_secs,
        build_subscribe_p50_ms_last_1000: build_p50,
        build_subscribe_p99_ms_last_1000: build_p99,
        build_missing,
        build_announced_twice,
        build_extra_member_added,
        late_joiner_list_ok: late_ok,
        late_joiner_subscribe_ms: late_ms,
        late_joiner_frame_bytes: late_bytes,
        samples: args.samples,
        subscribe_p50_ms: p50,
        subscribe_p99_ms: p99,
        subscribe_max_ms: max,
        sample_wrong_counts,
        leavers: args.leavers,
        leave_wrong_counts,
        server_rss_mib,
    };
    println!("{}", serde_json::to_string(&result)?);
    ensure!(
        build_missing == 0
            && build_announced_twice == 0
            && late_ok
            && sample_wrong_counts == 0
            && leave_wrong_counts == 0,
        "member events or lists were wrong"
    );
    Ok(())
}

/// Each member's (`member_added`, `member_removed`) so far.
fn snapshot(members: &Members) -> Vec<(u64, u64)> {
    members
        .seen
        .iter()
        .map(|s| {
            (
                s.added.load(Ordering::Relaxed),
                s.removed.load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Sum over members of the members each knows.
fn total_known(members: &Members) -> i64 {
    members.seen.iter().map(Seen::known).sum()
}

/// Polls `done` every 50 ms for at most `limit`.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
}

/// `channel_data` of member `u{idx}`.
fn channel_data(idx: usize) -> String {
    serde_json::json!({ "user_id": format!("u{idx}"), "user_info": { "name": format!("User {idx}") } })
        .to_string()
}

/// Connects member `idx` and prepares its signed subscribe frame.
async fn connect_member(addr: SocketAddr, idx: usize) -> Result<(conn::Ws, String)> {
    let (ws, socket_id) = conn::pusher_connect(addr, idx).await?;
    let data = channel_data(idx);
    let frame = conn::subscribe_frame(CHANNEL, Some((&socket_id, &data)));
    Ok((ws, frame))
}

/// One member of the build-up: subscribe, then count member events until stopped (or,
/// for a leaver, until told to leave).
async fn member(
    addr: SocketAddr,
    idx: usize,
    members: Arc<Members>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    mut leave: Option<watch::Receiver<bool>>,
) -> Result<()> {
    let permit = permits.acquire_owned().await?;
    let subscribed = async {
        let (mut ws, frame) = connect_member(addr, idx).await?;
        let asked = Instant::now();
        let ok = conn::pusher_subscribe(&mut ws, frame).await?;
        let micros = asked.elapsed().as_micros() as u64;
        let count = conn::number_after(ok.as_str(), "count").context("no count")?;
        anyhow::Ok((ws, count, micros))
    }
    .await;
    let (mut ws, count, micros) = match subscribed {
        Ok(ok) => ok,
        Err(e) => {
            if members.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("member {idx}: {e:#}");
            }
            return Ok(());
        }
    };
    let seen = &members.seen[idx];
    seen.initial.store(count, Ordering::Relaxed);
    members
        .build_latencies
        .lock()
        .expect("not poisoned")
        .push(micros);
    members.subscribed.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    loop {
        let leaving = async {
            match leave.as_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            _ = leaving => break,
            frame = conn::next_text(&mut ws) => {
                let Some(text) = frame? else { bail!("member {idx} was closed by the server") };
                let text = text.as_str();
                if text.contains("pusher_internal:member_added") {
                    seen.added.fetch_add(1, Ordering::Relaxed);
                } else if text.contains("pusher_internal:member_removed") {
                    seen.removed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// A late joiner: its member list must hold every member and itself. Returns whether it
/// does, the subscribe time and the size of the `subscription_succeeded` frame; then it
/// unsubscribes.
async fn late_joiner(addr: SocketAddr, n: usize) -> Result<(bool, f64, usize)> {
    let (mut ws, frame) = connect_member(addr, n).await?;
    let asked = Instant::now();
    let ok = conn::pusher_subscribe(&mut ws, frame).await?;
    let ms = asked.elapsed().as_secs_f64() * 1000.0;
    let outer: serde_json::Value = serde_json::from_str(ok.as_str())?;
    let data: serde_json::Value =
        serde_json::from_str(outer["data"].as_str().context("data is not a string")?)?;
    let ids: Vec<&str> = data["presence"]["ids"]
        .as_array()
        .context("no presence.ids")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let set: HashSet<&str> = ids.iter().copied().collect();
    let expected: HashSet<String> = (0..=n).map(|i| format!("u{i}")).collect();
    let hash_ok = data["presence"]["hash"]
        .as_object()
        .is_some_and(|h| h.len() == n + 1 && expected.iter().all(|id| h.contains_key(id)));
    let list_ok = ids.len() == n + 1
        && set.len() == n + 1
        && expected.iter().all(|id| set.contains(id.as_str()))
        && data["presence"]["count"] == n + 1
        && hash_ok;
    unsubscribe(&mut ws).await?;
    Ok((list_ok, ms, ok.as_str().len()))
}

/// A timed new member at full size (`u{idx}`): connected first, then timed from
/// `pusher:subscribe` to `subscription_succeeded`, then unsubscribed. Microseconds.
///
/// It runs on a thread and runtime of its own: on the generator's runtime its answer
/// would wait behind the 10,000 member tasks that its own `member_added` wakes at the
/// same moment, which a real newcomer's browser does not.
async fn sample(addr: SocketAddr, idx: usize) -> Result<u64> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let timed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(timed_join(addr, idx)));
        let _ = done.send(timed);
    });
    result.await?
}

/// [`sample`]'s join itself.
async fn timed_join(addr: SocketAddr, idx: usize) -> Result<u64> {
    let (mut ws, frame) = connect_member(addr, idx).await?;
    let asked = Instant::now();
    conn::pusher_subscribe(&mut ws, frame).await?;
    let micros = asked.elapsed().as_micros() as u64;
    unsubscribe(&mut ws).await?;
    Ok(micros)
}

/// `pusher:unsubscribe` from the channel, then a close.
async fn unsubscribe(ws: &mut conn::Ws) -> Result<()> {
    let frame =
        serde_json::json!({ "event": "pusher:unsubscribe", "data": { "channel": CHANNEL } });
    ws.send(Message::text(frame.to_string())).await?;
    ws.close(None).await?;
    Ok(())
}
