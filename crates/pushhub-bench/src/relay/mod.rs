//! The `relay` subcommand: a minimal tokio WebSocket fan-out server.
//!
//! It speaks the subset of pushhub's protocol the load generator uses, so the
//! same scenarios can run against both and the relay's numbers serve as the
//! "how fast can this be" baseline for pushhub.

pub mod api;
pub mod frame;
pub mod hub;
pub mod ws;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use hub::Hub;

/// Arguments of `pushhub-bench relay`.
#[derive(clap::Args, Clone, Debug)]
pub struct RelayArgs {
    /// WebSocket client listener (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9081")]
    pub listen: SocketAddr,
    /// HTTP API listener (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9082")]
    pub api_listen: SocketAddr,
    /// Frames queued per connection before it is dropped as too slow.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    /// Per-connection WebSocket read buffer in bytes. tungstenite's default
    /// (128 KiB) would dominate idle memory although clients send almost
    /// nothing; pass 131072 to measure the library default.
    #[arg(long, default_value_t = 4096)]
    pub read_buffer: usize,
    /// Listen backlog; tokio's `TcpListener::bind` uses 128, which overflows
    /// under a connection storm and costs clients 1 s SYN retransmits.
    #[arg(long, default_value_t = 1024)]
    pub backlog: u32,
}

/// Binds a listener with SO_REUSEADDR and the given backlog.
fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(backlog)?)
}

/// Runs the relay until SIGINT/SIGTERM.
///
/// Prints one JSON line `{"ws":ADDR,"api":ADDR,"nofile":N}` on stdout once both
/// listeners are bound, so callers that asked for port 0 learn the real ports.
pub async fn run(args: RelayArgs) -> Result<()> {
    let nofile = crate::limits::raise_nofile()?;
    let ws_listener = bind(args.listen, args.backlog)?;
    let api_listener = bind(args.api_listen, args.backlog)?;
    let ws_addr = ws_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let hub = Arc::new(Hub::new(args.queue));
    let ws_config = WebSocketConfig::default().read_buffer_size(args.read_buffer.max(256));
    {
        let mut out = std::io::stdout().lock();
        let line = serde_json::json!({"ws": ws_addr, "api": api_addr, "nofile": nofile});
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    eprintln!("relay: ws on {ws_addr}, api on {api_addr}, RLIMIT_NOFILE {nofile}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = ws::serve(ws_listener, hub.clone(), ws_config) => r,
        r = axum::serve(api_listener, api::router(hub)) => r.context("api server"),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}
