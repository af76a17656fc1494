//! Markdown comparison tables for the suite.

use std::fmt::Write as _;

use crate::plan::Mode;
use crate::report::{mib, RunResult};

/// One scenario run in the suite.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Scenario.
    pub mode: Mode,
    /// Clients requested.
    pub conns: u64,
    /// `relay` or `pushhub`.
    pub server: String,
    /// The result, or why the run failed.
    pub outcome: Result<RunResult, String>,
}

/// The relay's figure for the same scenario and N, to compute ratios.
fn relay_value(entries: &[Entry], e: &Entry, f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
    entries
        .iter()
        .find(|r| r.server == "relay" && r.mode == e.mode && r.conns == e.conns)
        .and_then(|r| r.outcome.as_ref().ok())
        .and_then(f)
}

/// `x/y` formatted for a table cell, blank when undefined.
fn ratio(x: Option<f64>, y: Option<f64>) -> String {
    match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
        _ => String::new(),
    }
}

/// An optional number with `prec` decimals, blank when missing.
fn num(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}")).unwrap_or_default()
}

/// All tables (idle, broadcast, unicast) for the entries present.
pub fn markdown(entries: &[Entry]) -> String {
    let mut out = String::new();
    for mode in [Mode::Idle, Mode::Broadcast, Mode::Unicast] {
        let rows: Vec<&Entry> = entries.iter().filter(|e| e.mode == mode).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {}\n", mode.name());
        if mode == Mode::Idle {
            out.push_str("| N | server | connected | connect s | RSS before MiB | RSS after MiB | bytes/conn | bytes/conn pushhub/relay |\n");
            out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
        } else {
            out.push_str("| N | server | deliveries | expected | lost | dup | deliveries/s | p50 ms | p99 ms | max ms | CPU µs/1k deliveries | RSS after MiB | CPU pushhub/relay |\n");
            out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        }
        for e in rows {
            let r = match &e.outcome {
                Ok(r) => r,
                Err(why) => {
                    let why = why.replace('|', "/").replace('\n', " ");
                    let _ = writeln!(out, "| {} | {} | error: {why} |", e.conns, e.server);
                    continue;
                }
            };
            let rss_after = num(r.server_rss_after_bytes.map(mib), 1);
            if mode == Mode::Idle {
                let per_conn = |r: &RunResult| r.rss_bytes_per_conn;
                let cmp = if e.server == "relay" {
                    String::new()
                } else {
                    ratio(per_conn(r), relay_value(entries, e, per_conn))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.2} | {} | {} | {} | {} |",
                    e.conns,
                    e.server,
                    r.conns_connected,
                    r.connect_secs,
                    num(r.server_rss_before_bytes.map(mib), 1),
                    rss_after,
                    num(r.rss_bytes_per_conn, 0),
                    cmp
                );
            } else {
                let cpu = |r: &RunResult| r.server_cpu_us_per_1k_deliveries;
                let cmp = if e.server == "relay" {
                    String::new()
                } else {
                    ratio(cpu(r), relay_value(entries, e, cpu))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                    e.conns,
                    e.server,
                    r.deliveries,
                    r.expected,
                    r.lost,
                    r.duplicated,
                    r.deliveries_per_sec,
                    r.latency.p50_ms,
                    r.latency.p99_ms,
                    r.latency.max_ms,
                    num(cpu(r), 1),
                    rss_after,
                    cmp
                );
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(server: &str, mode: Mode, cpu: f64) -> Entry {
        Entry {
            mode,
            conns: 1000,
            server: server.into(),
            outcome: Ok(RunResult {
                scenario: mode.name().into(),
                server_cpu_us_per_1k_deliveries: Some(cpu),
                rss_bytes_per_conn: Some(cpu * 10.0),
                ..RunResult::default()
            }),
        }
    }

    #[test]
    fn ratio_is_pushhub_over_relay() {
        let entries = vec![
            entry("relay", Mode::Broadcast, 100.0),
            entry("pushhub", Mode::Broadcast, 250.0),
            entry("relay", Mode::Idle, 10.0),
            entry("pushhub", Mode::Idle, 30.0),
            Entry {
                mode: Mode::Unicast,
                conns: 5,
                server: "pushhub".into(),
                outcome: Err("boom | bad".into()),
            },
        ];
        let md = markdown(&entries);
        assert!(md.contains("### broadcast"));
        assert!(md.contains("| 250.0 |"), "{md}");
        assert!(md.contains("2.50×"), "{md}");
        assert!(md.contains("3.00×"), "{md}");
        assert!(md.contains("error: boom / bad"), "{md}");
    }

    #[test]
    fn ratio_blank_without_baseline() {
        assert_eq!(ratio(Some(1.0), None), "");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
    }
}
