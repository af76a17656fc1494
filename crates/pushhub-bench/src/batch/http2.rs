//! The `batch` scenario's HTTP/2 row (`--h2-streams`): single `POST /v1/push` requests on
//! `--conns` HTTP/2 connections (prior knowledge), each carrying `--h2-streams` requests at
//! once, against the HTTP/1.1 rows where each connection carries one at a time. Same
//! pushes, same checks, same report as the other rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{BatchArgs, BatchResult};
use crate::proc_stats;
use crate::suite::server::RunningServer;

/// Measure single pushes over HTTP/2 on a running server.
pub(super) async fn measure(server: &RunningServer, args: &BatchArgs) -> Result<BatchResult> {
    let authority = server
        .api_url
        .strip_prefix("http://")
        .context("API URL is not http://")?;
    let next_user = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..args.conns.max(1) {
        let socket = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        socket.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
                .await
                .context("HTTP/2 handshake")?;
        tokio::spawn(connection);
        senders.push(sender);
    }
    let cpu_before = proc_stats::cpu_micros(server.pid).context("server gone")?;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.secs);
    let streams = senders.iter().flat_map(|sender| {
        (0..args.h2_streams.max(1)).map(|_| {
            let (sender, next_user) = (sender.clone(), next_user.clone());
            tokio::spawn(push_until(sender, args.users.max(1), next_user, until))
        })
    });
    let streams: Vec<_> = streams.collect();
    let mut latencies = Vec::new();
    for stream in futures_util::future::join_all(streams).await {
        latencies.extend(stream??);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = proc_stats::cpu_micros(server.pid).context("server gone")?;
    Ok(BatchResult::from_latencies(
        1,
        args.conns,
        latencies,
        secs,
        cpu_after - cpu_before,
    ))
}

/// Send single pushes one after another on one stream slot of `sender` until `until`;
/// each one's latency.
async fn push_until(
    mut sender: SendRequest<Full<Bytes>>,
    users: u64,
    next_user: Arc<AtomicU64>,
    until: Instant,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let n = next_user.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"app": "demo", "to": (n % users).to_string(), "event": "order", "data": {"n": n}});
        let request = Request::post("/v1/push")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let sent = Instant::now();
        sender.ready().await.context("connection not ready")?;
        let response = sender.send_request(request).await.context("push")?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        latencies.push(sent.elapsed());
        anyhow::ensure!(
            status.is_success(),
            "/v1/push over HTTP/2 answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(latencies)
}
