//! How often one client address may start an SSE stream or a long-poll
//! (`limits.max_requests_per_second_per_ip`): a client that re-requests in a tight loop
//! would otherwise keep a core busy with handshakes, attachments and empty answers.
//!
//! A well-behaved poller asks once per poll cycle and again at once after each answer, so
//! it sends about one request per message it receives; the limit (sustained, with bursts
//! of twice that) is far above it. The address is the one [`super::TrustedProxies`]
//! resolves, so clients behind a trusted proxy are told apart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::disconnect::Disconnect;
use crate::sync::lock;
use crate::transport::rate::TokenBucket;

/// Addresses remembered at most. Past this, buckets that have refilled (which behave like
/// forgotten ones) are dropped, at most once a second; an address that still finds no room
/// is not limited, so a flood from many addresses can neither grow memory nor lock out
/// clients that arrive meanwhile.
const MAX_TRACKED: usize = 65_536;
/// Least time between two sweeps of the table, so a full table costs one sweep a second,
/// not one per request.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The request budget of every client address, shared by the client listener's handlers.
#[derive(Clone, Default)]
pub struct RequestRate {
    per_second: u32,
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    buckets: HashMap<IpAddr, TokenBucket>,
    swept: Option<Instant>,
}

impl RequestRate {
    /// Each address may make `per_second` requests per second (bursts of twice that);
    /// 0: no limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            table: Arc::default(),
        }
    }

    /// Count one request from `address`; the reason to refuse it when the address has
    /// spent its budget. Requests from an unknown address are not limited.
    pub fn admit(&self, address: Option<IpAddr>) -> Result<(), Disconnect> {
        let per_second = self.per_second;
        let Some(address) = address.filter(|_| per_second > 0) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut table = lock(&self.table);
        let Table { buckets, swept } = &mut *table;
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&address) {
            if swept.is_some_and(|at| now < at + SWEEP_INTERVAL) {
                return Ok(());
            }
            *swept = Some(now);
            buckets.retain(|_, bucket| !bucket.is_full(per_second, now));
            if buckets.len() >= MAX_TRACKED {
                return Ok(());
            }
        }
        let allowed = buckets
            .entry(address)
            .or_insert_with(|| TokenBucket::full(now))
            .spend(per_second, now);
        if allowed {
            return Ok(());
        }
        Err(Disconnect::RATE_LIMITED.with_reason(format!(
            "rate limit: at most {per_second} SSE/poll requests per second from one address"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_budget() {
        let rate = RequestRate::new(5);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        let passed = (0..50).filter(|_| rate.admit(a).is_ok()).count();
        assert_eq!(passed, 10, "a burst of twice the rate");
        let refused = rate.admit(a).unwrap_err();
        assert_eq!(refused.code, Disconnect::RATE_LIMITED.code);
        assert!(rate.admit(b).is_ok());
        assert!((0..50).all(|_| rate.admit(None).is_ok()));
        let unlimited = RequestRate::new(0);
        assert!((0..1000).all(|_| unlimited.admit(a).is_ok()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded_and_forgets_refilled_addresses() {
        let rate = RequestRate::new(1000);
        let address = |i: u32| Some(IpAddr::from(i.to_be_bytes()));
        for i in 0..MAX_TRACKED as u32 {
            assert!(rate.admit(address(i)).is_ok());
        }
        assert!(
            rate.admit(address(u32::MAX)).is_ok(),
            "no room: not limited"
        );
        assert_eq!(lock(&rate.table).buckets.len(), MAX_TRACKED);
        tokio::time::advance(SWEEP_INTERVAL).await;
        assert!(rate.admit(address(u32::MAX)).is_ok());
        assert_eq!(
            lock(&rate.table).buckets.len(),
            1,
            "refilled ones forgotten"
        );
    }
}
