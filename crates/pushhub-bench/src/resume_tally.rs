//! Loss, duplicate and order accounting of the `resume` scenario.
//!
//! A resume run publishes `warmup` broadcasts (seq `0..W`) while every client is
//! connected, so each client's cursor carries a real epoch and offset; then all
//! clients disconnect, `missed` broadcasts (seq `W..W+M`) are published, and all
//! clients reconnect with `since=<cursor>`. Each client keeps one
//! [`ClientTrack`] over both connections, so a warm-up message that the server
//! replays again after the reconnect counts as a duplicate, and a missed message
//! that never arrives counts as lost.

use serde::{Deserialize, Serialize};

use crate::cursor::Step;
use crate::plan::Plan;
use crate::seq::{SeqTally, SeqTracker};

/// What one delivery meant for the client that received it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// First copy of this seq.
    pub first: bool,
    /// This delivery completed the warm-up set (every seq `0..W` seen).
    pub warmup_done: bool,
    /// This delivery completed the missed set (every seq `W..W+M` seen).
    pub missed_done: bool,
}

/// One client's deliveries over its first and its resumed connection.
#[derive(Debug, Default)]
pub struct ClientTrack {
    warmup: u64,
    missed: u64,
    seqs: SeqTracker,
    max_seq: Option<u64>,
    warmup_unique: u64,
    missed_unique: u64,
    out_of_order: u64,
    offset_gaps: u64,
    offset_stale: u64,
    epoch_changes: u64,
}

impl ClientTrack {
    /// A client that expects `warmup` live messages, then `missed` replayed ones.
    pub fn new(warmup: u64, missed: u64) -> Self {
        Self {
            warmup,
            missed,
            ..Self::default()
        }
    }

    /// Records one delivery of `seq`.
    pub fn record(&mut self, seq: u64) -> Recorded {
        let first = self.seqs.record(seq) == 1;
        let mut r = Recorded {
            first,
            ..Recorded::default()
        };
        if !first {
            return r;
        }
        if self.max_seq.is_some_and(|m| seq < m) {
            self.out_of_order += 1;
        }
        self.max_seq = self.max_seq.max(Some(seq));
        if seq < self.warmup {
            self.warmup_unique += 1;
            r.warmup_done = self.warmup_unique == self.warmup;
        } else if seq < self.warmup + self.missed {
            self.missed_unique += 1;
            r.missed_done = self.missed_unique == self.missed;
        }
        r
    }

    /// Records how a message after the reconnect moved the client's cursor.
    pub fn record_step(&mut self, step: Step) {
        match step {
            Step::Next => {}
            Step::Gap => self.offset_gaps += 1,
            Step::Stale => self.offset_stale += 1,
            Step::NewEpoch | Step::NewChannel => self.epoch_changes += 1,
        }
    }

    /// Every warm-up message arrived (trivially true without warm-up).
    pub fn warmup_complete(&self) -> bool {
        self.warmup_unique == self.warmup
    }

    /// Every missed message arrived (trivially true when none were missed).
    pub fn missed_complete(&self) -> bool {
        self.missed_unique == self.missed
    }

    /// Final accounting for user index `user`: the delivery tally over both
    /// connections against `plan` (which expects all `W+M` seqs), and the resume
    /// counters. `resumed` is the outcome of the reconnect: `None` when it failed,
    /// else the welcome's `recovered` flag (`Some(None)`: the welcome had none).
    pub fn finish(&self, user: u64, plan: &Plan, resumed: Option<Option<bool>>) -> ClientResult {
        let tally = self.seqs.tally(user, plan);
        let mut r = ResumeTally {
            clients: 1,
            ..ResumeTally::default()
        };
        match resumed {
            None => r.reconnect_failed = 1,
            Some(flag) => {
                r.reconnected = 1;
                match flag {
                    Some(true) => r.recovered_flag_true = 1,
                    Some(false) => r.recovered_flag_false = 1,
                    None => r.recovered_flag_missing = 1,
                }
                r.missed_expected = self.missed;
                r.missed_received = self.missed_unique;
                r.missed_lost = self.missed - self.missed_unique;
                r.out_of_order = self.out_of_order;
                r.offset_gaps = self.offset_gaps;
                r.offset_stale = self.offset_stale;
                r.epoch_changes = self.epoch_changes;
                let clean = tally.duplicated == 0 && tally.unexpected == 0 && tally.lost == 0;
                if flag == Some(true) && self.missed_complete() && self.out_of_order == 0 && clean {
                    r.fully_recovered = 1;
                }
            }
        }
        ClientResult { tally, resume: r }
    }
}

/// One client's final accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientResult {
    /// Deliveries over both connections against the whole plan.
    pub tally: SeqTally,
    /// Resume counters.
    pub resume: ResumeTally,
}

/// Resume counters, additive over clients and workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTally {
    /// Clients that were connected before the disconnect.
    pub clients: u64,
    /// Of those, clients whose reconnect got a welcome.
    pub reconnected: u64,
    /// Clients whose reconnect failed after all retries.
    pub reconnect_failed: u64,
    /// Reconnected clients whose welcome said `recovered: true`.
    pub recovered_flag_true: u64,
    /// Reconnected clients whose welcome said `recovered: false`.
    pub recovered_flag_false: u64,
    /// Reconnected clients whose welcome had no `recovered` field (server without resume).
    pub recovered_flag_missing: u64,
    /// Reconnected clients with `recovered: true`, every missed message exactly once, in
    /// order, and nothing lost, duplicated or misrouted over the whole run.
    pub fully_recovered: u64,
    /// Missed messages the reconnected clients should have got (`M` each).
    pub missed_expected: u64,
    /// Distinct missed messages they got.
    pub missed_received: u64,
    /// Missed messages they never got.
    pub missed_lost: u64,
    /// First copies that arrived after a higher seq (order broken).
    pub out_of_order: u64,
    /// Messages after the reconnect whose offset skipped some in the same epoch.
    pub offset_gaps: u64,
    /// Messages after the reconnect at or below the cursor's offset (replayed again).
    pub offset_stale: u64,
    /// Messages after the reconnect in another epoch (or channel) than the cursor had.
    pub epoch_changes: u64,
    /// Extra reconnects because the server replayed a large gap in parts (close 4005,
    /// "reconnect from your new position").
    #[serde(default)]
    pub replay_parts: u64,
}

impl ResumeTally {
    /// Adds another tally into this one.
    pub fn merge(&mut self, o: &ResumeTally) {
        self.clients += o.clients;
        self.reconnected += o.reconnected;
        self.reconnect_failed += o.reconnect_failed;
        self.recovered_flag_true += o.recovered_flag_true;
        self.recovered_flag_false += o.recovered_flag_false;
        self.recovered_flag_missing += o.recovered_flag_missing;
        self.fully_recovered += o.fully_recovered;
        self.missed_expected += o.missed_expected;
        self.missed_received += o.missed_received;
        self.missed_lost += o.missed_lost;
        self.out_of_order += o.out_of_order;
        self.offset_gaps += o.offset_gaps;
        self.offset_stale += o.offset_stale;
        self.epoch_changes += o.epoch_changes;
        self.replay_parts += o.replay_parts;
    }
}

/// A worker's resume results: counters plus the timing of the recovery.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeReport {
    /// Counters over the worker's clients.
    pub tally: ResumeTally,
    /// Per-client recovery time (first reconnect attempt → all missed messages), µs,
    /// as a base64 HdrHistogram (see [`crate::hist::LatencyHist::encode`]).
    pub recovery_hist_b64: String,
    /// Wall clock (µs) of the worker's first reconnect attempt.
    pub first_attempt_us: Option<u64>,
    /// Wall clock (µs) when the worker's last client had every missed message.
    pub last_recovered_us: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Mode;

    fn plan(w: u64, m: u64) -> Plan {
        Plan {
            mode: Mode::Resume,
            conns: 4,
            messages: w + m,
        }
    }

    #[test]
    fn clean_resume_is_fully_recovered() {
        let mut t = ClientTrack::new(2, 3);
        assert!(!t.warmup_complete());
        assert!(!t.record(0).warmup_done);
        assert!(t.record(1).warmup_done);
        assert!(t.warmup_complete());
        assert!(!t.record(2).missed_done);
        assert!(!t.record(3).missed_done);
        let r = t.record(4);
        assert!(r.first && r.missed_done);
        for _ in 0..3 {
            t.record_step(Step::Next);
        }
        let res = t.finish(1, &plan(2, 3), Some(Some(true)));
        assert_eq!(res.tally.lost, 0);
        assert_eq!(res.tally.duplicated, 0);
        assert_eq!(
            res.resume,
            ResumeTally {
                clients: 1,
                reconnected: 1,
                recovered_flag_true: 1,
                fully_recovered: 1,
                missed_expected: 3,
                missed_received: 3,
                ..ResumeTally::default()
            }
        );
    }

    #[test]
    fn replayed_warmup_is_a_duplicate_and_breaks_recovery() {
        let mut t = ClientTrack::new(1, 2);
        t.record(0);
        // The server replays the warm-up message again after the reconnect.
        let again = t.record(0);
        assert!(!again.first && !again.warmup_done);
        t.record_step(Step::Stale);
        t.record(1);
        assert!(t.record(2).missed_done);
        let res = t.finish(0, &plan(1, 2), Some(Some(true)));
        assert_eq!(res.tally.duplicated, 1);
        assert_eq!(res.tally.lost, 0);
        assert_eq!(res.resume.offset_stale, 1);
        assert_eq!(res.resume.missed_lost, 0);
        assert_eq!(res.resume.fully_recovered, 0);
    }

    #[test]
    fn missing_and_reordered_messages() {
        let mut t = ClientTrack::new(1, 4);
        t.record(0);
        t.record(3);
        t.record(1); // after 3: out of order
        t.record_step(Step::Gap);
        let res = t.finish(2, &plan(1, 4), Some(Some(true)));
        assert_eq!(res.tally.lost, 2);
        assert_eq!(res.resume.missed_received, 2);
        assert_eq!(res.resume.missed_lost, 2);
        assert_eq!(res.resume.out_of_order, 1);
        assert_eq!(res.resume.offset_gaps, 1);
        assert_eq!(res.resume.fully_recovered, 0);
        assert!(!t.missed_complete());
    }

    #[test]
    fn recovered_false_and_failed_reconnects() {
        let mut t = ClientTrack::new(0, 1);
        assert!(t.warmup_complete());
        t.record(0);
        let res = t.finish(0, &plan(0, 1), Some(Some(false)));
        assert_eq!(res.resume.recovered_flag_false, 1);
        assert_eq!(res.resume.fully_recovered, 0);
        let res = t.finish(0, &plan(0, 1), Some(None));
        assert_eq!(res.resume.recovered_flag_missing, 1);
        let failed = ClientTrack::new(0, 1).finish(0, &plan(0, 1), None);
        assert_eq!(failed.resume.reconnect_failed, 1);
        assert_eq!(failed.resume.reconnected, 0);
        assert_eq!(failed.resume.missed_expected, 0);
    }

    #[test]
    fn stray_seq_is_unexpected() {
        let mut t = ClientTrack::new(0, 2);
        t.record(0);
        t.record(1);
        t.record(7);
        let res = t.finish(0, &plan(0, 2), Some(Some(true)));
        assert_eq!(res.tally.unexpected, 1);
        assert_eq!(res.resume.fully_recovered, 0);
    }

    #[test]
    fn tallies_merge() {
        let a = ResumeTally {
            clients: 2,
            reconnected: 2,
            fully_recovered: 1,
            missed_lost: 3,
            replay_parts: 1,
            ..ResumeTally::default()
        };
        let mut b = a;
        b.merge(&a);
        assert_eq!((b.clients, b.fully_recovered, b.missed_lost), (4, 2, 6));
        assert_eq!(b.replay_parts, 2);
        let report = ResumeReport {
            tally: b,
            first_attempt_us: Some(5),
            ..ResumeReport::default()
        };
        let line = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<ResumeReport>(&line).unwrap(), report);
    }
}
