//! Combining worker results into run totals.
//!
//! Counts add up; latency distributions are merged bucket by bucket (never by
//! averaging percentiles); delivery windows take the extreme timestamps.

use anyhow::{Context, Result};

use crate::hist::LatencyHist;
use crate::ipc::{ReadyInfo, WorkerReport};
use crate::resume_tally::ResumeTally;
use crate::seq::SeqTally;

/// Totals over all workers of a run.
#[derive(Debug, Default)]
pub struct Aggregate {
    /// Summed loss/duplicate accounting.
    pub tally: SeqTally,
    /// Merged latency distribution.
    pub hist: LatencyHist,
    /// Earliest delivery over all workers (wall clock µs).
    pub first_delivery_us: Option<u64>,
    /// Latest delivery over all workers (wall clock µs).
    pub last_delivery_us: Option<u64>,
    /// Clients whose connection ended early.
    pub disconnects: u64,
    /// Frames that were not valid protocol JSON.
    pub malformed: u64,
    /// Resume accounting, when the workers sent any.
    pub resume: Option<ResumeAggregate>,
}

/// Resume results over all workers.
#[derive(Debug, Default)]
pub struct ResumeAggregate {
    /// Summed counters.
    pub tally: ResumeTally,
    /// Merged per-client recovery times (µs).
    pub recovery: LatencyHist,
    /// Earliest reconnect attempt over all workers (wall clock µs).
    pub first_attempt_us: Option<u64>,
    /// Latest moment a client completed its recovery (wall clock µs).
    pub last_recovered_us: Option<u64>,
}

impl Aggregate {
    /// Merges the final reports of all workers.
    pub fn from_reports(reports: &[WorkerReport]) -> Result<Self> {
        let mut agg = Aggregate::default();
        for (i, r) in reports.iter().enumerate() {
            agg.tally.merge(&r.tally);
            let h = LatencyHist::decode(&r.hist_b64)
                .with_context(|| format!("histogram of worker {i}"))?;
            agg.hist.merge(&h)?;
            agg.first_delivery_us = min_opt(agg.first_delivery_us, r.first_delivery_us);
            agg.last_delivery_us = agg.last_delivery_us.max(r.last_delivery_us);
            agg.disconnects += r.disconnects;
            agg.malformed += r.malformed;
            if let Some(res) = &r.resume {
                let a = agg.resume.get_or_insert_with(ResumeAggregate::default);
                a.tally.merge(&res.tally);
                let h = LatencyHist::decode(&res.recovery_hist_b64)
                    .with_context(|| format!("recovery histogram of worker {i}"))?;
                a.recovery.merge(&h)?;
                a.first_attempt_us = min_opt(a.first_attempt_us, res.first_attempt_us);
                a.last_recovered_us = a.last_recovered_us.max(res.last_recovered_us);
            }
        }
        Ok(agg)
    }
}

/// Connect-phase totals over all workers.
#[derive(Debug, Default, PartialEq)]
pub struct ConnectTotals {
    /// Clients connected and welcomed.
    pub connected: u64,
    /// Clients that failed after retries.
    pub failed: u64,
    /// Attempts beyond the first, over all clients.
    pub retries: u64,
    /// Longest single-client connect, seconds.
    pub slowest_client_secs: f64,
    /// One of the errors, if any.
    pub first_error: Option<String>,
}

impl ConnectTotals {
    /// Sums the workers' ready events.
    pub fn from_ready(ready: &[ReadyInfo]) -> Self {
        let mut t = ConnectTotals::default();
        for r in ready {
            t.connected += r.connected;
            t.failed += r.failed;
            t.retries += r.retries;
            t.slowest_client_secs = t.slowest_client_secs.max(r.slowest_client_secs);
            if t.first_error.is_none() {
                t.first_error.clone_from(&r.first_error);
            }
        }
        t
    }
}

/// The smaller of two optional values, ignoring `None`.
fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(values: &[u64], first: u64, last: u64, lost: u64) -> WorkerReport {
        let mut h = LatencyHist::new();
        for &v in values {
            h.record(v);
        }
        WorkerReport {
            tally: SeqTally {
                expected: values.len() as u64 + lost,
                received: values.len() as u64,
                unique: values.len() as u64,
                lost,
                ..SeqTally::default()
            },
            hist_b64: h.encode().unwrap(),
            first_delivery_us: Some(first),
            last_delivery_us: Some(last),
            disconnects: 1,
            malformed: 0,
            resume: None,
        }
    }

    #[test]
    fn merges_workers() {
        let a = report(&[1000, 2000, 3000], 50, 90, 1);
        let b = report(&[50_000], 40, 80, 0);
        let empty = WorkerReport {
            hist_b64: LatencyHist::new().encode().unwrap(),
            ..WorkerReport::default()
        };
        let agg = Aggregate::from_reports(&[a, b, empty]).unwrap();
        assert_eq!(agg.tally.received, 4);
        assert_eq!(agg.tally.expected, 5);
        assert_eq!(agg.tally.lost, 1);
        assert_eq!(agg.hist.len(), 4);
        assert_eq!(agg.first_delivery_us, Some(40));
        assert_eq!(agg.last_delivery_us, Some(90));
        assert_eq!(agg.disconnects, 2);
        let s = agg.hist.summary();
        assert!((s.max_ms - 50.0).abs() < 0.1);
        assert!((s.p50_ms - 2.0).abs() < 0.01);
    }

    #[test]
    fn merges_resume_reports() {
        use crate::resume_tally::ResumeReport;
        let mut h = LatencyHist::new();
        h.record(2000);
        let res = |first, last, lost| ResumeReport {
            tally: ResumeTally {
                clients: 2,
                reconnected: 2,
                missed_lost: lost,
                ..ResumeTally::default()
            },
            recovery_hist_b64: h.encode().unwrap(),
            first_attempt_us: first,
            last_recovered_us: last,
        };
        let a = WorkerReport {
            resume: Some(res(Some(100), Some(900), 1)),
            ..report(&[], 0, 0, 0)
        };
        let b = WorkerReport {
            resume: Some(res(Some(50), Some(700), 0)),
            ..report(&[], 0, 0, 0)
        };
        let agg = Aggregate::from_reports(&[a, b]).unwrap();
        let r = agg.resume.unwrap();
        assert_eq!(r.tally.clients, 4);
        assert_eq!(r.tally.missed_lost, 1);
        assert_eq!(r.recovery.len(), 2);
        assert_eq!(r.first_attempt_us, Some(50));
        assert_eq!(r.last_recovered_us, Some(900));
        let plain = Aggregate::from_reports(&[report(&[1], 0, 0, 0)]).unwrap();
        assert!(plain.resume.is_none());
    }

    #[test]
    fn bad_histogram_is_reported() {
        let r = WorkerReport {
            hist_b64: "%%%".into(),
            ..WorkerReport::default()
        };
        assert!(Aggregate::from_reports(&[r]).is_err());
    }

    #[test]
    fn connect_totals() {
        let t = ConnectTotals::from_ready(&[
            ReadyInfo {
                connected: 5,
                failed: 0,
                connect_secs: 1.0,
                retries: 1,
                slowest_client_secs: 0.5,
                first_error: None,
            },
            ReadyInfo {
                connected: 3,
                failed: 2,
                connect_secs: 2.0,
                retries: 2,
                slowest_client_secs: 0.25,
                first_error: Some("boom".into()),
            },
        ]);
        assert_eq!(
            t,
            ConnectTotals {
                connected: 8,
                failed: 2,
                retries: 3,
                slowest_client_secs: 0.5,
                first_error: Some("boom".into())
            }
        );
    }
}
