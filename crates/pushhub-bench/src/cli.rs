//! Command-line interface: one subcommand per role of the binary.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::relay::RelayArgs;
use crate::scenario::{LoadConfig, ResumeParams, Traffic};
use crate::suite::SuiteArgs;
use crate::worker::WorkerArgs;

/// Benchmarks for pushhub: a reference relay, a load generator, and a suite comparing both.
#[derive(Parser, Debug)]
#[command(name = "pushhub-bench", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles of the binary.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the reference WebSocket fan-out relay (the baseline server).
    Relay(RelayArgs),
    /// Connect N idle clients and measure server memory per connection.
    Idle(IdleArgs),
    /// Publish M messages to everyone (`to:"*"`) with N clients connected.
    Broadcast(TrafficArgs),
    /// Publish M messages, each to one user (round-robin), with N clients connected.
    Unicast(TrafficArgs),
    /// N clients disconnect, M broadcasts are published, all reconnect with their cursor
    /// and must recover exactly the M missed messages (needs a server with history).
    Resume(ResumeArgs),
    /// pushhub's durable timers: creates per second through the API, fire lateness at a
    /// steady rate against a local HTTP sink, memory with many pending, restart after kill -9.
    Timers(crate::timers::TimersArgs),
    /// pushhub's restart time with many channels of history: fill, stop (SIGTERM or
    /// SIGKILL), start again, time until it serves, count the channels it kept.
    Restart(crate::restart::RestartArgs),
    /// pushhub's zero-downtime upgrade: resuming WebSocket clients, broadcasts at a steady
    /// rate, `POST /v1/admin/upgrade` in the middle; lost, duplicated, the gap and the time
    /// until every client is back.
    Upgrade(crate::upgrade::UpgradeArgs),
    /// pushhub's ingest to offline users: single pushes against batches of 10, 100 and
    /// 1,000 (`POST /v1/batch`): pushes/s, server CPU per push, request latency.
    Batch(crate::batch::BatchArgs),
    /// pushhub's ingest against the reference relay (and nchan) in one run: single pushes
    /// with N connections, batches, a steady rate to online users; pushes/s, server CPU
    /// per push, latency and the ratios.
    Ingest(crate::ingest::IngestArgs),
    /// A long run of resuming, slow and hostile clients, reconnect storms and timer churn
    /// against one pushhub: RSS and CPU over time, lost and duplicated messages and timers.
    Soak(crate::soak::SoakArgs),
    /// Several pushhub nodes on one Redis beside one memory-engine node: a broadcast to
    /// every client of every node (delivered, lost, latency, CPU per delivery, Redis
    /// commands per publish) and a connect storm.
    Cluster(crate::cluster::ClusterArgs),
    /// Issue 19: server CPU per delivery on a public Pusher channel against a native room,
    /// same server, same run; lost and duplicated deliveries.
    PusherFanout(crate::pusher::fanout::FanoutArgs),
    /// Issue 19: a presence channel of 10,000 members: build-up time, member events and
    /// lists checked, subscribe time of a new member at that size.
    PusherPresence(crate::pusher::presence::PresenceArgs),
    /// Run idle/broadcast/unicast against the relay and pushhub, then resume and history
    /// off/on against pushhub; print the comparison tables.
    Suite(SuiteArgs),
    /// Internal: one process worth of clients, driven by a parent generator.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Where the server under test is and how to drive it.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// WebSocket endpoint of the server; several, comma-separated, spread the worker
    /// processes over the nodes of a cluster.
    #[arg(long, default_value = "ws://127.0.0.1:9081/v1/ws")]
    pub ws_url: String,
    /// Base URL of the server's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:9082")]
    pub api_url: String,
    /// Server process id, for CPU (/proc/PID/stat) and RSS (/proc/PID/status).
    #[arg(long)]
    pub pid: Option<u32>,
    /// App the clients join and messages are published to.
    #[arg(long, default_value = "demo")]
    pub app: String,
    /// Worker processes [default: ceil(conns / 8000)].
    #[arg(long)]
    pub procs: Option<usize>,
    /// Spread client sockets over source addresses 127.0.0.2..=127.0.0.(1+K); 0 = no bind.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=253))]
    pub src_addrs: u8,
    /// Connection attempts in flight at once, over all workers.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Give up if not every client settled within this many seconds.
    #[arg(long, default_value_t = 300)]
    pub connect_timeout_secs: u64,
    /// Pin the worker processes (the simulated clients) to this CPU.
    #[arg(long)]
    pub worker_cpu: Option<usize>,
    /// Bearer token sent with each push request.
    #[arg(long)]
    pub api_token: Option<String>,
    /// Also print the result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

impl TargetArgs {
    /// The scenario configuration these flags describe.
    pub fn load_config(&self) -> LoadConfig {
        LoadConfig {
            ws_url: self.ws_url.clone(),
            api_url: self.api_url.clone(),
            pid: self.pid,
            more_pids: Vec::new(),
            app: self.app.clone(),
            procs: self.procs,
            src_addrs: self.src_addrs,
            concurrency: self.connect_concurrency,
            token: self.api_token.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            server_label: None,
            worker_cpu: self.worker_cpu,
        }
    }
}

/// Arguments of `idle`.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Target server.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Number of clients (users u0..uN).
    #[arg(long)]
    pub conns: u64,
    /// Seconds to wait after the last welcome before reading RSS.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
}

/// Arguments of `broadcast` and `unicast`.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Target server.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Number of clients (users u0..uN).
    #[arg(long)]
    pub conns: u64,
    /// Messages to publish.
    #[arg(long, default_value_t = 20)]
    pub messages: u64,
    /// Messages per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds to wait for outstanding deliveries after the last publish.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
}

impl TrafficArgs {
    /// The traffic these flags describe.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            messages: self.messages,
            rate: self.rate,
            drain: Duration::from_secs_f64(self.drain_secs.max(0.0)),
            settle: Duration::ZERO,
        }
    }
}

/// Arguments of `resume`.
#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// Target server.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Number of clients (users u0..uN).
    #[arg(long)]
    pub conns: u64,
    /// Broadcasts published while every client is disconnected (M).
    #[arg(long, default_value_t = 10)]
    pub missed: u64,
    /// Broadcasts published before the disconnect, while everyone is connected, so every
    /// cursor carries a real epoch and offset (0: cursors stay at `CHANNEL@:0`).
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Publish rate of the warm-up and missed messages, per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds to wait for the warm-up deliveries, and for the recovery after every
    /// reconnect settled.
    #[arg(long, default_value_t = 30.0)]
    pub drain_secs: f64,
    /// Seconds to keep listening after the recovery, to catch late duplicates.
    #[arg(long, default_value_t = 1.0)]
    pub grace_secs: f64,
    /// Disconnect by dropping the TCP connections instead of sending close frames.
    #[arg(long)]
    pub abrupt: bool,
}

impl ResumeArgs {
    /// The resume parameters these flags describe.
    pub fn params(&self) -> ResumeParams {
        ResumeParams {
            warmup: self.warmup,
            missed: self.missed,
            rate: self.rate,
            drain: Duration::from_secs_f64(self.drain_secs.max(0.0)),
            grace: Duration::from_secs_f64(self.grace_secs.max(0.0)),
            abrupt: self.abrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_broadcast() {
        let cli = Cli::try_parse_from([
            "pushhub-bench",
            "broadcast",
            "--conns",
            "1000",
            "--pid",
            "42",
            "--json",
        ])
        .unwrap();
        let Command::Broadcast(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(a.conns, 1000);
        assert_eq!(a.messages, 20);
        assert_eq!(a.target.pid, Some(42));
        assert!(a.target.json);
    }

    #[test]
    fn parses_resume() {
        let cli = Cli::try_parse_from([
            "pushhub-bench",
            "resume",
            "--conns",
            "10000",
            "--missed",
            "10",
        ])
        .unwrap();
        let Command::Resume(a) = cli.command else {
            panic!("wrong subcommand")
        };
        let p = a.params();
        assert_eq!((a.conns, p.missed, p.warmup), (10000, 10, 1));
        assert!(!p.abrupt);
    }
}
