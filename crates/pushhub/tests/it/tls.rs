//! TLS in pushhub itself: `wss://`, `https://` (SSE, long-poll, the API) and raw TCP over
//! TLS, with self-signed certificates made in the test; the certificate replaced on SIGHUP
//! without dropping connections; `check-config` on bad `[tls]` files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::util::{TestServer, WAIT};

/// A self-signed certificate for `localhost`, with its key, as PEM, and its DER.
struct SelfSigned {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl SelfSigned {
    /// A new key pair and a certificate with this common name and serial number.
    fn new(common_name: &str, serial: u64) -> Self {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// The certificate and key files a server is configured with, in a directory of their own.
struct Files {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(first: &SelfSigned) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = Self {
            cert: dir.path().join("fullchain.pem"),
            key: dir.path().join("privkey.pem"),
            dir,
        };
        files.install_cert(first);
        files.install_key(first);
        files
    }

    /// Replace a file as a certificate manager does: write aside, then rename over it.
    fn replace(&self, path: &Path, text: &str) {
        let aside = self.dir.path().join("incoming.pem");
        std::fs::write(&aside, text).expect("write");
        std::fs::rename(&aside, path).expect("rename");
    }

    fn install_cert(&self, pair: &SelfSigned) {
        self.replace(&self.cert, &pair.cert_pem);
    }

    fn install_key(&self, pair: &SelfSigned) {
        self.replace(&self.key, &pair.key_pem);
    }

    /// A configuration file with `top` (top-level keys) and a `[tls]` table naming these
    /// files plus `tls` (more of its keys).
    fn config(&self, top: &str, tls: &str) -> PathBuf {
        let path = self.dir.path().join("pushhub.toml");
        let text = format!(
            "dynamic_apps = true\n{top}\n[tls]\ncert = {:?}\nkey = {:?}\n{tls}",
            self.cert.display().to_string(),
            self.key.display().to_string(),
        );
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// A TLS client that trusts exactly these certificates and offers these ALPN names.
fn connector(trusted: &[&SelfSigned], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for pair in trusted {
        roots.add(pair.der.clone()).expect("trust anchor");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` as `localhost`, and the certificate the server presented.
async fn tls_connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed");
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned();
    (stream, presented)
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A `wss://` native client of user `user`, after its welcome; and the server's certificate.
async fn wss(
    server: &TestServer,
    connector: &TlsConnector,
    user: &str,
) -> (Wss, CertificateDer<'static>) {
    let (stream, presented) = tls_connect(connector, server.client).await;
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "the HTTP listener negotiates http/1.1"
    );
    let url = format!(
        "wss://localhost:{}/v1/ws?app=demo&user={user}",
        server.client.port()
    );
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("websocket handshake timed out")
        .expect("websocket handshake failed");
    let welcome = ws_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, presented)
}

/// The next text frame as JSON, skipping pings.
async fn ws_json(ws: &mut Wss) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame within the wait")
            .expect("connection ended")
            .expect("websocket error");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Send an HTTP/1.1 GET over `stream` and read until the response holds every one of
/// `wanted` (a streaming response never ends by itself), or to its end.
async fn http_get<S>(stream: &mut S, path: &str, wanted: &[&str]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_until(stream, wanted).await
}

/// Read from `stream` until what was read holds every one of `wanted`, or to its end.
async fn read_until<S>(stream: &mut S, wanted: &[&str]) -> String
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if !wanted.is_empty() && wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("waited for {wanted:?}; got so far:\n{text}"))
            .unwrap_or(0);
        if n == 0 {
            return text;
        }
        seen.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn wss_and_https_serve_and_sighup_swaps_the_certificate_without_dropping_anyone() {
    let first = SelfSigned::new("pushhub first", 1);
    let second = SelfSigned::new("pushhub second", 2);
    let files = Files::new(&first);
    let config = files.config("", "");
    let server = TestServer::start_with(&["--config", config.to_str().expect("path")], &[]);
    server.wait_log("TLS on client", 1).await;
    let trusting_both = connector(&[&first, &second], &[b"http/1.1"]);

    // wss://: the first certificate, and pushes arrive.
    let (mut old, presented) = wss(&server, &trusting_both, "1").await;
    assert_eq!(presented, first.der);
    server.push("1", json!("before")).await;
    assert_eq!(ws_json(&mut old).await["data"], "before");

    // https:// SSE: headers, the welcome, then a push.
    let (mut sse, _) = tls_connect(&trusting_both, server.client).await;
    let head = http_get(&mut sse, "/v1/sse?app=demo&user=2", &["\"welcome\""]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    server.push("2", json!("over-sse")).await;
    read_until(&mut sse, &["over-sse"]).await;

    // https:// long-poll.
    let (mut poll, _) = tls_connect(&trusting_both, server.client).await;
    let body = http_get(&mut poll, "/v1/poll?app=demo&user=3&timeout=0.2", &[]).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"messages\":[]"), "{body}");

    // Plain HTTP on the TLS port: no HTTP answer, the connection ends, nothing else hurt.
    let mut plain = TcpStream::connect(server.client).await.expect("connect");
    let answer = http_get(&mut plain, "/v1/poll?app=demo&user=4&timeout=0", &[]).await;
    assert!(!answer.starts_with("HTTP/"), "{answer}");
    server.push("1", json!("still")).await;
    assert_eq!(ws_json(&mut old).await["data"], "still");

    // A renewal half done (new key, old certificate): refused, the old pair stays.
    files.install_key(&second);
    server.signal("HUP");
    server.wait_log("configuration reload refused", 1).await;
    assert!(
        server.log().contains("does not match the certificate"),
        "{}",
        server.log()
    );
    let (_, presented) = tls_connect(&trusting_both, server.client).await;
    assert_eq!(presented, first.der, "a failed reload keeps the old pair");

    // Done: the new pair for new connections ...
    files.install_cert(&second);
    server.signal("HUP");
    server.wait_log("reloaded the TLS certificate", 1).await;
    let (mut new, presented) = wss(&server, &trusting_both, "5").await;
    assert_eq!(
        presented, second.der,
        "a new connection sees the new certificate"
    );
    let (_, presented) = tls_connect(&connector(&[&second], &[]), server.client).await;
    assert_eq!(presented, second.der);

    // ... while the connection made before it is still open and still served.
    server.push("1", json!("after")).await;
    assert_eq!(ws_json(&mut old).await["data"], "after");
    server.push("5", json!("new")).await;
    assert_eq!(ws_json(&mut new).await["data"], "new");
    server.push("2", json!("sse-after")).await;
    read_until(&mut sse, &["sse-after"]).await;
    // Both WebSockets and the SSE stream.
    server.wait_connections(3).await;
}

/// A combined reload's configuration: the admin key, app `demo` with `key` and frames up
/// to `max_frame_bytes`, under TLS with `files`' pair.
fn combined(files: &Files, key: &str, max_frame_bytes: u32) -> PathBuf {
    files.config(
        "admin_keys = [\"admin-key-0123456789abcdef\"]\n",
        &format!("[apps.demo]\nauth = \"none\"\napi_keys = [\"{key}\"]\nmax_frame_bytes = {max_frame_bytes}\n"),
    )
}

/// Push `data` to `user` of app `demo` with API key `key`; the status.
async fn push_with(server: &TestServer, key: &str, user: &str, data: &str) -> u16 {
    crate::util::http()
        .post(server.api_url("/v1/push"))
        .bearer_auth(key)
        .json(&json!({"app": "demo", "to": user, "event": "e", "data": data}))
        .send()
        .await
        .expect("push")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reload_rotates_a_key_changes_a_limit_and_replaces_the_certificate_dropping_nobody() {
    const ADMIN: &str = "admin-key-0123456789abcdef";
    const OLD: &str = "demo-old-key-0123456789";
    const NEW: &str = "demo-new-key-0123456789";
    let first = SelfSigned::new("pushhub first", 11);
    let second = SelfSigned::new("pushhub second", 12);
    let files = Files::new(&first);
    let config = combined(&files, OLD, 1000);
    let server = TestServer::start_with(&["--config", config.to_str().expect("path")], &[]);
    server.wait_log("TLS on client", 1).await;
    let trusting_both = connector(&[&first, &second], &[b"http/1.1"]);
    let (mut old_ws, presented) = wss(&server, &trusting_both, "1").await;
    assert_eq!(presented, first.der);
    let (mut old_sse, _) = tls_connect(&trusting_both, server.client).await;
    http_get(&mut old_sse, "/v1/sse?app=demo&user=2", &["\"welcome\""]).await;
    assert_eq!(push_with(&server, OLD, "1", "before").await, 200);
    assert_eq!(ws_json(&mut old_ws).await["data"], "before");

    // One change: a new key, a smaller frame limit and a renewed certificate.
    files.install_key(&second);
    files.install_cert(&second);
    combined(&files, NEW, 200);
    let answer = crate::util::http()
        .post(server.api_url("/v1/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("reload");
    assert_eq!(answer.status(), 200);
    let applied: Value = answer.json().await.expect("JSON");
    assert_eq!(applied["generation"], 2, "{applied}");
    assert_eq!(
        applied["changed"],
        json!(["apps.demo.max_frame_bytes", "apps.demo.api_keys"]),
        "{applied}"
    );
    let sha256 = applied["tls_sha256"].as_str().expect("a fingerprint");
    // The log line is read from the server's stderr as it comes: wait for it.
    server.wait_log(sha256, 1).await;

    // Every connection made before is up and served, under the rules it came with.
    assert_eq!(
        push_with(&server, OLD, "1", "x").await,
        401,
        "the old key is refused"
    );
    assert_eq!(push_with(&server, NEW, "1,2", "after").await, 200);
    assert_eq!(ws_json(&mut old_ws).await["data"], "after");
    read_until(&mut old_sse, &["after"]).await;
    let padded = json!({"type": "ping", "id": "x".repeat(300)}).to_string();
    old_ws
        .send(Message::text(padded.clone()))
        .await
        .expect("send");
    assert_eq!(
        push_with(&server, NEW, "1", "still").await,
        200,
        "the old connection keeps its 1000-byte limit"
    );
    loop {
        let frame = ws_json(&mut old_ws).await;
        if frame["type"] == "msg" {
            assert_eq!(frame["data"], "still");
            break;
        }
    }

    // New connections: the new certificate, and the new limit.
    let (mut new_ws, presented) = wss(&server, &connector(&[&second], &[b"http/1.1"]), "3").await;
    assert_eq!(presented, second.der);
    new_ws.send(Message::text(padded)).await.expect("send");
    let closed = loop {
        match tokio::time::timeout(WAIT, new_ws.next())
            .await
            .expect("a close")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(closed, 1009, "a new connection gets the new limit");
    let status: Value = crate::util::http()
        .get(server.api_url("/v1/admin/status"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        status["connections"]["total"], 2,
        "both connections made before the reload are up: {status}"
    );
    println!(
        "connections made before the reload and still up after it: {} of 2",
        status["connections"]["total"]
    );
}

#[tokio::test]
async fn raw_tcp_and_the_api_speak_tls_when_asked() {
    let pair = SelfSigned::new("pushhub", 7);
    let files = Files::new(&pair);
    let config = files.config("tcp_listen = \"127.0.0.1:0\"\n", "api = true\ntcp = true\n");
    let server = TestServer::start_with(&["--config", config.to_str().expect("path")], &[]);
    server.wait_log("TLS on client, api, tcp", 1).await;

    // The API over https (the test helper's plain http would be refused).
    let (mut api, _) = tls_connect(&connector(&[&pair], &[b"http/1.1"]), server.api).await;
    let health = http_get(&mut api, "/healthz", &[]).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Raw TCP over TLS, from a client offering an ALPN name of its own.
    let tcp = server.tcp.expect("raw TCP listener");
    let (stream, presented) = tls_connect(&connector(&[&pair], &[b"pushhub"]), tcp).await;
    assert_eq!(presented, pair.der);
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    let mut lines = BufReader::new(stream);
    let connect = json!({"type": "connect", "app": "demo", "user": "t"}).to_string();
    lines
        .get_mut()
        .write_all(format!("{connect}\n").as_bytes())
        .await
        .expect("write");
    assert_eq!(json_line(&mut lines).await["type"], "welcome");
    // The push goes through the API, over https as well.
    let body = json!({"app": "demo", "to": "t", "event": "e", "data": "over-tls"}).to_string();
    let request = format!(
        "POST /v1/push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (mut api, _) = tls_connect(&connector(&[&pair], &[b"http/1.1"]), server.api).await;
    api.write_all(request.as_bytes()).await.expect("write");
    let pushed = read_until(&mut api, &[]).await;
    assert!(pushed.contains("\"delivered\":1"), "{pushed}");
    assert_eq!(json_line(&mut lines).await["data"], "over-tls");
}

/// HTTP/2 over TLS where the API has TLS: its listener offers `h2` by ALPN and reqwest
/// pushes over it; the client listener (WebSocket, SSE, long-poll only) keeps to
/// `http/1.1` even for a client offering `h2` first.
#[tokio::test]
async fn the_api_speaks_http2_by_alpn_and_the_client_listener_keeps_http1() {
    let pair = SelfSigned::new("pushhub", 11);
    let files = Files::new(&pair);
    let config = files.config("", "api = true\n");
    let server = TestServer::start_with(&["--config", config.to_str().expect("path")], &[]);
    server.wait_log("TLS on client, api", 1).await;
    let offer: &[&[u8]] = &[b"h2", b"http/1.1"];
    for (addr, offered, chosen) in [
        (server.api, offer, &b"h2"[..]),
        (server.api, &[&b"http/1.1"[..]][..], &b"http/1.1"[..]),
        (server.client, offer, &b"http/1.1"[..]),
    ] {
        let (stream, _) = tls_connect(&connector(&[&pair], offered), addr).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(chosen), "{addr}");
    }

    let (mut ws, _) = wss(&server, &connector(&[&pair], &[b"http/1.1"]), "h2").await;
    let mut roots = RootCertStore::empty();
    roots.add(pair.der.clone()).expect("trust anchor");
    let mut tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    tls.alpn_protocols = offer.iter().map(|name| name.to_vec()).collect();
    let https = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("localhost", server.api)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/v1/push", server.api.port());
    for n in 0..3 {
        let response = https
            .post(&url)
            .json(&json!({"app": "demo", "to": "h2", "event": "e", "data": n}))
            .send()
            .await
            .expect("push over h2");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(ws_json(&mut ws).await["data"], n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_tls_clients_with_1001_and_does_not_wait_for_silent_handshakes() {
    let pair = SelfSigned::new("pushhub", 3);
    let files = Files::new(&pair);
    let config = files.config("", "");
    let mut server = TestServer::start_with(&["--config", config.to_str().expect("path")], &[]);
    let (mut ws, _) = wss(&server, &connector(&[&pair], &[b"http/1.1"]), "1").await;
    // Connected, never says a word: its handshake is pending when shutdown comes.
    let _silent = TcpStream::connect(server.client).await.expect("connect");
    server.wait_connections(1).await;
    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| server.terminate());
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no close within the wait");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    server.wait_log("stopped", 1).await;
}

/// The next newline-delimited frame as JSON.
async fn json_line(lines: &mut BufReader<TlsStream<TcpStream>>) -> Value {
    let mut line = String::new();
    tokio::time::timeout(WAIT, lines.read_line(&mut line))
        .await
        .expect("no line within the wait")
        .expect("read");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

fn check_config(path: &Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run pushhub");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_bad_tls_files_under_their_keys() {
    let pair = SelfSigned::new("pushhub", 1);
    let other = SelfSigned::new("other", 2);
    let files = Files::new(&pair);
    let config = files.config("", "");
    let (ok, stdout, stderr) = check_config(&config);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("TLS on client"), "{stdout}");
    let file = config.display().to_string();

    // `[tls]` is on line 3 of the file; cert on 4, key on 5.
    files.replace(&files.cert, "this is not PEM\n");
    let (ok, _, stderr) = check_config(&config);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{file}:4:1: tls.cert: ")) && stderr.contains("no certificate"),
        "{stderr}"
    );

    files.install_cert(&pair);
    files.install_key(&other);
    let (ok, _, stderr) = check_config(&config);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{file}:5:1: tls.key: "))
            && stderr.contains("does not match the certificate"),
        "{stderr}"
    );

    std::fs::remove_file(&files.cert).expect("remove");
    let (ok, _, stderr) = check_config(&config);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{file}:4:1: tls.cert: cannot read")),
        "{stderr}"
    );
}

#[tokio::test]
async fn outgoing_https_verifies_against_the_system_roots_and_refuses_a_self_signed_server() {
    let pair = SelfSigned::new("not a public CA", 4);
    let files = Files::new(&pair);
    let config = files.config("", "");
    let server = TestServer::start_with(&["--config", config.to_str().expect("path")], &[]);
    server.wait_log("TLS on client", 1).await;

    // The client every outgoing call of pushhub is made with (backends, callbacks, CLI).
    let url = format!(
        "https://localhost:{}/v1/sse?app=demo&user=1",
        server.client.port()
    );
    let outcome = tokio::time::timeout(WAIT, crate::util::http().get(&url).send())
        .await
        .expect("the https call timed out");
    let error = outcome.expect_err("a self-signed certificate must not be trusted");
    let chain = format!("{:?}", error_chain(&error));
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate"),
        "expected a certificate verification failure, got {chain}"
    );
}

#[tokio::test]
async fn a_system_without_root_certificates_still_starts_and_says_which_roots_it_trusts() {
    let empty = tempfile::tempdir().expect("temp dir");
    let missing = empty.path().join("no-bundle.pem");
    let dir = empty.path().to_str().expect("path");
    let file = missing.to_str().expect("path");
    let server = TestServer::start_with(&[], &[("SSL_CERT_DIR", dir), ("SSL_CERT_FILE", file)]);
    server
        .wait_log(
            "no system root certificates: outgoing https calls trust the bundled Mozilla roots",
            1,
        )
        .await;
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
}

/// Every message in an error's source chain, outermost first.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain = vec![error.to_string()];
    let mut source = error.source();
    while let Some(inner) = source {
        chain.push(inner.to_string());
        source = inner.source();
    }
    chain
}
