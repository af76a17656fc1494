//! The dispatcher of one deployment: reads what its subscriber connection receives and
//! hands it to the hub's events handler, one publication at a time, so each channel's
//! publications arrive in offset order and never two at once.
//!
//! It remembers the last position handed over per channel. A publication right after it
//! goes through; an older one (or a repeat) is dropped; a jump (a publication lost while
//! the connection reconnected) and a stream top above it (from the subscription task's
//! checks) are filled from the stream first. A new epoch (the stream was lost and began
//! again) is followed from its first kept entry: the hub hands the new position on, and
//! clients learn from it that their old offsets mean nothing now.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::stream;
use super::subscriptions::{Note, Op};
use super::Inner;
use crate::engine::{Publication, StreamPosition};

/// Where each subscribed channel stands: the last position handed to the hub.
type Handed = HashMap<Arc<str>, StreamPosition>;

/// The dispatcher of lane `index`, reading `messages` (its subscriber connection's) and
/// `notes` (from its subscription task): runs until `shutdown`.
pub async fn run(
    inner: Arc<Inner>,
    index: usize,
    mut messages: broadcast::Receiver<fred::types::Message>,
    mut notes: mpsc::UnboundedReceiver<Note>,
    shutdown: CancellationToken,
) {
    let mut handed = Handed::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            message = messages.recv() => {
                if !on_message(&inner, index, &mut handed, message).await {
                    return;
                }
            }
            note = notes.recv() => {
                let Some(note) = note else { return };
                // What the connection received before the note was sent (before the
                // answer to a subscribe or unsubscribe) is handled before the note.
                loop {
                    let message = match messages.try_recv() {
                        Ok(message) => Ok(message),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                        Err(TryRecvError::Closed) => Err(RecvError::Closed),
                    };
                    if !on_message(&inner, index, &mut handed, message).await {
                        return;
                    }
                }
                match note {
                    Note::Top(channel, top) => on_top(&inner, index, &mut handed, channel, top).await,
                    Note::Subscribed(channel, top) => on_subscribed(&mut handed, channel, top),
                    Note::Forget(channel) => {
                        handed.remove(&channel);
                    }
                }
            }
        }
    }
}

/// Handle what the subscriber connection gave; false once it is closed for good.
async fn on_message(
    inner: &Inner,
    index: usize,
    handed: &mut Handed,
    message: Result<fred::types::Message, RecvError>,
) -> bool {
    match message {
        Ok(message) => {
            let Some(bytes) = message.value.as_bytes() else {
                return true;
            };
            match serde_json::from_slice::<Publication>(bytes) {
                Ok(publication) => on_live(inner, index, handed, Arc::new(publication)).await,
                Err(error) => {
                    tracing::error!(channel = %message.channel, %error, "unreadable publication dropped")
                }
            }
            true
        }
        Err(RecvError::Lagged(missed)) => {
            tracing::warn!(
                missed,
                "dispatcher fell behind its subscriber connection; reading stream tops"
            );
            inner.lanes[index].send(Op::Check);
            true
        }
        Err(RecvError::Closed) => false,
    }
}

/// A channel newly subscribed, whose top was read after Redis confirmed the subscription:
/// everything up to that top is in the history the hub's connections read after
/// subscribing, so the channel stands there (or further, if a later publication already
/// came).
fn on_subscribed(handed: &mut Handed, channel: Arc<str>, top: StreamPosition) {
    let further = handed
        .get(&channel)
        .is_some_and(|at| at.epoch == top.epoch && at.offset >= top.offset);
    if !further {
        handed.insert(channel, top);
    }
}

/// Hand over `live`: at once when it is the next of its channel, after filling the gap
/// before it when it is not, never when it is not newer than what was handed over.
///
/// Redis sends a channel's publications only while the channel is subscribed there, and
/// an unsubscribe returns once Redis confirmed it; so one arriving after the last local
/// connection left was published before, and is handed over (to no one), as the contract
/// wants, without remembering its position.
async fn on_live(inner: &Inner, index: usize, handed: &mut Handed, live: Arc<Publication>) {
    let channel = &live.channel;
    if !inner.lanes[index].is_subscribed(channel) {
        if let Some(events) = inner.events.get() {
            events.publication(&live);
        }
        return;
    }
    let seen = &live.position;
    let next = match handed.get(channel) {
        None => true,
        Some(at) if at.epoch == seen.epoch => {
            if seen.offset <= at.offset {
                return;
            }
            seen.offset == at.offset + 1
        }
        Some(_) => seen.offset == 1,
    };
    if next {
        hand_over(inner, handed, &live);
    } else {
        fill(inner, handed, channel, Some(&live)).await;
    }
}

/// A top read by the subscription task's check: one above where the channel stands means
/// publications were missed (an idle channel's last message lost in a reconnect): fill
/// them. A channel that does not stand anywhere yet (its first top was not readable)
/// stands at this one.
async fn on_top(
    inner: &Inner,
    index: usize,
    handed: &mut Handed,
    channel: Arc<str>,
    top: StreamPosition,
) {
    if !inner.lanes[index].is_subscribed(&channel) {
        return;
    }
    let behind = match handed.get(&channel) {
        None => {
            handed.insert(channel, top);
            return;
        }
        Some(_) if top.is_empty() => false,
        Some(at) if at.epoch == top.epoch && at.offset > top.offset => {
            let at = at.clone();
            return rewound(inner, handed, channel, &at).await;
        }
        Some(at) => at.epoch != top.epoch || at.offset < top.offset,
    };
    if behind {
        fill(inner, handed, &channel, None).await;
    }
}

/// `channel`'s stream is below what was handed over in the same epoch: it lost its latest
/// publications (a failover to a replica that had not caught up). Its offsets would repeat
/// what clients were already given, and be dropped here as seen, so the stream gets a new
/// epoch (one node does it; the others find it done) and the channel stands at its top in
/// that epoch: clients learn from the new epoch that what they hold cannot be resumed.
async fn rewound(inner: &Inner, handed: &mut Handed, channel: Arc<str>, at: &StreamPosition) {
    match stream::renew_if_rewound(inner, &channel, at).await {
        Ok(now) if !now.is_empty() && now.epoch != at.epoch => {
            tracing::error!(%channel, handed = at.offset, top = now.offset, epoch = %now.epoch, "the stream went back (Redis lost its latest publications); it starts a new epoch");
            handed.insert(channel, now);
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%channel, %error, "a stream that went back keeps its epoch until the next check")
        }
    }
}

/// Read `channel`'s stream after where it stands (from where it was renewed when the
/// stream went back to a new epoch from the one it stands in; from its beginning when the
/// stream is in an unrelated epoch: it was lost and began again) and hand over every entry
/// newer than that, then `live` if the stream is
/// still in its epoch and it is newer still. If Redis cannot be read, nothing moves: the
/// publication is in the stream, and the next check fills it. What the stream no longer
/// keeps (history off or trimmed) cannot be filled: the next publication goes on from
/// there.
async fn fill(
    inner: &Inner,
    handed: &mut Handed,
    channel: &Arc<str>,
    live: Option<&Arc<Publication>>,
) {
    let since = handed
        .get(channel)
        .cloned()
        .unwrap_or_else(StreamPosition::empty);
    let mut snapshot = match stream::read(inner, channel, Some(&since), None).await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::warn!(%channel, %error, "gap not filled yet; filled on the next check");
            return;
        }
    };
    if !snapshot.follows {
        match stream::read(inner, channel, Some(&StreamPosition::empty()), None).await {
            Ok(again) => snapshot = again,
            Err(error) => {
                tracing::warn!(%channel, %error, "gap not filled yet; filled on the next check");
                return;
            }
        }
    }
    for entry in &snapshot.entries {
        if newer(handed.get(channel), &entry.position) {
            hand_over(inner, handed, entry);
        }
    }
    if let Some(live) = live {
        let current = snapshot.top.is_empty() || live.position.epoch == snapshot.top.epoch;
        if current && newer(handed.get(channel), &live.position) {
            hand_over(inner, handed, live);
        }
    }
}

/// True when `position` comes after `at` (a new epoch always does).
fn newer(at: Option<&StreamPosition>, position: &StreamPosition) -> bool {
    at.is_none_or(|at| at.epoch != position.epoch || position.offset > at.offset)
}

/// Give `publication` to the hub and remember where its channel stands.
fn hand_over(inner: &Inner, handed: &mut Handed, publication: &Arc<Publication>) {
    if let Some(events) = inner.events.get() {
        events.publication(publication);
    }
    handed.insert(publication.channel.clone(), publication.position.clone());
}
