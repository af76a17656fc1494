//! Running one load scenario (idle, broadcast, unicast) end to end.
//!
//! Order of a run: sample the server, spawn workers and wait until every
//! client is welcomed, then either settle (idle) or publish and wait for the
//! deliveries to drain, sample the server again, stop the workers, aggregate.

use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use crate::aggregate::{Aggregate, ConnectTotals};
use crate::plan::{Mode, Plan};
use crate::pool::{default_procs, Pool, PoolConfig};
use crate::proc_stats::{self, ProcSample};
use crate::publisher::{publish, PublishConfig};
use crate::report::RunResult;
use crate::target::ApiTarget;

/// Where the server is and how to drive it; shared by all scenarios.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// WebSocket URL, e.g. `ws://127.0.0.1:8081/v1/ws`.
    pub ws_url: String,
    /// API base URL, e.g. `http://127.0.0.1:8082`.
    pub api_url: String,
    /// Server process to sample for CPU and RSS.
    pub pid: Option<u32>,
    /// App all clients join.
    pub app: String,
    /// Worker processes (default: one per 8,000 clients).
    pub procs: Option<usize>,
    /// Loopback source addresses to spread clients over.
    pub src_addrs: u8,
    /// Connection attempts in flight over all workers.
    pub concurrency: usize,
    /// Bearer token for the push API, if the server wants one.
    pub token: Option<String>,
    /// Limit for the whole connect phase.
    pub connect_timeout: Duration,
    /// Label for reports.
    pub server_label: Option<String>,
    /// Pin the worker processes to this CPU.
    pub worker_cpu: Option<usize>,
}

/// Traffic parameters of a broadcast or unicast run.
#[derive(Clone, Copy, Debug)]
pub struct Traffic {
    /// Messages to publish.
    pub messages: u64,
    /// Messages per second.
    pub rate: f64,
    /// How long to wait for missing deliveries after the last publish.
    pub drain: Duration,
}

/// Clients connected and the server state before any traffic.
struct Connected {
    pool: Pool,
    result: RunResult,
    baseline: Option<ProcSample>,
}

/// Samples the server if a pid was given.
fn sample(pid: Option<u32>) -> Result<Option<ProcSample>> {
    pid.map(proc_stats::sample).transpose()
}

/// Spawns workers and waits for every client's welcome frame.
async fn connect(cfg: &LoadConfig, plan: Plan) -> Result<Connected> {
    crate::limits::raise_nofile()?;
    let baseline = sample(cfg.pid)?;
    let procs = cfg
        .procs
        .unwrap_or_else(|| default_procs(plan.conns))
        .max(1);
    let overflows_before = crate::netstat::listen_overflows();
    let started = Instant::now();
    let mut pool = Pool::spawn(&PoolConfig {
        ws_url: cfg.ws_url.clone(),
        app: cfg.app.clone(),
        plan,
        procs,
        src_addrs: cfg.src_addrs,
        concurrency: cfg.concurrency,
        cpu: cfg.worker_cpu,
    })?;
    let ready = pool.wait_ready(cfg.connect_timeout).await?;
    let totals = ConnectTotals::from_ready(&ready);
    let listen_overflows = overflows_before
        .zip(crate::netstat::listen_overflows())
        .map(|(b, a)| a.saturating_sub(b));
    let result = RunResult {
        scenario: plan.mode.name().to_string(),
        server: cfg.server_label.clone(),
        conns: plan.conns,
        conns_connected: totals.connected,
        conns_failed: totals.failed,
        connect_secs: started.elapsed().as_secs_f64(),
        listen_overflows,
        connect_retries: totals.retries,
        slowest_connect_secs: totals.slowest_client_secs,
        procs,
        messages: plan.messages,
        expected: plan.expected_total(),
        server_rss_before_bytes: baseline.map(|b| b.rss_bytes),
        first_error: totals.first_error,
        ..RunResult::default()
    };
    Ok(Connected {
        pool,
        result,
        baseline,
    })
}

/// Idle: connect `conns` clients, settle, report memory per connection.
pub async fn run_idle(cfg: &LoadConfig, conns: u64, settle: Duration) -> Result<RunResult> {
    let plan = Plan {
        mode: Mode::Idle,
        conns,
        messages: 0,
    };
    let Connected {
        pool,
        mut result,
        baseline,
    } = connect(cfg, plan).await?;
    tokio::time::sleep(settle).await;
    let after = sample(cfg.pid)?;
    let reports = pool.finish(Duration::from_secs(30)).await?;
    let agg = Aggregate::from_reports(&reports)?;
    result.complete = true;
    result.disconnects = agg.disconnects;
    result.malformed = agg.malformed;
    if let (Some(b), Some(a)) = (baseline, after) {
        result.server_rss_after_bytes = Some(a.rss_bytes);
        result.server_cpu_ms = Some((a.cpu_micros.saturating_sub(b.cpu_micros)) as f64 / 1000.0);
        if result.conns_connected > 0 {
            result.rss_bytes_per_conn =
                Some((a.rss_bytes as f64 - b.rss_bytes as f64) / result.conns_connected as f64);
        }
    }
    Ok(result)
}

/// Broadcast or unicast: connect, publish, wait for delivery, account.
pub async fn run_traffic(
    cfg: &LoadConfig,
    mode: Mode,
    conns: u64,
    traffic: Traffic,
) -> Result<RunResult> {
    let plan = Plan {
        mode,
        conns,
        messages: traffic.messages,
    };
    let api = ApiTarget::resolve(&cfg.api_url).await?;
    let Connected {
        mut pool,
        mut result,
        ..
    } = connect(cfg, plan).await?;
    let before = sample(cfg.pid)?;
    let published = publish(
        &PublishConfig {
            api,
            app: cfg.app.clone(),
            rate: traffic.rate,
            token: cfg.token.clone(),
        },
        &plan,
    )
    .await?;
    let complete = pool.wait_complete(Instant::now() + traffic.drain).await;
    let after = sample(cfg.pid)?;
    let reports = pool.finish(Duration::from_secs(30)).await?;
    let agg = Aggregate::from_reports(&reports)?;

    result.rate = traffic.rate;
    result.complete = complete;
    result.publish_errors = published.errors;
    result.publish_secs = published
        .last_send_us
        .saturating_sub(published.first_send_us) as f64
        / 1e6;
    result.server_reported_delivered = published.server_delivered;
    result.publish_p50_ms = published.request_latency.p50_ms;
    result.deliveries = agg.tally.received;
    result.lost = agg.tally.lost;
    result.duplicated = agg.tally.duplicated;
    result.unexpected = agg.tally.unexpected;
    result.disconnects = agg.disconnects;
    result.malformed = agg.malformed;
    result.latency = agg.hist.summary();
    if let Some(last) = agg.last_delivery_us {
        let window = last.saturating_sub(published.first_send_us) as f64 / 1e6;
        if window > 0.0 {
            result.deliveries_per_sec = result.deliveries as f64 / window;
        }
    }
    if result.first_error.is_none() {
        result.first_error = published.first_error;
    }
    if let (Some(b), Some(a)) = (before, after) {
        let cpu_us = a.cpu_micros.saturating_sub(b.cpu_micros) as f64;
        result.server_cpu_ms = Some(cpu_us / 1000.0);
        if result.deliveries > 0 {
            result.server_cpu_us_per_1k_deliveries =
                Some(cpu_us / result.deliveries as f64 * 1000.0);
        }
        result.server_rss_after_bytes = Some(a.rss_bytes);
    }
    Ok(result)
}
