//! The `ingest` scenario: what accepting a push costs pushhub, against the reference relay
//! (and nchan, when installed) in the same run (issue 18, point 5).
//!
//! Three parts, each server fresh for each row:
//! * **single**: one push per request to one offline user (round-robin over `--users`),
//!   with 1, 16 and 64 keep-alive connections sending back to back: pushhub's and the
//!   relay's `POST /v1/push`, nchan's `POST /pub/CHANNEL`;
//! * **batch**: pushhub's `POST /v1/batch` of 10, 100 and 1,000 pushes to offline users;
//! * **online**: a steady 2,000 pushes/s, each to one of 1,000 connected users, against
//!   pushhub and the relay: CPU per push and the publish-to-receive latency.
//!
//! Reported: pushes/s, server CPU per push (`/proc/PID/stat`), latency, and the
//! pushhub/relay (and pushhub/nchan) ratios, as lines, JSON lines and Markdown tables.

mod load;
mod nchan;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::plan::Mode;
use crate::scenario::{self, LoadConfig, Traffic};
use crate::suite::server::{self, ServerKind};
use load::{Load, Measured, Request};

/// Arguments of `pushhub-bench ingest`.
#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// The pushhub binary (build it with --release).
    #[arg(long)]
    pub pushhub_bin: PathBuf,
    /// Which parts to run.
    #[arg(long, value_delimiter = ',', default_value = "single,batch,online")]
    pub parts: Vec<Part>,
    /// Keep-alive connections of the single-push rows.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub conns: Vec<usize>,
    /// Pushes per `POST /v1/batch` of the batch rows.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub sizes: Vec<usize>,
    /// Keep-alive connections of the batch rows.
    #[arg(long, default_value_t = 4)]
    pub batch_conns: usize,
    /// Seconds each single or batch row sends.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Distinct offline users the single and batch pushes go to, round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Also measure nginx with nchan in the single rows.
    #[arg(long)]
    pub nchan: bool,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    pub nginx_bin: PathBuf,
    /// nchan's dynamic module.
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_nchan_module.so")]
    pub nchan_module: PathBuf,
    /// Connected users of the online part (each its own client).
    #[arg(long, default_value_t = 1_000)]
    pub online_users: u64,
    /// Pushes per second of the online part.
    #[arg(long, default_value_t = 2_000.0)]
    pub online_rate: f64,
    /// Seconds the online part publishes.
    #[arg(long, default_value_t = 10.0)]
    pub online_secs: f64,
    /// Where the servers' logs go.
    #[arg(long, default_value = "bench-logs")]
    pub log_dir: PathBuf,
}

/// A part of the scenario.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Single pushes, every server.
    Single,
    /// Batches, pushhub.
    Batch,
    /// Steady pushes to online users, pushhub and the relay.
    Online,
}

/// The servers a single-push row runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Server {
    Pushhub,
    Relay,
    Nchan,
}

impl Server {
    fn label(self) -> &'static str {
        match self {
            Server::Pushhub => "pushhub",
            Server::Relay => "relay",
            Server::Nchan => "nchan",
        }
    }
}

/// One row of the single or batch part.
#[derive(Debug, Serialize)]
struct Row {
    part: &'static str,
    server: Server,
    conns: usize,
    pushes_per_request: usize,
    #[serde(flatten)]
    measured: Measured,
}

/// One server's online part.
#[derive(Debug, Serialize)]
struct OnlineRow {
    server: &'static str,
    users: u64,
    rate: f64,
    pushes: u64,
    deliveries: u64,
    lost: u64,
    server_cpu_us_per_push: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
}

/// Run the scenario: each row as it is measured, then the tables.
pub async fn run(args: IngestArgs) -> Result<()> {
    std::fs::create_dir_all(&args.log_dir)?;
    let mut rows = Vec::new();
    let mut online = Vec::new();
    if args.parts.contains(&Part::Single) {
        let mut servers = vec![Server::Relay, Server::Pushhub];
        if args.nchan {
            servers.push(Server::Nchan);
        }
        for &conns in &args.conns {
            for &server in &servers {
                let row = single(&args, server, conns).await?;
                print_row(&row)?;
                rows.push(row);
            }
        }
    }
    if args.parts.contains(&Part::Batch) {
        for &size in &args.sizes {
            let row = batch(&args, size.max(1)).await?;
            print_row(&row)?;
            rows.push(row);
        }
    }
    if args.parts.contains(&Part::Online) {
        for kind in [
            ServerKind::Relay,
            ServerKind::Pushhub(args.pushhub_bin.clone()),
        ] {
            let row = steady_online(&args, &kind).await?;
            println!(
                "online: {} {} users, {:.0} pushes/s: {:.2} µs server CPU/push, latency p50 {:.2} ms p99 {:.2} ms, {} lost",
                row.server, row.users, row.rate, row.server_cpu_us_per_push, row.latency_p50_ms, row.latency_p99_ms, row.lost
            );
            println!("{}", serde_json::to_string(&row)?);
            online.push(row);
        }
    }
    print!("{}", tables(&rows, &online));
    Ok(())
}

fn print_row(row: &Row) -> Result<()> {
    let m = &row.measured;
    println!(
        "{}: {} {} push(es)/request, {} conns: {:.0} pushes/s, {:.2} µs server CPU/push, {:.2} µs generator CPU/push, request p50 {:.3} ms p99 {:.3} ms",
        row.part,
        row.server.label(),
        row.pushes_per_request,
        row.conns,
        m.pushes_per_sec,
        m.server_cpu_us_per_push,
        m.generator_cpu_us_per_push,
        m.request_p50_ms,
        m.request_p99_ms,
    );
    println!("{}", serde_json::to_string(row)?);
    Ok(())
}

/// `{"to":"<user>","event":"order","data":{"n":N}}` without the app, for push number `n`.
fn push_fields(n: u64, users: u64) -> String {
    format!(r#""to":"{}","event":"order","data":{{"n":{n}}}"#, n % users)
}

/// Single pushes against `server` with `conns` connections.
async fn single(args: &IngestArgs, server: Server, conns: usize) -> Result<Row> {
    let users = args.users.max(1);
    let tag = format!("ingest-single-{}-{conns}", server.label());
    let to_api = move |n: u64| Request {
        path: "/v1/push".into(),
        body: Bytes::from(format!(r#"{{"app":"demo",{}}}"#, push_fields(n, users))),
    };
    let measured = match server {
        Server::Nchan => {
            let nchan =
                nchan::start(&args.nginx_bin, &args.nchan_module, &args.log_dir, &tag).await?;
            let measured = load::run(Load {
                api_url: nchan.api_url.clone(),
                pids: nchan.pids.clone(),
                conns,
                secs: args.secs,
                pushes_per_request: 1,
                make: Arc::new(move |n| Request {
                    path: format!("/pub/demo-user-{}", n % users),
                    body: Bytes::from(format!(r#"{{"event":"order","data":{{"n":{n}}}}}"#)),
                }),
                check: Arc::new(|_| Ok(())),
            })
            .await;
            nchan.stop().await?;
            measured?
        }
        Server::Pushhub | Server::Relay => {
            let kind = match server {
                Server::Relay => ServerKind::Relay,
                _ => ServerKind::Pushhub(args.pushhub_bin.clone()),
            };
            let srv = server::start(&kind, &args.log_dir, &tag, None, &[]).await?;
            let measured = load::run(Load {
                api_url: srv.api_url.clone(),
                pids: vec![srv.pid],
                conns,
                secs: args.secs,
                pushes_per_request: 1,
                make: Arc::new(to_api),
                check: Arc::new(|answer| {
                    anyhow::ensure!(
                        answer.starts_with(br#"{"id":"#),
                        "a push answer without its id: {}",
                        String::from_utf8_lossy(answer)
                    );
                    Ok(())
                }),
            })
            .await;
            srv.stop().await?;
            measured?
        }
    };
    Ok(Row {
        part: "single",
        server,
        conns,
        pushes_per_request: 1,
        measured,
    })
}

/// The bodies of `POST /v1/batch` requests of `size` pushes, built once and sent in turn:
/// body `k` pushes to users `k·size` onwards (round-robin over `users`), so that together
/// they reach every user. Building a body per request cost the generator as much CPU as the
/// server spent on it, on the cores both share.
fn batch_bodies(size: usize, users: u64) -> Vec<Bytes> {
    let count = users.div_ceil(size as u64).max(1);
    (0..count)
        .map(|k| {
            let first = k * size as u64;
            let mut body = String::with_capacity(64 * size + 32);
            body.push_str(r#"{"app":"demo","pushes":["#);
            for i in 0..size as u64 {
                if i > 0 {
                    body.push(',');
                }
                let _ = write!(body, "{{{}}}", push_fields(first + i, users));
            }
            body.push_str("]}");
            Bytes::from(body)
        })
        .collect()
}

/// How pushhub's answer to a batch of `size` starts when every entry was published: it
/// writes the counts first, so checking them needs no JSON tree of the entries' list.
fn batch_answer_head(size: usize) -> String {
    format!(r#"{{"published":{size},"failed":0,"results":["#)
}

/// A batch's answer passes when it starts with `head` ([`batch_answer_head`]) and its list
/// of entries is closed: every entry published, the answer whole.
fn check_batch_answer(answer: &[u8], head: &str) -> Result<()> {
    anyhow::ensure!(
        answer.starts_with(head.as_bytes()) && answer.ends_with(b"]}"),
        "a batch was not published whole: {}",
        String::from_utf8_lossy(answer)
    );
    Ok(())
}

/// Batches of `size` against pushhub.
async fn batch(args: &IngestArgs, size: usize) -> Result<Row> {
    let users = args.users.max(1);
    let kind = ServerKind::Pushhub(args.pushhub_bin.clone());
    let srv = server::start(
        &kind,
        &args.log_dir,
        &format!("ingest-batch-{size}"),
        None,
        &[],
    )
    .await?;
    let bodies = Arc::new(batch_bodies(size, users));
    let make = move |n: u64| Request {
        path: "/v1/batch".into(),
        body: bodies[(n % bodies.len() as u64) as usize].clone(),
    };
    let published = batch_answer_head(size);
    let measured = load::run(Load {
        api_url: srv.api_url.clone(),
        pids: vec![srv.pid],
        conns: args.batch_conns,
        secs: args.secs,
        pushes_per_request: size,
        make: Arc::new(make),
        check: Arc::new(move |answer| check_batch_answer(answer, &published)),
    })
    .await;
    srv.stop().await?;
    Ok(Row {
        part: "batch",
        server: Server::Pushhub,
        conns: args.batch_conns,
        pushes_per_request: size,
        measured: measured?,
    })
}

/// A steady rate of pushes, each to one of the connected users, against `kind`.
async fn steady_online(args: &IngestArgs, kind: &ServerKind) -> Result<OnlineRow> {
    let tag = format!("ingest-online-{}", kind.label());
    let srv = server::start(kind, &args.log_dir, &tag, None, &[]).await?;
    let cfg = LoadConfig {
        ws_url: srv.ws_url.clone(),
        api_url: srv.api_url.clone(),
        pid: Some(srv.pid),
        more_pids: Vec::new(),
        app: "demo".into(),
        procs: None,
        src_addrs: 8,
        concurrency: 200,
        token: None,
        connect_timeout: Duration::from_secs(120),
        server_label: Some(kind.label().into()),
        worker_cpu: None,
    };
    let messages = (args.online_rate * args.online_secs).round() as u64;
    let traffic = Traffic {
        messages,
        rate: args.online_rate,
        drain: Duration::from_secs(10),
        settle: Duration::from_secs(1),
    };
    let result = scenario::run_traffic(&cfg, Mode::Unicast, args.online_users, traffic).await;
    let tail = srv.log_tail();
    srv.stop().await?;
    let result = result.with_context(|| format!("server log tail:\n{tail}"))?;
    anyhow::ensure!(
        result.publish_errors == 0,
        "{} publishes failed: {:?}",
        result.publish_errors,
        result.first_error
    );
    Ok(OnlineRow {
        server: kind.label(),
        users: args.online_users,
        rate: args.online_rate,
        pushes: messages,
        deliveries: result.deliveries,
        lost: result.lost,
        server_cpu_us_per_push: result.server_cpu_ms.unwrap_or(0.0) * 1000.0
            / messages.max(1) as f64,
        latency_p50_ms: result.latency.p50_ms,
        latency_p99_ms: result.latency.p99_ms,
        latency_max_ms: result.latency.max_ms,
    })
}

/// `a / b`, or `-` when `b` is not there.
fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// The Markdown tables of a run, ratios included.
fn tables(rows: &[Row], online: &[OnlineRow]) -> String {
    let mut out = String::new();
    let find = |server: Server, conns: usize| {
        rows.iter()
            .find(|r| r.part == "single" && r.server == server && r.conns == conns)
            .map(|r| r.measured)
    };
    let singles: Vec<&Row> = rows
        .iter()
        .filter(|r| r.part == "single" && r.server == Server::Pushhub)
        .collect();
    if !singles.is_empty() {
        let _ = writeln!(
            out,
            "\n| conns | server | pushes/s | server CPU/push | request p50 | request p99 | CPU/push ÷ relay | pushes/s ÷ relay | CPU/push ÷ nchan | pushes/s ÷ nchan |"
        );
        let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for pushhub in singles {
            let conns = pushhub.conns;
            let relay = find(Server::Relay, conns);
            let nchan = find(Server::Nchan, conns);
            for (server, m) in [
                (Server::Relay, relay),
                (Server::Nchan, nchan),
                (Server::Pushhub, Some(pushhub.measured)),
            ] {
                let Some(m) = m else { continue };
                let ratios = if server == Server::Pushhub {
                    format!(
                        "{} | {} | {} | {}",
                        ratio(
                            m.server_cpu_us_per_push,
                            relay.map(|r| r.server_cpu_us_per_push)
                        ),
                        ratio(m.pushes_per_sec, relay.map(|r| r.pushes_per_sec)),
                        ratio(
                            m.server_cpu_us_per_push,
                            nchan.map(|r| r.server_cpu_us_per_push)
                        ),
                        ratio(m.pushes_per_sec, nchan.map(|r| r.pushes_per_sec)),
                    )
                } else {
                    " | | | ".into()
                };
                let _ = writeln!(
                    out,
                    "| {conns} | {} | {:.0} | {:.2} µs | {:.3} ms | {:.3} ms | {ratios} |",
                    server.label(),
                    m.pushes_per_sec,
                    m.server_cpu_us_per_push,
                    m.request_p50_ms,
                    m.request_p99_ms,
                );
            }
        }
    }
    let batches: Vec<&Row> = rows.iter().filter(|r| r.part == "batch").collect();
    if !batches.is_empty() {
        let _ = writeln!(
            out,
            "\n| pushes per request | conns | pushes/s | server CPU/push | generator CPU/push | request p50 | request p99 |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for row in batches {
            let m = &row.measured;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} µs | {:.2} µs | {:.2} ms | {:.2} ms |",
                row.pushes_per_request,
                row.conns,
                m.pushes_per_sec,
                m.server_cpu_us_per_push,
                m.generator_cpu_us_per_push,
                m.request_p50_ms,
                m.request_p99_ms,
            );
        }
    }
    if !online.is_empty() {
        let relay = online
            .iter()
            .find(|r| r.server == "relay")
            .map(|r| r.server_cpu_us_per_push);
        let _ = writeln!(
            out,
            "\n| server | users | pushes/s | pushes | delivered | lost | server CPU/push | ÷ relay | latency p50 | p99 | max |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in online {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} | {:.2} µs | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
                row.server,
                row.users,
                row.rate,
                row.pushes,
                row.deliveries,
                row.lost,
                row.server_cpu_us_per_push,
                ratio(row.server_cpu_us_per_push, relay),
                row.latency_p50_ms,
                row.latency_p99_ms,
                row.latency_max_ms,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_bodies_are_json_the_servers_take() {
        let single: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"app":"demo",{}}}"#,
            push_fields(10_007, 10_000)
        ))
        .unwrap();
        assert_eq!(single["to"], "7");
        assert_eq!(single["data"]["n"], 10_007);
    }

    #[test]
    fn batch_bodies_reach_every_user_once_built() {
        let bodies = batch_bodies(100, 1_050);
        assert_eq!(bodies.len(), 11);
        let mut users = std::collections::BTreeSet::new();
        for body in &bodies {
            let body: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(body["app"], "demo");
            let pushes = body["pushes"].as_array().unwrap();
            assert_eq!(pushes.len(), 100);
            users.extend(pushes.iter().map(|p| p["to"].as_str().unwrap().to_owned()));
        }
        assert_eq!(users.len(), 1_050);
    }

    #[test]
    fn a_batch_answer_passes_only_when_every_entry_was_published() {
        let head = batch_answer_head(2);
        let whole = r#"{"published":2,"failed":0,"results":[{"id":"a"},{"id":"b"}]}"#;
        let partial = r#"{"published":1,"failed":1,"results":[{"id":"a"},{"error":{}}]}"#;
        let other_size = r#"{"published":20,"failed":0,"results":[]}"#;
        let cut = r#"{"published":2,"failed":0,"results":[{"id":"a"},{"#;
        assert!(check_batch_answer(whole.as_bytes(), &head).is_ok());
        for bad in [partial, other_size, cut, r#"{"error":{"code":"x"}}"#] {
            assert!(check_batch_answer(bad.as_bytes(), &head).is_err(), "{bad}");
        }
    }

    #[test]
    fn ratios_name_their_missing_reference() {
        assert_eq!(ratio(3.0, Some(2.0)), "1.50×");
        assert_eq!(ratio(3.0, None), "–");
        assert_eq!(ratio(3.0, Some(0.0)), "–");
    }
}
