//! The hidden `worker` subcommand: a slice of the simulated clients.
//!
//! The parent generator re-executes this binary once per worker so that no
//! single process needs more than its 20,000 descriptors. A worker connects
//! its users, announces `ready`, announces `complete` once every client got
//! everything the plan expects, and on `stop` prints its final report.

pub mod client;
pub mod connect;
pub mod polled;
pub mod resume;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::hist::LatencyHist;
use crate::ipc::{ReadyInfo, WorkerEvent, WorkerReport, STOP};
use crate::plan::{user_name, Mode, Plan};
use crate::seq::SeqTally;
use crate::target::WsTarget;
use client::{ClientOutcome, Shared};
use connect::{connect_client, source_addr, ConnectPolicy};
use polled::PolledReader;

/// Arguments of the hidden `worker` subcommand (set by the parent, not by people).
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// WebSocket URL of the server under test.
    #[arg(long)]
    pub ws_url: String,
    /// App every client joins.
    #[arg(long)]
    pub app: String,
    /// First user index of this worker (inclusive).
    #[arg(long)]
    pub user_start: u64,
    /// Last user index of this worker (exclusive).
    #[arg(long)]
    pub user_end: u64,
    /// Traffic kind, for loss accounting.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Clients in the whole run (all workers), for unicast routing.
    #[arg(long)]
    pub total_conns: u64,
    /// Messages the publisher will send.
    #[arg(long, default_value_t = 0)]
    pub messages: u64,
    /// Number of loopback source addresses (127.0.0.2..) to spread clients over.
    #[arg(long, default_value_t = 8)]
    pub src_addrs: u8,
    /// Connection attempts in flight at once in this worker.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Resume: how many of `messages` (the first ones) are published while connected.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Resume: drop the TCP connection instead of sending a close frame.
    #[arg(long)]
    pub abrupt: bool,
}

/// Runs a worker until the parent says stop (or closes stdin).
pub async fn run(args: WorkerArgs) -> Result<()> {
    crate::limits::raise_nofile()?;
    if args.mode == Mode::Resume {
        return resume::run(args).await;
    }
    let started = Instant::now();
    let target = Arc::new(WsTarget::resolve(&args.ws_url).await?);
    let plan = Plan {
        mode: args.mode,
        conns: args.total_conns,
        messages: args.messages,
    };
    let shared = Arc::new(Shared::new());
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<ConnectEvent>();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let app: Arc<str> = args.app.as_str().into();
    let reader = PolledReader::start(plan, shared.clone())?;

    let mut tasks: JoinSet<()> = JoinSet::new();
    for user in args.user_start..args.user_end {
        let (target, gate, app) = (target.clone(), gate.clone(), app.clone());
        let (conn_tx, handoff) = (conn_tx.clone(), reader.handoff());
        let src = source_addr(user, args.src_addrs);
        tasks.spawn(async move {
            let url = target.client_url(&app, &user_name(user));
            let (connected, secs) = {
                let _permit = gate.acquire().await.ok();
                let t = Instant::now();
                let c = connect_client(&target, &url, src, ConnectPolicy::default()).await;
                (c, t.elapsed().as_secs_f64())
            };
            let result = connected
                .and_then(|c| handoff.add(user, c.ws).map(|()| c.attempts))
                .map_err(|e| format!("{e:#}"));
            let _ = conn_tx.send(ConnectEvent { user, secs, result });
        });
    }
    drop(conn_tx);

    let ready = collect_connects(&mut conn_rx, &plan, &shared).await;
    let expected = shared.remaining.load(Ordering::Acquire);
    emit(&WorkerEvent::Ready(ReadyInfo {
        connect_secs: started.elapsed().as_secs_f64(),
        ..ready
    }))?;

    let mut completed = expected == 0;
    if completed {
        emit(&WorkerEvent::Complete)?;
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(l)) if l.trim() != STOP => continue,
                _ => break,
            },
            _ = shared.complete.notified(), if !completed => {
                completed = true;
                emit(&WorkerEvent::Complete)?;
            }
        }
    }

    tasks.abort_all();
    let outcomes = tokio::task::spawn_blocking(move || reader.finish()).await??;
    let report = final_report(&outcomes, &shared)?;
    emit(&WorkerEvent::Report(Box::new(report)))?;
    Ok(())
}

/// How one client's connect phase ended.
struct ConnectEvent {
    user: u64,
    /// Seconds this client's connect took, retries included, queueing excluded.
    secs: f64,
    /// Attempts used, or the final error.
    result: Result<u32, String>,
}

/// Waits until every client settled its connect; sets the expected-delivery countdown.
async fn collect_connects(
    rx: &mut mpsc::UnboundedReceiver<ConnectEvent>,
    plan: &Plan,
    shared: &Shared,
) -> ReadyInfo {
    let mut ready = ReadyInfo::default();
    let mut expected = 0u64;
    while let Some(ConnectEvent { user, secs, result }) = rx.recv().await {
        ready.slowest_client_secs = ready.slowest_client_secs.max(secs);
        match result {
            Ok(attempts) => {
                ready.connected += 1;
                ready.retries += u64::from(attempts.saturating_sub(1));
                expected += plan.expected_for_user(user);
            }
            Err(e) => {
                ready.failed += 1;
                ready.first_error.get_or_insert(e);
            }
        }
    }
    shared.remaining.store(expected, Ordering::Release);
    ready
}

/// Sums the clients' outcomes into the worker's report.
fn final_report(outcomes: &[ClientOutcome], shared: &Shared) -> Result<WorkerReport> {
    let mut tally = SeqTally::default();
    let mut disconnects = 0;
    for outcome in outcomes {
        tally.merge(&outcome.tally);
        disconnects += u64::from(outcome.disconnected);
    }
    let hist = match shared.hist.lock() {
        Ok(h) => h.clone(),
        Err(_) => LatencyHist::new(),
    };
    let first = shared.first_us.load(Ordering::Acquire);
    let last = shared.last_us.load(Ordering::Acquire);
    Ok(WorkerReport {
        tally,
        hist_b64: hist.encode()?,
        first_delivery_us: (first != u64::MAX).then_some(first),
        last_delivery_us: (last != 0).then_some(last),
        disconnects,
        malformed: shared.malformed.load(Ordering::Acquire),
        resume: None,
    })
}

/// Writes one event line to stdout, flushed so the parent sees it immediately.
pub(crate) fn emit(event: &WorkerEvent) -> Result<()> {
    let line = serde_json::to_string(event)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
