//! A connection's bounded send queue (DESIGN.md principle 4).
//!
//! Fan-out pushes already-encoded frames here without waiting; the connection's own task
//! drains everything queued and writes it in one go. When a consumer falls behind past the
//! bounds, the queue stops accepting and reports overflow so the connection is closed with
//! a reason: one slow client never holds up a publish or grows memory without bound.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::engine::memory::lock;

/// Bounds of one queue.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Most frames waiting at once.
    pub max_messages: usize,
    /// Most bytes waiting at once.
    pub max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    overflowed: bool,
}

/// One connection's queue of frames to write. Many producers, one consumer.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    overflow: Notify,
    limits: OutboxLimits,
}

/// Why [`Outbox::drain`] returned nothing more to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflowed;

impl Outbox {
    /// An empty queue with the given bounds. Costs no heap memory for frames until used.
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            overflow: Notify::new(),
            limits,
        }
    }

    /// Queue `frame`. Returns false when the queue has overflowed (now or earlier); the
    /// frame is then dropped and the consumer is woken to close the connection.
    pub fn push(&self, frame: Bytes) -> bool {
        let mut state = lock(&self.state);
        if state.overflowed {
            return false;
        }
        let over = state.frames.len() >= self.limits.max_messages
            || state.bytes + frame.len() > self.limits.max_bytes;
        if over {
            state.overflowed = true;
            state.frames.clear();
            state.bytes = 0;
            drop(state);
            self.ready.notify_one();
            self.overflow.notify_one();
            return false;
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Wait until something was queued (or the queue overflowed) since the last drain.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Wait until the queue overflows: lets a connection blocked in a long write notice
    /// that it is being cut off without waiting for the write to finish.
    pub async fn overflowed(&self) {
        self.overflow.notified().await
    }

    /// Move every queued frame into `into`, oldest first.
    pub fn drain(&self, into: &mut Vec<Bytes>) -> Result<(), Overflowed> {
        let mut state = lock(&self.state);
        if state.overflowed {
            return Err(Overflowed);
        }
        state.bytes = 0;
        into.extend(state.frames.drain(..));
        if state.frames.capacity() > 64 {
            state.frames = VecDeque::new();
        }
        Ok(())
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
        q.drain(&mut out).unwrap();
        assert_eq!(out, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        out.clear();
        q.drain(&mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn overflow_by_count_and_by_bytes_is_sticky() {
        let q = outbox(2, 100);
        assert!(q.push(Bytes::from_static(b"a")));
        assert!(q.push(Bytes::from_static(b"b")));
        assert!(!q.push(Bytes::from_static(b"c")));
        assert_eq!(q.drain(&mut Vec::new()), Err(Overflowed));
        let q = outbox(10, 3);
        assert!(q.push(Bytes::from_static(b"ab")));
        assert!(!q.push(Bytes::from_static(b"cd")));
        assert!(!q.push(Bytes::from_static(b"")));
    }

    #[tokio::test]
    async fn push_wakes_the_consumer() {
        let q = std::sync::Arc::new(outbox(10, 100));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move {
                q.ready().await;
                let mut out = Vec::new();
                q.drain(&mut out).unwrap();
                out.len()
            }
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from_static(b"x"));
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
