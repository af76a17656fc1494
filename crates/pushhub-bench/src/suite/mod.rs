//! The `suite` subcommand: every scenario × N × server, fresh server each time.
//!
//! Running the relay and pushhub back to back in one invocation, on the same
//! machine state, is what makes the pushhub/relay ratios meaningful. After the
//! matrix come two pushhub-only parts: `resume` (the relay keeps no history) and
//! `history`, broadcast with pushhub's history off and on, alternated and repeated
//! because CPU readings are noisy.

pub mod server;
pub mod table;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::plan::Mode;
use crate::report::RunResult;
use crate::scenario::{self, LoadConfig, ResumeParams, Traffic};
use server::ServerKind;
use table::{Entry, HistoryRun};

/// What the suite can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SuiteScenario {
    /// Memory per idle connection, for every N, both servers.
    Idle,
    /// Broadcast, for every N, both servers.
    Broadcast,
    /// Unicast, for every N, both servers.
    Unicast,
    /// Resume after a mass disconnect, pushhub only, once at `--resume-conns`.
    Resume,
    /// Broadcast with pushhub's history off and on, at `--history-conns`.
    History,
}

impl SuiteScenario {
    /// The per-N scenario mode, for the matrix part.
    fn matrix_mode(self) -> Option<Mode> {
        match self {
            SuiteScenario::Idle => Some(Mode::Idle),
            SuiteScenario::Broadcast => Some(Mode::Broadcast),
            SuiteScenario::Unicast => Some(Mode::Unicast),
            SuiteScenario::Resume | SuiteScenario::History => None,
        }
    }
}

/// Environment of a pushhub run with history off (`PUSHHUB_HISTORY_SIZE=0`) or at
/// the built-in defaults (both variables removed, whatever the caller's environment).
fn history_env(on: bool) -> Vec<(&'static str, Option<&'static str>)> {
    if on {
        vec![
            ("PUSHHUB_HISTORY_SIZE", None),
            ("PUSHHUB_HISTORY_TTL", None),
        ]
    } else {
        vec![
            ("PUSHHUB_HISTORY_SIZE", Some("0")),
            ("PUSHHUB_HISTORY_TTL", None),
        ]
    }
}

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
        default_value = "idle,broadcast,unicast,resume,history"
    )]
    pub scenarios: Vec<SuiteScenario>,
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
    /// Resume: clients.
    #[arg(long, default_value_t = 10000)]
    pub resume_conns: u64,
    /// Resume: broadcasts published while everyone is disconnected.
    #[arg(long, default_value_t = 10)]
    pub resume_missed: u64,
    /// Resume: broadcasts published before the disconnect.
    #[arg(long, default_value_t = 1)]
    pub resume_warmup: u64,
    /// Resume: publish rate, per second.
    #[arg(long, default_value_t = 100.0)]
    pub resume_rate: f64,
    /// History comparison: clients.
    #[arg(long, default_value_t = 10000)]
    pub history_conns: u64,
    /// History comparison: broadcasts per run.
    #[arg(long, default_value_t = 100)]
    pub history_messages: u64,
    /// History comparison: broadcasts per second.
    #[arg(long, default_value_t = 10.0)]
    pub history_rate: f64,
    /// History comparison: off/on pairs to run (alternating off, on, off, on, ...).
    #[arg(long, default_value_t = 3)]
    pub history_repeats: u32,
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
    let mut record = |entry: Entry| {
        match &entry.outcome {
            Ok(r) => {
                print!("{}", r.human());
                if args.json {
                    println!("{}", r.json_line());
                }
            }
            Err(e) => eprintln!(
                "suite: {}-{}-{} failed: {e}",
                entry.server,
                entry.mode.name(),
                entry.conns
            ),
        }
        entries.push(entry);
    };
    for &conns in &args.conns {
        for mode in args.scenarios.iter().filter_map(|s| s.matrix_mode()) {
            for kind in &servers {
                let outcome = run_one(&args, kind, &Job::new(mode, conns), &log_dir).await;
                record(Entry {
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
    let pushhub = servers.iter().find(|k| matches!(k, ServerKind::Pushhub(_)));
    let wants = |s: SuiteScenario| args.scenarios.contains(&s);
    if wants(SuiteScenario::Resume) {
        match pushhub {
            Some(kind) => {
                let conns = args.resume_conns;
                let outcome = run_one(&args, kind, &Job::new(Mode::Resume, conns), &log_dir).await;
                record(Entry {
                    mode: Mode::Resume,
                    conns,
                    server: kind.label().to_string(),
                    outcome,
                });
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            None => eprintln!("suite: resume needs --pushhub-bin (the relay keeps no history)"),
        }
    }
    let mut history = Vec::new();
    if wants(SuiteScenario::History) {
        match pushhub {
            Some(kind) => {
                for repeat in 1..=args.history_repeats {
                    for on in [false, true] {
                        let env = history_env(on);
                        let job = Job {
                            env: &env,
                            traffic: Some(Traffic {
                                messages: args.history_messages,
                                rate: args.history_rate,
                                drain: Duration::from_secs_f64(args.drain_secs.max(0.0)),
                                settle: Duration::ZERO,
                            }),
                            ..Job::new(Mode::Broadcast, args.history_conns)
                        };
                        let outcome = run_one(&args, kind, &job, &log_dir).await;
                        let run = HistoryRun {
                            repeat,
                            history_on: on,
                            outcome,
                        };
                        match &run.outcome {
                            Ok(r) => {
                                eprintln!("suite: history {} run {repeat}:", run.label());
                                print!("{}", r.human());
                                if args.json {
                                    println!("{}", r.json_line());
                                }
                            }
                            Err(e) => {
                                eprintln!("suite: history {} run {repeat} failed: {e}", run.label())
                            }
                        }
                        history.push(run);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            None => eprintln!("suite: history comparison needs --pushhub-bin"),
        }
    }
    let mut md = table::markdown(&entries);
    if !history.is_empty() {
        md.push_str(&table::history_markdown(
            &history,
            args.history_conns,
            args.history_messages,
            args.history_rate,
        ));
    }
    println!("\n{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// One run of the suite.
struct Job<'a> {
    mode: Mode,
    conns: u64,
    /// Server environment changes (`None` removes a variable).
    env: &'a [(&'a str, Option<&'a str>)],
    /// Traffic instead of the suite's broadcast settings.
    traffic: Option<Traffic>,
}

impl<'a> Job<'a> {
    fn new(mode: Mode, conns: u64) -> Self {
        Self {
            mode,
            conns,
            env: &[],
            traffic: None,
        }
    }
}

/// One scenario against one fresh server.
async fn run_one(
    args: &SuiteArgs,
    kind: &ServerKind,
    job: &Job<'_>,
    log_dir: &std::path::Path,
) -> Result<RunResult, String> {
    let (mode, conns, env) = (job.mode, job.conns, job.env);
    let mut tag = format!("{}-{}-{}", kind.label(), mode.name(), conns);
    for (key, value) in env {
        if let Some(v) = value {
            tag.push_str(&format!(
                "-{}{v}",
                key.trim_start_matches("PUSHHUB_").to_lowercase()
            ));
        }
    }
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("{n:02}-{tag}");
    eprintln!("suite: {tag} ...");
    run_one_inner(args, kind, job, log_dir, &tag)
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Runs started so far, to give every log file its own name.
static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

async fn run_one_inner(
    args: &SuiteArgs,
    kind: &ServerKind,
    job: &Job<'_>,
    log_dir: &std::path::Path,
    tag: &str,
) -> Result<RunResult> {
    let (mode, conns) = (job.mode, job.conns);
    let server_cpu = args.pin.then_some(0);
    let srv = server::start(kind, log_dir, tag, server_cpu, job.env).await?;
    let cfg = LoadConfig {
        ws_url: srv.ws_url.clone(),
        api_url: srv.api_url.clone(),
        pid: Some(srv.pid),
        more_pids: Vec::new(),
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
            let t = job.traffic.unwrap_or(Traffic {
                messages: args.broadcast_messages,
                rate: args.broadcast_rate,
                drain,
                settle: Duration::ZERO,
            });
            scenario::run_traffic(&cfg, mode, conns, t).await
        }
        Mode::Unicast => {
            let t = Traffic {
                messages: args.unicast_messages,
                rate: args.unicast_rate,
                drain,
                settle: Duration::ZERO,
            };
            scenario::run_traffic(&cfg, mode, conns, t).await
        }
        Mode::Resume => {
            let p = ResumeParams {
                warmup: args.resume_warmup,
                missed: args.resume_missed,
                rate: args.resume_rate,
                drain: Duration::from_secs(30).max(drain),
                grace: Duration::from_secs(1),
                abrupt: false,
            };
            scenario::run_resume(&cfg, conns, p).await
        }
    };
    let mut result = result;
    if let (Ok(r), ServerKind::Pushhub(_)) = (&mut result, kind) {
        // Which history setting the server really ran with: messages it holds now.
        r.server_history_messages = scenario::server_stats(&cfg.api_url, None)
            .await
            .ok()
            .and_then(|v| v.pointer("/broker/history_messages")?.as_u64());
    }
    let tail = srv.log_tail();
    srv.stop().await?;
    result.with_context(|| format!("server log tail:\n{tail}"))
}
