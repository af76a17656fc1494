//! What an attempt's answer means, and when to try again.
//!
//! 2xx is success. No answer (connection refused, reset, timeout), 429 and 5xx are
//! worth retrying: the target may recover. Anything else (other 4xx, 1xx, 3xx: redirects
//! are not followed) is final: the same request would get the same answer.
//!
//! Retries wait with exponential backoff and full jitter (a uniformly random wait between
//! zero and `base × 2^(retry-1)`, capped at `max`), so thousands of timers failing against
//! one recovering target spread their retries instead of hitting it in waves.

use crate::store::{Next, RetryPolicy};

/// How an attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Success,
    /// No answer, 429 or 5xx.
    Retryable,
    /// Any other answer.
    Final,
}

/// The verdict on an answer with `status`, or on no answer (`None`).
pub fn judge(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Success,
        None | Some(429) | Some(500..=599) => Verdict::Retryable,
        Some(_) => Verdict::Final,
    }
}

/// The wait before retry number `retry` (1 for the first retry), for a `random` number in
/// `[0, 1)`.
pub fn delay_ms(policy: &RetryPolicy, retry: u32, random: f64) -> u64 {
    let doublings = retry.saturating_sub(1).min(63);
    let ceiling = policy
        .base_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_ms);
    // Full jitter; `as` saturates, and `random` < 1 keeps the result within the ceiling.
    (ceiling as f64 * random.clamp(0.0, 1.0)) as u64
}

/// What follows attempt number `attempt` with `verdict`, at `now_ms`.
pub fn next(
    policy: &RetryPolicy,
    attempt: u32,
    verdict: Verdict,
    now_ms: u64,
    random: f64,
) -> Next {
    match verdict {
        Verdict::Success => Next::Succeeded,
        Verdict::Retryable if attempt < policy.max_attempts => Next::Retry {
            due_ms: now_ms.saturating_add(delay_ms(policy, attempt, random)),
        },
        Verdict::Retryable | Verdict::Final => Next::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_ms: 1000,
        max_ms: 30_000,
    };

    #[test]
    fn answers_are_judged_like_http_clients_should() {
        assert_eq!(judge(Some(200)), Verdict::Success);
        assert_eq!(judge(Some(204)), Verdict::Success);
        assert_eq!(judge(None), Verdict::Retryable);
        assert_eq!(judge(Some(429)), Verdict::Retryable);
        assert_eq!(judge(Some(500)), Verdict::Retryable);
        assert_eq!(judge(Some(503)), Verdict::Retryable);
        assert_eq!(judge(Some(400)), Verdict::Final);
        assert_eq!(judge(Some(404)), Verdict::Final);
        assert_eq!(judge(Some(301)), Verdict::Final);
        assert_eq!(judge(Some(101)), Verdict::Final);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let top = |retry| delay_ms(&POLICY, retry, 0.999_999);
        assert_eq!([top(1), top(2), top(3), top(4)], [999, 1999, 3999, 7999]);
        assert_eq!(top(6), 29_999, "capped at max_ms");
        assert_eq!(top(200), 29_999, "no overflow for absurd retry numbers");
        assert_eq!(delay_ms(&POLICY, 3, 0.0), 0);
        assert_eq!(delay_ms(&POLICY, 3, 0.5), 2000);
        let huge = RetryPolicy {
            base_ms: u64::MAX,
            max_ms: u64::MAX,
            ..POLICY
        };
        assert!(delay_ms(&huge, 60, 0.5) > 0);
    }

    #[test]
    fn jitter_spreads_retries_over_the_whole_window() {
        let waits: Vec<u64> = (0..1000)
            .map(|_| delay_ms(&POLICY, 3, fastrand::f64()))
            .collect();
        assert!(waits.iter().all(|w| *w < 4000));
        assert!(waits.iter().any(|w| *w < 1000) && waits.iter().any(|w| *w > 3000));
    }

    #[test]
    fn retries_stop_at_max_attempts_and_on_final_answers() {
        assert_eq!(
            next(&POLICY, 1, Verdict::Retryable, 10_000, 0.5),
            Next::Retry { due_ms: 10_500 }
        );
        assert_eq!(
            next(&POLICY, 4, Verdict::Retryable, 0, 0.0),
            Next::Retry { due_ms: 0 }
        );
        assert_eq!(next(&POLICY, 5, Verdict::Retryable, 0, 0.5), Next::Failed);
        assert_eq!(next(&POLICY, 1, Verdict::Final, 0, 0.5), Next::Failed);
        assert_eq!(next(&POLICY, 5, Verdict::Success, 0, 0.5), Next::Succeeded);
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(next(&once, 1, Verdict::Retryable, 0, 0.5), Next::Failed);
    }
}
