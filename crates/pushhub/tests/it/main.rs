//! Integration tests: the real `pushhub` binary on port 0, real WebSocket and HTTP clients.

mod api_keys;
mod backend;
mod bad_input;
// The JavaScript SDK and demo page (clients/js): node --test, headless Chromium.
mod browser;
mod config_cli;
mod cron;
mod demo;
mod events;
mod example_backend;
mod fanout;
mod history;
mod http_clients;
mod jdserver;
mod kick;
mod limits;
mod liveness;
mod mswoole;
mod native_ws;
mod pushserve;
mod resume;
mod rooms;
mod rpc;
mod send;
mod shutdown;
mod store_damage;
mod tcp;
mod timers;
mod tls;
mod tokens;
mod util;
mod webhook_auth;
