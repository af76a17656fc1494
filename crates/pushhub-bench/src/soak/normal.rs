//! Well-behaved clients that resume, and the publisher whose every accepted push they
//! are owed.
//!
//! Each client is a native WebSocket connection as user `n{i}`. It keeps its cursor as
//! a real client does (the welcome's, advanced by each `msg`) and reconnects with
//! `since=` after: its own random reconnect (every 20–60 s, half of them abrupt TCP
//! drops), a reconnect storm (every client at once), or the server closing it. Every
//! message it receives is entered in the [`Ledger`]; its latency is recorded when it
//! arrived live (published after the connection was accepted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use hyper::Method;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::ledger::Ledger;
use super::phase::Phase;
use crate::clock::unix_micros;
use crate::cursor::{Cursor, Step};
use crate::hist::LatencyHist;
use crate::http::HttpConn;

/// Counters of the resuming clients, shared by all of them.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Connections accepted (first ones and resumes).
    pub connects: AtomicU64,
    /// Connect attempts that failed (refused, handshake error, no welcome in time).
    pub connect_errors: AtomicU64,
    /// Resumes whose welcome said `recovered:false`.
    pub not_recovered: AtomicU64,
    /// Connections the server ended (not the client).
    pub closed_by_server: AtomicU64,
    /// Messages whose offset skipped one in their channel.
    pub offset_gaps: AtomicU64,
    /// Messages at or below an offset already seen.
    pub offset_stale: AtomicU64,
    /// Frames that were not the JSON the protocol promises.
    pub malformed: AtomicU64,
}

/// What the clients share.
pub struct ClientContext {
    /// `ws://HOST:PORT/v1/ws`.
    pub ws_url: String,
    /// The app every soak client uses.
    pub app: String,
    /// Owed and received messages.
    pub ledger: Arc<Ledger>,
    /// Counters.
    pub counters: ClientCounters,
    /// Clients that have had their first welcome.
    pub ready: AtomicU64,
    /// Random reconnects happen every `reconnect_min..reconnect_max` per client.
    pub reconnect_min: Duration,
    /// See `reconnect_min`.
    pub reconnect_max: Duration,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    ch: Option<&'a str>,
    #[serde(default, borrow)]
    epoch: Option<&'a str>,
    #[serde(default)]
    off: Option<u64>,
    #[serde(default)]
    data: Option<Stamp>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    recovered: Option<bool>,
}

/// What the publisher puts in every message's data.
#[derive(Deserialize)]
struct Stamp {
    /// Global sequence number.
    s: u64,
    /// When it was published, microseconds since the Unix epoch.
    t: u64,
}

/// Why a connection ended.
enum Ended {
    /// The client chose to reconnect.
    Reconnect,
    /// The server closed it or it broke.
    ByServer,
    /// The soak is over.
    Done,
}

/// One client, until the phase is `Done`; returns its live-delivery latencies.
pub async fn run_client(
    ctx: Arc<ClientContext>,
    index: usize,
    mut phase: watch::Receiver<Phase>,
    mut storms: watch::Receiver<u64>,
) -> LatencyHist {
    let mut hist = LatencyHist::new();
    let mut cursor: Option<Cursor> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *phase.borrow() == Phase::Done {
            return hist;
        }
        let mut url = format!("{}?app={}&user=n{index}", ctx.ws_url, ctx.app);
        if let Some(c) = &cursor {
            url.push_str("&since=");
            url.extend(form_urlencoded::byte_serialize(c.to_string().as_bytes()));
        }
        let resuming = cursor.is_some();
        let ws = match timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        {
            Ok(Ok((ws, _))) => ws,
            _ => {
                ctx.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                sleep(backoff + jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let ended = serve(
            &ctx,
            index,
            ws,
            &mut cursor,
            resuming,
            &mut hist,
            &mut phase,
            &mut storms,
        )
        .await;
        match ended {
            Ended::Done => return hist,
            Ended::ByServer => {
                ctx.counters
                    .closed_by_server
                    .fetch_add(1, Ordering::Relaxed);
                sleep(jitter(Duration::from_millis(500))).await;
            }
            Ended::Reconnect => {}
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection: the welcome, then messages until it ends.
#[allow(clippy::too_many_arguments)]
async fn serve(
    ctx: &ClientContext,
    index: usize,
    mut ws: Ws,
    cursor: &mut Option<Cursor>,
    resuming: bool,
    hist: &mut LatencyHist,
    phase: &mut watch::Receiver<Phase>,
    storms: &mut watch::Receiver<u64>,
) -> Ended {
    let accepted_at = unix_micros();
    let welcome = match timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text,
        _ => {
            ctx.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
            return Ended::ByServer;
        }
    };
    match serde_json::from_str::<Frame>(&welcome) {
        Ok(f) if f.kind == "welcome" => {
            if resuming && f.recovered == Some(false) {
                ctx.counters.not_recovered.fetch_add(1, Ordering::Relaxed);
            }
            match f.cursor.as_deref().map(Cursor::parse) {
                Some(Ok(c)) => *cursor = Some(c),
                _ => {
                    ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    return Ended::ByServer;
                }
            }
        }
        _ => {
            ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return Ended::ByServer;
        }
    }
    ctx.counters.connects.fetch_add(1, Ordering::Relaxed);
    if !resuming {
        ctx.ready.fetch_add(1, Ordering::Relaxed);
    }
    storms.borrow_and_update();
    let span = ctx.reconnect_max.saturating_sub(ctx.reconnect_min);
    let reconnect_at = Instant::now() + ctx.reconnect_min + jitter(span);
    let abrupt = fastrand::bool();
    let view = phase.clone();
    let chaos = || *view.borrow() == Phase::Chaos;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    record(ctx, index, &text, cursor, accepted_at, hist);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ended::ByServer,
            },
            _ = sleep_until_chaos(reconnect_at, &view) => {
                leave(ws, abrupt).await;
                return Ended::Reconnect;
            }
            changed = storms.changed() => {
                if changed.is_ok() && chaos() {
                    leave(ws, true).await;
                    sleep(jitter(Duration::from_secs(2))).await;
                    return Ended::Reconnect;
                }
            }
            _ = super::phase::reached(phase, Phase::Done) => {
                let _ = ws.close(None).await;
                return Ended::Done;
            }
        }
    }
}

/// Sleeps until `at` and returns only while the soak is in its chaos phase.
async fn sleep_until_chaos(at: Instant, phase: &watch::Receiver<Phase>) {
    tokio::time::sleep_until(at).await;
    if *phase.borrow() != Phase::Chaos {
        std::future::pending::<()>().await;
    }
}

/// Closes politely, or drops the TCP connection as a phone losing signal does.
async fn leave(mut ws: Ws, abrupt: bool) {
    if !abrupt {
        let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
    }
}

/// Enters one `msg` frame in the ledger and the cursor.
fn record(
    ctx: &ClientContext,
    index: usize,
    text: &str,
    cursor: &mut Option<Cursor>,
    accepted_at: u64,
    hist: &mut LatencyHist,
) {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if frame.kind != "msg" {
        return;
    }
    let (Some(ch), Some(epoch), Some(off), Some(stamp)) =
        (frame.ch, frame.epoch, frame.off, frame.data)
    else {
        ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if let Some(c) = cursor {
        match c.advance(ch, epoch, off) {
            Step::Gap => {
                ctx.counters.offset_gaps.fetch_add(1, Ordering::Relaxed);
            }
            Step::Stale => {
                ctx.counters.offset_stale.fetch_add(1, Ordering::Relaxed);
            }
            Step::Next | Step::NewEpoch | Step::NewChannel => {}
        }
    }
    ctx.ledger.receive(index, stamp.s);
    if stamp.t >= accepted_at {
        hist.record(unix_micros().saturating_sub(stamp.t));
    }
}

/// A random duration below `max`.
pub fn jitter(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(if ms == 0 { 0 } else { fastrand::u64(0..ms) })
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct PublishCounters {
    /// Pushes the server accepted.
    pub accepted: AtomicU64,
    /// Pushes answered with anything but 2xx, or not answered.
    pub failed: AtomicU64,
}

/// Publishes unicasts to random users and broadcasts to everyone at the given rates
/// while the phase is `Chaos`, entering every accepted push in the ledger.
pub async fn publish(
    api_url: &str,
    app: &str,
    ledger: Arc<Ledger>,
    counters: Arc<PublishCounters>,
    unicast_rate: f64,
    broadcast_rate: f64,
    mut phase: watch::Receiver<Phase>,
) -> Result<()> {
    let (addr, authority) = super::api_addr(api_url)?;
    let mut conn = HttpConn::connect(addr, &authority).await?;
    let start = Instant::now();
    let (mut unicasts, mut broadcasts, mut seq) = (0u64, 0u64, 0u64);
    let users = ledger.users();
    while *phase.borrow() == Phase::Chaos {
        let elapsed = start.elapsed().as_secs_f64();
        let due_unicasts = (elapsed * unicast_rate) as u64;
        let due_broadcasts = (elapsed * broadcast_rate) as u64;
        if unicasts >= due_unicasts && broadcasts >= due_broadcasts {
            tokio::select! {
                _ = sleep(Duration::from_millis(5)) => {}
                _ = super::phase::left(&mut phase, Phase::Chaos) => {}
            }
            continue;
        }
        let (to, user) = if broadcasts < due_broadcasts {
            broadcasts += 1;
            ("*".to_string(), None)
        } else {
            unicasts += 1;
            let user = fastrand::usize(0..users);
            (format!("n{user}"), Some(user))
        };
        let body = serde_json::json!({
            "app": app, "to": to, "event": "soak",
            "data": {"s": seq, "t": unix_micros()},
        });
        let body = Bytes::from(body.to_string());
        let answer = conn
            .request(Method::POST, "/v1/push", Some(body), None)
            .await;
        match answer {
            Ok((status, _)) if status.is_success() => {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                match user {
                    Some(u) => ledger.owe_unicast(u, seq),
                    None => ledger.owe_broadcast(seq),
                }
            }
            Ok(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                conn = HttpConn::connect(addr, &authority)
                    .await
                    .context("reconnecting the publisher")?;
            }
        }
        seq += 1;
    }
    Ok(())
}
