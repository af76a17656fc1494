//! The leases a store holds while its calls are in flight, and the task that renews them.

use std::collections::HashSet;
use std::sync::Mutex;

use fred::interfaces::SortedSetsInterface;
use fred::types::sorted_sets::Ordering as ZOrdering;
use fred::types::SetOptions;

use super::codec::{items, number};
use super::{backend, scripts, RedisStore};
use crate::store::{StoreError, TimerId};
use crate::sync::lock;

/// What this store has claimed and not finished: timers by id, cron runs by their
/// member in the runs index.
#[derive(Default)]
pub(super) struct Held {
    timers: Mutex<HashSet<TimerId>>,
    runs: Mutex<HashSet<String>>,
}

impl Held {
    pub(super) fn take_timer(&self, id: TimerId) {
        lock(&self.timers).insert(id);
    }

    pub(super) fn drop_timer(&self, id: TimerId) {
        lock(&self.timers).remove(&id);
    }

    pub(super) fn take_run(&self, member: String) {
        lock(&self.runs).insert(member);
    }

    /// Forget a run; true when this store still held it.
    pub(super) fn drop_run(&self, member: &str) -> bool {
        lock(&self.runs).remove(member)
    }

    /// The runs held whose member starts with `prefix` (one job's).
    pub(super) fn runs_of(&self, prefix: &str) -> Vec<String> {
        lock(&self.runs)
            .iter()
            .filter(|m| m.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn timers(&self) -> Vec<TimerId> {
        lock(&self.timers).iter().copied().collect()
    }

    fn runs(&self) -> Vec<String> {
        lock(&self.runs).iter().cloned().collect()
    }
}

impl RedisStore {
    /// Extend every lease held to now + lease.
    pub(super) async fn renew(&self, now_ms: u64) -> Result<(), StoreError> {
        let until = self.lease_end(now_ms);
        let ids = self.held.timers();
        if !ids.is_empty() {
            let mut args = vec![self.owner.clone(), until.to_string()];
            args.extend(ids.iter().map(ToString::to_string));
            for lost in items(self.eval(&scripts::RENEW, args).await?) {
                if let Some(id) = number(&lost) {
                    tracing::warn!(timer = id, "this node's lease on a timer was taken over");
                    self.held.drop_timer(id);
                }
            }
        }
        for member in self.held.runs() {
            let renewed: i64 = self
                .pool
                .zadd(
                    self.key("jruns"),
                    Some(SetOptions::XX),
                    None::<ZOrdering>,
                    true,
                    false,
                    (until as f64, member.as_str()),
                )
                .await
                .map_err(backend)?;
            if renewed == 0 && !self.still_leased(&member).await? {
                self.held.drop_run(&member);
            }
        }
        Ok(())
    }

    /// True when the runs index still holds `member` (ZADD XX CH counts no change when
    /// the score was already the same).
    async fn still_leased(&self, member: &str) -> Result<bool, StoreError> {
        let score: Option<f64> = self
            .pool
            .zscore(self.key("jruns"), member)
            .await
            .map_err(backend)?;
        Ok(score.is_some())
    }

    /// Let every lease held run out now, so other nodes take the calls over at once
    /// (this store is closing while calls are still in flight).
    pub(super) async fn release(&self) -> Result<(), StoreError> {
        let ids = self.held.timers();
        if !ids.is_empty() {
            let mut args = vec![self.owner.clone()];
            args.extend(ids.iter().map(ToString::to_string));
            self.eval(&scripts::RELEASE, args).await?;
        }
        for member in self.held.runs() {
            let _: i64 = self
                .pool
                .zadd(
                    self.key("jruns"),
                    Some(SetOptions::XX),
                    None::<ZOrdering>,
                    false,
                    false,
                    (0.0, member.as_str()),
                )
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    /// A key under the store's base.
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }
}
