//! One client connection over a byte stream, whatever its framing: the task WebSocket and
//! raw TCP connections share. Each transport contributes its [`Wire`] (how client bytes
//! become messages, what a ping and a goodbye look like); everything else is here.
//!
//! One task per connection selects over three things: its outbox (frames to write, or a
//! reason to close), its socket, and one timer (next heartbeat ping, idle deadline or
//! handshake deadline, whichever is first). The timer is reset only when its deadline
//! moves, so a connection that only receives broadcasts touches no shared timer or waiter
//! list per message. Everything queued is written in one vectored write.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use crate::disconnect::Disconnect;
use crate::hub::outbox::{advance_frames, Frame, MAX_WRITE_SLICES};
use crate::hub::Outbox;
use crate::stats::Stats;
use crate::transport::rate::TokenBucket;
use crate::transport::{record_end, ClientHandler, Farewell, Link};

/// A read buffer that empties releases its memory once it has grown past this.
const KEEP_READ_CAPACITY: usize = 4096;
/// How much to ask the socket for when no frame size is known yet.
const READ_CHUNK: usize = 4096;
/// How long to wait for the client to close its side after the server's goodbye.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Most bytes read (and dropped) while waiting for that. A client answers a goodbye with a
/// close frame of a few bytes; one that keeps flooding instead would otherwise have the
/// server read its flood for the whole linger, a core's worth of work per connection.
const CLOSE_LINGER_BYTES: usize = 64 * 1024;

/// Server-wide settings of stream connections.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// A write that cannot finish within this is treated as a slow consumer.
    pub write_timeout: Duration,
}

/// What a [`Wire`] made of the front of the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// One complete text message, for the dialect.
    Text(String),
    /// One complete binary message (WebSocket), for the handler to accept or refuse.
    Binary(Bytes),
    /// Transport traffic to answer with these bytes (a WebSocket pong).
    Reply(Bytes),
    /// Transport traffic that needs no answer (a WebSocket pong or a fragment of a message
    /// still arriving, an empty TCP frame).
    Heard,
    /// The client is closing the connection, for this reason.
    Close(Disconnect),
    /// More bytes are needed: the buffer must hold at least this many to make progress.
    NeedMore(usize),
}

/// A transport's wire format, as far as the shared connection task needs it: the only
/// part of a stream connection that differs between WebSocket and raw TCP.
pub trait Wire: Send {
    /// Take the next frame off the front of `buf`: one per call, whatever it carries, so
    /// each counts against the client's frame rate. Messages over `max_message` bytes are
    /// refused before their payload is buffered; any error closes the connection.
    fn next(&mut self, buf: &mut BytesMut, max_message: usize) -> Result<Next, Disconnect>;

    /// True while a message is partly read across frames (the read buffer is then kept
    /// and grown even when empty).
    fn in_message(&self) -> bool {
        false
    }

    /// The heartbeat the server sends every `heartbeat`.
    fn ping(&self) -> Bytes;

    /// The last frame to send when closing for `reason`; `None` to send nothing at all
    /// (not even what is still queued), as when the client is already gone.
    fn goodbye(&self, reason: &Disconnect) -> Option<Bytes>;

    /// Why the connection ended when the client closed its socket.
    fn end_of_stream(&self) -> Disconnect;
}

/// Run one connection until it ends: open the dialect's side, serve, close with a reason.
/// `buf` holds bytes already read from the client (such as what followed an HTTP upgrade).
pub async fn run<S, W, H>(
    stream: &mut S,
    buf: BytesMut,
    wire: W,
    mut handler: H,
    link: Link,
    settings: StreamSettings,
    stats: Arc<Stats>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    W: Wire,
    H: ClientHandler,
{
    let mut conn = Conn {
        stream,
        buf,
        wire,
        outbox: link.outbox().clone(),
        settings,
        stats,
        batch: Vec::new(),
    };
    let reason = match handler.on_open(&link).await {
        Ok(()) => conn.serve(&mut handler, &link).await,
        Err(reason) => reason,
    };
    record_end(&conn.stats, &reason);
    handler.on_close(&reason).await;
    let farewell = handler.farewell(&reason, &link);
    // On the heap, and only once the connection ends: every live connection's task would
    // otherwise carry room for its goodbye (see `Conn::close`).
    let outbox = conn.outbox.clone();
    Box::pin(conn.close(&reason, farewell)).await;
    outbox.detach_direct();
}

struct Conn<'s, S, W> {
    stream: &'s mut S,
    buf: BytesMut,
    wire: W,
    outbox: Arc<Outbox>,
    settings: StreamSettings,
    stats: Arc<Stats>,
    batch: Vec<Frame>,
}

impl<S: AsyncRead + AsyncWrite + Unpin, W: Wire> Conn<'_, S, W> {
    /// The connection's main loop; returns why it ended.
    async fn serve<H: ClientHandler>(&mut self, handler: &mut H, link: &Link) -> Disconnect {
        let mut liveness = handler.liveness();
        let mut last_heard = Instant::now();
        let mut budget = TokenBucket::full(last_heard);
        let mut next_ping = last_heard + liveness.heartbeat;
        let timer = sleep_until(next_ping);
        tokio::pin!(timer);
        loop {
            let want = loop {
                match self.wire.next(&mut self.buf, liveness.max_message_bytes) {
                    Ok(Next::NeedMore(want)) => break want,
                    Ok(next) => {
                        self.stats.frame_in();
                        // Charged at the time of the read that brought the frame: one clock
                        // reading per read, not per frame.
                        if !budget.spend(liveness.max_frames_per_second, last_heard) {
                            return Disconnect::RATE_LIMITED;
                        }
                        match next {
                            Next::Text(text) => {
                                if let Err(reason) = handler.on_text(&text, link).await {
                                    return reason;
                                }
                                liveness = handler.liveness();
                            }
                            Next::Binary(data) => {
                                if let Err(reason) = handler.on_binary(&data, link).await {
                                    return reason;
                                }
                                liveness = handler.liveness();
                            }
                            Next::Reply(bytes) => {
                                self.outbox.push(bytes);
                            }
                            Next::Close(reason) => return reason,
                            Next::Heard | Next::NeedMore(_) => {}
                        }
                    }
                    Err(reason) => return reason,
                }
            };
            if self.buf.is_empty() && self.buf.capacity() > KEEP_READ_CAPACITY {
                self.buf = BytesMut::new();
            }
            if !self.buf.is_empty() || self.wire.in_message() {
                self.buf
                    .reserve(want.saturating_sub(self.buf.len()).max(READ_CHUNK));
            }
            let idle_deadline = last_heard + liveness.idle_timeout;
            let mut deadline = next_ping.min(idle_deadline);
            for limit in [liveness.handshake_deadline, liveness.credential_expiry]
                .into_iter()
                .flatten()
            {
                deadline = deadline.min(limit);
            }
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = self.outbox.ready() => {
                    if let Err(reason) = self.flush().await {
                        return reason;
                    }
                }
                read = self.stream.read_buf(&mut self.buf) => match read {
                    Ok(0) => return self.wire.end_of_stream(),
                    Err(error) => return Disconnect::ABNORMAL.with_reason(format!("read failed: {error}")),
                    Ok(n) => {
                        self.stats.bytes_in(n);
                        last_heard = Instant::now();
                    }
                },
                _ = &mut timer => {
                    let now = Instant::now();
                    if liveness.handshake_deadline.is_some_and(|d| now >= d) {
                        return Disconnect::HANDSHAKE_TIMEOUT;
                    }
                    if liveness.credential_expiry.is_some_and(|d| now >= d) {
                        return Disconnect::TOKEN_EXPIRED;
                    }
                    if now >= idle_deadline {
                        return Disconnect::IDLE_TIMEOUT;
                    }
                    self.outbox.push(self.wire.ping());
                    next_ping = now + liveness.heartbeat;
                }
            }
        }
    }

    /// Write everything queued, in as few syscalls as the socket allows. An error is the
    /// reason to close: the outbox asked for it, or the socket failed or stalled.
    async fn flush(&mut self) -> Result<(), Disconnect> {
        if let Some(reason) = self.outbox.drain(&mut self.batch) {
            return Err(reason);
        }
        // The write first: it usually completes at once, and then the overflow watch is
        // never registered.
        let written = tokio::select! {
            biased;
            written = timeout(self.settings.write_timeout, write_all_vectored(self.stream, &mut self.batch)) => written,
            _ = self.outbox.overflowed() => return Err(Disconnect::SLOW_CONSUMER),
        };
        match written {
            Ok(Ok(bytes)) => {
                self.outbox.wrote();
                self.stats.bytes_out(bytes);
                Ok(())
            }
            Ok(Err(error)) => {
                Err(Disconnect::ABNORMAL.with_reason(format!("write failed: {error}")))
            }
            Err(_) => Err(Disconnect::SLOW_CONSUMER.with_reason("slow consumer: write timed out")),
        }
    }

    /// Close for `reason`: send what is still queued (unless the client is being cut off
    /// as too slow), `farewell`'s last frame and the wire's goodbye in its words, then wait
    /// briefly for the client to close its side so the goodbye is not lost to a reset.
    async fn close(mut self, reason: &Disconnect, farewell: Farewell) {
        let Some(goodbye) = self.wire.goodbye(&farewell.close) else {
            return;
        };
        if reason.code == Disconnect::SLOW_CONSUMER.code {
            self.batch.clear();
        } else {
            self.outbox.drain(&mut self.batch);
        }
        if let Some(frame) = farewell.last_frame {
            self.batch.push(frame.into());
        }
        self.batch.push(goodbye.into());
        let linger = async {
            let bytes = write_all_vectored(self.stream, &mut self.batch).await?;
            self.stats.bytes_out(bytes);
            self.stream.shutdown().await?;
            let mut sink = [0u8; 512];
            let mut dropped = 0;
            while dropped < CLOSE_LINGER_BYTES {
                match self.stream.read(&mut sink).await? {
                    0 => break,
                    n => dropped += n,
                }
            }
            std::io::Result::Ok(())
        };
        let _ = timeout(CLOSE_LINGER, linger).await;
    }
}

/// Write all of `frames` with vectored writes, emptying the vector. Returns bytes written.
async fn write_all_vectored<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frames: &mut Vec<Frame>,
) -> std::io::Result<usize> {
    let mut total = 0;
    let mut first = 0;
    while first < frames.len() {
        let slices: Vec<IoSlice<'_>> = frames[first..]
            .iter()
            .take(MAX_WRITE_SLICES)
            .map(|f| IoSlice::new(&f.bytes))
            .collect();
        let n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        total += n;
        first += advance_frames(&mut frames[first..], n);
    }
    frames.clear();
    if frames.capacity() > 256 {
        *frames = Vec::new();
    }
    stream.flush().await?;
    Ok(total)
}
