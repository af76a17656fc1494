//! What operators may read about the hub without changing it: the apps it knows, the
//! nodes of its cluster, and the recent history of one channel. The admin dashboard and
//! its API are the readers; nothing here is on a client's or a publisher's path.

use std::sync::Arc;

use super::{Hub, HubError};
use crate::engine::{HistoryRequest, Publication, Recovery, StreamPosition};

/// The newest messages a channel's history holds, oldest first.
#[derive(Debug)]
pub struct ChannelHistory {
    /// The channel's top position (the empty position when nothing is kept or was ever
    /// published).
    pub top: StreamPosition,
    /// Up to the requested number of the newest kept messages, oldest first.
    pub publications: Vec<Arc<Publication>>,
}

impl Hub {
    /// The apps this server knows now, sorted: those declared, and development apps
    /// already created by use.
    pub fn app_names(&self) -> Vec<String> {
        self.apps().iter().map(|app| app.name.to_string()).collect()
    }

    /// The live nodes sharing this hub's engine, this one included, sorted.
    pub async fn nodes(&self) -> Result<Vec<String>, HubError> {
        Ok(self.inner.engine.presence.nodes().await?)
    }

    /// True when the engine joins several nodes (a cluster), false for a single node.
    pub fn spans_nodes(&self) -> bool {
        self.inner.engine.presence.spans_nodes()
    }

    /// The newest `limit` messages kept in `channel` of `app`, oldest first.
    ///
    /// The broker answers "what follows a position", so this asks from `limit` before the
    /// top; when the oldest of those were already trimmed (by TTL or a bound on bytes), it
    /// narrows the window by halves until the history reaches back far enough: at most
    /// about log2(`limit`) more reads, each one engine round trip.
    pub async fn recent_history(
        &self,
        app: &str,
        channel: &str,
        limit: usize,
    ) -> Result<ChannelHistory, HubError> {
        let Some(app) = self.inner.apps.load().lookup(app)? else {
            return Ok(ChannelHistory {
                top: StreamPosition::empty(),
                publications: Vec::new(),
            });
        };
        let channel: Arc<str> = channel.into();
        let top = self.read(&channel, None, None).await?.top;
        let widest = u64::try_from(limit.min(app.history.size))
            .unwrap_or(u64::MAX)
            .min(top.offset);
        let (mut kept, mut lost) = (Vec::new(), widest + 1);
        let mut window = widest;
        let mut reached = 0;
        while window > reached {
            let since = StreamPosition {
                epoch: top.epoch.clone(),
                offset: top.offset - window,
            };
            let limit = usize::try_from(window).unwrap_or(usize::MAX);
            let recovery = self.read(&channel, Some(since), Some(limit)).await?;
            if recovery.complete && recovery.top == top {
                kept = recovery.missed;
                reached = window;
            } else if recovery.top != top {
                // Published to (or forgotten) meanwhile: what was read so far stands.
                break;
            } else {
                lost = window;
            }
            window = reached + (lost - reached) / 2;
        }
        Ok(ChannelHistory {
            top,
            publications: kept,
        })
    }

    async fn read(
        &self,
        channel: &Arc<str>,
        since: Option<StreamPosition>,
        limit: Option<usize>,
    ) -> Result<Recovery, HubError> {
        let request = HistoryRequest {
            channel: channel.clone(),
            since,
            limit,
        };
        let mut answers = self.inner.engine.broker.history(&[request]).await?;
        Ok(answers.pop().unwrap_or(Recovery {
            top: StreamPosition::empty(),
            missed: Vec::new(),
            complete: false,
        }))
    }
}
