//! Running one load scenario (idle, broadcast, unicast, resume) end to end.
//!
//! Order of a run: sample the server, spawn workers and wait until every
//! client is welcomed, then either settle (idle) or publish and wait for the
//! deliveries to drain, sample the server again, stop the workers, aggregate.
//! Resume adds a disconnect, an offline publish and a reconnect in between.

use std::time::Duration;

use anyhow::{Context, Result};
use hyper::Method;
use tokio::time::Instant;

use crate::aggregate::{Aggregate, ConnectTotals};
use crate::http::HttpConn;
use crate::ipc::{DISCONNECT, RECONNECT};
use crate::plan::{Mode, Plan};
use crate::pool::{default_procs, Pool, PoolConfig};
use crate::proc_stats::{self, ProcSample, SystemSample};
use crate::publisher::{publish, PublishConfig, PublishStats};
use crate::report::{ResumeSummary, RunResult};
use crate::target::ApiTarget;

/// Where the server is and how to drive it; shared by all scenarios.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// WebSocket URL, e.g. `ws://127.0.0.1:8081/v1/ws`.
    pub ws_url: String,
    /// API base URL, e.g. `http://127.0.0.1:8082`; several, comma-separated, are servers
    /// that share nothing (relays side by side), and each message is published to each.
    pub api_url: String,
    /// Server process to sample for CPU and RSS.
    pub pid: Option<u32>,
    /// The other nodes of a cluster: their CPU and RSS count with `pid`'s.
    pub more_pids: Vec<u32>,
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
    /// How long to wait between the last client's welcome and the first publish (a
    /// cluster's nodes subscribe in Redis after the welcome; Redis's counters are reset
    /// in between).
    pub settle: Duration,
}

/// Parameters of a resume run.
#[derive(Clone, Copy, Debug)]
pub struct ResumeParams {
    /// Broadcasts published while connected, so cursors carry a real epoch and offset.
    pub warmup: u64,
    /// Broadcasts published while every client is disconnected (M).
    pub missed: u64,
    /// Publish rate of both batches, messages per second.
    pub rate: f64,
    /// How long to wait for the warm-up deliveries, and for the recovery once every
    /// reconnect settled.
    pub drain: Duration,
    /// Extra wait after the recovery, to catch late duplicates.
    pub grace: Duration,
    /// Disconnect by dropping TCP connections instead of sending close frames.
    pub abrupt: bool,
}

/// Worker settings that only some scenarios use.
#[derive(Clone, Copy, Debug, Default)]
struct WorkerOpts {
    warmup: u64,
    abrupt: bool,
}

/// Clients connected and the server state before any traffic.
struct Connected {
    pool: Pool,
    result: RunResult,
    baseline: Option<ProcSample>,
}

/// Samples the server, if a pid was given; for a cluster, the sum over its nodes.
fn sample(cfg: &LoadConfig) -> Result<Option<ProcSample>> {
    let Some(pid) = cfg.pid else {
        return Ok(None);
    };
    let mut sum = proc_stats::sample(pid)?;
    for &node in &cfg.more_pids {
        let next = proc_stats::sample(node)?;
        sum.cpu_micros += next.cpu_micros;
        sum.user_micros += next.user_micros;
        sum.sys_micros += next.sys_micros;
        sum.rss_bytes += next.rss_bytes;
    }
    Ok(Some(sum))
}

/// Spawns workers and waits for every client's welcome frame.
async fn connect(cfg: &LoadConfig, plan: Plan, opts: WorkerOpts) -> Result<Connected> {
    crate::limits::raise_nofile()?;
    let baseline = sample(cfg)?;
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
        warmup: opts.warmup,
        abrupt: opts.abrupt,
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
    } = connect(cfg, plan, WorkerOpts::default()).await?;
    tokio::time::sleep(settle).await;
    let after = sample(cfg)?;
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
    let apis = ApiTarget::resolve_all(&cfg.api_url).await?;
    let Connected {
        mut pool,
        mut result,
        ..
    } = connect(cfg, plan, WorkerOpts::default()).await?;
    tokio::time::sleep(traffic.settle).await;
    let window = Window::start(cfg, &pool)?;
    let published = publish(
        &PublishConfig {
            apis,
            app: cfg.app.clone(),
            rate: traffic.rate,
            token: cfg.token.clone(),
        },
        &plan,
        0..plan.messages,
    )
    .await?;
    let complete = pool.wait_complete(Instant::now() + traffic.drain).await;
    let after = window.finish(cfg, &pool, &mut result)?;
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
    if let (Some(cpu_ms), Some(a)) = (result.server_cpu_ms, after) {
        if result.deliveries > 0 {
            result.server_cpu_us_per_1k_deliveries =
                Some(cpu_ms * 1000.0 / result.deliveries as f64 * 1000.0);
        }
        result.server_rss_after_bytes = Some(a.rss_bytes);
    }
    Ok(result)
}

/// Readings at the start of a measured window: server, generator, machine.
struct Window {
    started: Instant,
    server: Option<ProcSample>,
    generator_us: u64,
    system: Option<SystemSample>,
}

/// CPU of this process and every worker process, µs (workers that are gone count 0).
fn generator_cpu_us(pool: &Pool) -> u64 {
    std::iter::once(std::process::id())
        .chain(pool.pids())
        .filter_map(proc_stats::cpu_micros)
        .sum()
}

impl Window {
    fn start(cfg: &LoadConfig, pool: &Pool) -> Result<Self> {
        Ok(Self {
            started: Instant::now(),
            server: sample(cfg)?,
            generator_us: generator_cpu_us(pool),
            system: proc_stats::system_sample(),
        })
    }

    /// Fills the window's CPU fields of `result`; returns the closing server sample.
    fn finish(
        self,
        cfg: &LoadConfig,
        pool: &Pool,
        result: &mut RunResult,
    ) -> Result<Option<ProcSample>> {
        let after = sample(cfg)?;
        result.window_secs = self.started.elapsed().as_secs_f64();
        let gen = generator_cpu_us(pool).saturating_sub(self.generator_us);
        result.generator_cpu_ms = Some(gen as f64 / 1000.0);
        result.machine_idle_pct = self
            .system
            .zip(proc_stats::system_sample())
            .and_then(|(b, a)| a.idle_pct_since(&b));
        if let (Some(b), Some(a)) = (self.server, after) {
            let ms = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1000.0;
            result.server_cpu_ms = Some(ms(a.cpu_micros, b.cpu_micros));
            result.server_cpu_user_ms = Some(ms(a.user_micros, b.user_micros));
            result.server_cpu_sys_ms = Some(ms(a.sys_micros, b.sys_micros));
        }
        Ok(after)
    }
}

/// Samples `pid`'s RSS every 10 ms until stopped; yields the highest value seen.
struct RssPeak {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<u64>>,
}

impl RssPeak {
    fn start(pid: Option<u32>) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let pid = pid?;
            let mut peak = proc_stats::rss_bytes(pid).ok();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Ok(rss) = proc_stats::rss_bytes(pid) {
                    peak = peak.max(Some(rss));
                }
            }
            if let Ok(rss) = proc_stats::rss_bytes(pid) {
                peak = peak.max(Some(rss));
            }
            peak
        });
        Self { stop, task }
    }

    async fn finish(self) -> Option<u64> {
        let _ = self.stop.send(true);
        self.task.await.ok().flatten()
    }
}

/// The server's `GET /v1/stats` answer (pushhub only; the relay has no such endpoint).
pub async fn server_stats(api_url: &str, token: Option<&str>) -> Result<serde_json::Value> {
    let api = ApiTarget::resolve(api_url).await?;
    let mut conn = HttpConn::connect(api.addr, &api.authority).await?;
    let (status, body) = conn
        .request(Method::GET, &api.path("/v1/stats"), None, token)
        .await?;
    if !status.is_success() {
        anyhow::bail!("GET /v1/stats answered {status}");
    }
    serde_json::from_slice(&body).context("/v1/stats JSON")
}

/// `connections` from the server's `GET /v1/stats`.
async fn stats_connections(
    conn: &mut HttpConn,
    api: &ApiTarget,
    token: Option<&str>,
) -> Result<u64> {
    let (status, body) = conn
        .request(Method::GET, &api.path("/v1/stats"), None, token)
        .await?;
    if !status.is_success() {
        anyhow::bail!("GET /v1/stats answered {status}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("/v1/stats JSON")?;
    v.get("connections")
        .and_then(serde_json::Value::as_u64)
        .context("/v1/stats without a number `connections`")
}

/// Polls `/v1/stats` every 20 ms until `connections` is 0; the seconds since
/// `since`, or `None` if the endpoint is missing or the count stays above 0 for `limit`.
async fn wait_server_idle(
    api: &ApiTarget,
    token: Option<&str>,
    since: Instant,
    limit: Duration,
) -> Option<f64> {
    let deadline = Instant::now() + limit;
    let mut conn = HttpConn::connect(api.addr, &api.authority).await.ok()?;
    loop {
        match stats_connections(&mut conn, api, token).await {
            Ok(0) => return Some(since.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(e) => {
                eprintln!("resume: cannot read /v1/stats ({e:#}); not waiting for the server");
                return None;
            }
        }
        if Instant::now() > deadline {
            eprintln!("resume: server still reports connections after {limit:?}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resume: connect, warm up, disconnect everyone, publish M broadcasts while nobody
/// is online, reconnect everyone with its cursor, check every client got exactly the
/// M missed messages, and time the recovery.
pub async fn run_resume(cfg: &LoadConfig, conns: u64, p: ResumeParams) -> Result<RunResult> {
    let plan = Plan {
        mode: Mode::Resume,
        conns,
        messages: p.warmup + p.missed,
    };
    let api = ApiTarget::resolve(&cfg.api_url).await?;
    let opts = WorkerOpts {
        warmup: p.warmup,
        abrupt: p.abrupt,
    };
    let Connected {
        mut pool,
        mut result,
        ..
    } = connect(cfg, plan, opts).await?;
    let publish_cfg = PublishConfig {
        apis: vec![api.clone()],
        app: cfg.app.clone(),
        rate: p.rate,
        token: cfg.token.clone(),
    };

    // Warm-up: live broadcasts, so every cursor names a real epoch and offset.
    let warm = publish(&publish_cfg, &plan, 0..p.warmup).await?;
    let warmup_complete = pool.wait_complete(Instant::now() + p.drain).await;

    // Everybody leaves; wait until the server has seen every connection go.
    let disconnect_at = Instant::now();
    pool.command(DISCONNECT).await?;
    let closed: u64 = pool
        .wait_disconnected(Duration::from_secs(60))
        .await?
        .iter()
        .map(|d| d.closed)
        .sum();
    let server_saw_disconnect_secs = wait_server_idle(
        &api,
        cfg.token.as_deref(),
        disconnect_at,
        Duration::from_secs(60),
    )
    .await;

    // The messages everybody misses.
    let missed = publish(&publish_cfg, &plan, p.warmup..plan.messages).await?;

    // Everybody comes back at once.
    let rss_before = sample(cfg)?.map(|s| s.rss_bytes);
    let window = Window::start(cfg, &pool)?;
    let peak = RssPeak::start(cfg.pid);
    let reconnect_at = Instant::now();
    pool.command(RECONNECT).await?;
    let resumed = pool
        .wait_resumed(cfg.connect_timeout)
        .await
        .context("reconnect phase")?;
    let reconnect_secs = reconnect_at.elapsed().as_secs_f64();
    let complete = pool.wait_recovered(Instant::now() + p.drain).await;
    tokio::time::sleep(p.grace).await;
    let after = window.finish(cfg, &pool, &mut result)?;
    let server_peak_rss_bytes = peak.finish().await;
    let reports = pool.finish(Duration::from_secs(30)).await?;
    let agg = Aggregate::from_reports(&reports)?;

    fill_publish(&mut result, &[&warm, &missed], p.rate);
    result.complete = warmup_complete && complete;
    result.deliveries = agg.tally.received;
    result.lost = agg.tally.lost;
    result.duplicated = agg.tally.duplicated;
    result.unexpected = agg.tally.unexpected;
    result.disconnects = agg.disconnects;
    result.malformed = agg.malformed;
    result.latency = agg.hist.summary();
    result.server_rss_after_bytes = after.map(|a| a.rss_bytes);
    let res = agg.resume.unwrap_or_default();
    let full_recovery_secs = match (res.first_attempt_us, res.last_recovered_us) {
        (Some(first), Some(last)) if complete => Some(last.saturating_sub(first) as f64 / 1e6),
        _ => None,
    };
    result.resume = Some(ResumeSummary {
        warmup: p.warmup,
        missed: p.missed,
        warmup_complete,
        disconnected: closed,
        server_saw_disconnect_secs,
        delivered_while_offline: missed.server_delivered,
        missed_publish_errors: missed.errors,
        tally: res.tally,
        reconnect_secs,
        reconnect_retries: resumed.iter().map(|r| r.retries).sum(),
        complete,
        full_recovery_secs,
        recovery: res.recovery.summary(),
        server_cpu_ms: result.server_cpu_ms,
        server_peak_rss_bytes,
        server_rss_before_bytes: rss_before,
    });
    if result.first_error.is_none() {
        result.first_error = resumed
            .iter()
            .find_map(|r| r.first_error.clone())
            .or(warm.first_error)
            .or(missed.first_error);
    }
    Ok(result)
}

/// Publish totals over several batches.
fn fill_publish(result: &mut RunResult, batches: &[&PublishStats], rate: f64) {
    result.rate = rate;
    result.publish_errors = batches.iter().map(|b| b.errors).sum();
    result.server_reported_delivered = batches.iter().map(|b| b.server_delivered).sum();
    result.publish_secs = batches
        .iter()
        .map(|b| b.last_send_us.saturating_sub(b.first_send_us) as f64 / 1e6)
        .sum();
    result.publish_p50_ms = batches
        .iter()
        .map(|b| b.request_latency.p50_ms)
        .fold(0.0, f64::max);
}
