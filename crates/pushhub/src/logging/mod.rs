//! Where the server's log goes and how it looks: human or JSON lines, levels per module,
//! to stderr or to a file that logrotate can move away (SIGUSR2 reopens it) or that
//! rotates itself by size.
//!
//! Only the binary calls [`init`]; the library logs through `tracing` and never knows
//! where the lines end up.

mod file;

pub use file::{LogFile, Rotation};

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The filter used when neither `--log` nor `PUSHHUB_LOG` gives one.
pub const DEFAULT_FILTER: &str = "info";

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event, for a terminal or `journalctl`.
    #[default]
    Human,
    /// One JSON object per line (timestamp, level, target, fields, spans), for log
    /// shippers that would otherwise have to parse the human form.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(format!("{text:?} is not a log format: human or json")),
        }
    }
}

/// Why logging could not be set up: start-up stops with it, since a server whose log goes
/// nowhere cannot be operated.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The level directives do not parse.
    #[error(
        "invalid log filter {directives:?} (expected e.g. \"info,pushhub::api=debug\"): {reason}"
    )]
    Filter {
        /// The directives as given.
        directives: String,
        /// What the parser said.
        reason: String,
    },
    /// The log file cannot be opened.
    #[error("cannot open the log file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Another subscriber was installed first (only in tests that call [`init`] twice).
    #[error("logging is already set up")]
    AlreadySet,
}

/// Install the process's log subscriber: `directives` in `EnvFilter` syntax (default
/// [`DEFAULT_FILTER`]), lines in `format`, into `file` or else to stderr (with colours only
/// when stderr is a terminal).
pub fn init(
    directives: Option<&str>,
    format: LogFormat,
    file: Option<LogFile>,
) -> Result<(), LoggingError> {
    let directives = directives.unwrap_or(DEFAULT_FILTER);
    let filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|error| LoggingError::Filter {
            directives: directives.to_owned(),
            reason: error.to_string(),
        })?;
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = match file {
        Some(file) => BoxMakeWriter::new(file),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let layer = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|_| LoggingError::AlreadySet)
}

/// Bytes from `100`, `512K`, `100M` or `1G` (binary units, an optional trailing `B` or
/// `iB`), for `--log-max-size`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let unitless = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (number, scale) = match unitless.chars().last() {
        Some('K') => (&unitless[..unitless.len() - 1], 1u64 << 10),
        Some('M') => (&unitless[..unitless.len() - 1], 1 << 20),
        Some('G') => (&unitless[..unitless.len() - 1], 1 << 30),
        _ => (unitless, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size: bytes, or with a unit K, M, G"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        for bad in ["", "0", "M", "-1", "1T", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_are_named() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("human".parse(), Ok(LogFormat::Human));
        assert!("text".parse::<LogFormat>().is_err());
    }
}
