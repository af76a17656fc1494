//! File-descriptor limit handling.
//!
//! Every WebSocket is one descriptor; the default soft limit (often 1024) is far
//! below what a benchmark needs, while the hard limit (20,000 here) is the real
//! ceiling. Both the relay and the load generator lift soft to hard at start.

use anyhow::Context;

/// Raises `RLIMIT_NOFILE`'s soft limit to the hard limit and returns the new soft limit.
pub fn raise_nofile() -> anyhow::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")
}
