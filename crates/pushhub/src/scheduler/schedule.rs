//! The in-memory schedule: every pending timer as `(due ms, id)`, earliest first.
//!
//! An ordered set rather than a binary heap, so a cancelled timer leaves at once (a heap
//! would keep it until its due time) and every operation is O(log n). 16 bytes of key per
//! timer, about 25 bytes with the tree's own overhead: a million pending timers take
//! about 25 MiB. The records themselves stay in the store.

use std::collections::BTreeSet;

use crate::store::TimerId;

/// Pending timers by due time; equal due times go in id (creation) order.
#[derive(Debug, Default)]
pub struct Schedule {
    entries: BTreeSet<(u64, TimerId)>,
}

impl Schedule {
    /// Add a timer. True when it is now the earliest, so whoever sleeps until the earliest
    /// must wake up and look again.
    pub fn insert(&mut self, due_ms: u64, id: TimerId) -> bool {
        self.entries.insert((due_ms, id));
        self.entries.first() == Some(&(due_ms, id))
    }

    /// Remove a timer; false if it was not there.
    pub fn remove(&mut self, due_ms: u64, id: TimerId) -> bool {
        self.entries.remove(&(due_ms, id))
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<u64> {
        self.entries.first().map(|(due, _)| *due)
    }

    /// Take the earliest timer if it is due at `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, TimerId)> {
        match self.entries.first() {
            Some((due, _)) if *due <= now_ms => self.entries.pop_first(),
            _ => None,
        }
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_due_then_id_order_only_when_due() {
        let mut schedule = Schedule::default();
        assert!(schedule.insert(30, 1));
        assert!(schedule.insert(10, 3));
        assert!(!schedule.insert(10, 4), "not earlier than (10, 3)");
        assert!(schedule.insert(10, 2));
        assert!(!schedule.insert(20, 5));
        assert_eq!(schedule.len(), 5);
        assert_eq!(schedule.next_due(), Some(10));
        assert_eq!(schedule.pop_due(9), None);
        let mut popped = Vec::new();
        while let Some(entry) = schedule.pop_due(25) {
            popped.push(entry);
        }
        assert_eq!(popped, [(10, 2), (10, 3), (10, 4), (20, 5)]);
        assert_eq!(schedule.next_due(), Some(30));
    }

    #[test]
    fn cancel_removes_exactly_one_entry() {
        let mut schedule = Schedule::default();
        schedule.insert(10, 1);
        schedule.insert(10, 2);
        assert!(schedule.remove(10, 1));
        assert!(!schedule.remove(10, 1));
        assert!(!schedule.remove(11, 2), "the due time is part of the key");
        assert_eq!(schedule.pop_due(u64::MAX), Some((10, 2)));
        assert!(schedule.is_empty());
        assert_eq!(schedule.next_due(), None);
    }

    #[test]
    fn a_million_entries_stay_ordered() {
        let mut schedule = Schedule::default();
        // A scrambled insertion order (multiplication by an odd constant mod 2^20).
        for i in 0..1_000_000u64 {
            let id = (i * 742_938_285) % (1 << 20);
            schedule.insert(id % 1000, id);
        }
        let mut last = (0, 0);
        let mut count = 0;
        while let Some(entry) = schedule.pop_due(u64::MAX) {
            assert!(entry >= last);
            last = entry;
            count += 1;
        }
        assert_eq!(count, 1_000_000);
    }
}
