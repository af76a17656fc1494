//! Reading a channel's stream: its top and the entries after a position, in one script
//! call, for history requests and for the dispatcher's gap fills.

use std::sync::Arc;

use fred::types::Value;

use super::Inner;
use crate::engine::{EngineError, Message, Publication, Recovery, StreamPosition};

/// What one read of a channel found.
#[derive(Debug)]
pub struct Snapshot {
    /// The stream's top (the empty position when it does not exist).
    pub top: StreamPosition,
    /// Offset of the oldest entry kept; 0 when none is.
    pub oldest: u64,
    /// True when the entries follow the position read from: it was in the stream's epoch,
    /// or in the epoch the stream was renewed from. False for another epoch (no entries).
    pub follows: bool,
    /// Entries after the position read from, oldest first.
    pub entries: Vec<Arc<Publication>>,
}

/// Read `channel` after `since` (the top only when `None`), at most `limit` entries.
pub async fn read(
    inner: &Inner,
    channel: &Arc<str>,
    since: Option<&StreamPosition>,
    limit: Option<usize>,
) -> Result<Snapshot, EngineError> {
    let lane = inner.lane_of(channel);
    let keys = inner.keys.channel(channel);
    let (entries, epoch, offset) = match since {
        Some(since) => ("1", since.epoch.to_string(), since.offset),
        None => ("0", String::new(), 0),
    };
    let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let args = vec![
        entries.to_owned(),
        epoch,
        offset.to_string(),
        limit.to_string(),
    ];
    let reply = inner
        .read
        .run(inner.client(lane), vec![keys.meta, keys.stream], args)
        .await
        .map_err(|error| inner.unavailable(lane, &error))?;
    parse(channel, reply).ok_or_else(|| {
        EngineError::Unavailable(format!("{}: unexpected read reply", inner.url(lane)))
    })
}

/// Give `channel`'s stream a new epoch if it went back below `handed` (see the renew
/// script); its position afterwards.
pub async fn renew_if_rewound(
    inner: &Inner,
    channel: &Arc<str>,
    handed: &StreamPosition,
) -> Result<StreamPosition, EngineError> {
    let lane = inner.lane_of(channel);
    let keys = inner.keys.channel(channel);
    let args = vec![
        handed.epoch.to_string(),
        handed.offset.to_string(),
        super::publish::new_epoch(),
    ];
    let reply = inner
        .renew
        .run(inner.client(lane), vec![keys.meta, keys.stream], args)
        .await
        .map_err(|error| inner.unavailable(lane, &error))?;
    let mut parts = reply.into_array().into_iter();
    let epoch = parts.next().and_then(|v| v.as_string()).unwrap_or_default();
    let offset = parts.next().and_then(|v| v.as_u64()).unwrap_or(0);
    Ok(if epoch.is_empty() {
        StreamPosition::empty()
    } else {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    })
}

/// The read script's reply as a [`Snapshot`]; an entry that does not parse is left out
/// (and logged): the offsets around it show the gap.
fn parse(channel: &Arc<str>, reply: Value) -> Option<Snapshot> {
    let mut parts = reply.into_array().into_iter();
    let epoch: Arc<str> = parts.next()?.as_string()?.into();
    let offset = parts.next()?.as_u64()?;
    let oldest = parts.next()?.as_u64()?;
    let follows = parts.next()?.as_u64()? == 1;
    let top = if epoch.is_empty() {
        StreamPosition::empty()
    } else {
        StreamPosition {
            epoch: epoch.clone(),
            offset,
        }
    };
    let mut entries = Vec::new();
    while let (Some(id), Some(text)) = (parts.next(), parts.next()) {
        let id = id.as_string().unwrap_or_default();
        let offset = id.split_once('-').and_then(|(o, _)| o.parse::<u64>().ok());
        let message = text
            .as_bytes()
            .map(serde_json::from_slice::<Message>)
            .transpose();
        match (offset, message) {
            (Some(offset), Ok(Some(message))) => entries.push(Arc::new(Publication::new(
                channel.clone(),
                StreamPosition {
                    epoch: epoch.clone(),
                    offset,
                },
                Arc::new(message),
            ))),
            (_, error) => {
                tracing::error!(%channel, %id, ?error, "unreadable stream entry left out")
            }
        }
    }
    Some(Snapshot {
        top,
        oldest,
        follows,
        entries,
    })
}

/// The answer to a client at `since`, as the broker contract defines it.
pub fn recovery(since: Option<&StreamPosition>, snapshot: Snapshot) -> Recovery {
    let Snapshot {
        top,
        oldest,
        entries,
        ..
    } = snapshot;
    let incomplete = |top| Recovery {
        top,
        missed: Vec::new(),
        complete: false,
    };
    let Some(since) = since else {
        return Recovery {
            top,
            missed: Vec::new(),
            complete: true,
        };
    };
    if top.is_empty() {
        return Recovery {
            complete: since.is_empty(),
            top,
            missed: Vec::new(),
        };
    }
    let from = if since.is_empty() {
        0
    } else if since.epoch == top.epoch {
        since.offset
    } else {
        return incomplete(top);
    };
    let oldest = if oldest == 0 { top.offset + 1 } else { oldest };
    if from > top.offset || oldest > from + 1 {
        return incomplete(top);
    }
    Recovery {
        top,
        missed: entries,
        complete: true,
    }
}
