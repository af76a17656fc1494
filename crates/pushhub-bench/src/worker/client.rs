//! What a worker's clients received: latency, loss and completion accounting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;
use tokio::sync::Notify;

use crate::hist::LatencyHist;
use crate::plan::Plan;
use crate::seq::{SeqTally, SeqTracker};

/// State shared by all clients of one worker process.
pub struct Shared {
    /// Latency of every received message frame, in µs.
    pub hist: Mutex<LatencyHist>,
    /// Expected first-time deliveries still outstanding in this worker.
    pub remaining: AtomicU64,
    /// Signalled when `remaining` reaches zero.
    pub complete: Notify,
    /// Earliest delivery wall-clock time (µs); `u64::MAX` until the first one.
    pub first_us: AtomicU64,
    /// Latest delivery wall-clock time (µs); 0 until the first one.
    pub last_us: AtomicU64,
    /// Frames that were not valid protocol JSON.
    pub malformed: AtomicU64,
}

impl Shared {
    /// Fresh state; `remaining` is set once the connect phase is over.
    pub fn new() -> Self {
        Self {
            hist: Mutex::new(LatencyHist::new()),
            remaining: AtomicU64::new(0),
            complete: Notify::new(),
            first_us: AtomicU64::new(u64::MAX),
            last_us: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }

    /// Accounts one text frame received at `now` (µs) by user index `user`.
    pub fn account(&self, text: &str, now: u64, user: u64, plan: &Plan, seen: &mut SeqTracker) {
        match serde_json::from_str::<Frame>(text) {
            Ok(Frame {
                kind: "msg",
                data: Some(probe),
            }) => {
                self.first_us.fetch_min(now, Ordering::Relaxed);
                self.last_us.fetch_max(now, Ordering::Relaxed);
                if let Ok(mut h) = self.hist.lock() {
                    h.record(now.saturating_sub(probe.t));
                }
                if seen.record(probe.seq) == 1 && plan.expects(user, probe.seq) {
                    self.one_done();
                }
            }
            Ok(_) => {}
            Err(_) => self.count_malformed(),
        }
    }

    /// Counts a frame that was not valid protocol JSON (or not UTF-8).
    pub fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts down one expected delivery and signals completion at zero.
    fn one_done(&self) {
        let prev = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
        if prev == Ok(1) {
            self.complete.notify_one();
        }
    }
}

/// What one client saw by the time it was stopped.
#[derive(Debug, Default)]
pub struct ClientOutcome {
    /// Loss/duplicate accounting for this client.
    pub tally: SeqTally,
    /// The connection ended before the worker was told to stop.
    pub disconnected: bool,
}

/// The fields of a message frame the generator needs.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    data: Option<Probe>,
}

/// The publisher's payload: sequence number and send time.
#[derive(Deserialize)]
struct Probe {
    seq: u64,
    t: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_fires_once_at_zero() {
        let s = Shared::new();
        s.remaining.store(2, Ordering::SeqCst);
        s.one_done();
        assert_eq!(s.remaining.load(Ordering::SeqCst), 1);
        s.one_done();
        s.one_done(); // extra calls never wrap around
        assert_eq!(s.remaining.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn frame_probe_parses() {
        let f: Frame = serde_json::from_str(
            r#"{"type":"msg","ch":"demo:all","epoch":"x","off":3,"id":"9","event":"bench","data":{"seq":5,"t":17},"ts":1}"#,
        )
        .unwrap();
        assert_eq!(f.kind, "msg");
        let p = f.data.unwrap();
        assert_eq!((p.seq, p.t), (5, 17));
    }
}
