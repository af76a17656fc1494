//! The `upgrade` scenario (issue 17's upgrade target): `--clients` resuming native
//! WebSocket clients (the soak's: each keeps its cursor and reconnects with `since=` after
//! a random delay of up to 0.5 s when the server closes it), one broadcast every
//! `1/--rate` s, and `POST /v1/admin/upgrade` after `--before-secs`. The old process closes
//! everyone with 1012 and hands over; the clients reconnect to the new one. Reports, from
//! the ledger of every accepted broadcast: lost and duplicated deliveries (both must be 0);
//! the time until every client is connected again; and the gap the new process logged
//! (`upgrade: accepting again N ms after the old process stopped`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use crate::clock::unix_micros;
use crate::http::HttpConn;
use crate::soak::ledger::{Ledger, LedgerTally};
use crate::soak::normal::{self, ClientContext, ClientCounters};
use crate::soak::phase::Phase;
use crate::suite::server::{self, ServerKind};

/// Arguments of `pushhub-bench upgrade`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpgradeArgs {
    /// The pushhub binary (build it with --release); the upgrade starts it again.
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// Resuming WebSocket clients.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Broadcasts per second, all along.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of publishing before the upgrade.
    #[arg(long, default_value_t = 5)]
    pub before_secs: u64,
    /// Seconds of publishing after the upgrade answered.
    #[arg(long, default_value_t = 10)]
    pub after_secs: u64,
    /// `history_store`: memory (the default, handed over as a snapshot) or disk.
    #[arg(long, default_value = "memory")]
    pub store: String,
    /// Where the server's log goes (the new process writes to the same file).
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
}

/// One run's measurement.
#[derive(Debug, Serialize)]
struct UpgradeResult {
    clients: usize,
    store: String,
    rate: f64,
    broadcasts_accepted: u64,
    broadcasts_failed: u64,
    upgrade_answer_ms: u64,
    ready_ms: u64,
    gap_ms: Option<u64>,
    all_back_ms: u64,
    closed_by_server: u64,
    not_recovered: u64,
    connect_errors: u64,
    tally: LedgerTally,
}

/// Run the scenario and print the result, human and JSON.
pub async fn run(args: UpgradeArgs) -> Result<()> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.rate > 0.0, "--rate must be positive");
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let env = [
        ("PUSHHUB_LOG", Some("info")),
        ("PUSHHUB_HISTORY_STORE", Some(args.store.as_str())),
    ];
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    let server = server::start(&kind, &args.log_dir, "upgrade", None, &env).await?;
    let (api, authority) = crate::soak::api_addr(&server.api_url)?;
    println!(
        "upgrade: pushhub pid {}, {} clients, {} broadcasts/s, history_store {}; log {}",
        server.pid,
        args.clients,
        args.rate,
        args.store,
        server.log_path.display()
    );
    let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
    // The soak's storms never come: its clients reconnect only when the server closes them.
    let (_storms, storm_rx) = watch::channel(0u64);
    let ledger = Arc::new(Ledger::new(args.clients));
    let ctx = Arc::new(ClientContext {
        ws_url: server.ws_url.clone(),
        app: "demo".into(),
        ledger: ledger.clone(),
        counters: ClientCounters::default(),
        ready: AtomicU64::new(0),
        reconnect_min: Duration::from_secs(3600),
        reconnect_max: Duration::from_secs(3600),
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while ctx.ready.load(Ordering::Relaxed) < args.clients as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} clients connected within 120 s",
                ctx.ready.load(Ordering::Relaxed),
                args.clients
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    println!("upgrade: {} clients connected; publishing", args.clients);

    let (stop_tx, stop_rx) = watch::channel(false);
    let failed = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(publish(
        api,
        authority.clone(),
        ledger.clone(),
        args.rate,
        failed.clone(),
        stop_rx,
    ));
    sleep(Duration::from_secs(args.before_secs)).await;

    let asked = Instant::now();
    let mut conn = HttpConn::connect(api, &authority).await?;
    let (status, answer) = conn
        .request(Method::POST, "/v1/admin/upgrade", None, None)
        .await?;
    let upgrade_answer_ms = asked.elapsed().as_millis() as u64;
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    ensure!(
        status.is_success(),
        "the upgrade was refused: {status} {answer}"
    );
    let successor = answer["pid"]
        .as_u64()
        .context("no pid in the upgrade's answer")?;
    let ready_ms = answer["ready_ms"].as_u64().unwrap_or(0);
    // Every client had one connection; each is back once the server counts two for it.
    let target = 2 * args.clients as u64;
    let back_deadline = Instant::now() + Duration::from_secs(120);
    while ctx.counters.connects.load(Ordering::Relaxed) < target {
        if Instant::now() > back_deadline {
            bail!(
                "only {} of {} clients back within 120 s",
                ctx.counters.connects.load(Ordering::Relaxed) - args.clients as u64,
                args.clients
            );
        }
        sleep(Duration::from_millis(5)).await;
    }
    let all_back_ms = asked.elapsed().as_millis() as u64;
    println!("upgrade: every client back {all_back_ms} ms after the upgrade was asked for");
    sleep(Duration::from_secs(args.after_secs)).await;
    stop_tx.send_replace(true);
    let accepted = publisher.await??;

    let settle = Instant::now() + Duration::from_secs(60);
    while !ledger.settled() && Instant::now() < settle {
        sleep(Duration::from_millis(100)).await;
    }
    sleep(Duration::from_millis(500)).await;
    phase_tx.send_replace(Phase::Done);
    for client in clients {
        let _ = client.await;
    }
    let log = std::fs::read_to_string(&server.log_path).unwrap_or_default();
    let gap_ms = log
        .lines()
        .find_map(|line| line.split("upgrade: accepting again ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok());
    let result = UpgradeResult {
        clients: args.clients,
        store: args.store.clone(),
        rate: args.rate,
        broadcasts_accepted: accepted,
        broadcasts_failed: failed.load(Ordering::Relaxed),
        upgrade_answer_ms,
        ready_ms,
        gap_ms,
        all_back_ms,
        closed_by_server: ctx.counters.closed_by_server.load(Ordering::Relaxed),
        not_recovered: ctx.counters.not_recovered.load(Ordering::Relaxed),
        connect_errors: ctx.counters.connect_errors.load(Ordering::Relaxed),
        tally: ledger.tally(),
    };
    // The new process is a child of the old one, which has exited: stop it by its pid.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &successor.to_string()])
        .status();
    drop(server);
    println!(
        "upgrade: {} clients, {} broadcasts accepted ({} failed): owed {}, lost {}, duplicated {}; not recovered {}; new process ready in {} ms, gap {} ms, every client back in {} ms",
        result.clients,
        result.broadcasts_accepted,
        result.broadcasts_failed,
        result.tally.owed,
        result.tally.lost,
        result.tally.duplicated,
        result.not_recovered,
        result.ready_ms,
        result.gap_ms.map_or("?".into(), |ms| ms.to_string()),
        result.all_back_ms,
    );
    println!("{}", serde_json::to_string(&result)?);
    ensure!(
        result.tally.lost == 0 && result.tally.duplicated == 0,
        "messages were lost or duplicated across the upgrade"
    );
    Ok(())
}

/// Broadcast `{"s": seq, "t": micros}` at `rate` per second until `stop`, entering each
/// accepted one in the ledger; returns how many were accepted. A connection the server
/// closed (its answer said `Connection: close`) is replaced before the next request, so
/// a request is never sent on it.
async fn publish(
    api: std::net::SocketAddr,
    authority: String,
    ledger: Arc<Ledger>,
    rate: f64,
    failed: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> Result<u64> {
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut conn = HttpConn::connect(api, &authority).await?;
    let (mut seq, mut accepted) = (0u64, 0u64);
    let mut next = Instant::now();
    while !*stop.borrow() {
        tokio::time::sleep_until(next).await;
        next += every;
        if conn.is_closed() {
            conn = HttpConn::connect(api, &authority).await?;
        }
        let body = serde_json::json!({
            "app": "demo", "to": "*", "event": "upgrade",
            "data": {"s": seq, "t": unix_micros()},
        });
        match conn
            .request(
                Method::POST,
                "/v1/push",
                Some(Bytes::from(body.to_string())),
                None,
            )
            .await
        {
            Ok((status, _)) if status.is_success() => {
                ledger.owe_broadcast(seq);
                accepted += 1;
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
                conn = HttpConn::connect(api, &authority).await?;
            }
        }
        seq += 1;
    }
    Ok(accepted)
}
