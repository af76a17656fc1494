//! Counters for outgoing work (RPC calls, lifecycle webhooks, backend questions, the auth
//! webhook, timer and cron callbacks), as `GET /v1/tasks`, `pushhub tasks` and `GET
//! /metrics` report them: how much waits, how much is in flight, how calls end and how
//! long they take.
//!
//! Each call is recorded once, in the [`CallRecord`] of its kind (and app, for an app's
//! RPC calls and webhooks); `/v1/tasks` reads a record's totals and `/metrics` the same
//! record's histogram. Relaxed atomics only, bumped once per call, never under a lock:
//! reading them costs the work nothing. A gauge is held by a guard, so work that is
//! cancelled half way (a call's deadline passes while it waits) still leaves the gauge
//! right.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sync::lock;

/// Something counted while it lasts: waiting calls, calls in flight.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

/// One unit on a [`Gauge`], given back when dropped.
#[derive(Debug)]
pub struct Held<'a>(&'a Gauge);

impl Gauge {
    /// Count one more until the guard is dropped.
    pub fn hold(&self) -> Held<'_> {
        self.0.fetch_add(1, Relaxed);
        Held(self)
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Relaxed);
    }
}

/// How a call ended: `ok` (2xx), `http_error` (another status), `timeout`, `unreachable`,
/// `refused` (the target guard refused it), `too_large` (the answer was too big) or
/// `bad_answer` (an answer that could not be read). A fixed vocabulary: metric labels.
pub const OUTCOMES: [&str; 7] = [
    "ok",
    "http_error",
    "timeout",
    "unreachable",
    "refused",
    "too_large",
    "bad_answer",
];

/// Upper bounds of the latency buckets, in seconds: 0.5 ms to 30 s, covering a loopback
/// call and a backend that is about to time out alike.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// The calls of one outcome: how many fell in each latency bucket (the last one past
/// every bound), and their total duration.
#[derive(Debug, Default)]
struct OutcomeCounts {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    total_us: AtomicU64,
}

/// Every call of one kind made for one app (or for the server): how each ended and how
/// long it took, since the process started. The one record of those calls.
#[derive(Debug, Default)]
pub struct CallRecord {
    outcomes: [OutcomeCounts; OUTCOMES.len()],
    max_us: AtomicU64,
}

/// How long calls took, for `GET /v1/tasks`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySnapshot {
    /// Calls timed.
    pub count: u64,
    /// Their mean duration, in milliseconds (0 when none).
    pub avg_ms: f64,
    /// The longest, in milliseconds.
    pub max_ms: f64,
}

/// The calls of one outcome as a Prometheus histogram: total seconds, count, and the
/// count in each bucket (not cumulative; the last bound is infinite).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Their total duration, in seconds.
    pub sum: f64,
    /// How many.
    pub count: u64,
    /// `(upper bound, calls in the bucket)`.
    pub buckets: Vec<(f64, u64)>,
}

impl CallRecord {
    /// Count one call that ended with `outcome` (one of [`OUTCOMES`]) after `took`.
    pub fn record(&self, outcome: &'static str, took: Duration) {
        debug_assert!(OUTCOMES.contains(&outcome), "unknown outcome {outcome}");
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        let counts = &self.outcomes[index];
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        counts.buckets[bucket].fetch_add(1, Relaxed);
        counts.total_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// Run `call`, an outgoing call bounded by its own deadline, and count it under the
    /// outcome `judge` reads from its result.
    pub async fn time<T>(
        &self,
        call: impl Future<Output = T>,
        judge: impl FnOnce(&T) -> &'static str,
    ) -> T {
        let started = Instant::now();
        let result = call.await;
        self.record(judge(&result), started.elapsed());
        result
    }

    /// Calls that ended with `outcome`.
    pub fn count(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| Self::calls(&self.outcomes[i]))
    }

    /// Every call, whatever its outcome.
    pub fn total(&self) -> u64 {
        self.outcomes.iter().map(Self::calls).sum()
    }

    /// How long calls took, whatever their outcome.
    pub fn latency(&self) -> LatencySnapshot {
        let count = self.total();
        let total_us: u64 = self.outcomes.iter().map(|o| o.total_us.load(Relaxed)).sum();
        LatencySnapshot {
            count,
            avg_ms: match count {
                0 => 0.0,
                n => total_us as f64 / n as f64 / 1000.0,
            },
            max_ms: self.max_us.load(Relaxed) as f64 / 1000.0,
        }
    }

    /// The calls of each outcome as histograms, outcomes without calls left out.
    pub fn histograms(&self) -> Vec<(&'static str, Histogram)> {
        OUTCOMES
            .iter()
            .zip(&self.outcomes)
            .filter(|(_, counts)| Self::calls(counts) > 0)
            .map(|(outcome, counts)| {
                let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
                let buckets: Vec<(f64, u64)> = bounds
                    .zip(&counts.buckets)
                    .map(|(bound, n)| (bound, n.load(Relaxed)))
                    .collect();
                let histogram = Histogram {
                    sum: counts.total_us.load(Relaxed) as f64 / 1e6,
                    count: buckets.iter().map(|(_, n)| n).sum(),
                    buckets,
                };
                (*outcome, histogram)
            })
            .collect()
    }

    fn calls(counts: &OutcomeCounts) -> u64 {
        counts.buckets.iter().map(|n| n.load(Relaxed)).sum()
    }
}

impl Histogram {
    /// Add `other`'s calls (same buckets) to these.
    pub fn add(&mut self, other: &Histogram) {
        self.sum += other.sum;
        self.count += other.count;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
    }
}

/// Which calls a record counts: their kind (`rpc`, `webhook`, `question`, `auth`, `timer`,
/// `cron`) and the app they were made for (`None`: counted for the whole server).
type RecordKey = (&'static str, Option<String>);

static RECORDS: LazyLock<Mutex<BTreeMap<RecordKey, Arc<CallRecord>>>> =
    LazyLock::new(Mutex::default);

/// The record of the calls of `kind` made for `app` (`None`: for the server as a whole).
/// Process-wide, as the metrics are (a process runs one server), and kept for the
/// process's life: a reload that rebuilds an app's RPC proxy or event sink continues its
/// record, so neither `/v1/tasks` nor `/metrics` counts go back. Apps are configured ones
/// (apps created on first use have no backends), so records stay few.
pub fn calls(kind: &'static str, app: Option<&str>) -> Arc<CallRecord> {
    lock(&RECORDS)
        .entry((kind, app.map(str::to_owned)))
        .or_default()
        .clone()
}

/// Every kind's calls per outcome, summed over apps, for `/metrics`.
pub fn histograms() -> Vec<(&'static str, &'static str, Histogram)> {
    let mut sums: BTreeMap<(&'static str, &'static str), Histogram> = BTreeMap::new();
    for ((kind, _), record) in lock(&RECORDS).iter() {
        for (outcome, histogram) in record.histograms() {
            sums.entry((kind, outcome))
                .and_modify(|sum| sum.add(&histogram))
                .or_insert(histogram);
        }
    }
    sums.into_iter()
        .map(|((kind, outcome), histogram)| (kind, outcome, histogram))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_follow_their_guards() {
        let gauge = Gauge::default();
        let one = gauge.hold();
        let two = gauge.hold();
        assert_eq!(gauge.get(), 2);
        drop(one);
        assert_eq!(gauge.get(), 1);
        drop(two);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn one_record_gives_the_totals_and_the_histograms() {
        let record = CallRecord::default();
        assert_eq!(record.latency().avg_ms, 0.0);
        record.record("ok", Duration::from_millis(10));
        record.record("timeout", Duration::from_millis(30));
        record.record("ok", Duration::from_secs(60));
        let latency = record.latency();
        assert_eq!(
            (latency.count, latency.avg_ms, latency.max_ms),
            (3, 20_013.333333333332, 60_000.0)
        );
        assert_eq!((record.count("ok"), record.count("timeout")), (2, 1));
        assert_eq!(record.total(), 3);
        let histograms = record.histograms();
        let outcomes: Vec<_> = histograms.iter().map(|(o, _)| *o).collect();
        assert_eq!(outcomes, ["ok", "timeout"]);
        let ok = &histograms[0].1;
        assert_eq!((ok.count, ok.sum), (2, 60.01));
        let in_bucket = |bound: f64| ok.buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!((in_bucket(0.01), in_bucket(f64::INFINITY)), (1, 1));
        assert_eq!(ok.buckets.iter().map(|b| b.1).sum::<u64>(), 2);
    }

    #[test]
    fn records_are_kept_per_kind_and_app_and_summed_for_metrics() {
        let first = calls("test-kind", Some("a"));
        calls("test-kind", Some("b")).record("ok", Duration::from_millis(1));
        first.record("ok", Duration::from_millis(1));
        assert!(Arc::ptr_eq(&first, &calls("test-kind", Some("a"))));
        assert_eq!(first.total(), 1);
        let summed = histograms();
        let (_, _, ok) = summed
            .iter()
            .find(|(kind, outcome, _)| *kind == "test-kind" && *outcome == "ok")
            .unwrap();
        assert_eq!(ok.count, 2);
    }
}
