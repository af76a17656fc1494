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
    assert!(server.log().contains("stopped"));
}
