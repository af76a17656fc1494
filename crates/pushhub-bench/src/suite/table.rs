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

/// The relay's figure for the same scenario and N, to compute ratios: the relay run
/// closest before `e` (so a repeated N, `--conns 15000,15000`, pairs each pushhub run
/// with the relay run just before it), else the first one.
fn relay_value(entries: &[Entry], e: &Entry, f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
    let same = |r: &&Entry| r.server == "relay" && r.mode == e.mode && r.conns == e.conns;
    let at = entries
        .iter()
        .position(|x| std::ptr::eq(x, e))
        .unwrap_or(entries.len());
    entries[..at]
        .iter()
        .rev()
        .find(same)
        .or_else(|| entries.iter().find(same))
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

/// One run of the history comparison (broadcast against pushhub, history off or on).
#[derive(Debug, Clone)]
pub struct HistoryRun {
    /// Which off/on pair, from 1.
    pub repeat: u32,
    /// History at the defaults (true) or `PUSHHUB_HISTORY_SIZE=0` (false).
    pub history_on: bool,
    /// The result, or why the run failed.
    pub outcome: Result<RunResult, String>,
}

impl HistoryRun {
    /// `on` or `off`.
    pub fn label(&self) -> &'static str {
        if self.history_on {
            "on"
        } else {
            "off"
        }
    }

    fn cpu_per_1k(&self) -> Option<f64> {
        self.outcome
            .as_ref()
            .ok()
            .and_then(|r| r.server_cpu_us_per_1k_deliveries)
    }
}

/// The median of `values` (mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `user/sys` CPU ms of the server, blank when unknown.
fn user_sys(r: &RunResult) -> String {
    match (r.server_cpu_user_ms, r.server_cpu_sys_ms) {
        (Some(u), Some(s)) => format!("{u:.0}/{s:.0}"),
        _ => String::new(),
    }
}

/// The history off/on table: every run, each pair's ratio, and the median ratio.
pub fn history_markdown(runs: &[HistoryRun], conns: u64, messages: u64, rate: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### history off vs on (broadcast, N = {conns}, {messages} messages at {rate}/s)\n"
    );
    out.push_str("| pair | history | msgs held | deliveries | expected | lost | dup | p50 ms | p99 ms | server CPU ms | user/sys ms | CPU µs/1k deliveries | RSS after MiB | gen CPU ms | idle % | on/off |\n");
    out.push_str(
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut ratios = Vec::new();
    for run in runs {
        let r = match &run.outcome {
            Ok(r) => r,
            Err(why) => {
                let why = why.replace('|', "/").replace('\n', " ");
                let _ = writeln!(out, "| {} | {} | error: {why} |", run.repeat, run.label());
                continue;
            }
        };
        let pair_ratio = if run.history_on {
            let off = runs
                .iter()
                .find(|o| o.repeat == run.repeat && !o.history_on)
                .and_then(HistoryRun::cpu_per_1k);
            let x = run.cpu_per_1k().zip(off).filter(|(_, off)| *off > 0.0);
            if let Some((on, off)) = x {
                ratios.push(on / off);
            }
            ratio(run.cpu_per_1k(), off)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            run.repeat,
            run.label(),
            r.server_history_messages
                .map_or_else(String::new, |n| n.to_string()),
            r.deliveries,
            r.expected,
            r.lost,
            r.duplicated,
            r.latency.p50_ms,
            r.latency.p99_ms,
            num(r.server_cpu_ms, 0),
            user_sys(r),
            num(r.server_cpu_us_per_1k_deliveries, 1),
            num(r.server_rss_after_bytes.map(mib), 1),
            num(r.generator_cpu_ms, 0),
            num(r.machine_idle_pct, 0),
            pair_ratio
        );
    }
    let per = |on: bool| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.history_on == on)
            .filter_map(HistoryRun::cpu_per_1k)
            .collect()
    };
    let (off, on) = (median(&per(false)), median(&per(true)));
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
    let _ = writeln!(
        out,
        "\nMedian on/off ratio of CPU per delivery over {} pair(s): **{}** (pairs: {}); median CPU µs/1k deliveries: off {}, on {} (ratio of medians {}).\n",
        ratios.len(),
        median(&ratios).map_or_else(|| "n/a".to_string(), |m| format!("{m:.3}×")),
        if listed.is_empty() { "none".to_string() } else { listed.join(", ") },
        num(off, 1),
        num(on, 1),
        ratio(on, off)
    );
    out
}

/// The resume table.
fn resume_rows(out: &mut String, rows: &[&Entry]) {
    out.push_str("| N | M | reconnected | recovered=true | recovered=false | fully recovered | missed received | lost | dup | out of order | server saw 0 conns s | reconnect s | time to full recovery s | per-client p50 ms | p99 ms | max ms | server CPU ms | user/sys ms | peak RSS MiB | gen CPU ms | idle % |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for e in rows {
        let (r, res) = match &e.outcome {
            Ok(r) => match &r.resume {
                Some(res) => (r, res),
                None => continue,
            },
            Err(why) => {
                let why = why.replace('|', "/").replace('\n', " ");
                let _ = writeln!(out, "| {} | | error: {why} |", e.conns);
                continue;
            }
        };
        let t = &res.tally;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} |",
            e.conns,
            res.missed,
            t.reconnected,
            t.recovered_flag_true,
            t.recovered_flag_false,
            t.fully_recovered,
            t.missed_received,
            t.missed_expected,
            r.lost,
            r.duplicated,
            t.out_of_order,
            num(res.server_saw_disconnect_secs, 2),
            res.reconnect_secs,
            num(res.full_recovery_secs, 2),
            res.recovery.p50_ms,
            res.recovery.p99_ms,
            res.recovery.max_ms,
            num(r.server_cpu_ms, 0),
            user_sys(r),
            num(res.server_peak_rss_bytes.map(mib), 1),
            num(r.generator_cpu_ms, 0),
            num(r.machine_idle_pct, 0),
        );
    }
}

/// All tables (idle, broadcast, unicast, resume) for the entries present.
pub fn markdown(entries: &[Entry]) -> String {
    let mut out = String::new();
    for mode in [Mode::Idle, Mode::Broadcast, Mode::Unicast, Mode::Resume] {
        let rows: Vec<&Entry> = entries.iter().filter(|e| e.mode == mode).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {}\n", mode.name());
        if mode == Mode::Resume {
            resume_rows(&mut out, &rows);
            out.push('\n');
            continue;
        }
        if mode == Mode::Idle {
            out.push_str("| N | server | connected | connect s | RSS before MiB | RSS after MiB | bytes/conn | bytes/conn pushhub/relay |\n");
            out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
        } else {
            out.push_str("| N | server | deliveries | expected | lost | dup | deliveries/s | p50 ms | p99 ms | max ms | CPU µs/1k deliveries | RSS after MiB | CPU pushhub/relay | server user/sys ms | gen CPU ms | idle % |\n");
            out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
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
                    "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
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
                    cmp,
                    user_sys(r),
                    num(r.generator_cpu_ms, 0),
                    num(r.machine_idle_pct, 0),
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
    fn repeated_sizes_pair_with_the_preceding_relay_run() {
        let entries = vec![
            entry("relay", Mode::Broadcast, 100.0),
            entry("pushhub", Mode::Broadcast, 150.0),
            entry("relay", Mode::Broadcast, 200.0),
            entry("pushhub", Mode::Broadcast, 300.0),
        ];
        let md = markdown(&entries);
        assert_eq!(md.matches("1.50×").count(), 2, "{md}");
        // Relay after pushhub only (no preceding relay run): the first relay run is used.
        let late = vec![
            entry("pushhub", Mode::Broadcast, 300.0),
            entry("relay", Mode::Broadcast, 100.0),
        ];
        assert!(markdown(&late).contains("3.00×"));
    }

    #[test]
    fn history_pairs_and_median() {
        let run = |repeat, on, cpu| HistoryRun {
            repeat,
            history_on: on,
            outcome: Ok(RunResult {
                server_cpu_us_per_1k_deliveries: Some(cpu),
                ..RunResult::default()
            }),
        };
        let runs = vec![
            run(1, false, 100.0),
            run(1, true, 110.0),
            run(2, false, 100.0),
            run(2, true, 130.0),
            run(3, false, 200.0),
            run(3, true, 200.0),
        ];
        let md = history_markdown(&runs, 10000, 100, 10.0);
        assert!(md.contains("| 1.10× |"), "{md}");
        assert!(md.contains("| 1.30× |"), "{md}");
        assert!(md.contains("**1.100×**"), "{md}");
        assert!(md.contains("pairs: 1.10×, 1.30×, 1.00×"), "{md}");
        assert!(md.contains("off 100.0, on 130.0"), "{md}");
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn resume_table_row() {
        use crate::report::ResumeSummary;
        use crate::resume_tally::ResumeTally;
        let e = Entry {
            mode: Mode::Resume,
            conns: 10000,
            server: "pushhub".into(),
            outcome: Ok(RunResult {
                resume: Some(ResumeSummary {
                    missed: 10,
                    full_recovery_secs: Some(2.345),
                    tally: ResumeTally {
                        reconnected: 10000,
                        recovered_flag_true: 10000,
                        fully_recovered: 10000,
                        missed_received: 100000,
                        missed_expected: 100000,
                        ..ResumeTally::default()
                    },
                    ..ResumeSummary::default()
                }),
                ..RunResult::default()
            }),
        };
        let md = markdown(&[e]);
        assert!(md.contains("### resume"), "{md}");
        assert!(
            md.contains("| 10000 | 10 | 10000 | 10000 | 0 | 10000 | 100000/100000 |"),
            "{md}"
        );
        assert!(md.contains("| 2.35 |"), "{md}");
    }

    #[test]
    fn ratio_blank_without_baseline() {
        assert_eq!(ratio(Some(1.0), None), "");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
    }
}
