//! pushhub: a self-hosted real-time push server.
//!
//! Clients hold a connection (WebSocket, SSE, long-poll or raw TCP); backends
//! push to users, groups or everyone through an HTTP API. The architecture is in
//! DESIGN.md; in short, bytes flow one way through these layers:
//!
//! - [`transport`]: bytes in and out of connections, framing, heartbeats, no business rules.
//! - [`dialect`]: each wire protocol (native, jdserver), frames ↔ hub calls.
//! - [`hub`]: apps, users, channels, fan-out; never sees a wire format.
//! - [`engine`]: channel streams and presence behind traits (memory by default).
//! - [`api`]: the HTTP server API; [`gateway`]: the client listener's routes.
//! - [`config`], [`services`], [`server`]: configuration (plain data), the live services
//!   built from it, and running it all, with graceful shutdown.
//! - [`store`], [`scheduler`]: durable timers (delayed HTTP callbacks) and cron jobs, and
//!   their execution; [`cli`]: the `pushhub cron` and `pushhub timers` commands.
//! - [`logging`], [`daemon`]: where the log goes (human or JSON, files reopened on SIGUSR2
//!   or rotated by size) and `serve --daemon` with its pid file.
//! - [`tls`]: `wss://` and `https://` without a proxy in front, reloadable certificates.
//! - [`upgrade`]: a new binary taking over the listeners while this one drains.
//! - [`http_conn`]: one accepted HTTP connection, HTTP/1.1 or HTTP/2, and its limits.
//! - [`parse_errors`]: the JSON error body on answers hyper gives requests it cannot parse.

pub mod api;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod close_notes;
pub mod config;
pub mod daemon;
pub mod dialect;
pub mod disconnect;
pub mod engine;
pub mod gateway;
pub mod http_conn;
pub mod http_error;
pub mod hub;
pub mod json_depth;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod pages;
pub mod parse_errors;
pub mod rates;
pub mod redis;
pub mod reload;
pub mod repoll;
pub mod scheduler;
pub mod server;
pub mod services;
pub mod stable_hash;
pub mod stats;
pub mod store;
pub mod sync;
pub mod tls;
pub mod transport;
pub mod upgrade;
pub mod work_counters;
