//! Optional CPU pinning of spawned processes.
//!
//! On a 2-core machine the server and the generator compete for the same
//! cores, and how the scheduler interleaves them changes the server's CPU per
//! delivery (e.g. wake-up costs). Pinning the server to one core and the
//! workers to another trades generator headroom for repeatability.

use tokio::process::Command;

/// Makes the child (and every thread it ever creates) run only on `cpu`.
pub fn pin_command(cmd: &mut Command, cpu: usize) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // the async-signal-safe sched_setaffinity(2) on a stack-local CPU set.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pinned_child_sees_one_cpu() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        pin_command(&mut cmd, 0);
        let out = cmd.output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.trim_end().ends_with("\t0"), "{text}");
    }
}
