//! Heartbeat pings and the idle timeout.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::util::TestServer;

fn quick() -> TestServer {
    TestServer::start_with(
        &[],
        &[("PUSHHUB_HEARTBEAT", "1"), ("PUSHHUB_IDLE_TIMEOUT", "3")],
    )
}

#[tokio::test]
async fn server_pings_and_a_responsive_client_stays() {
    let server = quick();
    let (mut client, welcome) = server.native("demo", "1").await;
    assert_eq!(welcome["heartbeat"], 1);
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(4500);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), client.ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("connection ended"),
            Err(_) => {}
        }
    }
    assert!(pings >= 3, "pings: {pings}");
    assert_eq!(server.push("1", serde_json::json!("alive")).await, 1);
}

#[tokio::test]
async fn silent_client_is_closed_after_idle_timeout() {
    let server = quick();
    let (mut client, _) = server.native("demo", "1").await;
    // Not reading means not answering pings: the server hears nothing.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, 4000);
    assert!(reason.contains("idle"), "{reason}");
    server.wait_connections(0).await;
}
