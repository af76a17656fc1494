//! The result of one scenario run, for people (text block) and scripts (JSON line).

use std::fmt::Write as _;

use serde::Serialize;

use crate::hist::LatencySummary;

/// Everything measured in one run. Fields that do not apply are `None`/0.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    /// `idle`, `broadcast` or `unicast`.
    pub scenario: String,
    /// Label of the server under test (set by `suite`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Clients requested (N).
    pub conns: u64,
    /// Clients that connected and got their welcome frame.
    pub conns_connected: u64,
    /// Clients that failed after retries.
    pub conns_failed: u64,
    /// Seconds from spawning the workers until every client settled.
    pub connect_secs: f64,
    /// Connection attempts beyond the first, over all clients.
    pub connect_retries: u64,
    /// Longest single-client connect (retries included), seconds.
    pub slowest_connect_secs: f64,
    /// Accept-queue overflows (system-wide) during the connect phase; each costs a 1 s SYN retry.
    pub listen_overflows: Option<u64>,
    /// Worker processes used.
    pub procs: usize,
    /// Messages published (M).
    pub messages: u64,
    /// Target publish rate (messages/s).
    pub rate: f64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Seconds from first to last publish.
    pub publish_secs: f64,
    /// Sum of the `delivered` counts the server reported.
    pub server_reported_delivered: u64,
    /// Median POST round-trip in ms.
    pub publish_p50_ms: f64,
    /// Deliveries the plan expects for all N clients (N*M broadcast, M unicast).
    pub expected: u64,
    /// Message frames received by all clients.
    pub deliveries: u64,
    /// Expected deliveries that never arrived (connected clients only).
    pub lost: u64,
    /// Extra copies of expected deliveries.
    pub duplicated: u64,
    /// Deliveries to a client that should not have received them.
    pub unexpected: u64,
    /// Clients whose connection ended during the run.
    pub disconnects: u64,
    /// Frames that were not valid protocol JSON.
    pub malformed: u64,
    /// Every expected delivery arrived before the drain timeout.
    pub complete: bool,
    /// Deliveries per second from the first publish to the last delivery.
    pub deliveries_per_sec: f64,
    /// Publish-to-receive latency.
    pub latency: LatencySummary,
    /// Server CPU (user+system) consumed during the run, ms.
    pub server_cpu_ms: Option<f64>,
    /// Server CPU µs per 1,000 deliveries.
    pub server_cpu_us_per_1k_deliveries: Option<f64>,
    /// Server RSS before the clients connected, bytes.
    pub server_rss_before_bytes: Option<u64>,
    /// Server RSS at the end of the run, bytes.
    pub server_rss_after_bytes: Option<u64>,
    /// (RSS after - RSS before) / connected clients, bytes.
    pub rss_bytes_per_conn: Option<f64>,
    /// User-mode part of `server_cpu_ms`.
    pub server_cpu_user_ms: Option<f64>,
    /// Kernel-mode part of `server_cpu_ms`.
    pub server_cpu_sys_ms: Option<f64>,
    /// Wall-clock length of the window the CPU figures cover, seconds.
    pub window_secs: f64,
    /// CPU used by the load generator (parent + worker processes) in the same window, ms.
    pub generator_cpu_ms: Option<f64>,
    /// Share of the machine's CPU time that was idle in the same window, percent.
    pub machine_idle_pct: Option<f64>,
    /// Messages the server held in channel histories at the end (`broker.history_messages`
    /// of pushhub's `/v1/stats`; set by the suite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_history_messages: Option<u64>,
    /// Resume scenario results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeSummary>,
    /// First error seen (connect or publish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// What the resume scenario measured (the reconnect phase unless said otherwise).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResumeSummary {
    /// Broadcasts published while every client was connected (seq `0..W`).
    pub warmup: u64,
    /// Broadcasts published while every client was disconnected (seq `W..W+M`).
    pub missed: u64,
    /// Every warm-up message reached every client before the disconnect.
    pub warmup_complete: bool,
    /// Connections the clients closed.
    pub disconnected: u64,
    /// Seconds from the disconnect command until the server's `/v1/stats` said
    /// `connections: 0` (`None`: the server has no such endpoint, or never got there).
    pub server_saw_disconnect_secs: Option<f64>,
    /// Sum of `delivered` over the missed messages' publishes (should be 0: nobody online).
    pub delivered_while_offline: u64,
    /// Failed publishes of missed messages.
    pub missed_publish_errors: u64,
    /// Counters over all clients.
    pub tally: crate::resume_tally::ResumeTally,
    /// Seconds from the reconnect command until every reconnect settled.
    pub reconnect_secs: f64,
    /// Reconnect attempts beyond the first.
    pub reconnect_retries: u64,
    /// Every reconnected client had every missed message before the deadline.
    pub complete: bool,
    /// Seconds from the first reconnect attempt to the moment the last client had all
    /// missed messages.
    pub full_recovery_secs: Option<f64>,
    /// Per-client recovery time: the client's first reconnect attempt (after waiting for
    /// the connect concurrency gate) → its last missed message.
    pub recovery: LatencySummary,
    /// Server CPU over the reconnect phase, ms (user + system).
    pub server_cpu_ms: Option<f64>,
    /// Highest server RSS seen during the reconnect phase (sampled every 10 ms), bytes.
    pub server_peak_rss_bytes: Option<u64>,
    /// Server RSS just before the reconnect command, bytes.
    pub server_rss_before_bytes: Option<u64>,
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl RunResult {
    /// Multi-line summary for a terminal.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let server = self.server.as_deref().unwrap_or("target");
        let _ = writeln!(s, "== {} against {} ==", self.scenario, server);
        let _ = writeln!(
            s,
            "conns: {} requested, {} connected, {} failed in {:.2} s ({} worker procs, {} retries, slowest client {:.2} s, {} listen overflows)",
            self.conns,
            self.conns_connected,
            self.conns_failed,
            self.connect_secs,
            self.procs,
            self.connect_retries,
            self.slowest_connect_secs,
            self.listen_overflows
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        );
        if self.scenario != "idle" {
            let _ = writeln!(
                s,
                "publish: {} msgs at {}/s over {:.2} s, {} errors, server said delivered {}, POST p50 {:.2} ms",
                self.messages,
                self.rate,
                self.publish_secs,
                self.publish_errors,
                self.server_reported_delivered,
                self.publish_p50_ms
            );
            let _ = writeln!(
                s,
                "deliveries: {} of {} expected, lost {}, duplicated {}, unexpected {}, disconnects {}, malformed {}{}",
                self.deliveries,
                self.expected,
                self.lost,
                self.duplicated,
                self.unexpected,
                self.disconnects,
                self.malformed,
                if self.complete { "" } else { " (INCOMPLETE: drain timeout)" }
            );
            if self.resume.is_some() {
                let _ = writeln!(
                    s,
                    "warm-up (live) latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    self.latency.p50_ms, self.latency.p99_ms, self.latency.max_ms
                );
            } else {
                let _ = writeln!(
                    s,
                    "throughput: {:.0} deliveries/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    self.deliveries_per_sec,
                    self.latency.p50_ms,
                    self.latency.p99_ms,
                    self.latency.max_ms
                );
            }
        }
        if let Some(r) = &self.resume {
            resume_lines(&mut s, self, r);
        }
        if let (Some(cpu), Some(per_k)) = (self.server_cpu_ms, self.server_cpu_us_per_1k_deliveries)
        {
            let _ = writeln!(
                s,
                "server cpu: {cpu:.0} ms total, {per_k:.1} µs per 1,000 deliveries"
            );
        }
        if let (Some(user), Some(sys)) = (self.server_cpu_user_ms, self.server_cpu_sys_ms) {
            let _ = writeln!(
                s,
                "cpu window {:.2} s: server {user:.0} ms user + {sys:.0} ms system; generator {}; machine idle {}",
                self.window_secs,
                self.generator_cpu_ms
                    .map_or_else(|| "?".to_string(), |g| format!("{g:.0} ms")),
                self.machine_idle_pct
                    .map_or_else(|| "?".to_string(), |i| format!("{i:.0} %")),
            );
        }
        if let (Some(before), Some(after)) =
            (self.server_rss_before_bytes, self.server_rss_after_bytes)
        {
            let per_conn = self
                .rss_bytes_per_conn
                .map(|b| format!(", {b:.0} bytes/conn"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "server rss: {:.1} MiB before, {:.1} MiB after{per_conn}",
                mib(before),
                mib(after)
            );
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "first error: {e}");
        }
        s
    }

    /// One JSON line for scripts.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The resume block of [`RunResult::human`].
fn resume_lines(s: &mut String, run: &RunResult, r: &ResumeSummary) {
    let t = &r.tally;
    let _ = writeln!(
        s,
        "disconnect: {} closed; server saw 0 connections after {}; {} missed msgs published ({} errors, server said delivered {})",
        r.disconnected,
        r.server_saw_disconnect_secs
            .map_or_else(|| "?".to_string(), |x| format!("{x:.2} s")),
        r.missed,
        r.missed_publish_errors,
        r.delivered_while_offline
    );
    let _ = writeln!(
        s,
        "reconnect: {} of {} reconnected ({} failed, {} retries) in {:.2} s; welcome recovered=true {}, false {}, missing {}; {} extra reconnects for replay parts (4005)",
        t.reconnected,
        t.clients,
        t.reconnect_failed,
        r.reconnect_retries,
        r.reconnect_secs,
        t.recovered_flag_true,
        t.recovered_flag_false,
        t.recovered_flag_missing,
        t.replay_parts
    );
    let _ = writeln!(
        s,
        "recovered: {} of {} clients fully recovered; missed msgs {} of {} received, lost {}; whole run lost {}, duplicated {}, out of order {}, offset gaps {}, stale {}, epoch changes {}{}",
        t.fully_recovered,
        run.conns,
        t.missed_received,
        t.missed_expected,
        t.missed_lost,
        run.lost,
        run.duplicated,
        t.out_of_order,
        t.offset_gaps,
        t.offset_stale,
        t.epoch_changes,
        if r.complete { "" } else { " (INCOMPLETE: deadline)" }
    );
    let _ = writeln!(
        s,
        "time to full recovery: {}; per client p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.full_recovery_secs
            .map_or_else(|| "-".to_string(), |x| format!("{x:.3} s")),
        r.recovery.p50_ms,
        r.recovery.p99_ms,
        r.recovery.max_ms
    );
    if let Some(peak) = r.server_peak_rss_bytes {
        let _ = writeln!(
            s,
            "reconnect phase server: cpu {}, peak rss {:.1} MiB (before {:.1} MiB)",
            r.server_cpu_ms
                .map_or_else(|| "?".to_string(), |c| format!("{c:.0} ms")),
            mib(peak),
            mib(r.server_rss_before_bytes.unwrap_or(0))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_mentions_loss_and_json_is_one_line() {
        let r = RunResult {
            scenario: "broadcast".into(),
            conns: 10,
            lost: 3,
            server_cpu_ms: Some(12.0),
            server_cpu_us_per_1k_deliveries: Some(240.0),
            ..RunResult::default()
        };
        let h = r.human();
        assert!(h.contains("lost 3"));
        assert!(h.contains("INCOMPLETE"));
        assert!(h.contains("240.0 µs per 1,000"));
        let j = r.json_line();
        assert!(!j.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["lost"], 3);
        assert!(v.get("server").is_none());
        assert!(v.get("resume").is_none());
    }

    #[test]
    fn resume_block() {
        let r = RunResult {
            scenario: "resume".into(),
            conns: 10,
            resume: Some(ResumeSummary {
                missed: 10,
                complete: true,
                full_recovery_secs: Some(1.5),
                tally: crate::resume_tally::ResumeTally {
                    clients: 10,
                    reconnected: 10,
                    fully_recovered: 10,
                    ..Default::default()
                },
                ..ResumeSummary::default()
            }),
            ..RunResult::default()
        };
        let h = r.human();
        assert!(h.contains("10 of 10 clients fully recovered"), "{h}");
        assert!(h.contains("time to full recovery: 1.500 s"), "{h}");
        let v: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["resume"]["tally"]["fully_recovered"], 10);
    }
}
