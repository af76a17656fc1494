//! Reading an attached client's outbox as a sequence of frames, keeping the client's
//! cursor: the transport-side half of SSE event ids and long-poll cursors.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::{sleep_until, Instant};

use crate::disconnect::Disconnect;
use crate::hub::outbox::Frame;
use crate::hub::{Cursor, Outbox};

/// What [`Feed::next`] found.
#[derive(Debug)]
pub enum Next {
    /// A frame to write. `moved` is true when it carried a publication, i.e. the cursor
    /// now includes it.
    Frame {
        /// The bytes to write.
        bytes: Bytes,
        /// Whether the cursor advanced.
        moved: bool,
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
                let moved = match &frame.publication {
                    Some(publication) => {
                        self.cursor
                            .set(publication.channel.clone(), publication.position.clone());
                        true
                    }
                    None => false,
                };
                return Next::Frame {
                    bytes: frame.bytes,
                    moved,
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
