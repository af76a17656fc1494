//! Integration tests: the real `pushhub` binary on port 0, real WebSocket and HTTP clients.

// pushhub status, reload and stop, and the admin endpoints behind them.
mod admin_control;
mod admin_dashboard;
mod api_keys;
// WebSocket conformance (kosoku, Autobahn's cases) against an in-process echo server.
mod autobahn;
mod backend;
mod bad_input;
// POST /v1/batch and idempotent pushes.
mod batch;
mod cluster_presence;
// The JavaScript SDK and demo page (clients/js): node --test, headless Chromium.
mod browser;
// Several nodes on one Redis (the Redis engine).
mod cluster;
// Three nodes on one real Redis, clients of every dialect resuming on any node, counted:
// node death, Redis restart, Sentinel failover, Redis Cluster.
mod cluster_failures;
mod cluster_timers;
mod config_cli;
mod conns;
// Resuming clients of every dialect and the lost/duplicated tally (cluster failures, upgrade).
mod counting;
mod cron;
// serve --daemon, pid file, log file (JSON, SIGUSR2, rotation), request ids.
mod daemon;
mod demo;
// deploy/: the systemd unit (systemd-analyze verify) and nginx in front of a real server.
mod deploy;
mod depth;
// History in the data directory across graceful restarts and kill -9.
mod durable_history;
mod events;
mod example_backend;
mod fanout;
mod flood;
mod history;
mod history_bound;
mod http2;
mod http_clients;
mod http_errors;
mod interval_timers;
mod jdserver;
mod kick;
mod limits;
mod metrics;
// Seed 003: connect first, log in (and out) later with a web ukey or an app token.
mod liveness;
mod login;
mod mswoole;
mod mswoole_des;
mod native_ws;
mod operator;
// PHP as users run it (php-cli, php-curl): seed 000's calls, the docs' PHP.
mod php;
// Issue 19's Pusher dialect driven by pusher-js, Laravel Echo and the pusher SDK (one node,
// three nodes on Redis).
mod pusher;
mod pushserve;
// Pusher's HTTP API through the npm `pusher` SDK, native clients in the channels' rooms.
mod pusher_api;
// The same API through the Python SDK (PyPI `pusher`).
mod pusher_python;
mod reload;
mod resume;
mod room_resume;
mod rooms;
mod rpc;
// scripts/*.sh against a real server (bash, curl).
mod scripts;
// A debug-level run of every feature that handles a secret; the log holds none.
mod secrets;
mod send;
mod shutdown;
mod store_damage;
mod swoole_server;
mod tcp;
mod timer_targets;
mod timers;
mod tls;
mod tokens;
// pushhub upgrade: a new process takes over the listeners under continuous publishing.
mod upgrade;
mod user_ids;
mod util;
mod webhook_auth;
