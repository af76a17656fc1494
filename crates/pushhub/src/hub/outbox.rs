//! A connection's bounded send queue (DESIGN.md principle 4).
//!
//! Fan-out pushes already-encoded frames here without waiting; the connection's own task
//! drains everything queued and writes it in one go. When a consumer falls behind past the
//! bounds, the queue stops accepting, drops what it held and asks the connection to close
//! as a slow consumer: one slow client never holds up a publish or grows memory without
//! bound. The same path closes a connection for any other reason (server shutdown, a kick):
//! the connection task only ever waits on its outbox and its socket.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::message::Publication;
use crate::disconnect::Disconnect;
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

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    closing: Option<Disconnect>,
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

    /// Queue `frame`. Returns false when the connection is closing (the frame is dropped);
    /// overflowing the bounds starts closing it as a slow consumer.
    pub fn push(&self, frame: impl Into<Frame>) -> bool {
        let frame = frame.into();
        let mut state = lock(&self.state);
        if state.closing.is_some() {
            return false;
        }
        let over = state.frames.len() >= self.limits.max_messages
            || state.bytes + frame.bytes.len() > self.limits.max_bytes;
        if over {
            state.closing = Some(Disconnect::SLOW_CONSUMER);
            state.frames = VecDeque::new();
            state.bytes = 0;
            drop(state);
            self.ready.notify_one();
            self.cut_off.notify_one();
            return false;
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.bytes.len();
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        true
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

    /// Move every queued frame into `into`, oldest first. Returns the reason to close, once
    /// closing has begun.
    pub fn drain(&self, into: &mut Vec<Frame>) -> Option<Disconnect> {
        let mut state = lock(&self.state);
        state.bytes = 0;
        into.extend(state.frames.drain(..));
        if state.frames.capacity() > 64 {
            state.frames = VecDeque::new();
        }
        state.closing.clone()
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
