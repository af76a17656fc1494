//! Message rates for `pushhub status`: how many messages per second were published and
//! delivered lately, which a one-shot command cannot work out from two readings of its own.
//!
//! A task copies the counters of [`Stats`] (the same ones `/v1/stats` and `/metrics`
//! show) once a second and keeps a minute of copies; a rate is the difference between the
//! counters now and the copy taken a window ago, divided by the time between them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::{Stats, StatsSnapshot};
use crate::sync::lock;

/// How often the counters are copied.
const EVERY: Duration = Duration::from_secs(1);

/// The longest window asked for; older copies are dropped.
const KEPT: Duration = Duration::from_secs(60);

/// One copy of the counters a rate is computed from.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    published: u64,
    deliveries: u64,
}

impl Sample {
    fn of(at: Instant, stats: &StatsSnapshot) -> Self {
        Self {
            at,
            published: stats.messages_published,
            deliveries: stats.deliveries,
        }
    }
}

/// Rates over one window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// The seconds the rate covers: the window asked for, or less just after start.
    pub window_secs: f64,
    /// Messages published per second (one per push per target channel).
    pub published_per_sec: f64,
    /// Messages queued to connections per second.
    pub delivered_per_sec: f64,
}

/// The last minute of counter copies; cheap to clone.
#[derive(Clone)]
pub struct Rates {
    stats: Arc<Stats>,
    samples: Arc<Mutex<VecDeque<Sample>>>,
}

impl Rates {
    /// Start copying `stats` once a second until `shutdown`.
    pub fn start(stats: Arc<Stats>, shutdown: CancellationToken) -> Self {
        let rates = Self {
            stats,
            samples: Arc::default(),
        };
        let sampler = rates.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = ticks.tick() => sampler.sample(Instant::now()),
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        rates
    }

    fn sample(&self, now: Instant) {
        let sample = Sample::of(now, &self.stats.snapshot());
        let mut samples = lock(&self.samples);
        samples.push_back(sample);
        while samples
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.at) > KEPT + EVERY)
        {
            samples.pop_front();
        }
    }

    /// The rates over the last `window` (at most a minute), from the oldest copy inside
    /// it to the counters now; `None` until a copy is at least half a second old.
    pub fn over(&self, window: Duration) -> Option<Rate> {
        let now = Instant::now();
        let current = Sample::of(now, &self.stats.snapshot());
        let start = lock(&self.samples)
            .iter()
            .find(|sample| now.duration_since(sample.at) <= window + EVERY / 2)
            .copied()?;
        rate(&start, &current)
    }
}

/// The rates between two copies, if they are far enough apart to mean anything.
fn rate(start: &Sample, end: &Sample) -> Option<Rate> {
    let secs = end.at.duration_since(start.at).as_secs_f64();
    if secs < 0.5 {
        return None;
    }
    let per_sec = |from: u64, to: u64| to.saturating_sub(from) as f64 / secs;
    Some(Rate {
        window_secs: (secs * 10.0).round() / 10.0,
        published_per_sec: per_sec(start.published, end.published),
        delivered_per_sec: per_sec(start.deliveries, end.deliveries),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rates_follow_the_counters_over_the_window() {
        let stats = Arc::new(Stats::default());
        let rates = Rates {
            stats: stats.clone(),
            samples: Arc::default(),
        };
        assert_eq!(rates.over(Duration::from_secs(10)), None, "no copy yet");
        for _ in 0..20 {
            rates.sample(Instant::now());
            stats.published(3);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let rate = rates.over(Duration::from_secs(10)).expect("a rate");
        assert_eq!(rate.window_secs, 10.0);
        assert_eq!(rate.published_per_sec, 1.0);
        assert_eq!(rate.delivered_per_sec, 3.0);
        tokio::time::advance(Duration::from_secs(120)).await;
        rates.sample(Instant::now());
        assert_eq!(lock(&rates.samples).len(), 1, "older copies are dropped");
        assert_eq!(
            rates.over(Duration::from_secs(10)),
            None,
            "a copy of now is no rate"
        );
    }
}
