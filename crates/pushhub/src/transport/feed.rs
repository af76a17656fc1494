//! Reading an attached client's outbox as a sequence of frames, keeping the client's
//! cursor: the transport-side half of SSE event ids and long-poll cursors.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::{sleep_until, Instant};

use crate::disconnect::Disconnect;
use crate::hub::outbox::Frame;
use crate::hub::{Cursor, Outbox};

/// What a frame read from the outbox carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// A publication of a channel stream: the cursor now includes it.
    Stream,
    /// A live-only message (a push to one connection): nothing to resume, the cursor
    /// stays where it was.
    Live,
    /// No message: a greeting, a reply, a ping.
    Control,
}

/// What [`Feed::next`] found.
#[derive(Debug)]
pub enum Next {
    /// A frame to write.
    Frame {
        /// The bytes to write.
        bytes: Bytes,
        /// What it carries.
        carries: Carries,
    },
    /// Nothing arrived before the deadline.
    Timeout,
    /// The connection is closing for this reason; everything queued was returned first.
    Closed(Disconnect),
}

/// An outbox read frame by frame, with the cursor after the last frame read.
pub struct Feed {
    outbox: Arc<Outbox>,
    cursor: Cursor,
    pending: std::vec::IntoIter<Frame>,
    closing: Option<Disconnect>,
}

impl Feed {
    /// Read `outbox`, starting from the client's position `start`.
    pub fn new(outbox: Arc<Outbox>, start: Cursor) -> Self {
        Self {
            outbox,
            cursor: start,
            pending: Vec::new().into_iter(),
            closing: None,
        }
    }

    /// The client's position after everything returned so far.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The next frame, waiting until `deadline` at most.
    pub async fn next(&mut self, deadline: Instant) -> Next {
        loop {
            if let Some(frame) = self.pending.next() {
                let carries = match &frame.publication {
                    // A push to one connection sits at the empty position: no stream
                    // holds it.
                    Some(publication) if publication.position.is_empty() => Carries::Live,
                    Some(publication) => {
                        self.cursor
                            .set(publication.channel.clone(), publication.position.clone());
                        Carries::Stream
                    }
                    None => Carries::Control,
                };
                return Next::Frame {
                    bytes: frame.bytes,
                    carries,
                };
            }
            if let Some(reason) = self.closing.take() {
                return Next::Closed(reason);
            }
            let mut drained = Vec::new();
            self.closing = self.outbox.drain(&mut drained);
            if !drained.is_empty() || self.closing.is_some() {
                self.pending = drained.into_iter();
                continue;
            }
            tokio::select! {
                _ = self.outbox.ready() => {}
                _ = sleep_until(deadline) => return Next::Timeout,
            }
        }
    }
}
