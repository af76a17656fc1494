//! `pushhub-bench soak`: a long run of normal and hostile clients against one real
//! server, reporting its memory and CPU over time and every lost or duplicated message.
//!
//! Not in CI (it runs for minutes to hours); `scripts/soak.sh` builds and runs it. What
//! runs at once, for `--minutes`:
//! - resuming clients ([`normal`]): random reconnects, reconnect storms, exact loss and
//!   duplicate accounting through a [`ledger::Ledger`], latency of live deliveries;
//! - a publisher of unicasts and broadcasts to them;
//! - slow consumers ([`slow`]) that must be cut off, with a pusher of large messages;
//! - hostile clients ([`hostile`]), each attack in paced rounds;
//! - timer churn ([`timer_churn`]) against an HTTP sink in this process.
//!
//! Then publishing and attacks stop, the resuming clients get what they are still owed
//! (or the settle time runs out), the last timers come due, and the verdict is printed.
//! The exit status is non-zero when a message or timer was lost or duplicated, a push
//! failed, or the server died.

mod hostile;
pub(crate) mod ledger;
pub(crate) mod normal;
pub(crate) mod phase;
mod slow;
mod timer_churn;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use crate::clock::unix_millis;
use crate::hist::{LatencyHist, LatencySummary};
use crate::http::HttpConn;
use crate::proc_stats;
use crate::suite::server::{self, ServerKind};
use hostile::{Attack, Outcomes, Targets};
use ledger::{Ledger, LedgerTally};
use normal::{ClientContext, ClientCounters, PublishCounters};
use phase::Phase;
use slow::SlowCounters;
use timer_churn::{TimerLedger, TimerTally};

/// Arguments of `pushhub-bench soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// How long the chaos phase lasts, in minutes (fractions allowed).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Resuming clients.
    #[arg(long, default_value_t = 400)]
    pub clients: usize,
    /// Unicast pushes per second, each to one random resuming client.
    #[arg(long, default_value_t = 100.0)]
    pub unicast_rate: f64,
    /// Broadcasts per second, to every client of the app.
    #[arg(long, default_value_t = 2.0)]
    pub broadcast_rate: f64,
    /// Seconds between reconnect storms (every resuming client at once).
    #[arg(long, default_value_t = 120)]
    pub storm_secs: u64,
    /// Shortest time a resuming client stays connected before its own reconnect, seconds.
    #[arg(long, default_value_t = 20)]
    pub reconnect_min_secs: u64,
    /// Longest, seconds.
    #[arg(long, default_value_t = 60)]
    pub reconnect_max_secs: u64,
    /// Slow consumers.
    #[arg(long, default_value_t = 4)]
    pub slow: usize,
    /// How long a slow consumer stops reading in each round, seconds.
    #[arg(long, default_value_t = 20)]
    pub stall_secs: u64,
    /// 32 KiB pushes per second to the slow consumers' group.
    #[arg(long, default_value_t = 20.0)]
    pub large_rate: f64,
    /// Timers created per second.
    #[arg(long, default_value_t = 10.0)]
    pub timer_rate: f64,
    /// Leave out the hostile clients.
    #[arg(long)]
    pub no_hostile: bool,
    /// Seconds between two memory/CPU samples.
    #[arg(long, default_value_t = 60)]
    pub sample_secs: u64,
    /// How long the resuming clients may take to receive what they are owed at the end.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// Where the server's log goes.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
    /// Also print the result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// One memory/CPU sample of the server.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    secs: u64,
    rss_mib: f64,
    cpu_pct: f64,
    connections: u64,
    slow_consumers: u64,
}

/// The whole verdict.
#[derive(Debug, Serialize)]
struct SoakResult {
    minutes: f64,
    samples: Vec<Sample>,
    rss_first_mib: f64,
    rss_max_mib: f64,
    rss_last_mib: f64,
    cpu_avg_pct: f64,
    pushes_accepted: u64,
    pushes_failed: u64,
    messages: LedgerTally,
    offset_gaps: u64,
    offset_stale: u64,
    not_recovered: u64,
    connects: u64,
    connect_errors: u64,
    closed_by_server: u64,
    malformed: u64,
    latency: LatencySummary,
    slow_cut_off: u64,
    slow_dropped: u64,
    slow_closed_otherwise: u64,
    server_slow_consumers: u64,
    slow_survived: u64,
    timers: TimerTally,
    attacks: std::collections::BTreeMap<&'static str, std::collections::BTreeMap<String, u64>>,
    server_alive: bool,
}

/// `host:port` of an `http://` URL, and the authority to send.
pub(crate) fn api_addr(url: &str) -> Result<(SocketAddr, String)> {
    let authority = url
        .strip_prefix("http://")
        .context("API URL must start with http://")?
        .trim_end_matches('/')
        .to_string();
    Ok((authority.parse()?, authority))
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Runs the soak and prints its verdict.
pub async fn run(args: SoakArgs) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let tcp = free_port()?;
    let tcp_env = tcp.to_string();
    let env = [
        ("PUSHHUB_LOG", Some("warn")),
        ("PUSHHUB_TCP_LISTEN", Some(tcp_env.as_str())),
    ];
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    let server = server::start(&kind, &args.log_dir, "soak", None, &env).await?;
    let (api, _) = api_addr(&server.api_url)?;
    let client: SocketAddr = server
        .ws_url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1/ws")
        .parse()?;
    let app = "demo".to_string();
    println!(
        "soak: pushhub pid {} (client {client}, api {api}, tcp {tcp}), log {}",
        server.pid,
        server.log_path.display()
    );

    let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
    let (storm_tx, storm_rx) = watch::channel(0u64);
    let ledger = Arc::new(Ledger::new(args.clients));
    let ctx = Arc::new(ClientContext {
        ws_url: server.ws_url.clone(),
        app: app.clone(),
        ledger: ledger.clone(),
        counters: ClientCounters::default(),
        ready: AtomicU64::new(0),
        reconnect_min: Duration::from_secs(args.reconnect_min_secs),
        reconnect_max: Duration::from_secs(args.reconnect_max_secs.max(args.reconnect_min_secs)),
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(normal::run_client(
                ctx.clone(),
                i,
                phase_rx.clone(),
                storm_rx.clone(),
            ))
        })
        .collect();
    let warmup_deadline = Instant::now() + Duration::from_secs(60);
    while ctx.ready.load(Ordering::Relaxed) < args.clients as u64 {
        if Instant::now() > warmup_deadline {
            bail!(
                "only {} of {} clients connected within 60 s",
                ctx.ready.load(Ordering::Relaxed),
                args.clients
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    println!(
        "soak: {} resuming clients connected; chaos for {} min",
        args.clients, args.minutes
    );
    phase_tx.send_replace(Phase::Chaos);

    let publish_counters = Arc::new(PublishCounters::default());
    let publisher = tokio::spawn({
        let (api_url, app, ledger, counters, rx) = (
            server.api_url.clone(),
            app.clone(),
            ledger.clone(),
            publish_counters.clone(),
            phase_rx.clone(),
        );
        let (u, b) = (args.unicast_rate, args.broadcast_rate);
        async move { normal::publish(&api_url, &app, ledger, counters, u, b, rx).await }
    });
    let slow_counters = Arc::new(SlowCounters::default());
    let mut background = Vec::new();
    for i in 0..args.slow {
        background.push(tokio::spawn(slow::run_consumer(
            client,
            app.clone(),
            i,
            Duration::from_secs(args.stall_secs),
            slow_counters.clone(),
            phase_rx.clone(),
        )));
    }
    if args.slow > 0 {
        let (app, counters, rx, rate) = (
            app.clone(),
            slow_counters.clone(),
            phase_rx.clone(),
            args.large_rate,
        );
        background.push(tokio::spawn(async move {
            if let Err(e) = slow::push_large(api, app, rate, counters, rx).await {
                eprintln!("soak: large pusher stopped: {e:#}");
            }
        }));
    }
    let timer_ledger = Arc::new(TimerLedger::default());
    let sink = timer_churn::start_sink(timer_ledger.clone()).await?;
    if args.timer_rate > 0.0 {
        let (app, ledger, rx, rate) = (
            app.clone(),
            timer_ledger.clone(),
            phase_rx.clone(),
            args.timer_rate,
        );
        background.push(tokio::spawn(async move {
            if let Err(e) = timer_churn::churn(api, app, sink, rate, ledger, rx).await {
                eprintln!("soak: timer churn stopped: {e:#}");
            }
        }));
    }
    let outcomes = Arc::new(Outcomes::default());
    if !args.no_hostile {
        let targets = Targets {
            client,
            api,
            tcp,
            app: app.clone(),
        };
        for attack in Attack::ALL {
            let (targets, outcomes, rx) = (targets.clone(), outcomes.clone(), phase_rx.clone());
            background.push(tokio::spawn(async move {
                hostile::run(attack, targets, &outcomes, rx).await
            }));
        }
    }

    let started = Instant::now();
    let chaos = Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let mut samples = Vec::new();
    let mut last = proc_stats::sample(server.pid)?;
    let mut last_at = Instant::now();
    let mut next_storm = started + Duration::from_secs(args.storm_secs.max(1));
    let mut next_sample = started + Duration::from_secs(args.sample_secs.max(1));
    while started.elapsed() < chaos {
        let now = Instant::now();
        if now >= next_storm {
            storm_tx.send_modify(|n| *n += 1);
            println!("soak: {:>5} s reconnect storm", started.elapsed().as_secs());
            next_storm += Duration::from_secs(args.storm_secs.max(1));
        }
        if now >= next_sample {
            let sample = take_sample(server.pid, api, &mut last, &mut last_at, started).await?;
            println!(
                "soak: {:>5} s  rss {:>7.1} MiB  cpu {:>5.1} %  conns {:>5}  slow cut {:>4}  owed {}  lost-so-far {}",
                sample.secs, sample.rss_mib, sample.cpu_pct, sample.connections, sample.slow_consumers,
                ledger.tally().owed, ledger.tally().lost,
            );
            samples.push(sample);
            next_sample += Duration::from_secs(args.sample_secs.max(1));
        }
        sleep(
            next_storm
                .min(next_sample)
                .min(started + chaos)
                .saturating_duration_since(Instant::now()),
        )
        .await;
    }

    phase_tx.send_replace(Phase::Settle);
    println!("soak: chaos over; settling");
    publisher.await.context("publisher panicked")??;
    for task in background {
        let _ = task.await;
    }
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    while !ledger.settled() && Instant::now() < settle_deadline {
        sleep(Duration::from_millis(200)).await;
    }
    samples.push(take_sample(server.pid, api, &mut last, &mut last_at, started).await?);
    phase_tx.send_replace(Phase::Done);
    let mut latency = LatencyHist::new();
    for client in clients {
        latency.merge(&client.await.context("client panicked")?)?;
    }
    let last_due = timer_ledger.last_due_ms();
    while unix_millis() < last_due + 15_000 && timer_ledger.tally().lost > 0 {
        sleep(Duration::from_millis(200)).await;
    }
    let server_alive = proc_stats::cpu_micros(server.pid).is_some()
        && server.log_tail().find("panicked").is_none();
    let cpu_secs = (proc_stats::sample(server.pid)
        .map(|s| s.cpu_micros)
        .unwrap_or(0)) as f64
        / 1e6;
    server.stop().await?;

    let c = &ctx.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_mib).collect();
    let server_slow_consumers = samples.last().map_or(0, |s| s.slow_consumers);
    let result = SoakResult {
        minutes: args.minutes,
        rss_first_mib: rss.first().copied().unwrap_or(0.0),
        rss_max_mib: rss.iter().copied().fold(0.0, f64::max),
        rss_last_mib: rss.last().copied().unwrap_or(0.0),
        cpu_avg_pct: cpu_secs / started.elapsed().as_secs_f64() * 100.0,
        samples,
        pushes_accepted: load(&publish_counters.accepted),
        pushes_failed: load(&publish_counters.failed),
        messages: ledger.tally(),
        offset_gaps: load(&c.offset_gaps),
        offset_stale: load(&c.offset_stale),
        not_recovered: load(&c.not_recovered),
        connects: load(&c.connects),
        connect_errors: load(&c.connect_errors),
        closed_by_server: load(&c.closed_by_server),
        malformed: load(&c.malformed),
        latency: latency.summary(),
        slow_cut_off: load(&slow_counters.cut_off),
        slow_dropped: load(&slow_counters.dropped),
        slow_closed_otherwise: load(&slow_counters.closed_otherwise),
        server_slow_consumers,
        slow_survived: load(&slow_counters.survived),
        timers: timer_ledger.tally(),
        attacks: outcomes.snapshot(),
        server_alive,
    };
    print!("{}", human(&result));
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    let failed = result.messages.lost > 0
        || result.messages.duplicated > 0
        || result.timers.lost > 0
        || result.timers.duplicated > 0
        || result.pushes_failed > 0
        || !result.server_alive;
    if failed {
        bail!("soak failed: see the verdict above");
    }
    Ok(())
}

/// Reads the server's RSS, CPU since the last sample and a few `/v1/stats` counters.
async fn take_sample(
    pid: u32,
    api: SocketAddr,
    last: &mut proc_stats::ProcSample,
    last_at: &mut Instant,
    started: Instant,
) -> Result<Sample> {
    let now = proc_stats::sample(pid).context("the server is gone")?;
    let wall = last_at.elapsed().as_secs_f64().max(1e-3);
    let cpu_pct = now.cpu_micros.saturating_sub(last.cpu_micros) as f64 / 1e6 / wall * 100.0;
    *last = now;
    *last_at = Instant::now();
    let stats = match HttpConn::connect(api, &api.to_string()).await {
        Ok(mut conn) => conn
            .request(hyper::Method::GET, "/v1/stats", None, None)
            .await
            .ok()
            .and_then(|(_, body)| serde_json::from_slice::<serde_json::Value>(&body).ok()),
        Err(_) => None,
    };
    let stat = |key: &str| stats.as_ref().and_then(|s| s[key].as_u64()).unwrap_or(0);
    Ok(Sample {
        secs: started.elapsed().as_secs(),
        rss_mib: now.rss_bytes as f64 / (1024.0 * 1024.0),
        cpu_pct,
        connections: stat("connections"),
        slow_consumers: stat("slow_consumers"),
    })
}

/// The verdict as a person reads it.
fn human(r: &SoakResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "\n== soak verdict ({} min)", r.minutes);
    let _ = writeln!(s, "server RSS: first sample {:.1} MiB, max {:.1} MiB, last {:.1} MiB; CPU {:.1} % of a core on average; alive at the end: {}",
        r.rss_first_mib, r.rss_max_mib, r.rss_last_mib, r.cpu_avg_pct, r.server_alive);
    let _ = writeln!(s, "resuming clients: {} connects ({} failed attempts, {} closed by the server, {} resumes not recovered)",
        r.connects, r.connect_errors, r.closed_by_server, r.not_recovered);
    let _ = writeln!(
        s,
        "pushes: {} accepted, {} failed",
        r.pushes_accepted, r.pushes_failed
    );
    let _ = writeln!(s, "messages owed {} received {} -> lost {} duplicated {} (offset gaps {}, stale offsets {}, malformed frames {})",
        r.messages.owed, r.messages.received, r.messages.lost, r.messages.duplicated, r.offset_gaps, r.offset_stale, r.malformed);
    let _ = writeln!(
        s,
        "live latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} deliveries",
        r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms, r.latency.samples
    );
    let _ = writeln!(
        s,
        "slow consumers: {} rounds closed with 4001, {} dropped without a close frame (the socket was too full for it), {} closed with another code, {} not cut off; the server counted {} slow consumers",
        r.slow_cut_off, r.slow_dropped, r.slow_closed_otherwise, r.slow_survived, r.server_slow_consumers
    );
    let t = &r.timers;
    let _ = writeln!(s, "timers: {} created, {} cancelled, {} calls -> lost {} duplicated {} (called although cancelled: {}; a call already in flight is not interrupted)",
        t.created, t.cancelled, t.arrivals, t.lost, t.duplicated, t.fired_after_cancel);
    for (attack, outcomes) in &r.attacks {
        let list: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
        let _ = writeln!(s, "attack {attack}: {}", list.join("; "));
    }
    let _ = writeln!(
        s,
        "RSS over time (s: MiB): {}",
        r.samples
            .iter()
            .map(|x| format!("{}: {:.0}", x.secs, x.rss_mib))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}
