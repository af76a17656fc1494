//! `pushhub serve`: from the parsed command line to a running server — detaching, logging,
//! the configuration, the listeners (bound here or inherited in an upgrade) and the
//! signals.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pushhub::config::{Config, Overrides};
use pushhub::daemon::{Outcome, PidFile, Role};
use pushhub::hub::AuthMode;
use pushhub::logging::{self, LogFile};
use pushhub::server::{self, Listeners};
use pushhub::tls::Tls;
use pushhub::upgrade::successor::Inherited;
use pushhub::upgrade::{self, Launch};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::*;

/// File descriptors kept back from the connection budget for listeners, the data
/// directory, API requests and outgoing callbacks.
const RESERVED_FDS: u64 = 256;

/// `pushhub serve`: detach first when asked (before any thread exists), then set up
/// logging, load the configuration, take the pid file and run. Every start-up failure
/// reaches the person starting it: on stderr, or through the daemon's foreground process.
pub(crate) fn serve_command(
    config: Option<PathBuf>,
    overrides: Overrides,
    log: LogArgs,
    daemon: DaemonArgs,
) -> ExitCode {
    // Taken before anything else: the path this process was started by (a successor is
    // started the same way), and what an upgrading predecessor handed over.
    let launch = Launch::current()
        .map_err(|error| {
            eprintln!(
                "pushhub: upgrades are off: cannot tell how this process was started: {error}"
            )
        })
        .ok();
    let inherited = match Inherited::from_env() {
        Ok(inherited) => inherited,
        Err(error) => {
            eprintln!("pushhub: {error}");
            return ExitCode::from(2);
        }
    };
    // A successor is already detached when its predecessor was.
    let readiness = if daemon.daemon && inherited.is_none() {
        match pushhub::daemon::detach() {
            Ok(Role::Parent(outcome)) => return report_daemon(outcome),
            Ok(Role::Daemon(readiness)) => Some(Arc::new(readiness)),
            Err(error) => {
                eprintln!("pushhub: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // Until the log file is open, a daemon's stderr is still the terminal, where the
    // foreground process prints the reason already.
    let inherited = std::cell::RefCell::new(inherited);
    let fail = |message: String, code: u8, to_stderr: bool| {
        if let Some(readiness) = &readiness {
            readiness.failed(&message);
        }
        if let Some(inherited) = inherited.borrow_mut().as_mut() {
            inherited.channel.failed(&message);
        }
        if to_stderr {
            eprintln!("pushhub: {message}");
        }
        ExitCode::from(code)
    };
    let log_file = match &log.log_file {
        Some(path) => {
            let rotation = log.log_max_size.map(|max_bytes| logging::Rotation {
                max_bytes,
                keep: usize::from(log.log_keep),
            });
            match LogFile::open(path, rotation, daemon.daemon) {
                Ok(file) => Some(file),
                Err(source) => {
                    let error = logging::LoggingError::File {
                        path: path.clone(),
                        source,
                    };
                    return fail(error.to_string(), 2, readiness.is_none());
                }
            }
        }
        None => None,
    };
    // A daemon's stderr is its log file from here on.
    let to_stderr = readiness.is_none() || log_file.is_some();
    if let Err(error) = logging::init(log.filter.as_deref(), log.log_format, log_file.clone()) {
        return fail(error.to_string(), 2, to_stderr);
    }
    let config = match Config::load(config.as_deref(), std::env::vars(), &overrides) {
        Ok(config) => config,
        Err(errors) => return fail(format!("invalid configuration:\n{errors}"), 2, to_stderr),
    };
    let predecessor = inherited
        .borrow()
        .is_some()
        .then(std::os::unix::process::parent_id);
    let take_pid_file = |path: &std::path::Path| match predecessor {
        Some(pid) => PidFile::take_over(path, pid),
        None => PidFile::create(path),
    };
    let _pid_file = match daemon.pid_file.as_deref().map(take_pid_file).transpose() {
        Ok(pid_file) => pid_file,
        Err(error) => return fail(error.to_string(), 1, to_stderr),
    };
    let on_ready = readiness
        .clone()
        .map(|readiness| Box::new(move || readiness.ready()) as Box<dyn FnOnce() + Send>);
    let start = Start {
        on_ready,
        launch,
        inherited: &inherited,
    };
    match run(config, log_file, start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            fail(format!("{error:#}"), 1, false)
        }
    }
}

/// The warning for an API reachable from other hosts without an admin key: the admin
/// dashboard and the server-wide operations are then refused to everyone.
pub(crate) fn admin_warning(config: &Config) -> Option<String> {
    let why = config
        .api_exposure()
        .filter(|_| config.admin_keys.is_empty())?;
    Some(format!(
        "{why} and no admin_keys are configured: the admin dashboard (/admin) and the server-wide operations are off; set admin_keys (or PUSHHUB_ADMIN_KEYS) to use them"
    ))
}

/// Raise the soft open-file limit to the hard one and return the limit now in force.
fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// How `serve` starts beyond its configuration: whom to tell once it serves, how it was
/// launched, and what a predecessor handed over (an upgrade).
struct Start<'a> {
    on_ready: Option<Box<dyn FnOnce() + Send>>,
    launch: Option<Launch>,
    inherited: &'a std::cell::RefCell<Option<Inherited>>,
}

fn run(mut config: Config, log_file: Option<LogFile>, start: Start<'_>) -> anyhow::Result<()> {
    let fd_limit = raise_fd_limit();
    let room = fd_limit.saturating_sub(RESERVED_FDS).max(1) as usize;
    let configured = config.limits.max_connections;
    config.limits.max_connections = if configured == 0 {
        room
    } else {
        configured.min(room)
    };
    tracing::info!(
        fd_limit,
        max_connections = config.limits.max_connections,
        "open-file limit {fd_limit} leaves room for {room} client connections; accepting up to {}",
        config.limits.max_connections
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(config, log_file, start))
}

async fn serve(config: Config, log_file: Option<LogFile>, start: Start<'_>) -> anyhow::Result<()> {
    for app in &config.apps {
        if app.policy.auth == AuthMode::None {
            tracing::warn!(
                app = %app.policy.name,
                "app has auth = \"none\": any client may claim any user id; for development and trusted networks only"
            );
        }
        if app.policy.auth == AuthMode::MSwooleDes {
            tracing::warn!(
                app = %app.policy.name,
                "app has auth = \"mswoole-des\": MSwoole's 3DES-ECB auth strings have no integrity check and one shared key; anyone holding the key can be any user. Move the backend to tokens (docs/security.md)"
            );
        }
    }
    if config.dynamic_apps.is_some() {
        tracing::warn!(
            "dynamic apps are on: any app name is accepted on first use with auth = \"none\""
        );
    }
    for warning in config.pushserve.iter().flat_map(|p| p.warnings()) {
        tracing::warn!("{warning}");
    }
    if let Some(warning) = admin_warning(&config) {
        tracing::warn!("{warning}");
    }
    let listen = |role: upgrade::Role, addr: std::net::SocketAddr, what: &str| {
        let inherited = start
            .inherited
            .borrow_mut()
            .as_mut()
            .and_then(|i| i.take(role));
        listener(inherited, role, addr).with_context(|| format!("binding the {what} on {addr}"))
    };
    let client = listen(upgrade::Role::Client, config.listen, "client listener")?;
    let client_addr = client.local_addr()?;
    let single_port = config.api_listen == config.listen && config.listen.port() != 0;
    let api = if single_port {
        None
    } else {
        Some(listen(
            upgrade::Role::Api,
            config.api_listen,
            "API listener",
        )?)
    };
    let api_addr = match &api {
        Some(listener) => listener.local_addr()?,
        None => client_addr,
    };
    let tcp = match config.tcp_listen {
        Some(addr) => Some(listen(upgrade::Role::Tcp, addr, "raw TCP listener")?),
        None => None,
    };
    let pushserve = match config.pushserve.as_ref().and_then(|p| p.addr) {
        Some(addr) => Some(listen(
            upgrade::Role::PushServe,
            addr,
            "push-serve's port (addr)",
        )?),
        None => None,
    };
    // Appended only when on, so the line reads the same as before for everyone else.
    let tcp_addr = match &tcp {
        Some(listener) => format!(" tcp={}", listener.local_addr()?),
        None => String::new(),
    };
    let pushserve_addr = match &pushserve {
        Some(listener) => format!(" pushserve={}", listener.local_addr()?),
        None => String::new(),
    };
    tracing::info!(
        config = %config.source,
        apps = config.apps.len(),
        "listening client={client_addr} api={api_addr}{tcp_addr}{pushserve_addr}"
    );
    if tcp.is_some() {
        tracing::info!(
            framing = %config.tcp_framing,
            "raw TCP clients speak the native dialect, first frame {{\"type\":\"connect\",...}}"
        );
    }
    let tls = match &config.tls {
        Some(settings) => {
            let tls =
                Tls::load(&settings.cert, &settings.key).context("loading the TLS certificate")?;
            tracing::info!(
                cert = %tls.cert_path().display(),
                sha256 = %tls.fingerprint(),
                "TLS on {} (wss://, https://); a reload (SIGHUP, SIGUSR1, pushhub reload) reads the certificate again",
                tls_listeners(settings)
            );
            Some(Arc::new(tls))
        }
        None => None,
    };
    let mut on_ready = start.on_ready;
    let predecessor = start.inherited.borrow_mut().take();
    if let Some(predecessor) = predecessor {
        on_ready = Some(take_over(predecessor, on_ready).await?);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    tokio::spawn(on_sigusr2(log_file, shutdown.clone()));
    let listeners = Listeners {
        client,
        api,
        tcp,
        pushserve,
        tls,
        on_ready,
        launch: start.launch,
    };
    server::serve(config, listeners, shutdown)
        .await
        .context("starting the timer service")?;
    tracing::info!("stopped");
    Ok(())
}

/// The successor's side of an upgrade, once its configuration, listeners and certificate
/// are in hand: hand over ([`Inherited::take_over`]) and return the `on_ready` that logs
/// how long new connections waited in the kernel's queue.
async fn take_over(
    predecessor: Inherited,
    on_ready: Option<Box<dyn FnOnce() + Send>>,
) -> anyhow::Result<Box<dyn FnOnce() + Send>> {
    let ready_at = predecessor
        .take_over()
        .await
        .context("taking over from the old process")?;
    Ok(Box::new(move || {
        if let Some(on_ready) = on_ready {
            on_ready();
        }
        let gap_ms = ready_at.elapsed().as_millis();
        tracing::info!(
            gap_ms = gap_ms as u64,
            "upgrade: accepting again {gap_ms} ms after the old process stopped"
        );
    }))
}

/// The listener for `role` at `addr`: the one inherited from an upgrading predecessor
/// when it is at that address (or `addr` asks for any port), else a new one.
fn listener(
    inherited: Option<std::net::TcpListener>,
    role: upgrade::Role,
    addr: std::net::SocketAddr,
) -> std::io::Result<TcpListener> {
    if let Some(listener) = inherited {
        let held = listener.local_addr()?;
        if held == addr || addr.port() == 0 {
            listener.set_nonblocking(true)?;
            return TcpListener::from_std(listener);
        }
        tracing::warn!(
            %role,
            configured = %addr,
            inherited = %held,
            "upgrade: the configuration moved this listener; binding the new address (the old one closes with the old process)"
        );
    }
    bind(addr)
}

/// Pending connections the kernel may queue per listener: a burst of reconnecting
/// clients (after a restart, a network blip) must not overflow the accept queue.
const LISTEN_BACKLOG: u32 = 4096;

/// Bind a listener with a deep accept queue and address reuse (restarts do not wait for
/// TIME_WAIT sockets).
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Which listeners `[tls]` covers, in words, for the log and `check-config`.
pub(crate) fn tls_listeners(tls: &pushhub::config::RawTls) -> String {
    [(tls.client, "client"), (tls.api, "api"), (tls.tcp, "tcp")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// On each SIGUSR2 until `shutdown`, reopen the log file by its path: logrotate moves the
/// file away, then signals (no `copytruncate`, so no line is lost between copy and
/// truncation). Without a log file the signal is logged and ignored (its default action
/// would stop the server).
async fn on_sigusr2(log_file: Option<LogFile>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
        tracing::error!("cannot install the SIGUSR2 handler");
        return;
    };
    loop {
        tokio::select! {
            received = usr2.recv() => if received.is_none() { return },
            _ = shutdown.cancelled() => return,
        }
        let Some(file) = &log_file else {
            tracing::info!("SIGUSR2: logging to stderr; no log file to reopen");
            continue;
        };
        match file.reopen() {
            Ok(()) => tracing::info!(
                log_file = %file.path().display(),
                "SIGUSR2: reopened the log file"
            ),
            Err(error) => tracing::error!(
                log_file = %file.path().display(),
                %error,
                "SIGUSR2: cannot reopen the log file; still writing to the old one"
            ),
        }
    }
}

/// Cancel `shutdown` on SIGTERM or SIGINT.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// What the foreground half of `serve --daemon` says and exits with.
fn report_daemon(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Ready { pid } => {
            println!("pushhub: serving in the background, pid {pid}");
            ExitCode::SUCCESS
        }
        Outcome::Failed { reason, status } => {
            let status = status
                .map(|code| format!(" (exit status {code})"))
                .unwrap_or_default();
            let reason = if reason.is_empty() {
                "it stopped without saying why; see its log file".to_owned()
            } else {
                reason
            };
            eprintln!("pushhub: the daemon did not start{status}: {reason}");
            ExitCode::FAILURE
        }
    }
}
