//! A closed-loop HTTP load: keep-alive connections sending requests back to back for a
//! fixed time, every answer checked, the server's CPU read around the run.
//!
//! Generic over what is sent, so the same loop drives pushhub's `/v1/push` and
//! `/v1/batch`, the relay's `/v1/push` and nchan's publisher location.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::Method;

use crate::http::HttpConn;
use crate::proc_stats;

/// What one request carries: its path, its body and how many pushes it holds.
pub struct Request {
    /// Path on the server's API listener.
    pub path: String,
    /// JSON body.
    pub body: Bytes,
}

/// Builds request `n` (numbered from 0 over all connections, each number once).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request + Send + Sync>;

/// Checks a 2xx answer's body; an `Err` fails the run.
pub type CheckAnswer = Arc<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;

/// How to drive one run.
pub struct Load {
    /// `http://HOST:PORT` of the server's API.
    pub api_url: String,
    /// Processes whose CPU counts as the server's (nginx: master and worker).
    pub pids: Vec<u32>,
    /// Keep-alive connections sending at once.
    pub conns: usize,
    /// How long to send.
    pub secs: f64,
    /// Pushes each request carries.
    pub pushes_per_request: usize,
    /// The requests.
    pub make: MakeRequest,
    /// The answers' check.
    pub check: CheckAnswer,
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Measured {
    /// Requests answered.
    pub requests: u64,
    /// Pushes they carried.
    pub pushes: u64,
    /// Wall-clock length of the run.
    pub secs: f64,
    /// Pushes per second.
    pub pushes_per_sec: f64,
    /// Server CPU (user + system, over all its processes) per push, µs.
    pub server_cpu_us_per_push: f64,
    /// The load generator's own CPU per push, µs: it shares the machine's cores with the
    /// server, so a generator that costs as much as the server caps what can be measured.
    pub generator_cpu_us_per_push: f64,
    /// Request round trip, median, ms.
    pub request_p50_ms: f64,
    /// Request round trip, 99th percentile, ms.
    pub request_p99_ms: f64,
}

/// CPU of all `pids` together, µs.
fn cpu_of(pids: &[u32]) -> Result<u64> {
    pids.iter()
        .map(|&pid| {
            proc_stats::cpu_micros(pid).with_context(|| format!("server process {pid} gone"))
        })
        .sum()
}

/// This process's CPU, µs (its children, the servers it started, not included).
fn own_cpu() -> Result<u64> {
    proc_stats::cpu_micros(std::process::id()).context("reading the generator's own CPU")
}

/// Run `load` and measure it.
pub async fn run(load: Load) -> Result<Measured> {
    let next = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::with_capacity(load.conns.max(1));
    for _ in 0..load.conns.max(1) {
        conns.push(HttpConn::to_url(&load.api_url).await?);
    }
    let cpu_before = cpu_of(&load.pids)?;
    let own_before = own_cpu()?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(load.secs);
    let senders = conns.into_iter().map(|conn| {
        tokio::spawn(send_until(
            conn,
            next.clone(),
            load.make.clone(),
            load.check.clone(),
            until,
        ))
    });
    let mut latencies = Vec::new();
    for sender in futures_util::future::join_all(senders).await {
        latencies.extend(sender??);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_of(&load.pids)?;
    let own_after = own_cpu()?;
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    let pushes = requests * load.pushes_per_request as u64;
    let quantile = |q: f64| {
        let at = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Measured {
        requests,
        pushes,
        secs,
        pushes_per_sec: pushes as f64 / secs,
        server_cpu_us_per_push: cpu_after.saturating_sub(cpu_before) as f64 / pushes.max(1) as f64,
        generator_cpu_us_per_push: own_after.saturating_sub(own_before) as f64
            / pushes.max(1) as f64,
        request_p50_ms: quantile(0.5),
        request_p99_ms: quantile(0.99),
    })
}

/// Send requests on `conn` until `until`; each one's round trip.
async fn send_until(
    mut conn: HttpConn,
    next: Arc<AtomicU64>,
    make: MakeRequest,
    check: CheckAnswer,
    until: Instant,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = make(next.fetch_add(1, Ordering::Relaxed));
        let sent = Instant::now();
        let (status, answer) = conn
            .request(Method::POST, &request.path, Some(request.body), None)
            .await?;
        latencies.push(sent.elapsed());
        anyhow::ensure!(
            status.is_success(),
            "{} answered {status}: {}",
            request.path,
            String::from_utf8_lossy(&answer)
        );
        check(&answer)?;
    }
    Ok(latencies)
}
