//! Counters for queues of outgoing work (RPC calls, lifecycle webhooks, timer callbacks),
//! as `GET /v1/tasks` and `pushhub tasks` report them: how much waits, how much is in
//! flight, how long calls take.
//!
//! Relaxed atomics only, bumped once per call or batch, never under a lock: reading them
//! costs the work nothing. A gauge is held by a guard, so work that is cancelled half way
//! (a call's deadline passes while it waits) still leaves the gauge right.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

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

/// How long calls took: count, sum and maximum since start.
#[derive(Debug, Default)]
pub struct Latency {
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

/// A copy of a [`Latency`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySnapshot {
    /// Calls timed.
    pub count: u64,
    /// Their mean duration, in milliseconds (0 when none).
    pub avg_ms: f64,
    /// The longest, in milliseconds.
    pub max_ms: f64,
}

impl Latency {
    /// Count one call that took `took`.
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Relaxed);
        self.total_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let count = self.count.load(Relaxed);
        let total = self.total_us.load(Relaxed);
        LatencySnapshot {
            count,
            avg_ms: match count {
                0 => 0.0,
                n => total as f64 / n as f64 / 1000.0,
            },
            max_ms: self.max_us.load(Relaxed) as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_follow_their_guards_and_latency_averages() {
        let gauge = Gauge::default();
        let one = gauge.hold();
        let two = gauge.hold();
        assert_eq!(gauge.get(), 2);
        drop(one);
        assert_eq!(gauge.get(), 1);
        drop(two);
        assert_eq!(gauge.get(), 0);
        let latency = Latency::default();
        assert_eq!(latency.snapshot().avg_ms, 0.0);
        latency.record(Duration::from_millis(10));
        latency.record(Duration::from_millis(30));
        let snapshot = latency.snapshot();
        assert_eq!(
            (snapshot.count, snapshot.avg_ms, snapshot.max_ms),
            (2, 20.0, 30.0)
        );
    }
}
