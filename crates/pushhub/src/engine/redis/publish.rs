//! Publishing: one script call per channel (offset, epoch, stream append and trim, expiry
//! and the pub/sub publish in one atomic step), all channels of one call sent together so
//! fred pipelines them. Nothing here depends on how many recipients or nodes there are.

use std::sync::Arc;

use futures_util::future::try_join_all;

use super::Inner;
use crate::engine::{EngineError, HistoryPolicy, Message, StreamPosition};

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
        let keys = inner.keys.channel(channel);
        let command = if inner.lanes[lane].sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let args = vec![
            command.to_owned(),
            serde_json::Value::String(channel.to_string()).to_string(),
            text.clone(),
            epoch.clone(),
            size.to_string(),
            ttl_ms.to_string(),
            keep_ms.to_string(),
        ];
        async move {
            let reply = inner
                .publish
                .run_once(
                    inner.client(lane),
                    vec![keys.meta, keys.stream, keys.pubsub],
                    args,
                )
                .await
                .map_err(|error| inner.unavailable(lane, &error))?;
            position(reply).ok_or_else(|| {
                EngineError::Unavailable(format!("{}: unexpected publish reply", inner.url(lane)))
            })
        }
    }))
    .await
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
