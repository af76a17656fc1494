//! The `suite` subcommand: every scenario × N × server, fresh server each time.
//!
//! Running the relay and pushhub back to back in one invocation, on the same
//! machine state, is what makes the pushhub/relay ratios meaningful.

pub mod server;
pub mod table;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::plan::Mode;
use crate::report::RunResult;
use crate::scenario::{self, LoadConfig, Traffic};
use server::ServerKind;
use table::Entry;

/// Arguments of `pushhub-bench suite`.
#[derive(clap::Args, Clone, Debug)]
pub struct SuiteArgs {
    /// pushhub binary, started as `BIN serve --listen .. --api-listen .. --data-dir ..`.
    /// Without it only the relay is measured.
    #[arg(long)]
    pub pushhub_bin: Option<PathBuf>,
    /// Client counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,15000")]
    pub conns: Vec<u64>,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,broadcast,unicast"
    )]
    pub scenarios: Vec<Mode>,
    /// Messages per broadcast run.
    #[arg(long, default_value_t = 20)]
    pub broadcast_messages: u64,
    /// Broadcast messages per second.
    #[arg(long, default_value_t = 10.0)]
    pub broadcast_rate: f64,
    /// Messages per unicast run.
    #[arg(long, default_value_t = 2000)]
    pub unicast_messages: u64,
    /// Unicast messages per second.
    #[arg(long, default_value_t = 500.0)]
    pub unicast_rate: f64,
    /// Seconds to wait for outstanding deliveries after the last publish.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Seconds between the last welcome and the idle RSS reading.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
    /// Worker processes per run [default: ceil(N / 8000)].
    #[arg(long)]
    pub procs: Option<usize>,
    /// Loopback source addresses to spread clients over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=253))]
    pub src_addrs: u8,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Pin the server to CPU 0 and the client workers to CPU 1.
    #[arg(long)]
    pub pin: bool,
    /// Keep server logs here (default: a temporary directory, deleted at exit).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Also write the markdown tables to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print each result as a JSON line too.
    #[arg(long)]
    pub json: bool,
}

/// Runs the whole matrix and prints the comparison.
pub async fn run(args: SuiteArgs) -> Result<()> {
    crate::limits::raise_nofile()?;
    let mut servers = vec![ServerKind::Relay];
    match &args.pushhub_bin {
        Some(bin) => servers.push(ServerKind::Pushhub(bin.clone())),
        None => eprintln!("suite: no --pushhub-bin given, measuring the relay only"),
    }
    let tmp_logs = tempfile::Builder::new()
        .prefix("pushhub-bench-logs-")
        .tempdir()?;
    let log_dir = match &args.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tmp_logs.path().to_path_buf(),
    };

    let mut entries = Vec::new();
    for &conns in &args.conns {
        for &mode in &args.scenarios {
            for kind in &servers {
                let tag = format!("{}-{}-{}", kind.label(), mode.name(), conns);
                eprintln!("suite: {tag} ...");
                let outcome = run_one(&args, kind, mode, conns, &log_dir, &tag)
                    .await
                    .map_err(|e| format!("{e:#}"));
                match &outcome {
                    Ok(r) => {
                        print!("{}", r.human());
                        if args.json {
                            println!("{}", r.json_line());
                        }
                    }
                    Err(e) => eprintln!("suite: {tag} failed: {e}"),
                }
                entries.push(Entry {
                    mode,
                    conns,
                    server: kind.label().to_string(),
                    outcome,
                });
                // Let the server's and clients' sockets drain before the next run.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let md = table::markdown(&entries);
    println!("\n{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// One scenario against one fresh server.
async fn run_one(
    args: &SuiteArgs,
    kind: &ServerKind,
    mode: Mode,
    conns: u64,
    log_dir: &std::path::Path,
    tag: &str,
) -> Result<RunResult> {
    let server_cpu = args.pin.then_some(0);
    let srv = server::start(kind, log_dir, tag, server_cpu).await?;
    let cfg = LoadConfig {
        ws_url: srv.ws_url.clone(),
        api_url: srv.api_url.clone(),
        pid: Some(srv.pid),
        app: "demo".to_string(),
        procs: args.procs,
        src_addrs: args.src_addrs,
        concurrency: args.connect_concurrency,
        token: None,
        connect_timeout: Duration::from_secs(300),
        server_label: Some(kind.label().to_string()),
        worker_cpu: args.pin.then_some(1),
    };
    let drain = Duration::from_secs_f64(args.drain_secs.max(0.0));
    let result = match mode {
        Mode::Idle => {
            scenario::run_idle(
                &cfg,
                conns,
                Duration::from_secs_f64(args.settle_secs.max(0.0)),
            )
            .await
        }
        Mode::Broadcast => {
            let t = Traffic {
                messages: args.broadcast_messages,
                rate: args.broadcast_rate,
                drain,
            };
            scenario::run_traffic(&cfg, mode, conns, t).await
        }
        Mode::Unicast => {
            let t = Traffic {
                messages: args.unicast_messages,
                rate: args.unicast_rate,
                drain,
            };
            scenario::run_traffic(&cfg, mode, conns, t).await
        }
    };
    let tail = srv.log_tail();
    srv.stop().await?;
    result.with_context(|| format!("server log tail:\n{tail}"))
}
