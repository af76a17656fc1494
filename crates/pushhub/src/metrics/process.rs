//! The process's own memory, CPU, threads and file descriptors, read from `/proc` at
//! scrape time (Linux; elsewhere every value reads 0).

/// Clock ticks per second in `/proc/self/stat`: Linux fixes USER_HZ at 100 for user space
/// whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// CPU time used, user and system, in seconds.
    pub cpu_seconds: f64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
}

/// Read the process's resources now; what cannot be read stays 0.
pub fn sample() -> ProcessSample {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let mut sample = parse_status(&read("/proc/self/status"));
    sample.cpu_seconds = cpu_seconds(&read("/proc/self/stat")).unwrap_or(0.0);
    sample.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count() as u64)
        .unwrap_or(0);
    sample.max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0);
    sample
}

/// Resident memory alone, in bytes (0 where it cannot be read): what the status pages
/// show, without [`sample`]'s walk over every open file descriptor.
pub fn resident_bytes() -> u64 {
    parse_status(&std::fs::read_to_string("/proc/self/status").unwrap_or_default()).resident_bytes
}

/// Memory and threads from `/proc/self/status` (sizes there are in KiB, whatever the
/// page size).
fn parse_status(status: &str) -> ProcessSample {
    let mut sample = ProcessSample::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = value
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        match key {
            "VmRSS" => sample.resident_bytes = number * 1024,
            "VmSize" => sample.virtual_bytes = number * 1024,
            "Threads" => sample.threads = number,
            _ => {}
        }
    }
    sample
}

/// User plus system CPU time from `/proc/self/stat` (fields 14 and 15, see proc(5)). The
/// command name in parentheses may hold spaces, so fields are counted after its closing
/// parenthesis, where field 3 starts.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_after_a_command_name_with_spaces() {
        let stat = "42 (push hub) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn reads_memory_and_threads_in_kib() {
        let status = "Name:\tpushhub\nVmSize:\t  102400 kB\nVmRSS:\t    2048 kB\nThreads:\t7\n";
        let sample = parse_status(status);
        assert_eq!(
            (sample.virtual_bytes, sample.resident_bytes, sample.threads),
            (100 * 1024 * 1024, 2 * 1024 * 1024, 7)
        );
    }

    #[test]
    fn samples_this_process() {
        let sample = sample();
        assert!(sample.resident_bytes > 0 && sample.threads > 0 && sample.open_fds > 0);
    }
}
