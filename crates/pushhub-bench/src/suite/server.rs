//! Starting and stopping a server under test for one scenario.
//!
//! Every scenario gets a fresh process (clean RSS baseline) on freshly picked
//! free ports, and is only driven once its `/healthz` answers 200.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::http::get_status;

/// Which server to start.
#[derive(Clone, Debug)]
pub enum ServerKind {
    /// This binary's `relay` subcommand.
    Relay,
    /// `PUSHHUB_BIN serve ...`.
    Pushhub(PathBuf),
}

impl ServerKind {
    /// Short name for tables.
    pub fn label(&self) -> &'static str {
        match self {
            ServerKind::Relay => "relay",
            ServerKind::Pushhub(_) => "pushhub",
        }
    }
}

/// A started, healthy server.
pub struct RunningServer {
    child: Child,
    /// Process id, for CPU/RSS sampling.
    pub pid: u32,
    /// WebSocket endpoint.
    pub ws_url: String,
    /// API base URL.
    pub api_url: String,
    /// Where stdout/stderr go.
    pub log_path: PathBuf,
    _data_dir: TempDir,
}

/// Two distinct free loopback ports (both held open while choosing).
fn free_ports() -> Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Starts `kind` with logs in `log_dir/<tag>.log` (pinned to `cpu` if given, with the
/// environment changes `env`: `Some` sets, `None` removes) and waits for `/healthz`.
pub async fn start(
    kind: &ServerKind,
    log_dir: &Path,
    tag: &str,
    cpu: Option<usize>,
    env: &[(&str, Option<&str>)],
) -> Result<RunningServer> {
    let data_dir = tempfile::Builder::new()
        .prefix("pushhub-bench-data-")
        .tempdir()?;
    start_in(kind, log_dir, tag, cpu, env, data_dir).await
}

/// [`start`] on an existing data directory: a restart of a server that was
/// [killed](RunningServer::kill).
pub async fn start_in(
    kind: &ServerKind,
    log_dir: &Path,
    tag: &str,
    cpu: Option<usize>,
    env: &[(&str, Option<&str>)],
    data_dir: TempDir,
) -> Result<RunningServer> {
    let (ws_port, api_port) = free_ports()?;
    let listen = format!("127.0.0.1:{ws_port}");
    let api_listen = format!("127.0.0.1:{api_port}");
    let log_path = log_dir.join(format!("{tag}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = match kind {
        ServerKind::Relay => {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["relay", "--listen", &listen, "--api-listen", &api_listen]);
            c
        }
        ServerKind::Pushhub(bin) => {
            let mut c = Command::new(bin);
            c.args(["serve", "--listen", &listen, "--api-listen", &api_listen]);
            c.arg("--data-dir").arg(data_dir.path());
            c
        }
    };
    if let Some(cpu) = cpu {
        crate::affinity::pin_command(&mut cmd, cpu);
    }
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", kind.label()))?;
    let pid = child.id().context("server exited immediately")?;
    let mut server = RunningServer {
        child,
        pid,
        ws_url: format!("ws://{listen}/v1/ws"),
        api_url: format!("http://{api_listen}"),
        log_path,
        _data_dir: data_dir,
    };
    let api_addr: SocketAddr = api_listen.parse()?;
    if let Err(e) = server.wait_healthy(api_addr, &api_listen).await {
        let tail = server.log_tail();
        let _ = server.stop().await;
        bail!(
            "{} not healthy: {e:#}\n--- log tail ---\n{tail}",
            kind.label()
        );
    }
    Ok(server)
}

impl RunningServer {
    /// Polls `GET /healthz` until 200, for at most 30 s.
    async fn wait_healthy(&mut self, addr: SocketAddr, authority: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited with {status}");
            }
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(2),
                get_status(addr, authority, "/healthz"),
            )
            .await
            {
                if s.is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("/healthz did not return 200 within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self._data_dir.path()
    }

    /// SIGKILL, as a crash: no shutdown at all. Hands back the data directory, for
    /// [`start_in`].
    pub async fn kill(self) -> Result<TempDir> {
        let RunningServer {
            mut child,
            _data_dir,
            ..
        } = self;
        child.kill().await?;
        Ok(_data_dir)
    }

    /// SIGTERM and wait for the exit (a graceful stop); hands back the data directory,
    /// for [`start_in`].
    pub async fn terminate(mut self) -> Result<TempDir> {
        self.signal_term();
        self.child.wait().await?;
        Ok(self._data_dir)
    }

    fn signal_term(&self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }

    /// SIGTERM, then SIGKILL if it is still running after 10 s.
    pub async fn stop(mut self) -> Result<()> {
        self.signal_term();
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}
