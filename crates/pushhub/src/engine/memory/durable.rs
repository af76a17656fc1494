//! The memory engine over a [`HistoryLog`]: streams restored at start, and the log kept
//! to what the streams still hold.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{kept_bytes, Kept, MemoryBroker, Stream, STREAM_IDLE_WITHOUT_HISTORY};
use crate::engine::HistoryPolicy;
use crate::store::history::{HistoryLog, Record, Restored, RestoredStream};

/// Bytes a stream's top record is counted as when deciding whether the log needs
/// compacting (beside the kept messages' own bytes).
const TOP_RECORD_BYTES: u64 = 256;

/// Now, in milliseconds since the Unix epoch: TTLs count from it across restarts.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one restore brought back, for the start-up log.
#[derive(Debug, Default, Clone, Copy)]
pub struct RestoreReport {
    /// Streams restored (with their epoch and offset).
    pub streams: u64,
    /// Messages restored into their histories.
    pub messages: u64,
    /// Streams the log held that had been idle past their keep time (forgotten).
    pub expired: u64,
}

impl MemoryBroker {
    /// A broker whose histories hold at most `max_history_bytes` over all channels and
    /// are written to `log`, starting from what the log held (`restored`): each stream
    /// keeps its epoch and offset, and its history what TTL and size still allow.
    pub fn durable(
        max_history_bytes: usize,
        log: Arc<HistoryLog>,
        restored: Restored,
    ) -> (Self, RestoreReport) {
        let mut broker = Self::new(max_history_bytes);
        let report = broker.restore(restored);
        broker.log = Some(log);
        (broker, report)
    }

    /// A broker without a log, starting from a snapshot an upgrade left
    /// ([`crate::store::history::snapshot`]): the same restore as from a log.
    pub fn from_snapshot(max_history_bytes: usize, restored: Restored) -> (Self, RestoreReport) {
        let broker = Self::new(max_history_bytes);
        let report = broker.restore(restored);
        (broker, report)
    }

    /// Every live channel's stream as [`Self::restore`] takes it back: what an upgrade
    /// hands its successor when histories live in memory only. Call it once nothing
    /// publishes any more (a publish under way would be missing from it).
    pub fn snapshot(&self) -> Vec<RestoredStream> {
        let (now, now_wall) = (Instant::now(), wall_ms());
        let wall = |at: Instant| {
            let age = u64::try_from(now.duration_since(at).as_millis()).unwrap_or(u64::MAX);
            now_wall.saturating_sub(age)
        };
        let mut streams = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = crate::sync::lock(shard);
            for (channel, stream) in shard.streams.iter_mut() {
                stream.trim(now);
                if stream.expired(now) {
                    continue;
                }
                // `restore` reads only the TTL and whether history is on: with it on, a
                // stream is kept for its TTL; off, for the idle time without history.
                let on = !stream.ttl.is_zero() && stream.keep_for == stream.ttl;
                streams.push(RestoredStream {
                    channel: channel.clone(),
                    top: stream.position(),
                    last_wall_ms: wall(stream.last_publish),
                    policy: HistoryPolicy {
                        ttl: stream.ttl,
                        size: if on { usize::MAX } else { 0 },
                        max_bytes: usize::MAX,
                    },
                    kept: stream
                        .history
                        .iter()
                        .map(|kept| (wall(kept.at), kept.publication.clone()))
                        .collect(),
                });
            }
        }
        streams
    }

    fn restore(&self, restored: Restored) -> RestoreReport {
        let mut report = RestoreReport::default();
        let (now, now_wall) = (Instant::now(), wall_ms());
        let ago = |wall: u64| Duration::from_millis(now_wall.saturating_sub(wall));
        let at = |age: Duration| now.checked_sub(age).unwrap_or(now);
        for restoring in restored.streams {
            let policy = restoring.policy;
            let keep_for = if policy.is_off() {
                STREAM_IDLE_WITHOUT_HISTORY
            } else {
                policy.ttl
            };
            let idle = ago(restoring.last_wall_ms);
            if idle >= keep_for {
                report.expired += 1;
                continue;
            }
            let mut stream = Stream::new(at(idle));
            stream.epoch = restoring.top.epoch.clone();
            stream.offset = restoring.top.offset;
            stream.keep_for = keep_for;
            stream.ttl = policy.ttl;
            let name = restoring.channel;
            let mut shard = self.shard(&name);
            for (wall, publication) in restoring.kept {
                let age = ago(wall);
                if age >= policy.ttl {
                    continue;
                }
                let (charge, _) = self.budget.charge(
                    &mut shard.queues,
                    &publication.message.app,
                    &name,
                    kept_bytes(&publication),
                    at(age),
                );
                stream.history.push_back(Kept {
                    at: at(age),
                    publication,
                    charge,
                });
                report.messages += 1;
            }
            shard.streams.insert(name, stream);
            report.streams += 1;
        }
        if self.budget.over_total() {
            self.evict_oldest(None, now, |_| !self.budget.over_total());
        }
        report
    }

    /// True when `record` still matters: it is kept in its channel's history, is its
    /// top (which carries the epoch and offset), or is not visible yet (a publish
    /// waiting for its own write).
    fn is_live(&self, record: &Record) -> bool {
        let position = &record.publication.position;
        let shard = self.shard(&record.publication.channel);
        let Some(stream) = shard.streams.get(&record.publication.channel) else {
            return false;
        };
        if stream.epoch != position.epoch {
            return false;
        }
        let oldest = stream
            .history
            .front()
            .map_or(stream.offset, |kept| kept.publication.position.offset);
        position.offset >= oldest
    }

    /// Compact the log when it holds well over what the streams keep.
    pub(super) async fn compact_if_needed(&self) {
        let Some(log) = &self.log else {
            return;
        };
        let stats = crate::engine::Broker::stats(self);
        let live = stats.history_bytes + stats.streams * TOP_RECORD_BYTES;
        if !log.needs_compaction(live) {
            return;
        }
        match log.compact(|record| self.is_live(record)).await {
            Ok(report) => tracing::info!(
                segments = report.segments,
                removed_bytes = report.removed_bytes,
                copied = report.copied,
                copied_bytes = report.copied_bytes,
                "history log compacted"
            ),
            Err(error) => tracing::error!(%error, "history log: compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::contract::{self, KEEP};
    use crate::engine::{Broker, HistoryRequest, Message, StreamPosition};
    use crate::store::history::{FsyncPolicy, LogOptions, SEGMENT_BYTES};

    const OPTIONS: LogOptions = LogOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: SEGMENT_BYTES,
    };

    fn open(dir: &std::path::Path) -> (Arc<HistoryLog>, Arc<MemoryBroker>) {
        let (log, restored) = HistoryLog::open(dir, OPTIONS).unwrap();
        let log = Arc::new(log);
        let (broker, _) = MemoryBroker::durable(usize::MAX, log.clone(), restored);
        (log, Arc::new(broker))
    }

    fn durable() -> (tempfile::TempDir, Arc<MemoryBroker>) {
        let dir = tempfile::tempdir().unwrap();
        let (_, broker) = open(dir.path());
        (dir, broker)
    }

    // The shared broker contract, run against the memory engine over a log.
    contract::contract_suite!(durable());

    #[tokio::test]
    async fn a_snapshot_brings_back_epochs_offsets_and_history_without_a_log() {
        let broker = MemoryBroker::new(usize::MAX);
        let channel: Arc<str> = "a:user:1".into();
        let quiet: Arc<str> = "a:user:2".into();
        let message = Arc::new(Message::for_test("x"));
        let mut positions = Vec::new();
        for _ in 0..5 {
            positions.extend(
                broker
                    .publish(std::slice::from_ref(&channel), &message, KEEP)
                    .await
                    .unwrap(),
            );
        }
        let off = HistoryPolicy {
            size: 0,
            ttl: Duration::ZERO,
            max_bytes: usize::MAX,
        };
        let without = broker
            .publish(std::slice::from_ref(&quiet), &message, off)
            .await
            .unwrap();
        let streams = broker.snapshot();
        let (successor, report) = MemoryBroker::from_snapshot(
            usize::MAX,
            Restored {
                streams,
                records: 0,
            },
        );
        assert_eq!((report.streams, report.messages), (2, 3));
        let request = HistoryRequest {
            channel: channel.clone(),
            since: Some(positions[1].clone()),
            limit: None,
        };
        let recovery = successor.history(&[request]).await.unwrap().remove(0);
        assert!(recovery.complete);
        let offsets: Vec<u64> = recovery.missed.iter().map(|p| p.position.offset).collect();
        assert_eq!(offsets, [3, 4, 5], "KEEP holds three");
        let next = successor.publish(&[channel], &message, KEEP).await.unwrap();
        assert_eq!(next[0].offset, 6);
        assert_eq!(next[0].epoch, positions[0].epoch);
        let next = successor.publish(&[quiet], &message, off).await.unwrap();
        assert_eq!(
            next[0].epoch, without[0].epoch,
            "a channel without history keeps its epoch"
        );
        assert_eq!(next[0].offset, 2);
    }

    #[tokio::test]
    async fn a_reopened_log_restores_epoch_offsets_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let (log, broker) = open(dir.path());
        let channel: Arc<str> = "a:user:1".into();
        let message = Arc::new(Message::for_test("x"));
        let mut positions = Vec::new();
        for _ in 0..5 {
            positions.extend(
                broker
                    .publish(std::slice::from_ref(&channel), &message, KEEP)
                    .await
                    .unwrap(),
            );
        }
        log.close().await.unwrap();
        drop(broker);
        let (_log, broker) = open(dir.path());
        let request = HistoryRequest {
            channel: channel.clone(),
            since: Some(positions[1].clone()),
            limit: None,
        };
        let recovery = broker.history(&[request]).await.unwrap().remove(0);
        assert!(recovery.complete);
        assert_eq!(recovery.top, positions[4]);
        let offsets: Vec<u64> = recovery.missed.iter().map(|p| p.position.offset).collect();
        assert_eq!(offsets, [3, 4, 5], "KEEP holds three");
        let next = broker.publish(&[channel], &message, KEEP).await.unwrap();
        assert_eq!(
            next[0],
            StreamPosition {
                epoch: positions[0].epoch.clone(),
                offset: 6
            }
        );
    }
}
