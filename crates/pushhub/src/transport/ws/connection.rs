//! One WebSocket connection's task: read client frames, write queued frames, keep the
//! heartbeat, and close with a reason.
//!
//! One task per connection selects over three things: its outbox (frames to write, or a
//! reason to close), its socket, and one timer (next heartbeat ping or idle deadline,
//! whichever is first). The timer is reset only when its deadline moves, so a connection
//! that only receives broadcasts touches no shared timer or waiter list per message.
//! Everything queued is written in one vectored write.

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use super::codec::{self, FrameReader, Inbound, Step};
use super::WS_FRAMER;
use crate::disconnect::Disconnect;
use crate::hub::outbox::Frame;
use crate::hub::Outbox;
use crate::stats::Stats;
use crate::transport::{ClientHandler, Link};

/// A read buffer that empties releases its memory once it has grown past this.
const KEEP_READ_CAPACITY: usize = 4096;
/// How much to ask the socket for when no frame size is known yet.
const READ_CHUNK: usize = 4096;
/// How long to wait for the client's side of the close handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Server-wide settings of WebSocket connections.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// A write that cannot finish within this is treated as a slow consumer.
    pub write_timeout: Duration,
}

/// Run one connection until it ends. `leftover` is what the HTTP layer had already read
/// past the handshake.
pub async fn run<S, H>(
    mut stream: S,
    leftover: Bytes,
    mut handler: H,
    outbox: Arc<Outbox>,
    settings: WsSettings,
    stats: Arc<Stats>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: ClientHandler,
{
    let link = Link::new(outbox.clone(), &WS_FRAMER);
    // Copy, then release: `leftover` may be a view into the HTTP layer's whole read buffer.
    let buf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let mut conn = Conn {
        stream: &mut stream,
        buf,
        reader: FrameReader::new(),
        outbox,
        settings,
        stats,
        batch: Vec::new(),
    };
    let reason = match handler.on_open(&link).await {
        Ok(()) => conn.serve(&mut handler, &link).await,
        Err(reason) => reason,
    };
    if reason.code == Disconnect::SLOW_CONSUMER.code {
        conn.stats.slow_consumer();
        tracing::info!(code = reason.code, %reason, "closing slow consumer");
    } else {
        tracing::debug!(code = reason.code, %reason, "closing connection");
    }
    handler.on_close(&reason).await;
    conn.close(&reason).await;
}

struct Conn<'s, S> {
    stream: &'s mut S,
    buf: BytesMut,
    reader: FrameReader,
    outbox: Arc<Outbox>,
    settings: WsSettings,
    stats: Arc<Stats>,
    batch: Vec<Frame>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    /// The connection's main loop; returns why it ended.
    async fn serve<H: ClientHandler>(&mut self, handler: &mut H, link: &Link) -> Disconnect {
        let mut liveness = handler.liveness();
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + liveness.heartbeat;
        let timer = sleep_until(next_ping);
        tokio::pin!(timer);
        loop {
            let want = loop {
                match self.reader.next(&mut self.buf, liveness.max_message_bytes) {
                    Ok(Step::Frame(frame)) => {
                        self.stats.frame_in();
                        match frame {
                            Inbound::Text(text) => {
                                if let Err(reason) = handler.on_text(&text, link).await {
                                    return reason;
                                }
                                liveness = handler.liveness();
                            }
                            Inbound::Ping(payload) => {
                                self.outbox.push(codec::pong_frame(&payload));
                            }
                            Inbound::Pong => {}
                            Inbound::Close(code) => {
                                return match code {
                                    None | Some(1000) | Some(1001) => Disconnect::NORMAL,
                                    Some(code) => Disconnect::new(code, "closed by client"),
                                };
                            }
                        }
                    }
                    Ok(Step::NeedMore(want)) => break want,
                    Err(reason) => return reason,
                }
            };
            if self.buf.is_empty() && self.buf.capacity() > KEEP_READ_CAPACITY {
                self.buf = BytesMut::new();
            }
            if !self.buf.is_empty() || self.reader.in_message() {
                self.buf
                    .reserve(want.saturating_sub(self.buf.len()).max(READ_CHUNK));
            }
            let idle_deadline = last_heard + liveness.idle_timeout;
            let mut deadline = next_ping.min(idle_deadline);
            if let Some(handshake) = liveness.handshake_deadline {
                deadline = deadline.min(handshake);
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
                    Ok(0) => return Disconnect::ABNORMAL.with_reason("client closed the socket without a close frame"),
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
                    if now >= idle_deadline {
                        return Disconnect::IDLE_TIMEOUT;
                    }
                    self.outbox.push(codec::ping_frame());
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
        let written = tokio::select! {
            written = timeout(self.settings.write_timeout, write_all_vectored(self.stream, &mut self.batch)) => written,
            _ = self.outbox.overflowed() => return Err(Disconnect::SLOW_CONSUMER),
        };
        match written {
            Ok(Ok(bytes)) => {
                self.stats.bytes_out(bytes);
                Ok(())
            }
            Ok(Err(error)) => {
                Err(Disconnect::ABNORMAL.with_reason(format!("write failed: {error}")))
            }
            Err(_) => Err(Disconnect::SLOW_CONSUMER.with_reason("slow consumer: write timed out")),
        }
    }

    /// Send what is still queued (unless the client is being cut off as too slow) and a
    /// close frame, then wait briefly for the client to close its side so the close frame
    /// is not lost to a reset.
    async fn close(mut self, reason: &Disconnect) {
        if reason.code == Disconnect::ABNORMAL.code {
            return;
        }
        if reason.code == Disconnect::SLOW_CONSUMER.code {
            self.batch.clear();
        } else {
            self.outbox.drain(&mut self.batch);
        }
        self.batch
            .push(codec::close_frame(reason.code, &reason.reason).into());
        let linger = async {
            let bytes = write_all_vectored(self.stream, &mut self.batch).await?;
            self.stats.bytes_out(bytes);
            self.stream.shutdown().await?;
            let mut sink = [0u8; 512];
            while self.stream.read(&mut sink).await? > 0 {}
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
    const MAX_SLICES: usize = 64;
    let mut total = 0;
    let mut first = 0;
    while first < frames.len() {
        let slices: Vec<IoSlice<'_>> = frames[first..]
            .iter()
            .take(MAX_SLICES)
            .map(|f| IoSlice::new(&f.bytes))
            .collect();
        let mut n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        total += n;
        while n > 0 {
            let frame = &mut frames[first].bytes;
            let take = n.min(frame.len());
            frame.advance(take);
            n -= take;
            if frame.is_empty() {
                first += 1;
            }
        }
        while first < frames.len() && frames[first].bytes.is_empty() {
            first += 1;
        }
    }
    frames.clear();
    if frames.capacity() > 256 {
        *frames = Vec::new();
    }
    stream.flush().await?;
    Ok(total)
}
