//! Integration tests: the real `pushhub` binary on port 0, real WebSocket and HTTP clients.

mod api_keys;
mod bad_input;
mod config_cli;
mod fanout;
mod history;
mod http_clients;
mod jdserver;
mod limits;
mod liveness;
mod native_ws;
mod pushserve;
mod resume;
mod shutdown;
mod tcp;
mod tokens;
mod util;
