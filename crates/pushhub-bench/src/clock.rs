//! Wall-clock timestamps.
//!
//! Latency is measured across processes (the publisher stamps a message, a
//! worker process receives it), so a monotonic per-process clock is useless:
//! both sides read the same system wall clock of this one host instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, comparable between processes on this host.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, the resolution of the protocol's `ts` field.
pub fn unix_millis() -> u64 {
    unix_micros() / 1000
}
