//! How deep JSON may nest, checked the same way wherever JSON is accepted.
//!
//! Payloads (`data` of a push, `json` of a timer or cron job, push-serve's `contents`, an
//! RPC answer) are carried as [`serde_json::value::RawValue`]: stored and forwarded as the
//! text that came, never parsed into a tree. That is what keeps fan-out cheap, but
//! `RawValue` skips serde_json's recursion limit, so without this check a document nested
//! 100,000 levels deep would be accepted and handed to every client's parser. Every place
//! that takes such JSON runs [`check`] over the whole text first, so one limit holds
//! everywhere: the one serde_json's typed parsing already enforces.

/// The deepest nesting accepted: serde_json's recursion limit of 128 refuses the 128th
/// level of arrays and objects, so 127 is the most any of its typed parses takes.
pub const MAX_DEPTH: usize = 127;

/// JSON nested deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON is nested deeper than {MAX_DEPTH} levels of arrays and objects")]
pub struct TooDeep;

/// Refuse `json` when its arrays and objects nest deeper than [`MAX_DEPTH`].
///
/// One pass over the bytes that only tracks strings and brackets: no allocation, no
/// recursion, so it is safe to run before any parser. It does not validate the JSON; the
/// parser that follows does. Brackets inside strings (escaped quotes included) do not
/// count.
pub fn check(json: &[u8]) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn the_limit_is_the_one_serde_json_keeps_for_typed_parsing() {
        let deepest = nested(MAX_DEPTH);
        assert!(serde_json::from_str::<serde_json::Value>(&deepest).is_ok());
        assert_eq!(check(deepest.as_bytes()), Ok(()));
        let deeper = nested(MAX_DEPTH + 1);
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err());
        assert_eq!(check(deeper.as_bytes()), Err(TooDeep));
    }

    #[test]
    fn raw_values_skip_serde_jsons_limit_which_is_why_this_exists() {
        let deep = nested(100_000);
        assert!(serde_json::value::RawValue::from_string(deep.clone()).is_ok());
        assert_eq!(check(deep.as_bytes()), Err(TooDeep));
    }

    #[test]
    fn objects_count_like_arrays_and_brackets_in_strings_do_not() {
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check(objects.as_bytes()), Err(TooDeep));
        let text = format!(r#"{{"s":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        assert_eq!(check(text.as_bytes()), Ok(()));
        let siblings = format!("[{}]", vec![nested(100); 50].join(","));
        assert_eq!(check(siblings.as_bytes()), Ok(()), "depth, not count");
    }
}
