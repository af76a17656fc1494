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
    /// User-mode part of `cpu_micros` (`/proc/PID/stat` field 14).
    pub user_micros: u64,
    /// Kernel-mode part of `cpu_micros` (field 15).
    pub sys_micros: u64,
    /// Resident set size (VmRSS), in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status` for `pid`.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let (utime, stime) = parse_stat_cpu_ticks(&stat)?;
    let rss_kib = parse_status_rss_kib(&status)?;
    let micros = |ticks: u64| ticks.saturating_mul(1_000_000) / clock_ticks_per_second();
    Ok(ProcSample {
        cpu_micros: micros(utime + stime),
        user_micros: micros(utime),
        sys_micros: micros(stime),
        rss_bytes: rss_kib.saturating_mul(1024),
    })
}

/// Current RSS of `pid` in bytes (one read of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status_rss_kib(&status)?.saturating_mul(1024))
}

/// CPU time (user + system) of `pid` in microseconds; `None` if it is gone.
pub fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (utime, stime) = parse_stat_cpu_ticks(&stat).ok()?;
    Some((utime + stime).saturating_mul(1_000_000) / clock_ticks_per_second())
}

/// Machine-wide CPU time from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemSample {
    /// user + nice + system + idle + iowait + irq + softirq + steal.
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
}

impl SystemSample {
    /// Share of the interval since `earlier` that the CPUs were idle, in percent.
    pub fn idle_pct_since(&self, earlier: &SystemSample) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        (total > 0).then(|| idle as f64 / total as f64 * 100.0)
    }
}

/// Reads `/proc/stat`.
pub fn system_sample() -> Option<SystemSample> {
    parse_system_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The aggregate `cpu` line of `/proc/stat`.
fn parse_system_stat(text: &str) -> Option<SystemSample> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    if v.len() < 5 {
        return None;
    }
    Some(SystemSample {
        total: v.iter().sum(),
        idle: v[3] + v[4],
    })
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of utime/stime.
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(tck).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// (utime, stime) in clock ticks from the text of `/proc/PID/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so fields
/// are counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Result<(u64, u64)> {
    let close = stat.rfind(')').context("malformed stat: no ')'")?;
    // After ") " the first field is field 3 (state); utime is 14, stime 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!("malformed stat: only {} fields after comm", fields.len());
    }
    let utime: u64 = fields[11].parse().context("parsing utime")?;
    let stime: u64 = fields[12].parse().context("parsing stime")?;
    Ok((utime, stime))
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
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), (250, 75));
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t  1536 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status).unwrap(), 1536);
    }

    #[test]
    fn system_idle_share() {
        let a = parse_system_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        assert_eq!(
            a,
            SystemSample {
                total: 1000,
                idle: 850
            }
        );
        let b = SystemSample {
            total: 1200,
            idle: 900,
        };
        assert_eq!(b.idle_pct_since(&a), Some(25.0));
        assert_eq!(a.idle_pct_since(&b), None);
    }

    #[test]
    fn own_process_is_readable() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }
}
