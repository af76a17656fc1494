//! The `pushhub` command: each subcommand dispatched from the command line (`args.rs`); the
//! server itself starts in `serve.rs`, the operator commands go through the API.

mod args;
mod serve;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pushhub::cli::{
    ApiClient, CliError, CronCommand, KickCommand, PushCommand, TimerCommand, UsersCommand,
};
use pushhub::config::{Config, Overrides};

use args::*;
use serve::*;

/// jemalloc rather than the system allocator: a server at its history bound frees kept
/// messages oldest first while it allocates new ones, and glibc's malloc spent a third of
/// the ingest path's CPU consolidating its free lists there (docs/benchmarks.md, "Batch
/// ingest at 200k"). Idle connections cost about the same with either.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
