//! Long-poll: one HTTP request waits for messages, answers with what arrived and the
//! cursor to pass next time, so consecutive polls lose nothing between them.
//!
//! A waiting poll is a connection like any other: attached to the hub, counted in stats
//! and presence, closed by shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::connections::Connections;
use super::feed::{Feed, Next};
use super::{ClientHandler, Link, RAW_FRAMER};
use crate::disconnect::Disconnect;
use crate::hub::{Cursor, Outbox};

/// What one poll collected.
#[derive(Debug)]
pub struct Polled {
    /// Each message's payload, oldest first.
    pub messages: Vec<Bytes>,
    /// The cursor after the last message (the client's position if none arrived).
    pub cursor: Cursor,
    /// False when the client asked to resume and some channel could not be.
    pub recovered: bool,
}

/// Attach `handler`'s client, wait up to `wait` for a first message, then take whatever
/// else is already queued, up to `max` messages. A refusal is returned as the reason.
pub async fn poll<H: ClientHandler>(
    mut handler: H,
    headers: &axum::http::HeaderMap,
    address: Option<IpAddr>,
    outbox: Arc<Outbox>,
    connections: &Connections,
    wait: Duration,
    max: usize,
) -> Result<Polled, Disconnect> {
    let _registration = connections.register(&outbox, address)?;
    let link = Link::new(outbox.clone(), &RAW_FRAMER)
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
    let reason = loop {
        if messages.len() >= max {
            break Disconnect::NORMAL;
        }
        match feed.next(deadline).await {
            Next::Frame { bytes, moved: true } => {
                messages.push(bytes);
                deadline = Instant::now();
            }
            Next::Frame { moved: false, .. } => {}
            Next::Timeout => break Disconnect::NORMAL,
            Next::Closed(reason) => break reason,
        }
    };
    handler.on_close(&reason).await;
    Ok(Polled {
        messages,
        cursor: feed.cursor().clone(),
        recovered: start.recovered,
    })
}
