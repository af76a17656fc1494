//! Retrying a batch of webhook events with exponential backoff: what the lifecycle
//! webhook and Pusher's webhooks both do when a backend fails.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The wait before the first retry; it doubles after each, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Run `attempt` up to `max_attempts` times until one succeeds, waiting an exponential
/// backoff with jitter in between (so many nodes retrying one backend spread out), and
/// giving up early when `stop` fires. Each failure is logged with `what` (the webhook's
/// kind), `app` and the batch's `events`; each retry calls `retried`. True when one try
/// succeeded.
pub async fn with_backoff<Fut>(
    max_attempts: u32,
    stop: &CancellationToken,
    (what, app, events): (&str, &str, usize),
    mut attempt: impl FnMut() -> Fut,
    retried: impl Fn(),
) -> bool
where
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = FIRST_BACKOFF;
    for tried in 1..=max_attempts {
        match attempt().await {
            Ok(()) => return true,
            Err(why) => tracing::warn!(app, attempt = tried, events, %why, "{what} failed"),
        }
        if tried == max_attempts {
            break;
        }
        retried();
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    false
}
