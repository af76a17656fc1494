//! Where in a configuration file something is, as `file:line:column`, so every error
//! points at the line to fix.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

/// Most type and unknown-key errors reported for one file.
const MAX_TYPE_ERRORS: usize = 100;

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

/// Every type and unknown-key error in `text` read as a `T`, each with its position.
///
/// Deserializing stops at the first error, so after each one the offending `key = value`
/// is blanked out (byte offsets, hence positions, unchanged) and the text read again: one
/// mistake does not hide the next. Stops at an error that is not about one such entry (a
/// missing key, a whole table), and does not report a key as missing that it blanked.
/// Errors come in the order of the file.
pub fn type_errors<T: DeserializeOwned>(source: &str, text: &str) -> Vec<super::ConfigError> {
    let mut read = text.to_owned();
    let mut blanked: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    while errors.len() < MAX_TYPE_ERRORS {
        let Err(error) = toml::from_str::<T>(&read) else {
            break;
        };
        let message = error.message();
        if blanked
            .iter()
            .any(|key| message.contains(&format!("missing field `{key}`")))
        {
            break;
        }
        let at = error.span().map_or(usize::MAX, |span| span.start);
        // Located in the text as read: its spans, and the same lines and offsets as `text`.
        errors.push((at, type_error(source, &read, &error)));
        let Some((entry, key)) = error.span().and_then(|span| entry_at(&read, span.start)) else {
            break;
        };
        blank(&mut read, entry);
        blanked.push(key);
        if DeTable::parse(&read).is_err() {
            break;
        }
    }
    errors.sort_by_key(|(at, _)| *at);
    errors.into_iter().map(|(_, error)| error).collect()
}

/// The innermost `key = value` entry of `text` whose text holds byte `offset`, and its key.
fn entry_at(text: &str, offset: usize) -> Option<(Range<usize>, String)> {
    let root = DeTable::parse(text).ok()?;
    innermost_entry(text, root.get_ref(), offset)
}

fn innermost_entry(
    text: &str,
    table: &DeTable<'_>,
    offset: usize,
) -> Option<(Range<usize>, String)> {
    for (key, value) in table.iter() {
        let inner = match value.get_ref() {
            DeValue::Table(t) => innermost_entry(text, t, offset),
            DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(t) => innermost_entry(text, t, offset),
                _ => None,
            }),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        let (key_span, value_span) = (key.span(), value.span());
        // `key = value`, not a `[table]` or `[[array]]` header.
        let assigned = text
            .get(key_span.end..value_span.start)
            .is_some_and(|between| between.contains('='));
        let entry = key_span.start..value_span.end;
        if assigned && entry.contains(&offset) {
            return Some((entry, key.get_ref().to_string()));
        }
    }
    None
}

/// Replace `range` of `text` by spaces, keeping line breaks, so every later byte keeps
/// its offset and line.
fn blank(text: &mut String, range: Range<usize>) {
    let blanked: String = text[range.clone()]
        .chars()
        .map(|c| match c {
            '\n' => "\n".to_owned(),
            other => " ".repeat(other.len_utf8()),
        })
        .collect();
    text.replace_range(range, &blanked);
}

/// A type or unknown-key error from deserializing `text`, with its position and the line
/// it is on (toml's message alone does not name the key).
fn type_error(source: &str, text: &str, error: &toml::de::Error) -> super::ConfigError {
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

#[cfg(test)]
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text, however broken, gets a list of errors: no panic, no endless loop, and
        /// every error located on a line of the text.
        #[test]
        fn arbitrary_configs(text in "(\\[apps\\.[a-z]\\]\n|[a-z_]{1,8} = |\"[a-zü]{0,4}\"|-?[0-9]{1,3}|true|\\{|\\}|\\[|\\]|,|\n| ){0,40}") {
            let lines = text.lines().count().max(1);
            for error in type_errors::<crate::config::RawConfig>("f", &text) {
                let line: usize = error.location.split(':').nth(1).unwrap_or("1").parse().unwrap_or(0);
                prop_assert!((1..=lines + 1).contains(&line), "{error:?} in {text:?}");
            }
        }
    }
}
