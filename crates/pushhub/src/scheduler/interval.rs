//! Interval timers (Swoole's `tick`): when the next tick is due, when the ticking ends,
//! and which intervals are allowed.
//!
//! Ticks are due on a grid fixed at creation: the first due time, then every
//! `every_ms` after it. A timer has at most one call in flight, and each tick is one
//! call, never retried (the next tick is its retry). Ticks that come due while the
//! timer's call is still running, or while no node is up, are not made one by one:
//! the first due tick fires as soon as it can (after downtime: at start, as cron's
//! catch-up run does), the others are skipped, and the next tick after it is the next
//! grid time still ahead. `times` counts calls made, so skipped ticks do not use it up.

use std::time::Duration;

use super::backoff::Verdict;
use crate::store::{Interval, Next};

/// Why an interval cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    /// Shorter than `timers.min_interval_ms`: every tick is a store write (durable, and
    /// in a cluster a Redis round trip), so very short intervals would swamp the store.
    #[error("interval_ms {every_ms} is below the minimum of {min_ms} ms (timers.min_interval_ms)")]
    TooShort {
        /// What was asked for.
        every_ms: u64,
        /// The bound.
        min_ms: u64,
    },
    /// Longer than a timer may be set ahead (`timers.max_delay`).
    #[error("interval_ms {every_ms} is above timers.max_delay ({max_ms} ms)")]
    TooLong {
        /// What was asked for.
        every_ms: u64,
        /// The bound.
        max_ms: u64,
    },
    /// `times` of 0: a timer that never fires.
    #[error("times must be at least 1 (or absent: until cancelled)")]
    NoTimes,
}

/// The interval `every_ms`, `times` calls in all (or until cancelled), if it lies within
/// `min` and `max`.
pub fn check(
    every_ms: u64,
    times: Option<u32>,
    min: Duration,
    max: Duration,
) -> Result<Interval, IntervalError> {
    let min_ms = u64::try_from(min.as_millis()).unwrap_or(u64::MAX);
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if every_ms < min_ms {
        return Err(IntervalError::TooShort { every_ms, min_ms });
    }
    if every_ms > max_ms {
        return Err(IntervalError::TooLong { every_ms, max_ms });
    }
    if times == Some(0) {
        return Err(IntervalError::NoTimes);
    }
    Ok(Interval { every_ms, times })
}

/// The first grid time after `now_ms` of a grid through `due_ms` with step `every_ms`,
/// and never `due_ms` itself.
pub fn next_due(due_ms: u64, every_ms: u64, now_ms: u64) -> u64 {
    let every = every_ms.max(1);
    let steps = now_ms.saturating_sub(due_ms) / every + 1;
    due_ms.saturating_add(steps.saturating_mul(every))
}

/// What follows call number `calls` of an interval timer, the tick due at `due_ms`,
/// which ended at `now_ms` with `verdict`. A call the target guard `refused` ends the
/// ticking (every tick would be refused); other failures do not. After the last call
/// the timer is `succeeded` or `failed` as that call went.
pub fn next(
    interval: &Interval,
    due_ms: u64,
    calls: u32,
    verdict: Verdict,
    refused: bool,
    now_ms: u64,
) -> Next {
    let last = interval.times.is_some_and(|times| calls >= times);
    match (refused, last, verdict) {
        (true, _, _) => Next::Failed,
        (false, true, Verdict::Success) => Next::Succeeded,
        (false, true, _) => Next::Failed,
        (false, false, _) => Next::Retry {
            due_ms: next_due(due_ms, interval.every_ms, now_ms),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Interval = Interval {
        every_ms: 1000,
        times: None,
    };

    #[test]
    fn ticks_stay_on_their_grid_and_missed_ones_are_skipped() {
        assert_eq!(next_due(10_000, 1000, 10_005), 11_000, "a quick call");
        assert_eq!(next_due(10_000, 1000, 10_999), 11_000);
        assert_eq!(
            next_due(10_000, 1000, 11_000),
            12_000,
            "due now: already fired"
        );
        assert_eq!(
            next_due(10_000, 1000, 13_500),
            14_000,
            "a call (or downtime) over three ticks: they are skipped"
        );
        assert_eq!(next_due(10_000, 1000, 9_000), 11_000, "a clock step back");
        assert_eq!(next_due(u64::MAX - 5, 1000, u64::MAX), u64::MAX);
    }

    #[test]
    fn ticking_goes_on_through_failures_and_ends_after_times_calls() {
        let next_tick = Next::Retry { due_ms: 11_000 };
        for verdict in [Verdict::Success, Verdict::Retryable, Verdict::Final] {
            assert_eq!(next(&SECOND, 10_000, 7, verdict, false, 10_010), next_tick);
        }
        assert_eq!(
            next(&SECOND, 10_000, 1, Verdict::Final, true, 10_010),
            Next::Failed,
            "a refused target would be refused at every tick"
        );
        let three = Interval {
            times: Some(3),
            ..SECOND
        };
        assert_eq!(
            next(&three, 10_000, 2, Verdict::Final, false, 10_010),
            next_tick
        );
        assert_eq!(
            next(&three, 10_000, 3, Verdict::Success, false, 10_010),
            Next::Succeeded
        );
        assert_eq!(
            next(&three, 10_000, 3, Verdict::Retryable, false, 10_010),
            Next::Failed
        );
    }

    #[test]
    fn intervals_are_bounded() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(60));
        assert_eq!(
            check(100, Some(2), min, max),
            Ok(Interval {
                every_ms: 100,
                times: Some(2)
            })
        );
        assert_eq!(
            check(99, None, min, max),
            Err(IntervalError::TooShort {
                every_ms: 99,
                min_ms: 100
            })
        );
        assert_eq!(
            check(60_001, None, min, max),
            Err(IntervalError::TooLong {
                every_ms: 60_001,
                max_ms: 60_000
            })
        );
        assert_eq!(check(100, Some(0), min, max), Err(IntervalError::NoTimes));
    }
}
