//! Messages between the parent generator and its worker processes.
//!
//! One process may hold at most 20,000 descriptors, so clients are spread over
//! worker processes. Workers write one JSON [`WorkerEvent`] per line on stdout;
//! the parent writes [`STOP`] on a worker's stdin to end it (EOF means the same).

use serde::{Deserialize, Serialize};

use crate::seq::SeqTally;

/// Line the parent writes to a worker's stdin to make it report and exit.
pub const STOP: &str = "stop";

/// One line of worker output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Every client of the worker finished connecting (or gave up).
    Ready(ReadyInfo),
    /// Every connected client received everything the plan expects for it.
    Complete,
    /// Final counts, sent after [`STOP`].
    Report(WorkerReport),
}

/// Outcome of a worker's connect phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Clients that completed the handshake and got their welcome frame.
    pub connected: u64,
    /// Clients that failed after all retries.
    pub failed: u64,
    /// Seconds from worker start to the last client settling.
    pub connect_secs: f64,
    /// Connection attempts beyond the first, over all clients.
    pub retries: u64,
    /// Longest time one client took to connect (retries included, queueing excluded), seconds.
    pub slowest_client_secs: f64,
    /// Distinct-enough sample of what went wrong, for the human report.
    pub first_error: Option<String>,
}

/// Final counts of one worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Loss/duplicate accounting summed over the worker's connected clients.
    pub tally: SeqTally,
    /// Latency histogram, see [`crate::hist::LatencyHist::encode`].
    pub hist_b64: String,
    /// Wall-clock time (µs) of the first message frame any client received.
    pub first_delivery_us: Option<u64>,
    /// Wall-clock time (µs) of the last message frame any client received.
    pub last_delivery_us: Option<u64>,
    /// Clients whose connection ended before the worker was stopped.
    pub disconnects: u64,
    /// Frames that were not valid protocol JSON.
    pub malformed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_single_lines() {
        let events = [
            WorkerEvent::Ready(ReadyInfo {
                connected: 3,
                failed: 1,
                connect_secs: 0.5,
                retries: 2,
                slowest_client_secs: 0.25,
                first_error: Some("refused".into()),
            }),
            WorkerEvent::Complete,
            WorkerEvent::Report(WorkerReport {
                last_delivery_us: Some(7),
                ..WorkerReport::default()
            }),
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'));
            let back: WorkerEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(back, e);
        }
    }
}
