//! Logging in after connecting (seed 003): the rules for a connection that waits without a
//! user until it presents a credential.
//!
//! A waiting connection is not attached to the hub at all: it has no user, no channel, no
//! presence and no place in the per-user limit, so nothing published (not even to the
//! app's `all` channel) reaches it. Logging in attaches it exactly as a connect with the
//! credential would (presence, `max_connections_per_user` with kick-oldest, the `connect`
//! lifecycle event, resume from a cursor); logging out detaches it as a close would (the
//! `disconnect` event, code 1000 "logged out") and leaves the socket waiting again.
//!
//! Every login may cost a call to the app's auth backend, so each connection gets only so
//! many attempts a minute; the backend check bounds its own concurrency and time besides.

use std::time::Duration;

use tokio::time::Instant;

use crate::disconnect::Disconnect;

/// The window a connection's login attempts are counted in.
const WINDOW: Duration = Duration::from_secs(60);

/// An app's login-later policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Most login attempts one connection may make in a minute.
    pub max_per_minute: u32,
}

/// The reason a logged-in connection's session ends when its client logs out: a normal
/// end, told to the app's lifecycle webhook like any other.
pub fn logged_out() -> Disconnect {
    Disconnect::NORMAL.with_reason("logged out")
}

/// One connection's login attempts in the current minute.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempts {
    window_start: Instant,
    count: u32,
}

impl LoginAttempts {
    /// No attempt yet, as of `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            count: 0,
        }
    }

    /// Count an attempt at `now` under `policy`; a refusal says how long until the next
    /// one is allowed.
    pub fn attempt(&mut self, policy: LoginPolicy, now: Instant) -> Result<(), Duration> {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        if self.count >= policy.max_per_minute {
            let open_again = self.window_start + WINDOW;
            return Err(open_again.saturating_duration_since(now));
        }
        self.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_beyond_the_rate_wait_for_the_next_minute() {
        let start = Instant::now();
        let policy = LoginPolicy { max_per_minute: 2 };
        let mut attempts = LoginAttempts::new(start);
        assert!(attempts.attempt(policy, start).is_ok());
        assert!(attempts
            .attempt(policy, start + Duration::from_secs(1))
            .is_ok());
        let wait = attempts
            .attempt(policy, start + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        assert!(attempts.attempt(policy, start + WINDOW).is_ok());
    }
}
