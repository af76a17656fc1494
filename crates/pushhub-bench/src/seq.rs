//! Per-client loss and duplicate accounting.
//!
//! Every message carries a `seq`; each client remembers how often it saw each
//! one and, at the end, compares that with what the [`Plan`] says it should
//! have seen.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Counts of the sequence numbers one client received.
#[derive(Debug, Default)]
pub struct SeqTracker {
    counts: HashMap<u64, u32>,
}

impl SeqTracker {
    /// Records one delivery of `seq`; returns how many times it has now been seen.
    pub fn record(&mut self, seq: u64) -> u32 {
        let c = self.counts.entry(seq).or_insert(0);
        *c = c.saturating_add(1);
        *c
    }

    /// Compares what this client (user index `user`) received with the plan.
    pub fn tally(&self, user: u64, plan: &Plan) -> SeqTally {
        let mut t = SeqTally {
            expected: plan.expected_for_user(user),
            ..SeqTally::default()
        };
        for (&seq, &count) in &self.counts {
            let count = u64::from(count);
            t.received += count;
            if plan.expects(user, seq) {
                t.unique += 1;
                t.duplicated += count - 1;
            } else {
                t.unexpected += count;
            }
        }
        t.lost = t.expected.saturating_sub(t.unique);
        t
    }
}

/// Delivery accounting, additive over clients and workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTally {
    /// Distinct deliveries the plan expected for the counted clients.
    pub expected: u64,
    /// Message frames received in total (including duplicates and strays).
    pub received: u64,
    /// Distinct expected messages received.
    pub unique: u64,
    /// Expected messages never received.
    pub lost: u64,
    /// Extra copies of expected messages.
    pub duplicated: u64,
    /// Frames for messages this client should not have received (misrouting).
    pub unexpected: u64,
}

impl SeqTally {
    /// Adds another tally into this one.
    pub fn merge(&mut self, o: &SeqTally) {
        self.expected += o.expected;
        self.received += o.received;
        self.unique += o.unique;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.unexpected += o.unexpected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Mode;

    #[test]
    fn broadcast_loss_and_duplicates() {
        let plan = Plan {
            mode: Mode::Broadcast,
            conns: 2,
            messages: 5,
        };
        let mut t = SeqTracker::default();
        for seq in [0, 1, 1, 1, 3, 9] {
            t.record(seq);
        }
        let tally = t.tally(0, &plan);
        assert_eq!(
            tally,
            SeqTally {
                expected: 5,
                received: 6,
                unique: 3,
                lost: 2,
                duplicated: 2,
                unexpected: 1,
            }
        );
    }

    #[test]
    fn unicast_misrouted_is_unexpected() {
        let plan = Plan {
            mode: Mode::Unicast,
            conns: 3,
            messages: 6,
        };
        let mut t = SeqTracker::default();
        for seq in [1, 4, 2] {
            t.record(seq);
        }
        let tally = t.tally(1, &plan);
        assert_eq!(tally.expected, 2);
        assert_eq!(tally.unique, 2);
        assert_eq!(tally.lost, 0);
        assert_eq!(tally.unexpected, 1);
    }

    #[test]
    fn merge_adds_fields() {
        let a = SeqTally {
            expected: 1,
            received: 2,
            unique: 3,
            lost: 4,
            duplicated: 5,
            unexpected: 6,
        };
        let mut b = a;
        b.merge(&a);
        assert_eq!(b.expected, 2);
        assert_eq!(b.unexpected, 12);
        assert_eq!(b.lost, 8);
    }
}
