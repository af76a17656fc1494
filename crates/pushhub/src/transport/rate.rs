//! A token bucket: how every client rate limit in pushhub (frames per connection, HTTP
//! requests per address) lets short bursts pass and cuts sustained floods off.
//!
//! It never reads the clock itself: callers pass the time, so a connection can charge a
//! whole read's worth of frames against one clock reading.

use tokio::time::Instant;

/// Seconds of the allowed rate a bucket holds: a client may burst to twice its rate.
const BURST_SECONDS: f64 = 2.0;

/// Tokens that refill at a rate and are spent one per event.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket (whatever the rate it is later spent at), as of `now`.
    pub fn full(now: Instant) -> Self {
        Self {
            tokens: f64::MAX,
            refilled: now,
        }
    }

    /// Take one token at `per_second`; false when none is left. `per_second == 0`: no
    /// limit. Spending many tokens at the same `now` costs no clock reading and no
    /// division, only a comparison and a subtraction each.
    pub fn spend(&mut self, per_second: u32, now: Instant) -> bool {
        if per_second == 0 {
            return true;
        }
        let rate = f64::from(per_second);
        let capacity = BURST_SECONDS * rate;
        if now > self.refilled {
            let elapsed = now.duration_since(self.refilled).as_secs_f64();
            self.tokens = self.tokens.min(capacity) + elapsed * rate;
            self.refilled = now;
        }
        self.tokens = self.tokens.min(capacity);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// True when, at `per_second`, the bucket has refilled completely by `now`: it then
    /// behaves exactly like a new one, so a table of buckets may forget it.
    pub fn is_full(&self, per_second: u32, now: Instant) -> bool {
        let rate = f64::from(per_second);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * rate >= BURST_SECONDS * rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_pass_floods_do_not_and_time_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(start);
        let passed = (0..100).filter(|_| bucket.spend(10, start)).count();
        assert_eq!(passed, 20, "a burst of twice the rate");
        assert!(!bucket.spend(10, start + Duration::from_millis(50)));
        assert!(
            bucket.spend(10, start + Duration::from_millis(200)),
            "refilled after 0.1 s"
        );
        let mut unlimited = TokenBucket::full(start);
        assert!((0..10_000).all(|_| unlimited.spend(0, start)));
    }

    #[test]
    fn a_lower_rate_later_caps_what_is_held() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(start);
        assert!(bucket.spend(1000, start));
        let passed = (0..100).filter(|_| bucket.spend(5, start)).count();
        assert_eq!(passed, 10, "the new rate's burst, not the old one's");
    }

    #[test]
    fn a_refilled_bucket_is_full() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(start);
        assert!(bucket.is_full(10, start));
        assert!(bucket.spend(10, start));
        assert!(!bucket.is_full(10, start));
        assert!(bucket.is_full(10, start + Duration::from_millis(100)));
    }
}
