//! A connection's bounded send queue (DESIGN.md principle 4).
//!
//! Fan-out pushes already-encoded frames here without waiting; the connection's own task
//! drains everything queued and writes it in one go. When a consumer falls behind past the
//! bounds, the queue stops accepting, drops what it held and asks the connection to close
//! as a slow consumer: one slow client never holds up a publish or grows memory without
//! bound. The same path closes a connection for any other reason (server shutdown, a kick):
//! the connection task only ever waits on its outbox and its socket.
//!
//! A transport whose socket can take bytes without waiting (plain TCP) attaches it as a
//! [`DirectWrite`]. A fan-out then queues with [`Outbox::queue`] while it holds the hub's
//! locks and, once it let go, writes the queue straight into the socket
//! ([`Unsent::write`]); the connection's task is woken only when the socket pushes back,
//! or when the task is itself in the middle of a write. Waking 15,000 tasks to write one
//! frame each costs more than the writes (docs/benchmarks.md, "Re-check 2026-12-05").

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use tokio::sync::Notify;

use crate::disconnect::Disconnect;
use crate::engine::Publication;
use crate::stats::OutboxTally;
use crate::sync::lock;

/// Bounds of one queue.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Most frames waiting at once.
    pub max_messages: usize,
    /// Most bytes waiting at once.
    pub max_bytes: usize,
}

/// One thing to write: its bytes, and the publication they carry if they carry one, for
/// transports whose framing names a position (SSE event ids, long-poll cursors).
#[derive(Debug, Clone)]
pub struct Frame {
    /// Ready-to-write bytes, shared by every connection of the same format.
    pub bytes: Bytes,
    /// The publication rendered into `bytes`, if any.
    pub publication: Option<Arc<Publication>>,
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self {
            bytes,
            publication: None,
        }
    }
}

/// Most frames handed to one vectored write (Linux takes up to 1,024; more than a few
/// dozen small frames per syscall gains nothing).
pub const MAX_WRITE_SLICES: usize = 64;

/// Account for `written` bytes of a vectored write over `frames` (front first): advance
/// the partly written frame and return how many frames at the front are now fully written,
/// empty ones included.
pub fn advance_frames<'a>(
    frames: impl IntoIterator<Item = &'a mut Frame>,
    written: usize,
) -> usize {
    let mut left = written;
    let mut done = 0;
    for frame in frames {
        let take = left.min(frame.bytes.len());
        frame.bytes.advance(take);
        left -= take;
        if !frame.bytes.is_empty() {
            break;
        }
        done += 1;
    }
    done
}

/// A connection's socket, writable without waiting from any thread: how a fan-out writes
/// frames itself instead of waking the connection's task. Only bytes cross it, so the hub
/// stays ignorant of what kind of socket it is.
pub trait DirectWrite: Send + Sync {
    /// Write as much of `frames` as the socket takes now, without waiting. An error (one
    /// that says the socket is full, too) leaves the rest to the connection's task.
    fn try_write_vectored(&self, frames: &[IoSlice<'_>]) -> std::io::Result<usize>;
}

/// What [`Outbox::queue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Not queued: the connection is closing (or just overflowed and is being cut off).
    Refused,
    /// Queued behind frames that someone is already bound to write.
    Behind,
    /// Queued into an empty outbox, and nobody was told: the caller must hand the outbox
    /// to an [`Unsent`].
    First,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    closing: Option<Disconnect>,
    /// The connection's task is writing frames it drained; nobody else may write now.
    writing: bool,
    direct: Option<Arc<dyn DirectWrite>>,
    /// Drops and high-water marks, for the server's metrics (kept here, under the lock
    /// the queue already takes, so fan-out shares no counter across connections).
    tally: OutboxTally,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("frames", &self.frames.len())
            .field("bytes", &self.bytes)
            .field("closing", &self.closing)
            .field("writing", &self.writing)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

impl State {
    /// Write queued frames into `direct` until the queue is empty (true) or the socket
    /// takes no more now (false).
    fn write_direct(&mut self, direct: &dyn DirectWrite) -> bool {
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
            let count = self.frames.len().min(MAX_WRITE_SLICES);
            for (slice, frame) in slices.iter_mut().zip(&self.frames) {
                *slice = IoSlice::new(&frame.bytes);
            }
            let written = match direct.try_write_vectored(&slices[..count]) {
                Ok(0) | Err(_) => return false,
                Ok(written) => written,
            };
            self.bytes = self.bytes.saturating_sub(written);
            let done = advance_frames(self.frames.iter_mut(), written);
            self.frames.drain(..done);
        }
        true
    }
}

/// One connection's queue of frames to write. Many producers, one consumer.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    cut_off: Notify,
    limits: OutboxLimits,
}

impl Outbox {
    /// An empty queue with the given bounds. Costs no heap memory for frames until used.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            cut_off: Notify::new(),
            limits,
        }
    }

    /// Queue `frame` and wake the connection's task to write it. Returns false when the
    /// connection is closing (the frame is dropped); overflowing the bounds starts closing
    /// it as a slow consumer.
    pub fn push(&self, frame: impl Into<Frame>) -> bool {
        match self.queue(frame) {
            Queued::Refused => false,
            Queued::Behind => true,
            Queued::First => {
                self.ready.notify_one();
                true
            }
        }
    }

    /// Queue `frame` without waking anyone, for a fan-out that writes after releasing its
    /// locks; on [`Queued::First`] the outbox must go into the fan-out's [`Unsent`].
    /// Overflowing the bounds starts closing the connection as a slow consumer.
    pub fn queue(&self, frame: impl Into<Frame>) -> Queued {
        let frame = frame.into();
        let mut state = lock(&self.state);
        if state.closing.is_some() {
            state.tally.dropped_closing += 1;
            return Queued::Refused;
        }
        let over = state.frames.len() >= self.limits.max_messages
            || state.bytes + frame.bytes.len() > self.limits.max_bytes;
        if over {
            state.tally.dropped_overflow += state.frames.len() as u64 + 1;
            state.closing = Some(Disconnect::SLOW_CONSUMER);
            state.frames = VecDeque::new();
            state.bytes = 0;
            drop(state);
            self.ready.notify_one();
            self.cut_off.notify_one();
            return Queued::Refused;
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.bytes.len();
        state.frames.push_back(frame);
        let (frames, bytes) = (state.frames.len() as u64, state.bytes as u64);
        let tally = &mut state.tally;
        tally.peak_frames = tally.peak_frames.max(frames);
        tally.peak_bytes = tally.peak_bytes.max(bytes);
        if was_empty {
            Queued::First
        } else {
            Queued::Behind
        }
    }

    /// Write what is queued straight into the attached socket, if there is one, nobody
    /// else is writing and the connection is not closing; wake the connection's task for
    /// whatever is left. The syscall runs under this outbox's lock (it does not wait), so
    /// frames leave in the order they were queued whoever writes them.
    fn write_queued(&self) {
        let mut state = lock(&self.state);
        if state.frames.is_empty() {
            return;
        }
        let mut written = false;
        if !state.writing && state.closing.is_none() {
            if let Some(direct) = state.direct.take() {
                written = state.write_direct(direct.as_ref());
                state.direct = Some(direct);
            }
        }
        drop(state);
        if !written {
            self.ready.notify_one();
        }
    }

    /// Let fan-outs write into `direct` while the connection's task is not writing.
    pub fn attach_direct(&self, direct: Arc<dyn DirectWrite>) {
        lock(&self.state).direct = Some(direct);
    }

    /// The connection is over: let go of its socket, so it closes now rather than when the
    /// last fan-out holding this outbox lets go of it.
    pub fn detach_direct(&self) {
        lock(&self.state).direct = None;
    }

    /// The connection's task finished writing what it drained last.
    pub fn wrote(&self) {
        lock(&self.state).writing = false;
    }

    /// Ask the connection to close with `reason` after writing what is already queued.
    /// The first reason given wins.
    pub fn close(&self, reason: Disconnect) {
        let mut state = lock(&self.state);
        if state.closing.is_none() {
            state.closing = Some(reason);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// What this queue dropped and held at most so far.
    pub fn tally(&self) -> OutboxTally {
        lock(&self.state).tally
    }

    /// Frames and bytes waiting now: the operator's view of a connection's backlog.
    pub fn depth(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.frames.len(), state.bytes)
    }

    /// The bounds this queue was made with.
    pub fn limits(&self) -> OutboxLimits {
        self.limits
    }

    /// Wait until something was queued, or closing began, since the last drain.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Wait until the queue overflows: lets a connection blocked in a long write notice
    /// that it is being cut off without waiting for the write to finish.
    pub async fn overflowed(&self) {
        self.cut_off.notified().await
    }

    /// Move every queued frame into `into`, oldest first, for the connection's task to
    /// write: fan-outs queue behind them until it calls [`Outbox::wrote`]. Returns the
    /// reason to close, once closing has begun.
    pub fn drain(&self, into: &mut Vec<Frame>) -> Option<Disconnect> {
        let mut state = lock(&self.state);
        state.bytes = 0;
        state.writing = true;
        into.extend(state.frames.drain(..));
        if state.frames.capacity() > 64 {
            state.frames = VecDeque::new();
        }
        state.closing.clone()
    }
}

/// Outboxes a fan-out gave a frame with [`Outbox::queue`] and told nobody about: it
/// collects them while holding the hub's locks and writes for them once it let go.
/// Dropped unwritten (a fan-out that failed half way), it wakes their connections, so a
/// queued frame is never left without someone bound to write it.
#[derive(Default)]
pub struct Unsent(Vec<Arc<Outbox>>);

impl Unsent {
    /// Remember `outbox`, which [`Outbox::queue`] answered [`Queued::First`] for.
    pub fn add(&mut self, outbox: Arc<Outbox>) {
        self.0.push(outbox);
    }

    /// How many outboxes wait.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The last `count` outboxes, taken out to be written elsewhere.
    pub fn split_last(&mut self, count: usize) -> Unsent {
        let at = self.0.len().saturating_sub(count);
        Unsent(self.0.split_off(at))
    }

    /// Write each outbox's frames into its socket where that can be done without waiting;
    /// wake the connection's task for the others.
    pub fn write(mut self) {
        for outbox in self.0.drain(..) {
            outbox.write_queued();
        }
    }
}

impl Drop for Unsent {
    fn drop(&mut self) {
        for outbox in self.0.drain(..) {
            outbox.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(max_messages: usize, max_bytes: usize) -> Outbox {
        Outbox::new(OutboxLimits {
            max_messages,
            max_bytes,
        })
    }

    #[test]
    fn drains_in_order() {
        let q = outbox(10, 100);
        assert!(q.push(Bytes::from_static(b"a")));
        assert!(q.push(Bytes::from_static(b"b")));
        let mut out = Vec::new();
        assert_eq!(q.drain(&mut out), None);
        let bytes: Vec<Bytes> = out.iter().map(|f| f.bytes.clone()).collect();
        assert_eq!(bytes, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        out.clear();
        assert_eq!(q.drain(&mut out), None);
        assert!(out.is_empty());
    }

    #[test]
    fn overflow_by_count_and_by_bytes_is_sticky_and_drops_the_backlog() {
        let q = outbox(2, 100);
        assert!(q.push(Bytes::from_static(b"a")));
        assert!(q.push(Bytes::from_static(b"b")));
        assert!(!q.push(Bytes::from_static(b"c")));
        let mut out = Vec::new();
        assert_eq!(q.drain(&mut out), Some(Disconnect::SLOW_CONSUMER));
        assert!(out.is_empty());
        let q = outbox(10, 3);
        assert!(q.push(Bytes::from_static(b"ab")));
        assert!(!q.push(Bytes::from_static(b"cd")));
        assert!(!q.push(Bytes::from_static(b"")));
    }

    #[test]
    fn close_keeps_what_was_queued_and_refuses_more() {
        let q = outbox(10, 100);
        assert!(q.push(Bytes::from_static(b"last words")));
        q.close(Disconnect::SHUTDOWN);
        q.close(Disconnect::IDLE_TIMEOUT);
        assert!(!q.push(Bytes::from_static(b"too late")));
        let mut out = Vec::new();
        assert_eq!(q.drain(&mut out), Some(Disconnect::SHUTDOWN));
        assert_eq!(out[0].bytes, Bytes::from_static(b"last words"));
    }

    /// An outbox (10 frames, `max_bytes`) attached to one end of a real socket pair, and
    /// the other end for the test to read.
    fn attached(max_bytes: usize) -> (Arc<Outbox>, std::os::unix::net::UnixStream) {
        let (writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        writer.set_nonblocking(true).unwrap();
        reader.set_nonblocking(true).unwrap();
        let q = Arc::new(outbox(10, max_bytes));
        q.attach_direct(Arc::new(writer));
        (q, reader)
    }

    impl DirectWrite for std::os::unix::net::UnixStream {
        fn try_write_vectored(&self, frames: &[IoSlice<'_>]) -> std::io::Result<usize> {
            std::io::Write::write_vectored(&mut &*self, frames)
        }
    }

    /// Everything readable on `reader` now.
    fn read_now(mut reader: &std::os::unix::net::UnixStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            match std::io::Read::read(&mut reader, &mut chunk) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return all,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Whether the connection's task was woken (and, if so, consume the wake-up).
    async fn woken(q: &Outbox) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(20), q.ready())
            .await
            .is_ok()
    }

    fn queue_first(q: &Arc<Outbox>, unsent: &mut Unsent, bytes: &'static [u8]) {
        assert_eq!(q.queue(Bytes::from_static(bytes)), Queued::First);
        unsent.add(q.clone());
    }

    #[tokio::test]
    async fn a_fan_out_writes_into_an_attached_socket_without_waking_the_task() {
        let (q, reader) = attached(100);
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, b"one ");
        assert_eq!(q.queue(Bytes::from_static(b"two")), Queued::Behind);
        unsent.write();
        assert_eq!(read_now(&reader), b"one two");
        assert!(!woken(&q).await);
        let mut out = Vec::new();
        assert_eq!(q.drain(&mut out), None);
        assert!(out.is_empty(), "nothing left for the task");
    }

    #[tokio::test]
    async fn what_a_full_socket_does_not_take_is_left_to_the_task_in_order() {
        let big: &'static [u8] = Box::leak(vec![7u8; 4 << 20].into_boxed_slice());
        let (q, reader) = attached(8 << 20);
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, big);
        assert_eq!(q.queue(Bytes::from_static(b"tail")), Queued::Behind);
        unsent.write();
        assert!(
            woken(&q).await,
            "the socket pushed back: the task must finish"
        );
        let mut written = read_now(&reader);
        assert!(!written.is_empty() && written.len() < big.len());
        let mut out = Vec::new();
        assert_eq!(q.drain(&mut out), None);
        for frame in &out {
            written.extend_from_slice(&frame.bytes);
        }
        let mut expected = big.to_vec();
        expected.extend_from_slice(b"tail");
        assert!(written == expected, "every byte once, in order");
    }

    #[tokio::test]
    async fn a_task_in_the_middle_of_a_write_keeps_fan_outs_out() {
        let (q, reader) = attached(100);
        assert!(q.push(Bytes::from_static(b"ping ")));
        assert!(woken(&q).await);
        let mut task_batch = Vec::new();
        q.drain(&mut task_batch);
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, b"msg");
        unsent.write();
        assert!(read_now(&reader).is_empty(), "the task's batch goes first");
        assert!(woken(&q).await, "the task writes what queued behind it");
        q.wrote();
        let mut out = Vec::new();
        q.drain(&mut out);
        assert_eq!(out.len(), 1);
        q.wrote();
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, b"next");
        unsent.write();
        assert_eq!(
            read_now(&reader),
            b"next",
            "after the task's write, fan-outs write"
        );
    }

    #[tokio::test]
    async fn closing_or_detached_outboxes_are_left_to_the_task() {
        let (q, reader) = attached(100);
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, b"last words");
        q.close(Disconnect::SHUTDOWN);
        assert!(woken(&q).await);
        unsent.write();
        assert!(read_now(&reader).is_empty());

        let (q, reader) = attached(100);
        q.detach_direct();
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, b"x");
        unsent.write();
        assert!(read_now(&reader).is_empty());
        assert!(woken(&q).await);
    }

    #[tokio::test]
    async fn an_unsent_dropped_unwritten_wakes_its_connections() {
        let q = Arc::new(outbox(10, 100));
        let mut unsent = Unsent::default();
        queue_first(&q, &mut unsent, b"x");
        assert!(!woken(&q).await, "queue alone tells nobody");
        let share = unsent.split_last(1);
        assert!(unsent.is_empty() && share.len() == 1);
        drop(share);
        assert!(woken(&q).await);
    }

    #[tokio::test]
    async fn push_and_close_wake_the_consumer() {
        let q = std::sync::Arc::new(outbox(10, 100));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move {
                q.ready().await;
                let mut out = Vec::new();
                q.drain(&mut out);
                q.ready().await;
                (out.len(), q.drain(&mut out))
            }
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from_static(b"x"));
        tokio::task::yield_now().await;
        q.close(Disconnect::SHUTDOWN);
        assert_eq!(waiter.await.unwrap(), (1, Some(Disconnect::SHUTDOWN)));
    }
}
