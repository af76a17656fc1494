//! The command line: every subcommand and flag `pushhub` takes (clap derives the parser
//! and `--help` from these doc comments).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pushhub::engine::EngineKind;
use pushhub::logging::{self, LogFormat};

#[derive(Parser)]
#[command(name = "pushhub", version, about = "Self-hosted real-time push server")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum StoreAction {
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
pub(crate) struct DataDirArgs {
    /// The data directory.
    #[arg(long, conflicts_with = "config")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The configuration file whose `data_dir` to use.
    #[arg(long, env = "PUSHHUB_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

/// Where `serve` logs, and how (docs/operations.md, "Logs").
#[derive(Args)]
pub(crate) struct LogArgs {
    /// Levels, per module if wanted: EnvFilter directives such as
    /// `info,pushhub::api=debug` (default: info).
    #[arg(long = "log", env = "PUSHHUB_LOG")]
    pub(crate) filter: Option<String>,
    /// Line format: human, or json (one object per line, for log shippers).
    #[arg(long, env = "PUSHHUB_LOG_FORMAT", default_value = "human")]
    pub(crate) log_format: LogFormat,
    /// Log to this file instead of stderr; SIGUSR2 reopens it (after logrotate moved it).
    #[arg(long)]
    pub(crate) log_file: Option<PathBuf>,
    /// Rotate the log file when it would pass this size (e.g. 100M): it becomes FILE.1,
    /// older ones shift up.
    #[arg(long, requires = "log_file", value_parser = logging::parse_size)]
    pub(crate) log_max_size: Option<u64>,
    /// Rotated log files kept with --log-max-size.
    #[arg(long, requires = "log_max_size", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) log_keep: u16,
}

/// Running without systemd (docs/operations.md, "Daemon mode").
#[derive(Args)]
pub(crate) struct DaemonArgs {
    /// Detach from the terminal; this command returns once the server serves (exit 0) or
    /// failed to start (its reason, exit 1). Needs --log-file.
    #[arg(long, requires = "log_file")]
    pub(crate) daemon: bool,
    /// Write the server's process id here (refused while it names a running pushhub);
    /// removed at a clean exit.
    #[arg(long)]
    pub(crate) pid_file: Option<PathBuf>,
}

/// How `pushhub cron` and `pushhub timers` reach the server.
#[derive(Args)]
pub(crate) struct ApiArgs {
    /// The server's API listener.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8082")]
    pub(crate) api: String,
    /// The app (default: the app of the API key, or the server's only app).
    #[arg(long, global = true)]
    pub(crate) app: Option<String>,
    /// An API key of the app, needed when the app has keys.
    #[arg(long, global = true, env = "PUSHHUB_API_KEY", hide_env_values = true)]
    pub(crate) key: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// How `pushhub users`, `kick`, `push`, `tasks`, `status`, `reload` and `stop` reach the
/// server (they name their app themselves, or concern every app).
#[derive(Args)]
pub(crate) struct ServerArgs {
    /// The server's API listener.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub(crate) api: String,
    /// An API key of the app, or an admin key (status, reload and stop need one when
    /// admin keys are configured).
    #[arg(long, env = "PUSHHUB_API_KEY", hide_env_values = true)]
    pub(crate) key: Option<String>,
    /// Print the API's JSON answer instead of text.
    #[arg(long)]
    pub(crate) json: bool,
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
pub(crate) enum CronAction {
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
pub(crate) enum TimerAction {
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

/// The engine named `memory` or `redis`.
pub(crate) fn parse_engine(text: &str) -> Result<EngineKind, String> {
    match text {
        "memory" => Ok(EngineKind::Memory),
        "redis" => Ok(EngineKind::Redis),
        _ => Err(format!("{text:?} is not an engine: memory or redis")),
    }
}

/// Seconds from `90`, `90s`, `30m`, `12h` or `7d`.
pub(crate) fn parse_ttl(text: &str) -> Result<u64, String> {
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
