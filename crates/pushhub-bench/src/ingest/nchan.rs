//! nginx with the nchan module as a third reference for single publishes: a widely used
//! pub/sub server written in C, publishing through `POST /pub/CHANNEL`.
//!
//! One worker process (the master only supervises it), its default message buffer (the
//! last 10 messages per channel for an hour, its equivalent of a history), no access
//! log, keep-alive connections never closed for their request count (nginx's default
//! closes one after 1,000 requests). Its CPU is the master's and the worker's together.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::http::get_status;

/// A started, healthy nginx with nchan.
pub struct Nchan {
    child: Child,
    /// The master and its worker.
    pub pids: Vec<u32>,
    /// `http://127.0.0.1:PORT`.
    pub api_url: String,
    _dir: TempDir,
}

/// The configuration: `/healthz`, the publisher and subscriber locations, everything
/// nginx writes kept in `dir`.
fn config(module: &Path, dir: &Path, port: u16, log: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"load_module {module};
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {log} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ return 200 "ok"; }}
    location ~ ^/pub/(.+)$ {{ nchan_publisher; nchan_channel_id $1; }}
    location ~ ^/sub/(.+)$ {{ nchan_subscriber; nchan_channel_id $1; }}
  }}
}}
"#,
        module = module.display(),
        log = log.display(),
    )
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // Field 4, after the parenthesised command name.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Start `nginx_bin` with `module` loaded, its error log in `log_dir/<tag>.log`.
pub async fn start(nginx_bin: &Path, module: &Path, log_dir: &Path, tag: &str) -> Result<Nchan> {
    if !module.exists() {
        bail!(
            "{} is missing (apt-get install nginx libnginx-mod-nchan)",
            module.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("pushhub-bench-nchan-")
        .tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log: PathBuf = log_dir.join(format!("{tag}.log"));
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        config(module, dir.path(), port, &std::path::absolute(&log)?),
    )?;
    let child = Command::new(nginx_bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", nginx_bin.display()))?;
    let master = child.id().context("nginx exited immediately")?;
    let mut nchan = Nchan {
        child,
        pids: vec![master],
        api_url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = nchan.child.try_wait()? {
            bail!("nginx exited with {status}; see {}", log.display());
        }
        let workers = children_of(master);
        let healthy = matches!(
            tokio::time::timeout(Duration::from_secs(2), get_status(addr, &format!("127.0.0.1:{port}"), "/healthz")).await,
            Ok(Ok(status)) if status.is_success()
        );
        if healthy && !workers.is_empty() {
            nchan.pids.extend(workers);
            return Ok(nchan);
        }
        if Instant::now() > deadline {
            let _ = nchan.stop().await;
            bail!(
                "nginx did not answer /healthz within 10 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Nchan {
    /// SIGQUIT (nginx's graceful stop), SIGKILL after 10 s.
    pub async fn stop(mut self) -> Result<()> {
        if let Ok(pid) = i32::try_from(self.pids[0]) {
            // SAFETY: kill(2) on the nginx master we spawned and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}
