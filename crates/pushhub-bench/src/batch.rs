//! The `batch` scenario: how fast pushhub accepts pushes to offline users, one per
//! `POST /v1/push` against batches of 10, 100 and 1,000 per `POST /v1/batch` (issue 18).
//!
//! On a fresh server for each size (`--pushhub-bin`, nobody connected, so the numbers are the ingest
//! path: HTTP, JSON, targets, history append, the answer), for each size in `--sizes`
//! (1 = single pushes): `--conns` keep-alive connections send requests back to back for
//! `--secs` seconds, each push to the next user of a round-robin over `--users`. Reported
//! per size: pushes/s accepted, server CPU per push (from `/proc/PID/stat`), and request
//! latency (p50, p99). Every answer is checked: a push that fails fails the run.
//! With `--h2-streams`, a last row sends single pushes over HTTP/2 ([`http2`]).

mod http2;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;

use crate::http::HttpConn;
use crate::proc_stats;
use crate::suite::server::{self, RunningServer, ServerKind};

/// Arguments of `pushhub-bench batch`.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// Pushes per request to measure, in order; 1 means single `POST /v1/push`.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    pub sizes: Vec<usize>,
    /// Keep-alive connections sending at once.
    #[arg(long, default_value_t = 4)]
    pub conns: usize,
    /// Seconds each size runs.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Distinct users the pushes go to, round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Where the server's log goes.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
    /// Also measure single pushes over HTTP/2: this many requests at once on each of
    /// `--conns` connections; 0 skips the row.
    #[arg(long, default_value_t = 0)]
    pub h2_streams: usize,
}

/// One size's measurement.
#[derive(Debug, Serialize)]
struct BatchResult {
    size: usize,
    conns: usize,
    requests: u64,
    pushes: u64,
    secs: f64,
    pushes_per_sec: f64,
    server_cpu_us_per_push: f64,
    request_p50_ms: f64,
    request_p99_ms: f64,
}

/// Run the scenario and print one line per size, human and JSON.
pub async fn run(args: BatchArgs) -> Result<()> {
    std::fs::create_dir_all(&args.log_dir)?;
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    for &size in &args.sizes {
        // A fresh server per size: histories filled by one size's run (and evicted at
        // their byte bound) would weigh on the next one's.
        let tag = format!("batch-{size}");
        let server = server::start(&kind, &args.log_dir, &tag, None, &[]).await?;
        let result = measure(&server, &args, size.max(1)).await?;
        server.stop().await?;
        report("", &result)?;
    }
    if args.h2_streams > 0 {
        let server = server::start(&kind, &args.log_dir, "batch-h2", None, &[]).await?;
        let result = http2::measure(&server, &args).await?;
        server.stop().await?;
        report(
            &format!(" over HTTP/2 ({} streams each)", args.h2_streams),
            &result,
        )?;
    }
    Ok(())
}

/// Print one row, human and JSON.
fn report(how: &str, result: &BatchResult) -> Result<()> {
    println!(
        "batch{how}: {} push(es)/request, {} conns: {:.0} pushes/s, {:.2} µs server CPU/push, request p50 {:.2} ms p99 {:.2} ms",
        result.size,
        result.conns,
        result.pushes_per_sec,
        result.server_cpu_us_per_push,
        result.request_p50_ms,
        result.request_p99_ms,
    );
    println!("{}", serde_json::to_string(result)?);
    Ok(())
}

async fn measure(server: &RunningServer, args: &BatchArgs, size: usize) -> Result<BatchResult> {
    let next_user = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::with_capacity(args.conns);
    for _ in 0..args.conns.max(1) {
        conns.push(HttpConn::to_url(&server.api_url).await?);
    }
    let cpu_before = proc_stats::cpu_micros(server.pid).context("server gone")?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.secs);
    let senders = conns.into_iter().map(|conn| {
        let next_user = next_user.clone();
        let users = args.users.max(1);
        tokio::spawn(send_until(conn, size, users, next_user, until))
    });
    let mut latencies = Vec::new();
    for sender in futures_util::future::join_all(senders).await {
        latencies.extend(sender??);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = proc_stats::cpu_micros(server.pid).context("server gone")?;
    Ok(BatchResult::from_latencies(
        size,
        args.conns,
        latencies,
        secs,
        cpu_after - cpu_before,
    ))
}

impl BatchResult {
    /// The row for requests of `size` pushes that took `latencies`, in `secs` seconds of
    /// which the server spent `cpu_micros` on the CPU.
    fn from_latencies(
        size: usize,
        conns: usize,
        mut latencies: Vec<Duration>,
        secs: f64,
        cpu_micros: u64,
    ) -> Self {
        latencies.sort_unstable();
        let requests = latencies.len() as u64;
        let pushes = requests * size as u64;
        let quantile = |q: f64| {
            let at = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Self {
            size,
            conns,
            requests,
            pushes,
            secs,
            pushes_per_sec: pushes as f64 / secs,
            server_cpu_us_per_push: cpu_micros as f64 / pushes.max(1) as f64,
            request_p50_ms: quantile(0.5),
            request_p99_ms: quantile(0.99),
        }
    }
}

/// Send requests of `size` pushes on `conn` until `until`; each one's latency.
async fn send_until(
    mut conn: HttpConn,
    size: usize,
    users: u64,
    next_user: Arc<AtomicU64>,
    until: Instant,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let first = next_user.fetch_add(size as u64, Ordering::Relaxed);
        let push = |n: u64| serde_json::json!({"to": ((first + n) % users).to_string(), "event": "order", "data": {"n": first + n}});
        let (path, body) = if size == 1 {
            let mut one = push(0);
            one["app"] = "demo".into();
            ("/v1/push", one)
        } else {
            let pushes: Vec<_> = (0..size as u64).map(push).collect();
            (
                "/v1/batch",
                serde_json::json!({"app": "demo", "pushes": pushes}),
            )
        };
        let body = Bytes::from(body.to_string());
        let sent = Instant::now();
        let (status, answer) = conn.request(Method::POST, path, Some(body), None).await?;
        latencies.push(sent.elapsed());
        anyhow::ensure!(
            status.is_success(),
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        if size > 1 {
            let answer: serde_json::Value = serde_json::from_slice(&answer)?;
            anyhow::ensure!(
                answer["published"] == size,
                "a batch was not published whole: {answer}"
            );
        }
    }
    Ok(latencies)
}
