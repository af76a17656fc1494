//! `pushhub-bench pusher-fanout`: what one delivery on a public Pusher channel costs the
//! server against one delivery to a native room, in the same server process.
//!
//! For each N of `--conns` and each of `--rounds` rounds, two phases (the order swaps
//! every round, so a drift of the shared machine does not favour one side): N Pusher
//! clients subscribed to channel `bench`, or N native clients that joined room `bench`;
//! then `--messages` native pushes (`POST /v1/push` with `"room":"bench"`, the same
//! request for both sides, so only the fan-out differs) at `--rate` per second. Server
//! CPU (utime + stime) from the first push until every client has every message, divided
//! by the deliveries; each client counts the `seq` it received, so lost and duplicated
//! deliveries are exact. The clients close between phases.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Instant};

use super::conn::{self, Ws};
use crate::http::HttpConn;
use crate::proc_stats;

/// Arguments of `pushhub-bench pusher-fanout`.
#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// Client counts, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub conns: Vec<usize>,
    /// Pushes per phase.
    #[arg(long, default_value_t = 200)]
    pub messages: u64,
    /// Pushes per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Rounds (each one Pusher phase and one native phase).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Connects in flight.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Where the server's log and config go.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
}

/// Which dialect's clients a phase connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Side {
    Pusher,
    Native,
}

/// One phase's measurement.
#[derive(Debug, Serialize)]
struct Phase {
    side: Side,
    conns: usize,
    round: usize,
    messages: u64,
    publish_errors: u64,
    deliveries: u64,
    lost: u64,
    duplicated: u64,
    server_cpu_ms: f64,
    server_us_per_delivery: f64,
    generator_cpu_ms: f64,
    machine_idle_pct: Option<f64>,
    drain_ms: u64,
}

/// Run every phase and print each, then the ratio per N.
pub async fn run(args: FanoutArgs) -> Result<()> {
    ensure!(
        args.rate > 0.0 && args.messages > 0,
        "--rate and --messages must be positive"
    );
    crate::limits::raise_nofile()?;
    let bench = super::start(&args.pushhub_bin, &args.log_dir, "pusher-fanout", "memory").await?;
    println!(
        "pusher-fanout: pushhub pid {}, {} pushes at {}/s per phase, log {}",
        bench.server.pid,
        args.messages,
        args.rate,
        bench.server.log_path.display()
    );
    let mut phases = Vec::new();
    for &n in &args.conns {
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [Side::Pusher, Side::Native]
            } else {
                [Side::Native, Side::Pusher]
            };
            for side in order {
                let phase = measure(&args, &bench, side, n, round).await?;
                println!(
                    "  N={:<5} round {} {:<6}: {:.3} µs server CPU/delivery ({:.0} ms for {} deliveries), lost {}, duplicated {}, publish errors {}, generator {:.0} ms, idle {:.0}%, drained in {} ms",
                    n,
                    round,
                    format!("{side:?}").to_lowercase(),
                    phase.server_us_per_delivery,
                    phase.server_cpu_ms,
                    phase.deliveries,
                    phase.lost,
                    phase.duplicated,
                    phase.publish_errors,
                    phase.generator_cpu_ms,
                    phase.machine_idle_pct.unwrap_or(f64::NAN),
                    phase.drain_ms,
                );
                println!("{}", serde_json::to_string(&phase)?);
                phases.push(phase);
            }
        }
    }
    println!("pusher-fanout summary (median over rounds):");
    for &n in &args.conns {
        let median = |side: Side| {
            let mut v: Vec<f64> = phases
                .iter()
                .filter(|p| p.conns == n && p.side == side)
                .map(|p| p.server_us_per_delivery)
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (pusher, native) = (median(Side::Pusher), median(Side::Native));
        let lost: u64 = phases.iter().filter(|p| p.conns == n).map(|p| p.lost).sum();
        let dup: u64 = phases
            .iter()
            .filter(|p| p.conns == n)
            .map(|p| p.duplicated)
            .sum();
        println!(
            "  N={n}: pusher {pusher:.3} µs, native {native:.3} µs per delivery, ratio pusher/native {:.3}; lost {lost}, duplicated {dup}",
            pusher / native
        );
    }
    bench.server.stop().await?;
    let lost: u64 = phases.iter().map(|p| p.lost + p.duplicated).sum();
    ensure!(lost == 0, "deliveries were lost or duplicated");
    Ok(())
}

/// Counts shared by one phase's clients.
#[derive(Default)]
struct Counters {
    ready: AtomicUsize,
    failed: AtomicUsize,
    received: AtomicU64,
}

/// One phase: connect `n` clients of `side`, push, wait for the drain, close.
async fn measure(
    args: &FanoutArgs,
    bench: &super::BenchServer,
    side: Side,
    n: usize,
    round: usize,
) -> Result<Phase> {
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let clients: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(client(
                bench.ws_addr,
                side,
                i,
                args.messages,
                counters.clone(),
                permits.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while counters.ready.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} clients ready within 120 s",
                counters.ready.load(Ordering::Relaxed)
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
    let failed = counters.failed.load(Ordering::Relaxed);
    ensure!(
        failed == 0,
        "{failed} of {n} {side:?} clients failed to connect or subscribe"
    );
    sleep(Duration::from_secs(1)).await;

    let pid = bench.server.pid;
    let me = std::process::id();
    let (cpu0, gen0, sys0) = (
        proc_stats::cpu_micros(pid).unwrap_or(0),
        proc_stats::cpu_micros(me).unwrap_or(0),
        proc_stats::system_sample(),
    );
    let start = Instant::now();
    let publish_errors = publish(&bench.server.api_url, args.messages, args.rate).await?;
    let expected = n as u64 * (args.messages - publish_errors);
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while counters.received.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        sleep(Duration::from_millis(2)).await;
    }
    let drain_ms = start.elapsed().as_millis() as u64;
    let (cpu1, gen1, sys1) = (
        proc_stats::cpu_micros(pid).unwrap_or(0),
        proc_stats::cpu_micros(me).unwrap_or(0),
        proc_stats::system_sample(),
    );
    // Late copies would show as duplicates: give them a moment before stopping.
    sleep(Duration::from_millis(300)).await;
    stop_tx.send_replace(true);
    let (mut lost, mut duplicated) = (0u64, 0u64);
    for handle in clients {
        let counts = handle.await??;
        lost += counts.iter().filter(|&&c| c == 0).count() as u64;
        duplicated += counts
            .iter()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum::<u64>();
    }
    // Failed pushes are owed by nobody; the counts cover every seq, so take them out.
    lost = lost.saturating_sub(n as u64 * publish_errors);
    sleep(Duration::from_secs(2)).await;
    let deliveries = counters.received.load(Ordering::Relaxed);
    let server_cpu = cpu1.saturating_sub(cpu0);
    Ok(Phase {
        side,
        conns: n,
        round,
        messages: args.messages,
        publish_errors,
        deliveries,
        lost,
        duplicated,
        server_cpu_ms: server_cpu as f64 / 1000.0,
        server_us_per_delivery: server_cpu as f64 / deliveries.max(1) as f64,
        generator_cpu_ms: gen1.saturating_sub(gen0) as f64 / 1000.0,
        machine_idle_pct: match (sys0, sys1) {
            (Some(a), Some(b)) => b.idle_pct_since(&a),
            _ => None,
        },
        drain_ms,
    })
}

/// One client: connect and subscribe (or join), then count each `seq` until stopped.
async fn client(
    addr: SocketAddr,
    side: Side,
    idx: usize,
    messages: u64,
    counters: Arc<Counters>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u32>> {
    let permit = permits.acquire_owned().await?;
    let connected = match side {
        Side::Pusher => subscribe_public(addr, idx).await,
        Side::Native => conn::native_join(addr, idx, "bench").await,
    };
    drop(permit);
    let mut ws = match connected {
        Ok(ws) => ws,
        Err(e) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("client {idx} ({side:?}): {e:#}");
            }
            return Ok(vec![1; messages as usize]);
        }
    };
    counters.ready.fetch_add(1, Ordering::Relaxed);
    let mut counts = vec![0u32; messages as usize];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = conn::next_text(&mut ws) => {
                let Some(text) = frame? else { break };
                let text = text.as_str();
                if !text.contains("bench-event") {
                    continue;
                }
                if let Some(seq) = conn::number_after(text, "seq") {
                    if let Some(c) = counts.get_mut(seq as usize) {
                        *c += 1;
                        counters.received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(counts)
}

/// A Pusher client subscribed to the public channel `bench`.
async fn subscribe_public(addr: SocketAddr, idx: usize) -> Result<Ws> {
    let (mut ws, _socket_id) = conn::pusher_connect(addr, idx).await?;
    conn::pusher_subscribe(&mut ws, conn::subscribe_frame("bench", None)).await?;
    Ok(ws)
}

/// `messages` native pushes to room `bench`, paced at `rate`; returns the failures.
async fn publish(api_url: &str, messages: u64, rate: f64) -> Result<u64> {
    let mut http = HttpConn::to_url(api_url).await?;
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let mut errors = 0;
    for seq in 0..messages {
        tokio::time::sleep_until(next).await;
        next += every;
        let body = serde_json::json!({
            "app": conn::APP, "room": "bench", "event": "bench-event", "data": {"seq": seq},
        });
        match http
            .request(
                Method::POST,
                "/v1/push",
                Some(Bytes::from(body.to_string())),
                None,
            )
            .await
        {
            Ok((status, _)) if status.is_success() => {}
            _ => {
                errors += 1;
                http = HttpConn::to_url(api_url).await?;
            }
        }
    }
    Ok(errors)
}
