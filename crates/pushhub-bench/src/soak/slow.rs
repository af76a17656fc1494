//! Slow consumers: clients that stop reading while large messages keep coming.
//!
//! Each one connects as user `slow/{i}` with a 4 KiB receive buffer, then reads nothing
//! for `stall` while the pusher sends 32 KiB messages to the group `slow/*`. The server
//! must cut it off (close 4001) once its queue bound is hit, rather than let its memory
//! grow; the report counts the rounds that ended that way and those that did not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::StreamExt;
use hyper::Method;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::phase::Phase;
use crate::http::HttpConn;

/// How the slow consumers' rounds ended.
#[derive(Debug, Default)]
pub struct SlowCounters {
    /// Rounds in which the server closed the stalled client with 4001.
    pub cut_off: AtomicU64,
    /// Rounds in which the connection ended without a close frame: what a cut-off slow
    /// consumer sees when its socket is too full for the server's close frame to fit.
    pub dropped: AtomicU64,
    /// Rounds in which it was closed with another code.
    pub closed_otherwise: AtomicU64,
    /// Rounds in which the client was still connected after the stall.
    pub survived: AtomicU64,
    /// Rounds that could not connect.
    pub connect_errors: AtomicU64,
    /// Large pushes the server accepted.
    pub pushes: AtomicU64,
}

/// One slow consumer, in rounds, while the phase is `Chaos`.
pub async fn run_consumer(
    client: SocketAddr,
    app: String,
    index: usize,
    stall: Duration,
    counters: Arc<SlowCounters>,
    phase: watch::Receiver<Phase>,
) {
    while *phase.borrow() == Phase::Chaos {
        match round(client, &app, index, stall).await {
            Ok(Some(CloseCode::Library(4001))) => {
                counters.cut_off.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(CloseCode::Abnormal)) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(_)) => {
                counters.closed_otherwise.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                counters.survived.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        sleep(Duration::from_secs(1)).await;
    }
}

/// Connect, stall, then read what is left: the close code if the server closed.
async fn round(
    client: SocketAddr,
    app: &str,
    index: usize,
    stall: Duration,
) -> Result<Option<CloseCode>> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(client).await?;
    let url = format!("ws://{client}/v1/ws?app={app}&user=slow/{index}");
    let (mut ws, _) = timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, stream),
    )
    .await??;
    sleep(stall).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await else {
            return Ok(None);
        };
        match frame {
            Some(Ok(Message::Close(Some(close)))) => return Ok(Some(close.code)),
            Some(Ok(Message::Close(None))) => return Ok(Some(CloseCode::Status)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Ok(Some(CloseCode::Abnormal)),
        }
    }
}

/// Pushes 32 KiB messages to `slow/*` at `rate` per second while the phase is `Chaos`.
pub async fn push_large(
    api: SocketAddr,
    app: String,
    rate: f64,
    counters: Arc<SlowCounters>,
    phase: watch::Receiver<Phase>,
) -> Result<()> {
    let authority = api.to_string();
    let mut conn = HttpConn::connect(api, &authority).await?;
    let body = serde_json::json!({"app": app, "to": "slow/*", "event": "bulk", "data": "x".repeat(32 * 1024)});
    let body = Bytes::from(body.to_string());
    let pause = Duration::from_secs_f64(1.0 / rate.max(0.001));
    while *phase.borrow() == Phase::Chaos {
        match conn
            .request(Method::POST, "/v1/push", Some(body.clone()), None)
            .await
        {
            Ok((status, _)) if status.is_success() => {
                counters.pushes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => conn = HttpConn::connect(api, &authority).await?,
        }
        sleep(pause).await;
    }
    Ok(())
}
