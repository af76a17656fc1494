//! The `timers` scenario: pushhub's durable timers, measured through its API.
//!
//! Three phases, each on a fresh server (`--pushhub-bin`):
//!
//! 1. **create**: `--create` timers due in an hour, `POST /v1/timers` from
//!    `--concurrency` keep-alive connections: timers created per second (each one
//!    committed to disk before its answer) and the latency of one create.
//! 2. **fire**: `--rate` timers per second for `--fire-secs`, each due `--lead-ms` after
//!    it is created, calling an HTTP sink in this process: lateness = arrival at the sink
//!    − due time, p50/p99/max.
//! 3. **pending**: `--pending` timers due in an hour; the server's RSS before and after,
//!    and the store file's size. Then kill -9 and a restart on the same data directory:
//!    how long until `/healthz` answers, and whether every timer is scheduled again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;

use crate::clock::{unix_micros, unix_millis};
use crate::hist::{LatencyHist, LatencySummary};
use crate::http::HttpConn;
use crate::proc_stats;
use crate::suite::server::{self, RunningServer, ServerKind};

/// Arguments of `pushhub-bench timers`.
#[derive(clap::Args, Debug, Clone)]
pub struct TimersArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// Timers to create in the create phase.
    #[arg(long, default_value_t = 50_000)]
    pub create: u64,
    /// API connections creating timers at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Timers per second in the fire phase.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of the fire phase.
    #[arg(long, default_value_t = 30)]
    pub fire_secs: u64,
    /// How long after its creation each timer of the fire phase is due, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub lead_ms: u64,
    /// Timers pending in the memory phase; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: u64,
    /// Where the servers' logs go.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
    /// Also print the result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// What the create phase measured.
#[derive(Debug, Serialize)]
struct CreateResult {
    timers: u64,
    secs: f64,
    per_sec: f64,
    latency: LatencySummary,
}

/// What the fire phase measured.
#[derive(Debug, Serialize)]
struct FireResult {
    scheduled: u64,
    fired: u64,
    rate: f64,
    lateness: LatencySummary,
}

/// What the pending phase measured.
#[derive(Debug, Serialize)]
struct PendingResult {
    timers: u64,
    create: CreateResult,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    bytes_per_timer: f64,
    store_file_bytes: u64,
    restart_secs: f64,
    rescheduled: u64,
    rss_after_restart_bytes: u64,
}

/// The whole run.
#[derive(Debug, Serialize)]
struct TimersResult {
    create: CreateResult,
    fire: FireResult,
    pending: Option<PendingResult>,
}

/// Run the three phases and print the results.
pub async fn run(args: TimersArgs) -> Result<()> {
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    let env = [("PUSHHUB_LOG", Some("warn"))];

    let server = server::start(&kind, &args.log_dir, "timers-create", None, &env).await?;
    let create = create_phase(
        &server,
        args.create,
        args.concurrency,
        "http://127.0.0.1:9/never",
    )
    .await?;
    server.stop().await?;

    let server = server::start(&kind, &args.log_dir, "timers-fire", None, &env).await?;
    let fire = fire_phase(&server, &args).await?;
    server.stop().await?;

    let pending = if args.pending > 0 {
        Some(pending_phase(&kind, &args, &env).await?)
    } else {
        None
    };
    let result = TimersResult {
        create,
        fire,
        pending,
    };
    print!("{}", human(&result));
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

fn api_addr(server: &RunningServer) -> Result<(SocketAddr, String)> {
    let authority = server
        .api_url
        .strip_prefix("http://")
        .context("API URL is not http://")?
        .to_owned();
    Ok((authority.parse()?, authority))
}

/// Create `count` timers due in an hour, calling `url`, from `concurrency` connections.
async fn create_phase(
    server: &RunningServer,
    count: u64,
    concurrency: usize,
    url: &str,
) -> Result<CreateResult> {
    let (addr, authority) = api_addr(server)?;
    let body = Bytes::from(
        serde_json::json!({"app": "demo", "url": url, "delay_ms": 3_600_000}).to_string(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, body, authority) = (next.clone(), body.clone(), authority.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr, &authority).await?;
            let mut hist = LatencyHist::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let sent = Instant::now();
                let (status, answer) = conn
                    .request(Method::POST, "/v1/timers", Some(body.clone()), None)
                    .await?;
                if status.as_u16() != 201 {
                    bail!(
                        "create answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                hist.record(sent.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut latency = LatencyHist::new();
    for worker in workers {
        latency.merge(&worker.await??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(CreateResult {
        timers: count,
        secs,
        per_sec: count as f64 / secs,
        latency: latency.summary(),
    })
}

/// Arrivals at the sink: lateness of each call, in microseconds.
#[derive(Default)]
struct Sink {
    lateness: LatencyHist,
    arrived: u64,
}

/// Start the sink: `GET /t?due=MS` records `now − due`.
async fn start_sink() -> Result<(SocketAddr, Arc<Mutex<Sink>>)> {
    let sink = Arc::new(Mutex::new(Sink::default()));
    let shared = sink.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let shared = shared.clone();
        async move {
            let now = unix_micros();
            let due_ms = uri
                .query()
                .and_then(|q| q.strip_prefix("due="))
                .and_then(|d| d.parse::<u64>().ok());
            if let Some(due_ms) = due_ms {
                let mut sink = shared.lock().unwrap_or_else(|e| e.into_inner());
                sink.lateness
                    .record(now.saturating_sub(due_ms * 1000).max(1));
                sink.arrived += 1;
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, sink))
}

/// Create timers at `rate` per second, each due `lead_ms` later, and measure when they
/// reach the sink.
async fn fire_phase(server: &RunningServer, args: &TimersArgs) -> Result<FireResult> {
    let (sink_addr, sink) = start_sink().await?;
    let (addr, authority) = api_addr(server)?;
    let total = (args.rate * args.fire_secs as f64) as u64;
    let (jobs, queue) = tokio::sync::mpsc::channel::<u64>(65_536);
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (queue, authority) = (queue.clone(), authority.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr, &authority).await?;
            loop {
                let Some(due) = queue.lock().await.recv().await else {
                    return Ok::<_, anyhow::Error>(());
                };
                let body = serde_json::json!({
                    "app": "demo",
                    "url": format!("http://{sink_addr}/t?due={due}"),
                    "at": due,
                });
                let (status, answer) = conn
                    .request(
                        Method::POST,
                        "/v1/timers",
                        Some(Bytes::from(body.to_string())),
                        None,
                    )
                    .await?;
                if status.as_u16() != 201 {
                    bail!(
                        "create answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
        }));
    }
    let started = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    for k in 0..total {
        tokio::time::sleep_until(started + period * k as u32).await;
        jobs.send(unix_millis() + args.lead_ms).await?;
    }
    drop(jobs);
    for worker in workers {
        worker.await??;
    }
    let deadline = Instant::now() + Duration::from_millis(args.lead_ms) + Duration::from_secs(30);
    while sink.lock().unwrap_or_else(|e| e.into_inner()).arrived < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = sink.lock().unwrap_or_else(|e| e.into_inner());
    Ok(FireResult {
        scheduled: total,
        fired: sink.arrived,
        rate: args.rate,
        lateness: sink.lateness.summary(),
    })
}

/// Fill a server with `--pending` timers, read its memory, kill it, restart it.
async fn pending_phase(
    kind: &ServerKind,
    args: &TimersArgs,
    env: &[(&str, Option<&str>)],
) -> Result<PendingResult> {
    let server = server::start(kind, &args.log_dir, "timers-pending", None, env).await?;
    let rss_before_bytes = proc_stats::rss_bytes(server.pid)?;
    let create = create_phase(
        &server,
        args.pending,
        args.concurrency,
        "http://127.0.0.1:9/never",
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_bytes = proc_stats::rss_bytes(server.pid)?;
    let store_file_bytes = std::fs::metadata(server.data_dir().join("timers.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let data = server.kill().await?;
    let restarting = Instant::now();
    let server = server::start_in(kind, &args.log_dir, "timers-restart", None, env, data).await?;
    let restart_secs = restarting.elapsed().as_secs_f64();
    let (addr, authority) = api_addr(&server)?;
    let mut conn = HttpConn::connect(addr, &authority).await?;
    let (_, stats) = conn.request(Method::GET, "/v1/stats", None, None).await?;
    let stats: serde_json::Value = serde_json::from_slice(&stats)?;
    let rescheduled = stats["timers"]["pending"].as_u64().unwrap_or(0);
    let rss_after_restart_bytes = proc_stats::rss_bytes(server.pid)?;
    server.stop().await?;
    Ok(PendingResult {
        timers: args.pending,
        create,
        rss_before_bytes,
        rss_after_bytes,
        bytes_per_timer: rss_after_bytes.saturating_sub(rss_before_bytes) as f64
            / args.pending as f64,
        store_file_bytes,
        restart_secs,
        rescheduled,
        rss_after_restart_bytes,
    })
}

fn human(result: &TimersResult) -> String {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let c = &result.create;
    let f = &result.fire;
    let mut out = format!(
        "create:  {} timers in {:.1} s = {:.0} timers/s; create latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
         fire:    {} of {} timers at {:.0}/s; lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
        c.timers, c.secs, c.per_sec, c.latency.p50_ms, c.latency.p99_ms, c.latency.max_ms,
        f.fired, f.scheduled, f.rate, f.lateness.p50_ms, f.lateness.p99_ms, f.lateness.max_ms,
    );
    if let Some(p) = &result.pending {
        out.push_str(&format!(
            "pending: {} timers created at {:.0}/s; RSS {:.1} MiB -> {:.1} MiB ({:.0} bytes/timer); store file {:.1} MiB\n\
             restart: kill -9, restart in {:.2} s, {} timers scheduled again, RSS {:.1} MiB\n",
            p.timers, p.create.per_sec, mib(p.rss_before_bytes), mib(p.rss_after_bytes), p.bytes_per_timer,
            mib(p.store_file_bytes), p.restart_secs, p.rescheduled, mib(p.rss_after_restart_bytes),
        ));
    }
    out
}
