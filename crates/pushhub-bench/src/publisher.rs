//! The publisher: POSTs the plan's messages at a fixed rate.
//!
//! Each message carries `{"seq":i,"t":<unix µs at send>}` so that every
//! receiving client can compute end-to-end latency and detect loss/duplicates.

use std::ops::Range;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};

use crate::clock::unix_micros;
use crate::hist::{LatencyHist, LatencySummary};
use crate::http::HttpConn;
use crate::plan::{user_name, Plan};
use crate::target::ApiTarget;

/// How to publish.
#[derive(Clone, Debug)]
pub struct PublishConfig {
    /// Where to POST: one server, or several that share nothing (relays side by side),
    /// each of which gets every message at the same tick.
    pub apis: Vec<ApiTarget>,
    /// App every message is published to.
    pub app: String,
    /// Messages per second (paced from the first send; a slow server delays, never skips).
    pub rate: f64,
    /// Optional bearer token for the push API.
    pub token: Option<String>,
}

/// What the publisher observed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublishStats {
    /// Messages every server accepted (HTTP 2xx).
    pub accepted: u64,
    /// Messages that failed on some server (transport error or non-2xx).
    pub errors: u64,
    /// Sum of the `delivered` counts the server answered with.
    pub server_delivered: u64,
    /// Wall clock (µs) just before the first POST.
    pub first_send_us: u64,
    /// Wall clock (µs) just before the last POST.
    pub last_send_us: u64,
    /// POST round-trip times (with several servers, until the last answered).
    pub request_latency: LatencySummary,
    /// First error seen, for the human report.
    pub first_error: Option<String>,
}

/// The push API's answer, `{"id":"<n>","delivered":N}`.
#[derive(Debug, Deserialize)]
struct PushAnswer {
    #[serde(default)]
    delivered: u64,
}

/// Sends messages `seqs` (usually `0..plan.messages`) following `plan`'s routing.
pub async fn publish(cfg: &PublishConfig, plan: &Plan, seqs: Range<u64>) -> Result<PublishStats> {
    let mut conns = Vec::with_capacity(cfg.apis.len());
    for api in &cfg.apis {
        conns.push(
            HttpConn::connect(api.addr, &api.authority)
                .await
                .context("publisher connect")?,
        );
    }
    let period = Duration::from_secs_f64(1.0 / cfg.rate.max(0.001));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stats = PublishStats::default();
    let mut rtt = LatencyHist::new();
    let first = seqs.start;
    for seq in seqs {
        ticker.tick().await;
        let t = unix_micros();
        if seq == first {
            stats.first_send_us = t;
        }
        stats.last_send_us = t;
        let body = push_body(&cfg.app, plan, seq, t);
        let started = Instant::now();
        let sends = conns.iter_mut().zip(&cfg.apis).map(|(conn, api)| {
            let body = body.clone();
            async move {
                let sent = send_one(conn, &api.path("/v1/push"), body, cfg.token.as_deref()).await;
                if sent.is_err() {
                    // The connection may be broken; start a new one for the next message.
                    if let Ok(c) = HttpConn::connect(api.addr, &api.authority).await {
                        *conn = c;
                    }
                }
                sent
            }
        });
        let mut failed = false;
        for sent in futures_util::future::join_all(sends).await {
            match sent {
                Ok(delivered) => stats.server_delivered += delivered,
                Err(e) => {
                    failed = true;
                    stats.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        if failed {
            stats.errors += 1;
        } else {
            stats.accepted += 1;
        }
        rtt.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    stats.request_latency = rtt.summary();
    Ok(stats)
}

/// JSON body of message `seq`.
fn push_body(app: &str, plan: &Plan, seq: u64, t_us: u64) -> Bytes {
    let to = plan
        .recipient(seq)
        .map_or_else(|| "*".to_string(), user_name);
    let body = serde_json::json!({
        "app": app,
        "to": to,
        "event": "bench",
        "data": {"seq": seq, "t": t_us},
    });
    Bytes::from(body.to_string())
}

/// POSTs one message and returns the server's `delivered` count.
async fn send_one(
    conn: &mut HttpConn,
    path: &str,
    body: Bytes,
    token: Option<&str>,
) -> Result<u64> {
    let (status, resp) = conn.request(Method::POST, path, Some(body), token).await?;
    if !status.is_success() {
        anyhow::bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&resp[..resp.len().min(200)])
        );
    }
    let answer: PushAnswer = serde_json::from_slice(&resp).context("push response JSON")?;
    Ok(answer.delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Mode;

    #[test]
    fn bodies_route_like_the_plan() {
        let plan = Plan {
            mode: Mode::Unicast,
            conns: 3,
            messages: 10,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&push_body("demo", &plan, 4, 99)).unwrap();
        assert_eq!(v["to"], "u1");
        assert_eq!(v["data"]["seq"], 4);
        assert_eq!(v["data"]["t"], 99);
        let plan = Plan {
            mode: Mode::Broadcast,
            ..plan
        };
        let v: serde_json::Value =
            serde_json::from_slice(&push_body("demo", &plan, 4, 99)).unwrap();
        assert_eq!(v["to"], "*");
        assert_eq!(v["app"], "demo");
    }
}
