//! Graceful shutdown on SIGTERM.

use serde_json::json;

use crate::util::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_client_with_1001_and_exits_zero() {
    let mut server = TestServer::start();
    let (mut native, _) = server.native("demo", "1").await;
    let mut jd = server.jdserver("demo", json!("2")).await;
    server.wait_connections(2).await;
    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for client in [&mut native, &mut jd] {
        let (code, reason) = client.closed().await;
        assert_eq!(code, 1001);
        assert!(reason.contains("shutting down"), "{reason}");
    }
    server.wait_log("stopped", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_past_the_grace_period_for_a_trickling_request() {
    use tokio::io::AsyncWriteExt;
    let mut server = TestServer::start_with(&[], &[("PUSHHUB_SHUTDOWN_GRACE", "1")]);
    let mut slow = tokio::net::TcpStream::connect(server.api).await.unwrap();
    slow.write_all(b"POST /v1/push HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"app\"")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    server.wait_log("grace period ended", 1).await;
}
