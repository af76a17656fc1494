//! Messages between the parent generator and its worker processes.
//!
//! One process may hold at most 20,000 descriptors, so clients are spread over
//! worker processes. Workers write one JSON [`WorkerEvent`] per line on stdout;
//! the parent writes [`STOP`] on a worker's stdin to end it (EOF means the same).
//! In the resume scenario the parent also writes [`DISCONNECT`] and then
//! [`RECONNECT`], one line each, to move every worker through the phases.

use serde::{Deserialize, Serialize};

use crate::resume_tally::ResumeReport;
use crate::seq::SeqTally;

/// Line the parent writes to a worker's stdin to make it report and exit.
pub const STOP: &str = "stop";

/// Resume scenario: close every client connection (answered by [`WorkerEvent::Disconnected`]).
pub const DISCONNECT: &str = "disconnect";

/// Resume scenario: reconnect every client with its cursor (answered by
/// [`WorkerEvent::Resumed`], then [`WorkerEvent::Recovered`]).
pub const RECONNECT: &str = "reconnect";

/// One line of worker output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Every client of the worker finished connecting (or gave up).
    Ready(ReadyInfo),
    /// Every connected client received everything the plan expects for it (resume:
    /// every warm-up message).
    Complete,
    /// Resume: every client's connection is closed (after [`DISCONNECT`]).
    Disconnected(DisconnectInfo),
    /// Resume: every client's reconnect settled (after [`RECONNECT`]); same fields as
    /// the first connect phase, seconds counted from the command.
    Resumed(ReadyInfo),
    /// Resume: every reconnected client has every missed message.
    Recovered,
    /// Final counts, sent after [`STOP`].
    Report(Box<WorkerReport>),
}

/// Outcome of a worker's disconnect phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DisconnectInfo {
    /// Connections this worker closed.
    pub closed: u64,
    /// Seconds from the command until the last one was closed.
    pub secs: f64,
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
    /// Resume accounting (resume scenario only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeReport>,
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
            WorkerEvent::Disconnected(DisconnectInfo {
                closed: 4,
                secs: 0.1,
            }),
            WorkerEvent::Resumed(ReadyInfo {
                connected: 4,
                ..ReadyInfo::default()
            }),
            WorkerEvent::Recovered,
            WorkerEvent::Report(Box::new(WorkerReport {
                last_delivery_us: Some(7),
                ..WorkerReport::default()
            })),
            WorkerEvent::Report(Box::new(WorkerReport {
                resume: Some(ResumeReport {
                    last_recovered_us: Some(9),
                    ..ResumeReport::default()
                }),
                ..WorkerReport::default()
            })),
        ];
        for e in events {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'));
            let back: WorkerEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(back, e);
        }
    }
}
