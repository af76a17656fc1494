//! Publishing: one script call per channel (offset, epoch, stream append and trim, expiry
//! and the pub/sub publish in one atomic step), all channels of one call sent together so
//! fred pipelines them. Nothing here depends on how many recipients or nodes there are.

use std::sync::Arc;

use fred::interfaces::PubsubInterface;
use fred::types::Value;
use futures_util::future::try_join_all;

use super::scripts::pubsub_payload;
use super::Inner;
use crate::engine::{EngineError, HistoryPolicy, Message, StreamPosition};
use crate::redis::ConfirmError;

/// How long a channel without history keeps its epoch and offset after its last publish
/// (as in the memory engine).
const IDLE_WITHOUT_HISTORY_MS: u128 = 300_000;

/// Publish `message` to each of `channels`; positions in the order of `channels`.
pub async fn publish(
    inner: &Inner,
    channels: &[Arc<str>],
    message: &Message,
    history: HistoryPolicy,
) -> Result<Vec<StreamPosition>, EngineError> {
    let text = serde_json::to_string(message)
        .map_err(|error| EngineError::Unavailable(format!("message not serializable: {error}")))?;
    let (size, ttl_ms, keep_ms) = if history.is_off() {
        (0, 0, IDLE_WITHOUT_HISTORY_MS)
    } else {
        let ttl = history.ttl.as_millis().max(1);
        (history.size, ttl, ttl)
    };
    let epoch = new_epoch();
    try_join_all(channels.iter().map(|channel| {
        let lane = inner.lane_of(channel);
        let replicas = &inner.connections.shards()[lane].replicas;
        let keys = inner.keys.channel(channel);
        let command = match (replicas.required(), inner.lanes[lane].sharded) {
            (true, _) => "",
            (false, true) => "SPUBLISH",
            (false, false) => "PUBLISH",
        };
        let channel_json = serde_json::Value::String(channel.to_string()).to_string();
        let args = vec![
            command.to_owned(),
            channel_json.clone(),
            text.clone(),
            epoch.clone(),
            size.to_string(),
            ttl_ms.to_string(),
            keep_ms.to_string(),
        ];
        let text = &text;
        async move {
            // One connection for the script and, when replicas must hold it, the wait:
            // `WAIT` confirms what its own connection wrote.
            let wanted = replicas
                .ready()
                .map_err(|error| unconfirmed(inner, lane, &error))?;
            let client = inner.client(lane);
            let reply = inner
                .publish
                .run_once(
                    client,
                    vec![keys.meta.clone(), keys.stream, keys.pubsub.clone()],
                    args,
                )
                .await
                .map_err(|error| inner.unavailable(lane, &error))?;
            let position = position(reply).ok_or_else(|| {
                EngineError::Unavailable(format!("{}: unexpected publish reply", inner.url(lane)))
            })?;
            if replicas.required() {
                replicas
                    .confirm(client, &keys.meta, wanted)
                    .await
                    .map_err(|error| unconfirmed(inner, lane, &error))?;
                let payload =
                    pubsub_payload(&channel_json, &position.epoch, position.offset, text);
                let sent = if inner.lanes[lane].sharded {
                    client.spublish::<Value, _, _>(keys.pubsub, payload).await
                } else {
                    client.publish::<Value, _, _>(keys.pubsub, payload).await
                };
                if let Err(error) = sent {
                    // The entry is in the stream and on the replicas: every node finds it
                    // on its next gap check, so the publish stands.
                    tracing::warn!(%channel, %error, "a confirmed publish reaches other nodes on their next stream check");
                }
            }
            Ok(position)
        }
    }))
    .await
}

/// A publish refused for its replicas, as the engine reports it. One refused before it
/// was written (the master has too few replicas) is gone; one that waited in vain is in
/// the master's stream, so it may still reach clients if that master stays, but a
/// failover now could lose it, so it is not reported as accepted.
fn unconfirmed(inner: &Inner, lane: usize, error: &ConfirmError) -> EngineError {
    let consequence = match error {
        ConfirmError::TooFewReplicas { .. } => "",
        _ => "; it may still be delivered, but a failover could lose it",
    };
    EngineError::Unavailable(format!(
        "redis {}: the publish was not confirmed by a replica ({error}){consequence}",
        inner.url(lane)
    ))
}

/// `{epoch, offset}` as the publish script returns it.
fn position(reply: fred::types::Value) -> Option<StreamPosition> {
    let mut parts = reply.into_array().into_iter();
    let epoch = parts.next()?.as_string()?;
    let offset = parts.next()?.as_u64()?;
    Some(StreamPosition {
        epoch: epoch.into(),
        offset,
    })
}

/// A new random epoch name, used only if the stream is new or was lost: short, URL-safe,
/// unlikely to repeat.
pub fn new_epoch() -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| alphabet[fastrand::usize(..alphabet.len())] as char)
        .collect()
}
