//! The `cluster` scenario: several pushhub nodes on one Redis, measured beside one
//! memory-engine node in the same run.
//!
//! 1. Storm (optional): `--storm` clients connect to one Redis node at once; how long
//!    until Redis counts a subscribed channel for every one of them.
//! 2. Reference: one memory-engine node, `--conns-per-node` clients, the broadcast.
//! 3. Reference: `--nodes` reference relays side by side, `--conns-per-node` clients on
//!    each, every broadcast published to each of them: the same connections and
//!    deliveries per second as the cluster on the same cores, with no coordination at
//!    all, so what this machine allows such a load (a latency both miss is its limit).
//! 4. Cluster: `--nodes` Redis-engine nodes, `--conns-per-node` clients on each (the
//!    worker processes spread over the nodes), the same broadcast published through the
//!    first node; Redis's own `INFO commandstats` counted from the moment every client is
//!    connected, so commands per publish come from Redis, not from pushhub.
//!
//! Redis is a fresh `redis-server` on a free port (pushhub-testkit), never the machine's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use pushhub_testkit::RedisServer;
use tokio::time::Instant;

use crate::plan::Mode;
use crate::proc_stats;
use crate::report::RunResult;
use crate::scenario::{self, LoadConfig, Traffic};
use crate::suite::server::{self, RunningServer, ServerKind};

/// Arguments of `cluster`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// pushhub binary (a release build: `cargo build --release -p pushhub`).
    #[arg(long, default_value = "target/release/pushhub")]
    pub pushhub_bin: PathBuf,
    /// Redis-engine nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Clients on each node (and on the memory-engine reference node).
    #[arg(long, default_value_t = 15_000)]
    pub conns_per_node: u64,
    /// Broadcasts to publish.
    #[arg(long, default_value_t = 60)]
    pub messages: u64,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds to wait for outstanding deliveries after the last publish.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Seconds between the last client's welcome and the first publish.
    #[arg(long, default_value_t = 3.0)]
    pub settle_secs: f64,
    /// Skip the memory-engine reference run.
    #[arg(long)]
    pub skip_memory: bool,
    /// Skip the reference run of relays side by side.
    #[arg(long)]
    pub skip_relays: bool,
    /// Clients of the connect storm against one Redis node (0: no storm).
    #[arg(long, default_value_t = 0)]
    pub storm: u64,
    /// Worker processes per run [default: ceil(conns / 8000)].
    #[arg(long)]
    pub procs: Option<usize>,
    /// Spread client sockets over source addresses 127.0.0.2..=127.0.0.(1+K).
    #[arg(long, default_value_t = 8)]
    pub src_addrs: u8,
    /// Connection attempts in flight at once, over all workers (the storm uses
    /// `--storm-concurrency`).
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Connection attempts in flight during the storm.
    #[arg(long, default_value_t = 1000)]
    pub storm_concurrency: usize,
    /// Keep server logs here (default: a temporary directory, deleted at exit).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

/// Environment of every pushhub node: many connections from few addresses.
const NODE_ENV: [(&str, Option<&str>); 2] = [
    ("PUSHHUB_LIMITS_MAX_CONNECTIONS", Some("100000")),
    ("PUSHHUB_LIMITS_MAX_CONNECTIONS_PER_IP", Some("100000")),
];

/// How a broadcast reaches the servers of a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Servers {
    /// One memory-engine pushhub.
    Memory,
    /// Relays that share nothing: each broadcast is published to each.
    Relays,
    /// Redis-engine nodes: a broadcast published through the first reaches all.
    Cluster,
}

/// Runs the storm, the references and the cluster, and prints every result and a summary.
pub async fn run(args: ClusterArgs) -> Result<()> {
    crate::limits::raise_nofile()?;
    let Some(redis) = tokio::task::block_in_place(RedisServer::start) else {
        bail!("redis-server is not installed");
    };
    let tmp_logs = tempfile::Builder::new()
        .prefix("pushhub-bench-cluster-")
        .tempdir()?;
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| tmp_logs.path().to_path_buf());
    std::fs::create_dir_all(&log_dir)?;
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    let redis_env = [
        ("PUSHHUB_ENGINE", Some("redis".to_owned())),
        ("PUSHHUB_REDIS_URLS", Some(redis.url())),
    ];

    let storm = if args.storm > 0 {
        let env = owned_env(&redis_env);
        let node = server::start(&kind, &log_dir, "cluster-storm", None, &env).await?;
        let outcome = storm(&args, &redis, &node).await;
        node.stop().await?;
        Some(outcome?)
    } else {
        None
    };

    let reference = if args.skip_memory {
        None
    } else {
        let env = owned_env(&[]);
        let node = server::start(&kind, &log_dir, "cluster-memory", None, &env).await?;
        let outcome = broadcast(&args, std::slice::from_ref(&node), Servers::Memory, None).await;
        node.stop().await?;
        let result = outcome?.0;
        println!("{}", result.human());
        Some(result)
    };

    let relays = if args.skip_relays {
        None
    } else {
        let mut relays = Vec::new();
        for index in 0..args.nodes {
            let tag = format!("cluster-relay-{index}");
            relays.push(server::start(&ServerKind::Relay, &log_dir, &tag, None, &[]).await?);
        }
        let outcome = broadcast(&args, &relays, Servers::Relays, None).await;
        for relay in relays {
            relay.stop().await?;
        }
        let result = outcome?.0;
        println!("{}", result.human());
        Some(result)
    };

    let env = owned_env(&redis_env);
    let mut nodes = Vec::new();
    for index in 0..args.nodes {
        let tag = format!("cluster-node-{index}");
        nodes.push(server::start(&kind, &log_dir, &tag, None, &env).await?);
    }
    let outcome = broadcast(&args, &nodes, Servers::Cluster, Some(&redis)).await;
    for node in nodes {
        node.stop().await?;
    }
    let (result, commands) = outcome?;
    println!("{}", result.human());
    print_summary(
        &args,
        storm,
        References {
            memory: reference.as_ref(),
            relays: relays.as_ref(),
        },
        &result,
        commands.as_ref(),
    );
    Ok(())
}

/// `env` in the borrowed form [`server::start`] takes, with every node's limits added.
fn owned_env<'a>(env: &'a [(&'static str, Option<String>)]) -> Vec<(&'a str, Option<&'a str>)> {
    NODE_ENV
        .iter()
        .copied()
        .chain(env.iter().map(|(k, v)| (*k, v.as_deref())))
        .collect()
}

/// What Redis did during the measured window.
struct Commands {
    /// Calls per command name, from `INFO commandstats`.
    calls: BTreeMap<String, u64>,
    /// Redis's own CPU in the window, ms.
    cpu_ms: f64,
    /// Seconds from the reset (every client connected) to the reading (the last
    /// broadcast published, plus a second).
    window_secs: f64,
}

/// The broadcast with `conns_per_node` clients on each of `nodes`; with `redis`, its
/// command counts and CPU from the moment every client is connected.
async fn broadcast(
    args: &ClusterArgs,
    nodes: &[RunningServer],
    servers: Servers,
    redis: Option<&RedisServer>,
) -> Result<(RunResult, Option<Commands>)> {
    let conns = args.conns_per_node * nodes.len() as u64;
    let ws_urls: Vec<&str> = nodes.iter().map(|n| n.ws_url.as_str()).collect();
    let procs = args
        .procs
        .unwrap_or_else(|| crate::pool::default_procs(conns))
        .max(1);
    // Every node gets the same number of workers, so the same number of clients.
    let procs = procs.div_ceil(nodes.len()) * nodes.len();
    let cfg = LoadConfig {
        ws_url: ws_urls.join(","),
        api_url: match servers {
            Servers::Relays => nodes
                .iter()
                .map(|n| n.api_url.as_str())
                .collect::<Vec<_>>()
                .join(","),
            Servers::Memory | Servers::Cluster => nodes[0].api_url.clone(),
        },
        pid: Some(nodes[0].pid),
        more_pids: nodes[1..].iter().map(|n| n.pid).collect(),
        app: "demo".to_owned(),
        procs: Some(procs),
        src_addrs: args.src_addrs,
        concurrency: args.connect_concurrency,
        token: None,
        connect_timeout: Duration::from_secs(300),
        server_label: Some(match servers {
            Servers::Cluster => format!("{} redis-engine nodes", nodes.len()),
            Servers::Relays => format!("{} relays side by side", nodes.len()),
            Servers::Memory => "1 memory-engine node".to_owned(),
        }),
        worker_cpu: None,
    };
    let traffic = Traffic {
        messages: args.messages,
        rate: args.rate,
        drain: Duration::from_secs_f64(args.drain_secs.max(0.0)),
        settle: Duration::from_secs_f64(args.settle_secs.max(0.0)),
    };
    // Redis's counters cover the publish window: reset once every client is connected,
    // read once the last broadcast had time to go out (before the clients leave, whose
    // unsubscribes are not a publish's cost).
    let publishing = traffic.settle + Duration::from_secs_f64(args.messages as f64 / args.rate);
    let counting = async {
        let Some(redis) = redis else {
            return Ok(None);
        };
        wait_connections(nodes, conns).await?;
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let pid = redis.pid().context("redis pid")?;
        let cpu_before = proc_stats::cpu_micros(pid).unwrap_or(0);
        let reset_at = Instant::now();
        tokio::time::sleep(publishing + Duration::from_secs(1)).await;
        Ok::<_, anyhow::Error>(Some(Commands {
            calls: redis.command_calls(),
            cpu_ms: proc_stats::cpu_micros(pid)
                .unwrap_or(0)
                .saturating_sub(cpu_before) as f64
                / 1000.0,
            window_secs: reset_at.elapsed().as_secs_f64(),
        }))
    };
    let (result, commands) = tokio::join!(
        scenario::run_traffic(&cfg, Mode::Broadcast, conns, traffic),
        counting
    );
    let (result, commands) = (result?, commands?);
    Ok((result, commands))
}

/// Wait until the nodes together report `conns` connections (`/v1/stats`).
async fn wait_connections(nodes: &[RunningServer], conns: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut total = 0;
        for node in nodes {
            let stats = scenario::server_stats(&node.api_url, None).await?;
            total += stats["connections"].as_u64().unwrap_or(0);
        }
        if total >= conns {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {total} of {conns} connections after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Channels Redis counts as subscribed (plain and sharded).
fn subscribed_channels(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "stats"])
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            matches!(name, "pubsub_channels" | "pubsubshard_channels")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .sum()
}

/// What the storm measured.
struct Storm {
    clients: u64,
    connected: u64,
    /// Seconds from the start until every client had its welcome.
    welcomed_secs: f64,
    /// Seconds from the start until Redis counted a channel for every client.
    subscribed_secs: Option<f64>,
}

/// `--storm` clients connecting to `node` at once; Redis's subscribed-channel count
/// watched every 10 ms until it covers every client's user channel.
async fn storm(args: &ClusterArgs, redis: &RedisServer, node: &RunningServer) -> Result<Storm> {
    let before = subscribed_channels(redis);
    let cfg = LoadConfig {
        ws_url: node.ws_url.clone(),
        api_url: node.api_url.clone(),
        pid: Some(node.pid),
        more_pids: Vec::new(),
        app: "demo".to_owned(),
        procs: args.procs,
        src_addrs: args.src_addrs,
        concurrency: args.storm_concurrency,
        token: None,
        connect_timeout: Duration::from_secs(300),
        server_label: Some("1 redis-engine node (storm)".to_owned()),
        worker_cpu: None,
    };
    let started = Instant::now();
    let target = before + args.storm;
    let watch = async {
        let deadline = started + Duration::from_secs(120);
        while Instant::now() < deadline {
            if subscribed_channels(redis) >= target {
                return Some(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    };
    let idle = scenario::run_idle(&cfg, args.storm, Duration::from_secs(5));
    let (result, subscribed_secs) = tokio::join!(idle, watch);
    let result = result?;
    println!("{}", result.human());
    Ok(Storm {
        clients: args.storm,
        connected: result.conns_connected,
        welcomed_secs: result.connect_secs,
        subscribed_secs,
    })
}

/// The reference runs beside the cluster's.
struct References<'a> {
    memory: Option<&'a RunResult>,
    relays: Option<&'a RunResult>,
}

fn print_summary(
    args: &ClusterArgs,
    storm: Option<Storm>,
    references: References<'_>,
    cluster: &RunResult,
    commands: Option<&Commands>,
) {
    println!("== cluster summary ==");
    if let Some(s) = storm {
        println!(
            "storm: {} clients at once ({} connected) on one node: all welcomed in {:.2} s, \
             all subscribed in Redis in {} (target 5 s)",
            s.clients,
            s.connected,
            s.welcomed_secs,
            s.subscribed_secs
                .map_or("NOT within 120 s".to_owned(), |t| format!("{t:.2} s"))
        );
    }
    let per_1k = |r: &RunResult| r.server_cpu_us_per_1k_deliveries.unwrap_or(f64::NAN) / 1000.0;
    println!(
        "cluster: {} nodes x {} clients, {} broadcasts at {}/s: delivered {} of {}, lost {}, \
         duplicated {}, p50 {:.1} ms, p99 {:.1} ms (target 250 ms), server CPU {:.2} ms per \
         1,000 deliveries",
        args.nodes,
        args.conns_per_node,
        cluster.messages,
        cluster.rate,
        cluster.deliveries,
        cluster.expected,
        cluster.lost,
        cluster.duplicated,
        cluster.latency.p50_ms,
        cluster.latency.p99_ms,
        per_1k(cluster)
    );
    if let Some(r) = references.relays {
        println!(
            "relays: {} side by side x {} clients: delivered {} of {}, lost {}, p50 {:.1} ms, \
             p99 {:.1} ms, server CPU {:.2} ms per 1,000 deliveries; cluster / relays: p99 \
             {:.2}, CPU {:.2}",
            args.nodes,
            args.conns_per_node,
            r.deliveries,
            r.expected,
            r.lost,
            r.latency.p50_ms,
            r.latency.p99_ms,
            per_1k(r),
            cluster.latency.p99_ms / r.latency.p99_ms,
            per_1k(cluster) / per_1k(r)
        );
    }
    if let Some(r) = references.memory {
        println!(
            "memory: 1 node x {} clients: delivered {} of {}, lost {}, p99 {:.1} ms, server \
             CPU {:.2} ms per 1,000 deliveries; cluster / memory = {:.2} (target <= 1.3)",
            args.conns_per_node,
            r.deliveries,
            r.expected,
            r.lost,
            r.latency.p99_ms,
            per_1k(r),
            per_1k(cluster) / per_1k(r)
        );
    }
    if let Some(c) = commands {
        let total: u64 = c.calls.values().sum();
        // Redis counts one EVALSHA per publish script run (and the commands the script
        // calls under their own names).
        let scripts = c.calls.get("evalsha").copied().unwrap_or(0).max(1) as f64;
        let list: Vec<String> = c
            .calls
            .iter()
            .map(|(n, k)| format!("{n}={k} ({:.2}/publish)", *k as f64 / scripts))
            .collect();
        println!(
            "redis: {total} commands in {:.1} s from all-connected to the last publish, {} \
             EVALSHA ({:.2} commands per EVALSHA), Redis CPU {:.0} ms ({:.3} ms per 1,000 \
             deliveries): {}",
            c.window_secs,
            scripts,
            total as f64 / scripts,
            c.cpu_ms,
            c.cpu_ms / (cluster.deliveries.max(1) as f64 / 1000.0),
            list.join(" ")
        );
    }
}
