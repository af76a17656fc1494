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
    /// First error seen (connect or publish).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
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
            let _ = writeln!(
                s,
                "throughput: {:.0} deliveries/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                self.deliveries_per_sec,
                self.latency.p50_ms,
                self.latency.p99_ms,
                self.latency.max_ms
            );
        }
        if let (Some(cpu), Some(per_k)) = (self.server_cpu_ms, self.server_cpu_us_per_1k_deliveries)
        {
            let _ = writeln!(
                s,
                "server cpu: {cpu:.0} ms total, {per_k:.1} µs per 1,000 deliveries"
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
    }
}
