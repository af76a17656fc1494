//! Where in a configuration file something is, as `file:line:column`, so every error
//! points at the line to fix.

use toml::de::{DeTable, DeValue};

/// `source:line:column` of byte `offset` in `text` (both 1-based).
fn position(source: &str, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{source}:{line}:{column}")
}

/// Every syntax error in `text`, each with its position.
pub fn syntax_errors(source: &str, text: &str) -> Vec<super::ConfigError> {
    let (_, errors) = DeTable::parse_recoverable(text);
    errors
        .iter()
        .map(|e| super::ConfigError {
            location: e
                .span()
                .map_or_else(|| source.to_owned(), |s| position(source, text, s.start)),
            key: String::new(),
            message: format!("syntax error: {}", e.message().trim()),
        })
        .collect()
}

/// A type or unknown-key error from deserializing `text`, with its position and the line
/// it is on (toml's message alone does not name the key).
pub fn type_error(source: &str, text: &str, error: &toml::de::Error) -> super::ConfigError {
    let message = error.message().trim();
    let Some(span) = error.span() else {
        return super::ConfigError {
            location: source.to_owned(),
            key: String::new(),
            message: message.to_owned(),
        };
    };
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    super::ConfigError {
        location: position(source, text, span.start),
        key: String::new(),
        message: format!("{message} (in `{line}`)"),
    }
}

/// Position of the key at `path` in `text`, or of its nearest ancestor present there; the
/// bare source name when the value came from a default.
pub fn key(source: &str, text: &str, path: &[&str]) -> String {
    let Ok(root) = DeTable::parse(text) else {
        return source.to_owned();
    };
    let mut table = root.get_ref();
    let mut found = None;
    for segment in path {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *segment) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found.map_or_else(
        || source.to_owned(),
        |offset| position(source, text, offset),
    )
}
