//! The worker side of the `resume` scenario.
//!
//! Every client connects, keeps its cursor (the welcome's `cursor`, moved by each
//! `msg` frame), and then follows the parent's phase commands on stdin:
//!
//! 1. live: receive the warm-up broadcasts (`Complete` once all arrived);
//! 2. [`DISCONNECT`]: close the connection (close frame, or drop the TCP
//!    connection with `--abrupt`); `Disconnected` once all are closed;
//! 3. [`RECONNECT`]: connect again with `since=<cursor>` (same concurrency gate as
//!    the first connect); `Resumed` once every reconnect settled, `Recovered` once
//!    every reconnected client has all missed messages;
//! 4. [`STOP`]: report, including the per-client recovery times.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::connect::{connect_client, source_addr, ConnectPolicy, Connected, WsStream};
use super::{emit, WorkerArgs};
use crate::clock::unix_micros;
use crate::cursor::Cursor;
use crate::hist::LatencyHist;
use crate::ipc::{
    DisconnectInfo, ReadyInfo, WorkerEvent, WorkerReport, DISCONNECT, RECONNECT, STOP,
};
use crate::plan::{user_name, Mode, Plan};
use crate::resume_tally::{ClientTrack, ResumeReport, ResumeTally};
use crate::seq::SeqTally;
use crate::target::WsTarget;

/// Where the parent has moved the worker to; only ever increases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Live,
    Disconnect,
    Reconnect,
    Stop,
}

/// Settings and counters shared by the worker's clients.
struct Ctx {
    target: WsTarget,
    app: String,
    plan: Plan,
    warmup: u64,
    missed: u64,
    src_addrs: u8,
    abrupt: bool,
    gate: Semaphore,
    /// Publish → receive latency of live (warm-up) messages, µs.
    hist: Mutex<LatencyHist>,
    /// Per client: first reconnect attempt → every missed message, µs.
    recovery: Mutex<LatencyHist>,
    first_attempt_us: AtomicU64,
    last_recovered_us: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    malformed: AtomicU64,
}

/// What a client tells the worker's main loop.
#[derive(Debug)]
enum Event {
    /// A connect (`phase` 1) or reconnect (`phase` 2) settled.
    Connected {
        phase: u8,
        secs: f64,
        result: Result<u32, String>,
    },
    /// The client has every warm-up message.
    WarmupDone,
    /// The client's first connection is closed.
    Closed,
    /// The reconnected client has every missed message.
    Recovered,
}

/// The fields of a `msg` frame the resume client needs.
#[derive(Deserialize)]
struct MsgFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    ch: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    off: Option<u64>,
    #[serde(default)]
    data: Option<Probe>,
}

/// The publisher's payload.
#[derive(Deserialize)]
struct Probe {
    seq: u64,
    t: u64,
}

/// One client's state over both of its connections.
struct ClientState {
    track: ClientTrack,
    cursor: Cursor,
    /// Wall clock of the first reconnect attempt, once reconnecting.
    attempt_us: Option<u64>,
    /// The client already reported `Recovered`.
    recovered_sent: bool,
}

impl ClientState {
    /// Accounts for one text frame.
    fn on_text(&mut self, text: &str, ctx: &Ctx, events: &mpsc::UnboundedSender<Event>) {
        let now = unix_micros();
        let frame = match serde_json::from_str::<MsgFrame>(text) {
            Ok(f) if f.kind == "msg" => f,
            Ok(_) => return,
            Err(_) => {
                ctx.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let (Some(probe), Some(ch), Some(epoch), Some(off)) =
            (frame.data, frame.ch, frame.epoch, frame.off)
        else {
            ctx.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        ctx.first_us.fetch_min(now, Ordering::Relaxed);
        ctx.last_us.fetch_max(now, Ordering::Relaxed);
        let step = self.cursor.advance(&ch, &epoch, off);
        if self.attempt_us.is_some() {
            self.track.record_step(step);
        } else if let Ok(mut h) = ctx.hist.lock() {
            h.record(now.saturating_sub(probe.t));
        }
        let r = self.track.record(probe.seq);
        if r.warmup_done {
            let _ = events.send(Event::WarmupDone);
        }
        if r.missed_done {
            self.maybe_recovered(now, ctx, events);
        }
    }

    /// Reports recovery once the client is reconnected and has every missed message.
    fn maybe_recovered(&mut self, now: u64, ctx: &Ctx, events: &mpsc::UnboundedSender<Event>) {
        let Some(attempt) = self.attempt_us else {
            return;
        };
        if self.recovered_sent || !self.track.missed_complete() {
            return;
        }
        self.recovered_sent = true;
        if let Ok(mut h) = ctx.recovery.lock() {
            h.record(now.saturating_sub(attempt));
        }
        ctx.last_recovered_us.fetch_max(now, Ordering::Relaxed);
        let _ = events.send(Event::Recovered);
    }
}

/// What a client hands back when stopped.
struct ClientDone {
    tally: SeqTally,
    resume: ResumeTally,
    /// Connections the server ended without being asked to.
    disconnects: u64,
}

/// Waits until the phase is at least `target`; a vanished sender counts as [`Phase::Stop`].
async fn wait_phase(phase: &mut watch::Receiver<Phase>, target: Phase) -> Phase {
    loop {
        let now = *phase.borrow_and_update();
        if now >= target {
            return now;
        }
        if phase.changed().await.is_err() {
            return Phase::Stop;
        }
    }
}

/// Close code pushhub sends after one part of a replay too large for one connection:
/// "reconnect at once from your new position" (docs/protocol.md).
const CLOSE_REPLAY_MORE: u16 = 4005;

/// Why [`read_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The phase reached the target.
    Phase,
    /// The connection ended (with the close frame's code, if there was one).
    Closed(Option<u16>),
}

/// Reads frames until the phase reaches `until` or the connection ends.
async fn read_until(
    ws: &mut WsStream,
    phase: &mut watch::Receiver<Phase>,
    until: Phase,
    st: &mut ClientState,
    ctx: &Ctx,
    events: &mpsc::UnboundedSender<Event>,
) -> End {
    loop {
        let msg = tokio::select! {
            _ = wait_phase(phase, until) => return End::Phase,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => st.on_text(text.as_str(), ctx, events),
            Some(Ok(Message::Close(frame))) => {
                return End::Closed(frame.map(|f| u16::from(f.code)));
            }
            Some(Err(_)) | None => return End::Closed(None),
            Some(Ok(_)) => {}
        }
    }
}

/// Closes the connection: a close frame and the server's answer (at most 5 s), or,
/// with `abrupt`, just the TCP connection.
async fn close(
    mut ws: WsStream,
    st: &mut ClientState,
    ctx: &Ctx,
    events: &mpsc::UnboundedSender<Event>,
) {
    if ctx.abrupt {
        drop(ws);
        return;
    }
    if ws.close(None).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(text) = msg {
                st.on_text(text.as_str(), ctx, events);
            }
        }
    })
    .await;
}

/// One connect through the worker's gate; returns the result and its duration.
async fn gated_connect(
    ctx: &Ctx,
    url: &str,
    src: Option<Ipv4Addr>,
    attempt_us: Option<&mut u64>,
) -> (Result<Connected>, f64) {
    let _permit = ctx.gate.acquire().await.ok();
    if let Some(a) = attempt_us {
        *a = unix_micros();
        ctx.first_attempt_us.fetch_min(*a, Ordering::Relaxed);
    }
    let t = Instant::now();
    let c = connect_client(&ctx.target, url, src, ConnectPolicy::default()).await;
    (c, t.elapsed().as_secs_f64())
}

/// One simulated client through all phases.
async fn client(
    user: u64,
    ctx: Arc<Ctx>,
    events: mpsc::UnboundedSender<Event>,
    mut phase: watch::Receiver<Phase>,
) -> Option<ClientDone> {
    let name = user_name(user);
    let src = source_addr(user, ctx.src_addrs);
    let url = ctx.target.client_url(&ctx.app, &name);
    let (first, secs) = gated_connect(&ctx, &url, src, None).await;
    let c = match first {
        Ok(c) => {
            let result = Ok(c.attempts);
            let _ = events.send(Event::Connected {
                phase: 1,
                secs,
                result,
            });
            c
        }
        Err(e) => {
            let result = Err(format!("{e:#}"));
            let _ = events.send(Event::Connected {
                phase: 1,
                secs,
                result,
            });
            return None;
        }
    };
    let cursor = match c.welcome.cursor.as_deref().map(Cursor::parse) {
        Some(Ok(cursor)) => cursor,
        Some(Err(_)) => {
            ctx.malformed.fetch_add(1, Ordering::Relaxed);
            Cursor::default()
        }
        None => Cursor::default(),
    };
    let mut st = ClientState {
        track: ClientTrack::new(ctx.warmup, ctx.missed),
        cursor,
        attempt_us: None,
        recovered_sent: false,
    };
    if st.track.warmup_complete() {
        let _ = events.send(Event::WarmupDone);
    }
    let mut disconnects = 0;
    let mut ws = c.ws;
    let live = read_until(
        &mut ws,
        &mut phase,
        Phase::Disconnect,
        &mut st,
        &ctx,
        &events,
    )
    .await;
    if live == End::Phase {
        close(ws, &mut st, &ctx, &events).await;
    } else {
        disconnects += 1;
        drop(ws);
        wait_phase(&mut phase, Phase::Disconnect).await;
    }
    let _ = events.send(Event::Closed);

    let mut replay_parts = 0;
    let done = |st: &ClientState, resumed, disconnects, replay_parts| {
        let r = st.track.finish(user, &ctx.plan, resumed);
        Some(ClientDone {
            tally: r.tally,
            resume: ResumeTally {
                replay_parts,
                ..r.resume
            },
            disconnects,
        })
    };
    if wait_phase(&mut phase, Phase::Reconnect).await >= Phase::Stop {
        return done(&st, None, disconnects, 0);
    }
    let since = st.cursor.to_string();
    let url = ctx
        .target
        .resume_url(&ctx.app, &name, (!st.cursor.is_empty()).then_some(&since));
    let mut attempt_us = 0;
    let (second, secs) = tokio::select! {
        r = gated_connect(&ctx, &url, src, Some(&mut attempt_us)) => r,
        _ = wait_phase(&mut phase, Phase::Stop) => return done(&st, None, disconnects, 0),
    };
    let (mut ws, mut flag) = match second {
        Ok(c) => {
            let _ = events.send(Event::Connected {
                phase: 2,
                secs,
                result: Ok(c.attempts),
            });
            st.attempt_us = Some(attempt_us);
            // Nothing to replay (M = 0), or it all arrived before the disconnect.
            st.maybe_recovered(unix_micros(), &ctx, &events);
            (c.ws, c.welcome.recovered)
        }
        Err(e) => {
            let _ = events.send(Event::Connected {
                phase: 2,
                secs,
                result: Err(format!("{e:#}")),
            });
            return done(&st, None, disconnects, 0);
        }
    };
    loop {
        match read_until(&mut ws, &mut phase, Phase::Stop, &mut st, &ctx, &events).await {
            End::Phase => break,
            End::Closed(Some(CLOSE_REPLAY_MORE)) => {
                // The server replays a large gap in parts: reconnect at once from the
                // cursor as it stands now, like a real client.
                let since = st.cursor.to_string();
                let url = ctx.target.resume_url(&ctx.app, &name, Some(&since));
                let next = tokio::select! {
                    r = gated_connect(&ctx, &url, src, None) => r.0,
                    _ = wait_phase(&mut phase, Phase::Stop) => break,
                };
                match next {
                    Ok(c) => {
                        replay_parts += 1;
                        if c.welcome.recovered == Some(false) {
                            flag = Some(false);
                        }
                        ws = c.ws;
                        st.maybe_recovered(unix_micros(), &ctx, &events);
                    }
                    Err(_) => {
                        disconnects += 1;
                        break;
                    }
                }
            }
            End::Closed(_) => {
                disconnects += 1;
                break;
            }
        }
    }
    done(&st, Some(flag), disconnects, replay_parts)
}

/// The worker's view of its clients' progress, and which events it already sent.
#[derive(Debug, Default)]
struct Progress {
    clients: u64,
    first: ReadyInfo,
    settled1: u64,
    warm_done: u64,
    closed: u64,
    second: ReadyInfo,
    settled2: u64,
    recovered: u64,
    disconnect_at: Option<Instant>,
    reconnect_at: Option<Instant>,
    sent_ready: bool,
    sent_complete: bool,
    sent_disconnected: bool,
    sent_resumed: bool,
    sent_recovered: bool,
}

/// Adds one settled connect to `info`.
fn settle(info: &mut ReadyInfo, secs: f64, result: Result<u32, String>) {
    info.slowest_client_secs = info.slowest_client_secs.max(secs);
    match result {
        Ok(attempts) => {
            info.connected += 1;
            info.retries += u64::from(attempts.saturating_sub(1));
        }
        Err(e) => {
            info.failed += 1;
            info.first_error.get_or_insert(e);
        }
    }
}

impl Progress {
    fn new(clients: u64) -> Self {
        Self {
            clients,
            ..Self::default()
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Connected {
                phase: 1,
                secs,
                result,
            } => {
                self.settled1 += 1;
                settle(&mut self.first, secs, result);
            }
            Event::Connected { secs, result, .. } => {
                self.settled2 += 1;
                settle(&mut self.second, secs, result);
            }
            Event::WarmupDone => self.warm_done += 1,
            Event::Closed => self.closed += 1,
            Event::Recovered => self.recovered += 1,
        }
    }

    /// Events that became due, in protocol order.
    fn due(&mut self, started: Instant) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        if !self.sent_ready && self.settled1 >= self.clients {
            self.sent_ready = true;
            out.push(WorkerEvent::Ready(ReadyInfo {
                connect_secs: started.elapsed().as_secs_f64(),
                ..self.first.clone()
            }));
        }
        let connected = self.first.connected;
        if self.sent_ready && !self.sent_complete && self.warm_done >= connected {
            self.sent_complete = true;
            out.push(WorkerEvent::Complete);
        }
        if let Some(at) = self.disconnect_at {
            if self.sent_ready && !self.sent_disconnected && self.closed >= connected {
                self.sent_disconnected = true;
                out.push(WorkerEvent::Disconnected(DisconnectInfo {
                    closed: self.closed,
                    secs: at.elapsed().as_secs_f64(),
                }));
            }
        }
        if let Some(at) = self.reconnect_at {
            if self.sent_ready && !self.sent_resumed && self.settled2 >= connected {
                self.sent_resumed = true;
                out.push(WorkerEvent::Resumed(ReadyInfo {
                    connect_secs: at.elapsed().as_secs_f64(),
                    ..self.second.clone()
                }));
            }
        }
        if self.sent_resumed && !self.sent_recovered && self.recovered >= self.second.connected {
            self.sent_recovered = true;
            out.push(WorkerEvent::Recovered);
        }
        out
    }
}

/// Runs the resume worker until the parent says stop (or closes stdin).
pub async fn run(args: WorkerArgs) -> Result<()> {
    let started = Instant::now();
    let warmup = args.warmup.min(args.messages);
    let ctx = Arc::new(Ctx {
        target: WsTarget::resolve(&args.ws_url).await?,
        app: args.app.clone(),
        plan: Plan {
            mode: Mode::Resume,
            conns: args.total_conns,
            messages: args.messages,
        },
        warmup,
        missed: args.messages - warmup,
        src_addrs: args.src_addrs,
        abrupt: args.abrupt,
        gate: Semaphore::new(args.concurrency.max(1)),
        hist: Mutex::new(LatencyHist::new()),
        recovery: Mutex::new(LatencyHist::new()),
        first_attempt_us: AtomicU64::new(u64::MAX),
        last_recovered_us: AtomicU64::new(0),
        first_us: AtomicU64::new(u64::MAX),
        last_us: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Live);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut tasks: JoinSet<Option<ClientDone>> = JoinSet::new();
    for user in args.user_start..args.user_end {
        tasks.spawn(client(user, ctx.clone(), ev_tx.clone(), phase_rx.clone()));
    }
    drop(ev_tx);

    let mut progress = Progress::new(args.user_end.saturating_sub(args.user_start));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut events_open = true;
    loop {
        for event in progress.due(started) {
            emit(&event)?;
        }
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(l)) => match l.trim() {
                    DISCONNECT => {
                        progress.disconnect_at.get_or_insert_with(Instant::now);
                        phase_tx.send_if_modified(|p| advance(p, Phase::Disconnect));
                    }
                    RECONNECT => {
                        progress.reconnect_at.get_or_insert_with(Instant::now);
                        phase_tx.send_if_modified(|p| advance(p, Phase::Reconnect));
                    }
                    STOP => break,
                    _ => {}
                },
                _ => break,
            },
            event = ev_rx.recv(), if events_open => match event {
                Some(e) => progress.apply(e),
                None => events_open = false,
            },
        }
    }

    let _ = phase_tx.send(Phase::Stop);
    let report = final_report(&mut tasks, &ctx).await?;
    emit(&WorkerEvent::Report(Box::new(report)))?;
    Ok(())
}

/// Moves `phase` forward to `to` (never back); true if it changed.
fn advance(phase: &mut Phase, to: Phase) -> bool {
    if *phase < to {
        *phase = to;
        true
    } else {
        false
    }
}

/// Waits for every client (at most 10 s) and sums their accounting.
async fn final_report(tasks: &mut JoinSet<Option<ClientDone>>, ctx: &Ctx) -> Result<WorkerReport> {
    let mut tally = SeqTally::default();
    let mut resume = ResumeTally::default();
    let mut disconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(Some(done)) = joined {
            tally.merge(&done.tally);
            resume.merge(&done.resume);
            disconnects += done.disconnects;
        }
    }
    tasks.abort_all();
    let hist = ctx.hist.lock().map(|h| h.clone()).unwrap_or_default();
    let recovery = ctx.recovery.lock().map(|h| h.clone()).unwrap_or_default();
    let opt_min = |v: u64| (v != u64::MAX).then_some(v);
    let opt_max = |v: u64| (v != 0).then_some(v);
    Ok(WorkerReport {
        tally,
        hist_b64: hist.encode()?,
        first_delivery_us: opt_min(ctx.first_us.load(Ordering::Acquire)),
        last_delivery_us: opt_max(ctx.last_us.load(Ordering::Acquire)),
        disconnects,
        malformed: ctx.malformed.load(Ordering::Acquire),
        resume: Some(ResumeReport {
            tally: resume,
            recovery_hist_b64: recovery.encode()?,
            first_attempt_us: opt_min(ctx.first_attempt_us.load(Ordering::Acquire)),
            last_recovered_us: opt_max(ctx.last_recovered_us.load(Ordering::Acquire)),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(phase: u8, ok: bool) -> Event {
        Event::Connected {
            phase,
            secs: 0.5,
            result: if ok { Ok(2) } else { Err("refused".into()) },
        }
    }

    fn kinds(events: &[WorkerEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                WorkerEvent::Ready(_) => "ready",
                WorkerEvent::Complete => "complete",
                WorkerEvent::Disconnected(_) => "disconnected",
                WorkerEvent::Resumed(_) => "resumed",
                WorkerEvent::Recovered => "recovered",
                WorkerEvent::Report(_) => "report",
            })
            .collect()
    }

    #[test]
    fn phases_are_announced_in_order_once() {
        let t = Instant::now();
        let mut p = Progress::new(3);
        p.apply(connected(1, true));
        p.apply(Event::WarmupDone);
        p.apply(connected(1, true));
        assert!(p.due(t).is_empty());
        p.apply(connected(1, false));
        let first = p.due(t);
        assert_eq!(kinds(&first), ["ready"]);
        let WorkerEvent::Ready(r) = &first[0] else {
            unreachable!()
        };
        assert_eq!((r.connected, r.failed, r.retries), (2, 1, 2));
        p.apply(Event::WarmupDone);
        assert_eq!(kinds(&p.due(t)), ["complete"]);
        // Closes before the command do not announce anything.
        p.apply(Event::Closed);
        p.apply(Event::Closed);
        assert!(p.due(t).is_empty());
        p.disconnect_at = Some(Instant::now());
        assert_eq!(kinds(&p.due(t)), ["disconnected"]);
        p.reconnect_at = Some(Instant::now());
        p.apply(connected(2, true));
        p.apply(Event::Recovered);
        assert!(p.due(t).is_empty());
        p.apply(connected(2, false));
        // One reconnected client, and it recovered.
        assert_eq!(kinds(&p.due(t)), ["resumed", "recovered"]);
        assert!(p.due(t).is_empty());
    }

    #[test]
    fn phase_only_moves_forward() {
        let mut p = Phase::Reconnect;
        assert!(!advance(&mut p, Phase::Disconnect));
        assert_eq!(p, Phase::Reconnect);
        assert!(advance(&mut p, Phase::Stop));
    }

    #[test]
    fn msg_frame_fields() {
        let f: MsgFrame = serde_json::from_str(
            r#"{"type":"msg","ch":"demo:all","epoch":"k0x","off":3,"id":"1-1","event":"bench","data":{"seq":5,"t":17},"ts":1}"#,
        )
        .unwrap();
        assert_eq!(f.ch.as_deref(), Some("demo:all"));
        assert_eq!(f.epoch.as_deref(), Some("k0x"));
        assert_eq!(f.off, Some(3));
        assert_eq!(f.data.map(|p| (p.seq, p.t)), Some((5, 17)));
    }
}
