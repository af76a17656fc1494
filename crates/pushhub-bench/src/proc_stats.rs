//! CPU time and resident memory of another process, read from `/proc`.
//!
//! The generator measures the server from the outside so that the same numbers
//! can be taken for any server binary without instrumenting it.

use anyhow::{bail, Context, Result};

/// One reading of a process's cumulative CPU time and current RSS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time consumed so far, in microseconds.
    pub cpu_micros: u64,
    /// Resident set size (VmRSS), in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status` for `pid`.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    let rss_kib = parse_status_rss_kib(&status)?;
    Ok(ProcSample {
        cpu_micros: ticks.saturating_mul(1_000_000) / clock_ticks_per_second(),
        rss_bytes: rss_kib.saturating_mul(1024),
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of utime/stime.
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(tck).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// utime + stime in clock ticks from the text of `/proc/PID/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so fields
/// are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let close = stat.rfind(')').context("malformed stat: no ')'")?;
    // After ") " the first field is field 3 (state); utime is 14, stime 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!("malformed stat: only {} fields after comm", fields.len());
    }
    let utime: u64 = fields[11].parse().context("parsing utime")?;
    let stime: u64 = fields[12].parse().context("parsing stime")?;
    Ok(utime + stime)
}

/// VmRSS in KiB from the text of `/proc/PID/status`.
fn parse_status_rss_kib(status: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line in status")?;
    let value = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS line without a value")?;
    value.parse().context("parsing VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_comm() {
        let stat = "1234 (my (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100 1000 50";
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), 325);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t  1536 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status).unwrap(), 1536);
    }

    #[test]
    fn own_process_is_readable() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }
}
