//! Long-poll: one HTTP request waits for messages, answers with what arrived and the
//! cursor to pass next time, so consecutive polls lose nothing between them.
//!
//! A waiting poll is a connection like any other: attached to the hub, counted in stats
//! and presence, closed by shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::connections::Connections;
use super::feed::{Carries, Feed, Next};
use super::{ClientHandler, Link, Peer, RAW_FRAMER};
use crate::disconnect::Disconnect;
use crate::hub::{Cursor, Outbox};
use crate::stats::Stats;

/// What one poll collected.
#[derive(Debug)]
pub struct Polled {
    /// Each message's payload, oldest first.
    pub messages: Vec<Bytes>,
    /// The cursor after the last message (the client's position if none arrived).
    pub cursor: Cursor,
    /// False when the client asked to resume and some channel could not be.
    pub recovered: bool,
    /// Why the server cut the poll short (a kick, an upgrade's 1012, shutdown); `None`
    /// when it ended as polls do (a message arrived, or the wait ran out).
    pub closed: Option<Disconnect>,
}

/// Attach `handler`'s client, wait up to `wait` for a first message, then take whatever
/// else is already queued, up to `max` messages. A refusal is returned as the reason; a
/// poll cut short (a slow consumer, shutdown) answers what it has, and is logged and
/// counted in `stats` like any connection's end.
#[allow(clippy::too_many_arguments)]
pub async fn poll<H: ClientHandler>(
    mut handler: H,
    headers: &axum::http::HeaderMap,
    peer: Peer,
    outbox: Arc<Outbox>,
    connections: &Connections,
    stats: &Stats,
    wait: Duration,
    max: usize,
) -> Result<Polled, Disconnect> {
    let _registration = connections.register(&outbox, peer.ip())?;
    let link = Link::new(outbox.clone(), &RAW_FRAMER, peer)
        .with_replay_limit(max)
        .with_request_headers(headers);
    if let Err(reason) = handler.on_open(&link).await {
        handler.on_close(&reason).await;
        return Err(reason);
    }
    let Some(start) = link.stream_start() else {
        handler.on_close(&Disconnect::BAD_REQUEST).await;
        return Err(Disconnect::BAD_REQUEST.with_reason("the client was not attached"));
    };
    let mut feed = Feed::new(outbox, start.cursor);
    let mut messages = Vec::new();
    let mut deadline = Instant::now() + wait;
    let mut closed = None;
    let reason = loop {
        if messages.len() >= max {
            break Disconnect::NORMAL;
        }
        match feed.next(deadline).await {
            Next::Frame {
                bytes,
                carries: Carries::Stream | Carries::Live,
            } => {
                messages.push(bytes);
                deadline = Instant::now();
            }
            Next::Frame {
                carries: Carries::Control,
                ..
            } => {}
            Next::Timeout => break Disconnect::NORMAL,
            Next::Closed(reason) => {
                super::record_end(stats, &reason);
                closed = Some(reason.clone());
                break reason;
            }
        }
    };
    handler.on_close(&reason).await;
    Ok(Polled {
        messages,
        cursor: feed.cursor().clone(),
        recovered: start.recovered,
        closed,
    })
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::hub::OutboxLimits;
    use crate::transport::{Liveness, StreamStart};

    /// Attaches, then is sent more than its queue holds before the poll reads anything:
    /// what a burst of publications does to a poll on a busy server.
    struct Flooded;

    #[async_trait]
    impl ClientHandler for Flooded {
        async fn on_open(&mut self, link: &Link) -> Result<(), Disconnect> {
            link.attached(StreamStart {
                cursor: Cursor::default(),
                recovered: true,
            });
            for _ in 0..3 {
                link.send_text(b"{}");
            }
            Ok(())
        }

        async fn on_text(&mut self, _text: &str, _link: &Link) -> Result<(), Disconnect> {
            Ok(())
        }

        fn liveness(&self) -> Liveness {
            Liveness {
                heartbeat: Duration::from_secs(25),
                idle_timeout: Duration::from_secs(60),
                max_message_bytes: 1024,
                handshake_deadline: None,
                max_frames_per_second: 0,
                credential_expiry: None,
            }
        }

        async fn on_close(&mut self, _reason: &Disconnect) {}
    }

    #[tokio::test]
    async fn a_poll_cut_off_as_a_slow_consumer_is_counted() {
        let stats = Stats::default();
        let outbox = Arc::new(Outbox::new(OutboxLimits {
            max_messages: 2,
            max_bytes: 1024,
        }));
        let polled = poll(
            Flooded,
            &axum::http::HeaderMap::new(),
            Peer::new(None, None),
            outbox,
            &Connections::default(),
            &stats,
            Duration::from_secs(5),
            100,
        )
        .await
        .expect("the poll answers");
        assert!(
            polled.messages.is_empty(),
            "the overflowed queue was dropped"
        );
        assert_eq!(stats.snapshot().slow_consumers, 1);
        assert_eq!(polled.closed, Some(Disconnect::SLOW_CONSUMER));
    }
}
