//! `pushhub-bench`: reference relay, load generator and benchmark suite for pushhub.
//!
//! See `docs/benchmarks.md` for what each scenario measures and how to run it.

mod affinity;
mod aggregate;
mod batch;
mod cli;
mod clock;
mod cluster;
mod cursor;
mod hist;
mod http;
mod ingest;
mod ipc;
mod limits;
mod netstat;
mod plan;
mod pool;
mod proc_stats;
mod publisher;
mod pusher;
mod relay;
mod report;
mod restart;
mod resume_tally;
mod scenario;
mod seq;
mod soak;
mod suite;
mod target;
mod timers;
mod upgrade;
mod worker;

use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command};
use plan::Mode;
use report::RunResult;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Relay(args) => relay::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Suite(args) => suite::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Timers(args) => timers::run(args).await,
        Command::Restart(args) => restart::run(args).await,
        Command::Upgrade(args) => upgrade::run(args).await,
        Command::Batch(args) => batch::run(args).await,
        Command::Ingest(args) => ingest::run(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::PusherFanout(args) => pusher::fanout::run(args).await,
        Command::PusherPresence(args) => pusher::presence::run(args).await,
        Command::Idle(args) => {
            let settle = Duration::from_secs_f64(args.settle_secs.max(0.0));
            let r = scenario::run_idle(&args.target.load_config(), args.conns, settle).await?;
            print_result(&r, args.target.json);
            Ok(())
        }
        Command::Broadcast(args) => {
            let cfg = args.target.load_config();
            let r =
                scenario::run_traffic(&cfg, Mode::Broadcast, args.conns, args.traffic()).await?;
            print_result(&r, args.target.json);
            Ok(())
        }
        Command::Unicast(args) => {
            let cfg = args.target.load_config();
            let r = scenario::run_traffic(&cfg, Mode::Unicast, args.conns, args.traffic()).await?;
            print_result(&r, args.target.json);
            Ok(())
        }
        Command::Resume(args) => {
            let cfg = args.target.load_config();
            let r = scenario::run_resume(&cfg, args.conns, args.params()).await?;
            print_result(&r, args.target.json);
            Ok(())
        }
    }
}

/// Prints the human block and, if asked, the JSON line.
fn print_result(r: &RunResult, json: bool) {
    print!("{}", r.human());
    if json {
        println!("{}", r.json_line());
    }
}
