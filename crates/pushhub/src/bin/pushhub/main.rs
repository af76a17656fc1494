//! The `pushhub` command: parse the command line, set up logging, bind, and run the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pushhub::cli::{
    ApiClient, CliError, CronCommand, KickCommand, PushCommand, TimerCommand, UsersCommand,
};
use pushhub::config::{Config, Overrides};
use pushhub::daemon::{Outcome, PidFile, Role};
use pushhub::engine::EngineKind;
use pushhub::hub::AuthMode;
use pushhub::logging::{self, LogFile, LogFormat};
use pushhub::server::{self, Listeners};
use pushhub::tls::Tls;
use pushhub::upgrade::successor::Inherited;
use pushhub::upgrade::{self, Launch};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// File descriptors kept back from the connection budget for listeners, the data
/// directory, API requests and outgoing callbacks.
const RESERVED_FDS: u64 = 256;

#[derive(Parser)]
#[command(name = "pushhub", version, about = "Self-hosted real-time push server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (without --config: the embedded default, app "demo", no auth).
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "PUSHHUB_CONFIG")]
        config: Option<PathBuf>,
        /// Client listener address, e.g. 127.0.0.1:8081.
        #[arg(long)]
        listen: Option<String>,
        /// API listener address, e.g. 127.0.0.1:8082 (equal to --listen: single port).
        #[arg(long)]
        api_listen: Option<String>,
        /// Directory for durable state.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Engine: memory (one node, the default) or redis (many nodes on one Redis).
        #[arg(long, value_parser = parse_engine)]
        engine: Option<EngineKind>,
        /// Redis to use with --engine redis, e.g. redis://127.0.0.1:6379/0; repeat it to
        /// shard channels over several independent deployments.
        #[arg(long = "redis-url")]
        redis_urls: Vec<String>,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Validate a configuration file and report every error with its location.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print a client token (JWT, HS256) for development: a backend mints its own the
    /// same way (see docs/security.md).
    Token {
        /// The app the token is for.
        #[arg(long)]
        app: String,
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// How long it is valid: seconds, or with a unit: 90s, 30m, 12h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        /// Extra groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The secret to sign with; default: the app's first `token_secrets` entry in
        /// the configuration file.
        #[arg(long)]
        secret: Option<String>,
        /// The configuration file to read the secret from.
        #[arg(long, env = "PUSHHUB_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Cron jobs of a running server, through its API (swoole-push's `crontab`).
    Cron {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: CronAction,
    },
    /// Timers of a running server, through its API.
    Timers {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        action: TimerAction,
    },
    /// Online users of an app with each connection: transport, dialect, address,
    /// connected since, send queue (seed 003's `process show`).
    Users {
        /// The app.
        #[arg(value_name = "APP")]
        app_name: String,
        /// Most users shown (1-10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        /// Start after this user id (the `more:` line of the previous page).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Close a user's connections (all, or one with --conn), through `/v1/disconnect`.
    Kick {
        /// The app.
        #[arg(value_name = "APP")]
        app_name: String,
        /// The user.
        user: String,
        /// Only this connection (a CONN that `pushhub users` shows).
        #[arg(long)]
        conn: Option<String>,
        /// The close reason the client sees (at most 120 bytes).
        #[arg(long)]
        reason: Option<String>,
        /// Ask the client not to reconnect: close code 4516 instead of 4009.
        #[arg(long)]
        no_reconnect: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Push a message, through `/v1/push`.
    Push {
        /// The app.
        #[arg(value_name = "APP")]
        app_name: String,
        /// Who gets it: `100`, `100,101`, `group1/*`, `*` (the API's `to`), `room:NAME`,
        /// `conn:CONN`, or `user:ID` for a user id that starts with `room:` or `conn:`.
        target: String,
        /// The payload: JSON (`{"a":1}`, `42`), or else the text as a string.
        data: String,
        /// The event name.
        #[arg(long)]
        event: Option<String>,
        /// Send DATA as a string even when it parses as JSON.
        #[arg(long)]
        string: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Outgoing work: timers, cron, and each app's RPC and webhook queues (seed 003's
    /// `task status`).
    Tasks {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A running server's state: version, uptime, connections, users, message rates,
    /// memory, engine and store health, configuration generation (admin key).
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Read the configuration file again and apply it without dropping anyone, as
    /// SIGHUP does; an invalid one is refused with every error (admin key).
    Reload {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a running server gracefully, as SIGTERM does, and wait until it is gone
    /// (admin key).
    Stop {
        /// Do not wait for connections, requests, webhooks and timer calls to finish.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Replace the running server by the binary now at the path it was started from,
    /// without refusing anyone: the new process takes over the listening sockets, the old
    /// one closes its clients with 1012 (reconnect now) and exits (an admin key when the
    /// API is exposed; docs/operations.md, "Upgrading without downtime").
    Upgrade {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The timer store in the data directory, with the server stopped: check it, or
    /// salvage a damaged one (see docs/operations.md).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Verify every page and record of timers.redb against its state file. Exit status:
    /// 0 ok (or no store yet), 1 damaged, 2 cannot check (a server uses it, bad config).
    Check {
        #[command(flatten)]
        place: DataDirArgs,
    },
    /// Salvage a damaged store: every readable timer and cron job goes to a new
    /// timers.redb, the damaged file is kept beside it, and what was lost is reported.
    /// Changes nothing when the store is not damaged.
    Repair {
        #[command(flatten)]
        place: DataDirArgs,
    },
}

/// Where `pushhub store` finds the data directory: given, or from the configuration
/// (the same file, environment and default as `serve`).
#[derive(Args)]
struct DataDirArgs {
    /// The data directory.
    #[arg(long, conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    /// The configuration file whose `data_dir` to use.
    #[arg(long, env = "PUSHHUB_CONFIG")]
    config: Option<PathBuf>,
}

/// Where `serve` logs, and how (docs/operations.md, "Logs").
#[derive(Args)]
struct LogArgs {
    /// Levels, per module if wanted: EnvFilter directives such as
    /// `info,pushhub::api=debug` (default: info).
    #[arg(long = "log", env = "PUSHHUB_LOG")]
    filter: Option<String>,
    /// Line format: human, or json (one object per line, for log shippers).
    #[arg(long, env = "PUSHHUB_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
    /// Log to this file instead of stderr; SIGUSR2 reopens it (after logrotate moved it).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Rotate the log file when it would pass this size (e.g. 100M): it becomes FILE.1,
    /// older ones shift up.
    #[arg(long, requires = "log_file", value_parser = logging::parse_size)]
    log_max_size: Option<u64>,
    /// Rotated log files kept with --log-max-size.
    #[arg(long, requires = "log_max_size", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    log_keep: u16,
}

/// Running without systemd (docs/operations.md, "Daemon mode").
#[derive(Args)]
struct DaemonArgs {
    /// Detach from the terminal; this command returns once the server serves (exit 0) or
    /// failed to start (its reason, exit 1). Needs --log-file.
    #[arg(long, requires = "log_file")]
    daemon: bool,
    /// Write the server's process id here (refused while it names a running pushhub);
    /// removed at a clean exit.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

/// How `pushhub cron` and `pushhub timers` reach the server.
#[derive(Args)]
struct ApiArgs {
    /// The server's API listener.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8082")]
    api: String,
    /// The app (default: the app of the API key, or the server's only app).
    #[arg(long, global = true)]
    app: Option<String>,
    /// An API key of the app, needed when the app has keys.
    #[arg(long, global = true, env = "PUSHHUB_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// How `pushhub users`, `kick`, `push`, `tasks`, `status`, `reload` and `stop` reach the
/// server (they name their app themselves, or concern every app).
#[derive(Args)]
struct ServerArgs {
    /// The server's API listener.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    api: String,
    /// An API key of the app, or an admin key (status, reload and stop need one when
    /// admin keys are configured).
    #[arg(long, env = "PUSHHUB_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Print the API's JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

impl From<ServerArgs> for ApiArgs {
    fn from(server: ServerArgs) -> Self {
        Self {
            api: server.api,
            app: None,
            key: server.key,
            json: server.json,
        }
    }
}

#[derive(Subcommand)]
enum CronAction {
    /// Every job of the app: schedule, state, next run, last run and its result.
    List,
    /// One job in full.
    Show {
        /// The job's name.
        name: String,
    },
    /// Stop the job's scheduled runs (a run in progress finishes).
    Pause {
        /// The job's name.
        name: String,
    },
    /// Start the job's scheduled runs again, from its next fire time.
    Resume {
        /// The job's name.
        name: String,
    },
    /// Run the job now (refused while it runs, if its overlap policy is skip).
    Run {
        /// The job's name.
        name: String,
    },
    /// Delete the job.
    Delete {
        /// The job's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum TimerAction {
    /// The app's timers, oldest first.
    List {
        /// Only timers in this state: pending, running, succeeded, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Most timers shown (1-1000; default 100).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One timer in full.
    Show {
        /// The timer's id.
        id: u64,
    },
    /// Cancel a pending or running timer.
    Cancel {
        /// The timer's id.
        id: u64,
    },
}

/// Run one API command and print its answer: 0 on success, 1 when the server refused
/// or could not be reached (the reason on stderr).
fn operate<F, Fut>(args: ApiArgs, command: F) -> ExitCode
where
    F: FnOnce(ApiClient) -> Fut,
    Fut: std::future::Future<Output = Result<(serde_json::Value, String), CliError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pushhub: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = ApiClient::new(&args.api, args.app, args.key)?;
        command(client).await
    });
    match result {
        Ok((value, _)) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok((_, text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pushhub: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The engine named `memory` or `redis`.
fn parse_engine(text: &str) -> Result<EngineKind, String> {
    match text {
        "memory" => Ok(EngineKind::Memory),
        "redis" => Ok(EngineKind::Redis),
        _ => Err(format!("{text:?} is not an engine: memory or redis")),
    }
}

/// Seconds from `90`, `90s`, `30m`, `12h` or `7d`.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: use seconds or a unit s, m, h, d")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

fn token(
    app: &str,
    user: &str,
    ttl: u64,
    groups: &[String],
    secret: Option<String>,
    config: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    let secret = match (secret, config) {
        (Some(secret), _) => secret,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let raw: pushhub::config::RawConfig =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            raw.apps
                .get(app)
                .and_then(|a| a.token_secrets.first().cloned())
                .with_context(|| {
                    format!("app {app:?} has no token_secrets in {}", path.display())
                })?
        }
        (None, None) => anyhow::bail!("give --secret, or --config with the app's token_secrets"),
    };
    Ok(pushhub::auth::token::mint(&secret, app, user, groups, ttl)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_store_panics();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Store { action } => match action {
            StoreAction::Check { place } => store_command(place, |dir| {
                let verdict = pushhub::store::integrity::check(dir)?;
                let status = match verdict {
                    pushhub::store::integrity::Verdict::Damaged(_) => 1,
                    _ => 0,
                };
                Ok((pushhub::store::report::check(dir, &verdict), status))
            }),
            StoreAction::Repair { place } => store_command(place, |dir| {
                let repair = pushhub::store::salvage::repair(dir)?;
                Ok((pushhub::store::report::repair(dir, &repair), 0))
            }),
        },
        Command::Cron { api, action } => {
            let command = match action {
                CronAction::List => CronCommand::List,
                CronAction::Show { name } => CronCommand::Show(name),
                CronAction::Pause { name } => CronCommand::Pause(name),
                CronAction::Resume { name } => CronCommand::Resume(name),
                CronAction::Run { name } => CronCommand::Run(name),
                CronAction::Delete { name } => CronCommand::Delete(name),
            };
            operate(api, |client| async move { client.cron(&command).await })
        }
        Command::Timers { api, action } => {
            let command = match action {
                TimerAction::List { state, limit } => TimerCommand::List { state, limit },
                TimerAction::Show { id } => TimerCommand::Show(id),
                TimerAction::Cancel { id } => TimerCommand::Cancel(id),
            };
            operate(api, |client| async move { client.timers(&command).await })
        }
        Command::Users {
            app_name,
            limit,
            after,
            server,
        } => {
            let command = UsersCommand {
                app: app_name,
                limit: limit as usize,
                after,
            };
            operate(server.into(), |client| async move {
                client.users(&command).await
            })
        }
        Command::Kick {
            app_name,
            user,
            conn,
            reason,
            no_reconnect,
            server,
        } => {
            let command = KickCommand {
                app: app_name,
                user,
                conn,
                reason,
                for_good: no_reconnect,
            };
            operate(server.into(), |client| async move {
                client.kick(&command).await
            })
        }
        Command::Push {
            app_name,
            target,
            data,
            event,
            string,
            server,
        } => {
            let command = PushCommand::new(app_name, target, &data, string, event);
            operate(server.into(), |client| async move {
                client.push(&command).await
            })
        }
        Command::Tasks { server } => {
            operate(server.into(), |client| async move { client.tasks().await })
        }
        Command::Status { server } => {
            operate(server.into(), |client| async move { client.status().await })
        }
        Command::Reload { server } => {
            operate(server.into(), |client| async move { client.reload().await })
        }
        Command::Stop { force, server } => {
            operate(
                server.into(),
                |client| async move { client.stop(force).await },
            )
        }
        Command::Upgrade { server } => {
            operate(
                server.into(),
                |client| async move { client.upgrade().await },
            )
        }
        Command::Token {
            app,
            user,
            ttl,
            groups,
            secret,
            config,
        } => match token(&app, &user, ttl, &groups, secret, config.as_deref()) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("pushhub token: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config,
            listen,
            api_listen,
            data_dir,
            engine,
            redis_urls,
            log,
            daemon,
        } => {
            let overrides = Overrides {
                listen,
                api_listen,
                data_dir,
                engine,
                redis_urls,
            };
            serve_command(config, overrides, log, daemon)
        }
    }
}

/// `pushhub serve`: detach first when asked (before any thread exists), then set up
/// logging, load the configuration, take the pid file and run. Every start-up failure
/// reaches the person starting it: on stderr, or through the daemon's foreground process.
fn serve_command(
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

/// Run a `pushhub store` command on the data directory `place` names; print its report
/// and exit with its status, or 2 when it could not run.
fn store_command(
    place: DataDirArgs,
    command: impl FnOnce(&std::path::Path) -> Result<(String, u8), pushhub::store::StoreError>,
) -> ExitCode {
    let data_dir = match place.data_dir {
        Some(dir) => dir,
        None => match Config::load(
            place.config.as_deref(),
            std::env::vars(),
            &Overrides::default(),
        ) {
            Ok(config) => config.data_dir,
            Err(errors) => {
                eprintln!("pushhub: invalid configuration:\n{errors}");
                return ExitCode::from(2);
            }
        },
    };
    match command(&data_dir) {
        Ok((report, status)) => {
            print!("{report}");
            ExitCode::from(status)
        }
        Err(error) => {
            eprintln!("pushhub store: {error}");
            ExitCode::from(2)
        }
    }
}

/// A panic inside redb is always caught and reported by the store (the run-time latch,
/// the check, the salvage), with its message; the default hook would print each one
/// again with a backtrace hint. Other panics keep the default hook.
fn quiet_store_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info
            .location()
            .is_some_and(|l| l.file().contains("/redb-") || l.file().contains("\\redb-"));
        if !in_redb {
            default(info);
        }
    }));
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(Some(file), std::iter::empty(), &Overrides::default()) {
        Ok(config) => {
            let tcp = config
                .tcp_listen
                .map(|addr| format!(", raw TCP listener {addr} ({})", config.tcp_framing))
                .unwrap_or_default();
            let tls = config
                .tls
                .as_ref()
                .map(|t| format!(", TLS on {}", tls_listeners(t)))
                .unwrap_or_default();
            let pushserve = config
                .pushserve
                .as_ref()
                .and_then(|p| p.addr)
                .map(|addr| format!(", push-serve's port {addr}"))
                .unwrap_or_default();
            for warning in config.pushserve.iter().flat_map(|p| p.warnings()) {
                println!("warning: {warning}");
            }
            if let Some(warning) = admin_warning(&config) {
                println!("warning: {warning}");
            }
            println!(
                "{}: ok ({} app(s), client listener {}, API listener {}{tcp}{pushserve}{tls})",
                file.display(),
                config.apps.len(),
                config.listen,
                config.api_listen
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            eprintln!("{} error(s)", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

/// The warning for an API reachable from other hosts without an admin key: the admin
/// dashboard and the server-wide operations are then refused to everyone.
fn admin_warning(config: &Config) -> Option<String> {
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
fn tls_listeners(tls: &pushhub::config::RawTls) -> String {
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
