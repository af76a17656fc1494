//! Timer churn: timers created at a steady rate, due 0.2–5 s later, a fifth of them
//! cancelled shortly after, all aimed at an HTTP sink in this process.
//!
//! A timer that was not cancelled must reach the sink exactly once (it answers 200, so
//! pushhub has no reason to call again); a cancelled one never. The ledger here counts
//! both ways of failing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::routing::any;
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::sleep;

use super::phase::Phase;
use crate::http::HttpConn;

/// One timer's story.
#[derive(Debug, Default, Clone, Copy)]
struct TimerEntry {
    created: bool,
    cancelled: bool,
    arrivals: u32,
}

/// Every timer the churn made, by the soak's own number (the sink's path).
#[derive(Debug, Default)]
pub struct TimerLedger {
    entries: Mutex<HashMap<u64, TimerEntry>>,
    /// Latest due time of any created timer, Unix ms.
    last_due_ms: Mutex<u64>,
}

/// The churn's verdict.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct TimerTally {
    /// Timers the server created.
    pub created: u64,
    /// Of them, cancelled before firing.
    pub cancelled: u64,
    /// Calls the sink received.
    pub arrivals: u64,
    /// Not cancelled, never called.
    pub lost: u64,
    /// Called more than once (extra calls).
    pub duplicated: u64,
    /// Called although the cancel was accepted.
    pub fired_after_cancel: u64,
}

impl TimerLedger {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, TimerEntry>) -> R) -> R {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Latest due time of any created timer, Unix ms.
    pub fn last_due_ms(&self) -> u64 {
        *self.last_due_ms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts every way the timers ended.
    pub fn tally(&self) -> TimerTally {
        self.with(|entries| {
            let mut t = TimerTally::default();
            for e in entries.values().filter(|e| e.created) {
                t.created += 1;
                t.arrivals += u64::from(e.arrivals);
                if e.cancelled {
                    t.cancelled += 1;
                    if e.arrivals > 0 {
                        t.fired_after_cancel += 1;
                    }
                } else if e.arrivals == 0 {
                    t.lost += 1;
                } else {
                    t.duplicated += u64::from(e.arrivals - 1);
                }
            }
            t
        })
    }
}

/// Starts the sink on 127.0.0.1:0: `ANY /t/{n}` records an arrival of timer `n`.
pub async fn start_sink(ledger: Arc<TimerLedger>) -> Result<SocketAddr> {
    async fn arrive(State(ledger): State<Arc<TimerLedger>>, Path(n): Path<u64>) -> &'static str {
        ledger.with(|e| e.entry(n).or_default().arrivals += 1);
        "ok"
    }
    let app = axum::Router::new()
        .route("/t/{n}", any(arrive))
        .with_state(ledger);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// Creates timers at `rate` per second while the phase is `Chaos`, cancelling a fifth.
pub async fn churn(
    api: SocketAddr,
    app: String,
    sink: SocketAddr,
    rate: f64,
    ledger: Arc<TimerLedger>,
    phase: watch::Receiver<Phase>,
) -> Result<()> {
    let authority = api.to_string();
    let mut conn = HttpConn::connect(api, &authority).await?;
    let pause = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut n = 0u64;
    while *phase.borrow() == Phase::Chaos {
        n += 1;
        let delay_ms = fastrand::u64(200..5000);
        let body = serde_json::json!({"app": app, "url": format!("http://{sink}/t/{n}"), "delay_ms": delay_ms});
        let answer = conn
            .request(
                Method::POST,
                "/v1/timers",
                Some(Bytes::from(body.to_string())),
                None,
            )
            .await;
        match answer {
            Ok((status, body)) if status.is_success() => {
                let id = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
                    .context("timer answer without an id")?;
                let due = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["due_ms"].as_u64())
                    .unwrap_or(0);
                ledger.with(|e| e.entry(n).or_default().created = true);
                {
                    let mut last = ledger.last_due_ms.lock().unwrap_or_else(|e| e.into_inner());
                    *last = (*last).max(due);
                }
                if fastrand::u8(0..5) == 0 {
                    tokio::spawn(cancel(api, id, n, ledger.clone()));
                }
            }
            Ok(_) => {}
            Err(_) => conn = HttpConn::connect(api, &authority).await?,
        }
        sleep(pause).await;
    }
    Ok(())
}

/// Cancels timer `id` (the soak's `n`) after a random wait below a second.
async fn cancel(api: SocketAddr, id: u64, n: u64, ledger: Arc<TimerLedger>) {
    sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
    let authority = api.to_string();
    let Ok(mut conn) = HttpConn::connect(api, &authority).await else {
        return;
    };
    if let Ok((status, _)) = conn
        .request(Method::DELETE, &format!("/v1/timers/{id}"), None, None)
        .await
    {
        if status.is_success() {
            ledger.with(|e| e.entry(n).or_default().cancelled = true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_tells_lost_duplicated_and_late_cancels_apart() {
        let ledger = TimerLedger::default();
        ledger.with(|e| {
            e.insert(
                1,
                TimerEntry {
                    created: true,
                    cancelled: false,
                    arrivals: 1,
                },
            );
            e.insert(
                2,
                TimerEntry {
                    created: true,
                    cancelled: false,
                    arrivals: 0,
                },
            );
            e.insert(
                3,
                TimerEntry {
                    created: true,
                    cancelled: false,
                    arrivals: 3,
                },
            );
            e.insert(
                4,
                TimerEntry {
                    created: true,
                    cancelled: true,
                    arrivals: 0,
                },
            );
            e.insert(
                5,
                TimerEntry {
                    created: true,
                    cancelled: true,
                    arrivals: 1,
                },
            );
            e.insert(
                6,
                TimerEntry {
                    created: false,
                    cancelled: false,
                    arrivals: 1,
                },
            );
        });
        let t = ledger.tally();
        assert_eq!(
            (
                t.created,
                t.cancelled,
                t.lost,
                t.duplicated,
                t.fired_after_cancel
            ),
            (5, 2, 1, 2, 1)
        );
        assert_eq!(t.arrivals, 5);
    }
}
