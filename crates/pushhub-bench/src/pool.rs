//! The parent's side of the worker processes.
//!
//! Spawns `pushhub-bench worker` children over disjoint user ranges, follows
//! their event lines, and collects their final reports.

use std::ops::Range;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ipc::{DisconnectInfo, ReadyInfo, WorkerEvent, WorkerReport, STOP};
use crate::plan::Plan;

/// Clients per worker process used to pick the default process count.
pub const CONNS_PER_PROC: u64 = 8000;

/// Splits user indices `0..conns` into `procs` contiguous, nearly equal ranges.
pub fn split(conns: u64, procs: usize) -> Vec<Range<u64>> {
    let procs = u64::try_from(procs.max(1)).unwrap_or(1).min(conns.max(1));
    let base = conns / procs;
    let extra = conns % procs;
    let mut start = 0;
    (0..procs)
        .map(|i| {
            let len = base + u64::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Default number of worker processes for `conns` clients.
pub fn default_procs(conns: u64) -> usize {
    usize::try_from(conns.div_ceil(CONNS_PER_PROC).max(1)).unwrap_or(1)
}

/// Settings shared by every worker of a run.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// WebSocket URL of the server; several, comma-separated, spread the workers over
    /// the nodes of a cluster (worker `i` takes URL `i mod n`).
    pub ws_url: String,
    /// App all clients join.
    pub app: String,
    /// Routing plan of the run.
    pub plan: Plan,
    /// Number of worker processes.
    pub procs: usize,
    /// Loopback source addresses to spread over.
    pub src_addrs: u8,
    /// Connection attempts in flight, over all workers.
    pub concurrency: usize,
    /// Pin every worker to this CPU.
    pub cpu: Option<usize>,
    /// Resume: how many of the plan's messages are published before the disconnect.
    pub warmup: u64,
    /// Resume: disconnect by dropping TCP connections instead of close frames.
    pub abrupt: bool,
}

/// What the parent knows about one worker.
#[derive(Default)]
struct WorkerState {
    ready: Option<ReadyInfo>,
    complete: bool,
    disconnected: Option<DisconnectInfo>,
    resumed: Option<ReadyInfo>,
    recovered: bool,
    report: Option<WorkerReport>,
    exited: bool,
}

/// Something that happened to worker `.0`.
enum PoolEvent {
    Event(usize, WorkerEvent),
    Exited(usize),
}

/// Running worker processes.
pub struct Pool {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    states: Vec<WorkerState>,
    events: mpsc::UnboundedReceiver<PoolEvent>,
}

impl Pool {
    /// Starts one worker per user range.
    pub fn spawn(cfg: &PoolConfig) -> Result<Self> {
        let exe = std::env::current_exe().context("locating own executable")?;
        let ranges = split(cfg.plan.conns, cfg.procs);
        let per_worker_concurrency = (cfg.concurrency / ranges.len()).max(1);
        let (tx, events) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        let urls: Vec<&str> = cfg.ws_url.split(',').collect();
        for (idx, range) in ranges.iter().enumerate() {
            let mut cmd = Command::new(&exe);
            if let Some(cpu) = cfg.cpu {
                crate::affinity::pin_command(&mut cmd, cpu);
            }
            let mut child = cmd
                .arg("worker")
                .args(["--ws-url", urls[idx % urls.len()], "--app", &cfg.app])
                .args(["--user-start", &range.start.to_string()])
                .args(["--user-end", &range.end.to_string()])
                .args(["--mode", cfg.plan.mode.name()])
                .args(["--total-conns", &cfg.plan.conns.to_string()])
                .args(["--messages", &cfg.plan.messages.to_string()])
                .args(["--src-addrs", &cfg.src_addrs.to_string()])
                .args(["--concurrency", &per_worker_concurrency.to_string()])
                .args(["--warmup", &cfg.warmup.to_string()])
                .args(cfg.abrupt.then_some("--abrupt"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("spawning worker")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            stdins.push(child.stdin.take());
            children.push(child);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<WorkerEvent>(&line) {
                        Ok(ev) => {
                            let _ = tx.send(PoolEvent::Event(idx, ev));
                        }
                        Err(_) => eprintln!("worker {idx}: {line}"),
                    }
                }
                let _ = tx.send(PoolEvent::Exited(idx));
            });
        }
        let states = ranges.iter().map(|_| WorkerState::default()).collect();
        Ok(Self {
            children,
            stdins,
            states,
            events,
        })
    }

    /// Handles one event, or returns false once `deadline` passed.
    async fn pump(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(PoolEvent::Event(i, ev))) => {
                let st = &mut self.states[i];
                match ev {
                    WorkerEvent::Ready(r) => st.ready = Some(r),
                    WorkerEvent::Complete => st.complete = true,
                    WorkerEvent::Disconnected(d) => st.disconnected = Some(d),
                    WorkerEvent::Resumed(r) => st.resumed = Some(r),
                    WorkerEvent::Recovered => st.recovered = true,
                    WorkerEvent::Report(r) => st.report = Some(*r),
                }
                true
            }
            Ok(Some(PoolEvent::Exited(i))) => {
                self.states[i].exited = true;
                true
            }
            Ok(None) | Err(_) => false,
        }
    }

    /// Waits until every worker finished connecting.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Vec<ReadyInfo>> {
        let deadline = Instant::now() + timeout;
        while self.states.iter().any(|s| s.ready.is_none()) {
            if let Some(i) = self
                .states
                .iter()
                .position(|s| s.exited && s.ready.is_none())
            {
                bail!("worker {i} exited before connecting its clients");
            }
            if !self.pump(deadline).await {
                bail!("workers not connected after {timeout:?}");
            }
        }
        Ok(self.states.iter().filter_map(|s| s.ready.clone()).collect())
    }

    /// Waits until every worker's clients have all expected messages; false on deadline.
    pub async fn wait_complete(&mut self, deadline: Instant) -> bool {
        while self.states.iter().any(|s| !s.complete) {
            if self.states.iter().any(|s| s.exited && !s.complete) || !self.pump(deadline).await {
                return false;
            }
        }
        true
    }

    /// Process ids of the workers still running, for CPU accounting.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Writes one command line to every worker.
    pub async fn command(&mut self, line: &str) -> Result<()> {
        for (i, stdin) in self.stdins.iter_mut().enumerate() {
            let s = stdin
                .as_mut()
                .with_context(|| format!("worker {i} stdin"))?;
            s.write_all(format!("{line}\n").as_bytes())
                .await
                .with_context(|| format!("writing to worker {i}"))?;
            s.flush().await?;
        }
        Ok(())
    }

    /// Resume: waits until every worker closed its clients' connections.
    pub async fn wait_disconnected(&mut self, timeout: Duration) -> Result<Vec<DisconnectInfo>> {
        let deadline = Instant::now() + timeout;
        while self.states.iter().any(|s| s.disconnected.is_none()) {
            if self
                .states
                .iter()
                .any(|s| s.exited && s.disconnected.is_none())
            {
                bail!("a worker exited before disconnecting its clients");
            }
            if !self.pump(deadline).await {
                bail!("clients not disconnected after {timeout:?}");
            }
        }
        Ok(self
            .states
            .iter()
            .filter_map(|s| s.disconnected.clone())
            .collect())
    }

    /// Resume: waits until every worker's reconnects settled.
    pub async fn wait_resumed(&mut self, timeout: Duration) -> Result<Vec<ReadyInfo>> {
        let deadline = Instant::now() + timeout;
        while self.states.iter().any(|s| s.resumed.is_none()) {
            if self.states.iter().any(|s| s.exited && s.resumed.is_none()) {
                bail!("a worker exited before reconnecting its clients");
            }
            if !self.pump(deadline).await {
                bail!("clients not reconnected after {timeout:?}");
            }
        }
        Ok(self
            .states
            .iter()
            .filter_map(|s| s.resumed.clone())
            .collect())
    }

    /// Resume: waits until every reconnected client has every missed message; false on deadline.
    pub async fn wait_recovered(&mut self, deadline: Instant) -> bool {
        while self.states.iter().any(|s| !s.recovered) {
            if self.states.iter().any(|s| s.exited && !s.recovered) || !self.pump(deadline).await {
                return false;
            }
        }
        true
    }

    /// Tells every worker to stop and returns their reports.
    pub async fn finish(mut self, timeout: Duration) -> Result<Vec<WorkerReport>> {
        for stdin in &mut self.stdins {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(format!("{STOP}\n").as_bytes()).await;
                let _ = s.flush().await;
            }
        }
        let deadline = Instant::now() + timeout;
        while self.states.iter().any(|s| s.report.is_none() && !s.exited) {
            if !self.pump(deadline).await {
                break;
            }
        }
        for c in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
        let missing = self.states.iter().filter(|s| s.report.is_none()).count();
        if missing > 0 {
            bail!("{missing} worker(s) did not report");
        }
        Ok(self.states.into_iter().filter_map(|s| s.report).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once() {
        let r = split(10, 3);
        assert_eq!(r, vec![0..4, 4..7, 7..10]);
        let r = split(2, 5);
        assert_eq!(r, vec![0..1, 1..2]);
        assert_eq!(split(0, 2), vec![0..0]);
    }

    #[test]
    fn default_process_count() {
        assert_eq!(default_procs(1), 1);
        assert_eq!(default_procs(8000), 1);
        assert_eq!(default_procs(8001), 2);
        assert_eq!(default_procs(15000), 2);
    }
}
