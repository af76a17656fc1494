//! Request parameters the way PHP's `$_REQUEST` sees them, for the jdserver endpoints.
//!
//! jdserver's backends call it with PHP's `httpCall(url, [...])`: parameters arrive in the
//! query string, a form body or a JSON body, and nested arrays use PHP's bracket notation
//! (`msg[id]=1&msg[text]=x`, `list[]=a&list[]=b`). This module decodes all of them into
//! one JSON object, as PHP would: bracket keys build nested arrays, `[]` appends, every
//! form value is a string, and an array whose keys are 0..n-1 in order is a JSON list (as
//! PHP's `json_encode` renders it). Body parameters override query parameters.

use serde_json::{Map, Value};

use crate::http_error::ApiError;

/// PHP's `max_input_vars` default: more parameters than this are refused.
pub const MAX_VARS: usize = 1000;
/// PHP's `max_input_nesting_level` default.
pub const MAX_DEPTH: usize = 64;

/// Decode `query` and `body` (with its content type) into one object.
pub fn collect(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let mut params = form(query.unwrap_or("").as_bytes())?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let from_body = match mime.as_str() {
        "application/json" => json_object(body)?,
        "" | "application/x-www-form-urlencoded" | "text/plain" => {
            if body.first() == Some(&b'{') {
                json_object(body)?
            } else {
                form(body)?
            }
        }
        other => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content type {other:?} is not supported: send a query string, application/x-www-form-urlencoded or application/json"),
            ))
        }
    };
    params.extend(from_body);
    Ok(params)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    crate::json_depth::check(body)?;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "invalid_body",
            "JSON body must be an object",
        )),
        Err(error) => Err(ApiError::bad_request(
            "bad_json",
            format!("body is not valid JSON: {error}"),
        )),
    }
}

/// One node while decoding: PHP arrays keep insertion order and string keys.
enum Node {
    Leaf(String),
    Array(Vec<(String, Node)>),
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(s) => Value::String(s),
            Node::Array(entries) => {
                let is_list = entries
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| k.parse::<usize>().ok() == Some(i) && *k == i.to_string());
                if is_list {
                    Value::Array(entries.into_iter().map(|(_, v)| v.into_value()).collect())
                } else {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k, v.into_value()))
                            .collect(),
                    )
                }
            }
        }
    }
}

/// Split `a[b][]` into `a` and `["b", ""]`. A key with an unclosed bracket is taken whole,
/// as PHP does.
fn split_key(key: &str) -> (&str, Vec<&str>) {
    let Some(open) = key.find('[') else {
        return (key, Vec::new());
    };
    let (base, mut rest) = key.split_at(open);
    let mut segments = Vec::new();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else { break };
        segments.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    if segments.is_empty() {
        (key, segments)
    } else {
        (base, segments)
    }
}

/// The key `[]` appends at; `None` past the largest index, where PHP drops the value.
/// `key` as an index, when PHP would take it as one: the canonical decimal form only
/// (`5`, not `+5` or `05`), as PHP turns only such string keys into integers.
fn php_index(key: &str) -> Option<u64> {
    key.parse::<u64>().ok().filter(|n| n.to_string() == key)
}

fn next_index(entries: &[(String, Node)]) -> Option<String> {
    entries
        .iter()
        .filter_map(|(k, _)| php_index(k))
        .max()
        .map_or(Some(0), |m| m.checked_add(1))
        .map(|i| i.to_string())
}

fn insert(entries: &mut Vec<(String, Node)>, path: &[&str], value: String) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = if first.is_empty() {
        let Some(key) = next_index(entries) else {
            return;
        };
        key
    } else {
        (*first).to_owned()
    };
    let position = entries.iter().position(|(k, _)| *k == key);
    if rest.is_empty() {
        match position {
            Some(i) => entries[i].1 = Node::Leaf(value),
            None => entries.push((key, Node::Leaf(value))),
        }
        return;
    }
    let index = match position {
        Some(i) => {
            if matches!(entries[i].1, Node::Leaf(_)) {
                entries[i].1 = Node::Array(Vec::new());
            }
            i
        }
        None => {
            entries.push((key, Node::Array(Vec::new())));
            entries.len() - 1
        }
    };
    if let Node::Array(children) = &mut entries[index].1 {
        insert(children, rest, value);
    }
}

/// Decode an `application/x-www-form-urlencoded` string with PHP bracket notation.
pub fn form(input: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let mut root: Vec<(String, Node)> = Vec::new();
    for (count, (key, value)) in form_urlencoded::parse(input).enumerate() {
        if count >= MAX_VARS {
            return Err(ApiError::bad_request(
                "too_many_params",
                format!("more than {MAX_VARS} parameters"),
            ));
        }
        let (base, segments) = split_key(&key);
        if base.is_empty() {
            continue;
        }
        if segments.len() >= MAX_DEPTH {
            return Err(ApiError::bad_request(
                "params_too_deep",
                format!("parameter {base:?} is nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut path = Vec::with_capacity(segments.len() + 1);
        path.push(base);
        path.extend(segments);
        insert(&mut root, &path, value.into_owned());
    }
    Ok(root.into_iter().map(|(k, v)| (k, v.into_value())).collect())
}

/// Encode an object or list the way PHP's `http_build_query` does, so a body built from
/// parameters jdserver's backends sent reads back as PHP would have written it: nested keys
/// in brackets (`a[b]=1`), list positions as keys (`a[0]=x`), `true`/`false` as `1`/`0`,
/// nulls left out, and `urlencode` escaping (space as `+`, everything but ASCII letters,
/// digits and `-_.` as `%XX`, brackets in keys included).
pub fn php_query(value: &Value) -> String {
    fn walk(key: &str, value: &Value, pairs: &mut Vec<String>) {
        let scalar = match value {
            Value::Null => return,
            Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{key}[{i}]"), item, pairs);
                }
                return;
            }
            Value::Object(map) => {
                for (k, item) in map {
                    walk(&format!("{key}[{k}]"), item, pairs);
                }
                return;
            }
        };
        pairs.push(format!("{}={}", php_urlencode(key), php_urlencode(&scalar)));
    }
    let mut pairs = Vec::new();
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&i.to_string(), item, &mut pairs);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                walk(k, item, &mut pairs);
            }
        }
        _ => {}
    }
    pairs.join("&")
}

/// PHP's `urlencode`.
fn php_urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn php_query_matches_http_build_query() {
        assert_eq!(php_query(&json!({"c": 3, "d": 4})), "c=3&d=4");
        assert_eq!(php_query(&json!({"c": "3", "d": "4"})), "c=3&d=4");
        assert_eq!(
            php_query(&json!({"a": {"b": [1, 2]}, "t": true, "f": false, "n": null})),
            "a%5Bb%5D%5B0%5D=1&a%5Bb%5D%5B1%5D=2&t=1&f=0"
        );
        assert_eq!(
            php_query(&json!({"text": "订单 10*~"})),
            "text=%E8%AE%A2%E5%8D%95+10%2A%7E"
        );
        assert_eq!(php_query(&json!(["x", "y"])), "0=x&1=y");
        assert_eq!(php_query(&json!({})), "");
        // What a form decodes to encodes back to the same form.
        let form = "c=3&d=4&e%5Bx%5D=1";
        assert_eq!(
            php_query(&Value::Object(super::form(form.as_bytes()).unwrap())),
            form
        );
    }

    fn parsed(input: &str) -> Value {
        Value::Object(form(input.as_bytes()).unwrap())
    }

    #[test]
    fn php_bracket_notation() {
        assert_eq!(
            parsed("app=wms&user=*&msg%5Bid%5D=1&msg%5Btext%5D=%E8%AE%A2%E5%8D%9510"),
            json!({"app": "wms", "user": "*", "msg": {"id": "1", "text": "订单10"}})
        );
        assert_eq!(parsed("a[]=x&a[]=y"), json!({"a": ["x", "y"]}));
        assert_eq!(parsed("a[0]=x&a[1]=y"), json!({"a": ["x", "y"]}));
        assert_eq!(parsed("a[1]=x&a[0]=y"), json!({"a": {"1": "x", "0": "y"}}));
        assert_eq!(
            parsed("a[x][y][]=1&a[x][y][]=2&a[x][z]=3"),
            json!({"a": {"x": {"y": ["1", "2"], "z": "3"}}})
        );
        assert_eq!(parsed("a[5]=x&a[]=y"), json!({"a": {"5": "x", "6": "y"}}));
        assert_eq!(parsed("a=1&a=2"), json!({"a": "2"}));
        assert_eq!(parsed("a=1&a[b]=2"), json!({"a": {"b": "2"}}));
        assert_eq!(parsed("a[b=1"), json!({"a[b": "1"}));
        assert_eq!(parsed("a+b=c+d"), json!({"a b": "c d"}));
        assert_eq!(parsed(""), json!({}));
        assert_eq!(parsed("[x]=1&=2"), json!({}));
    }

    /// Found with the params fuzz target: appending after the largest index overflowed (a
    /// panic in debug builds, a wrapped `0` key in release).
    #[test]
    fn only_canonical_numbers_are_indexes_as_in_php() {
        assert_eq!(
            parsed("a[%2B5]=x&a[]=y&b[05]=x&b[]=y&c[5]=x&c[]=y"),
            json!({"a": {"+5": "x", "0": "y"}, "b": {"05": "x", "0": "y"}, "c": {"5": "x", "6": "y"}})
        );
    }

    #[test]
    fn appending_after_the_largest_index_drops_the_value() {
        assert_eq!(
            parsed("a[18446744073709551615]=x&a[]=y&b[]=z"),
            json!({"a": {"18446744073709551615": "x"}, "b": ["z"]})
        );
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..=MAX_VARS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            form(many.join("&").as_bytes()).unwrap_err().code,
            "too_many_params"
        );
        let deep = format!("a{}=1", "[x]".repeat(MAX_DEPTH));
        assert_eq!(form(deep.as_bytes()).unwrap_err().code, "params_too_deep");
    }

    #[test]
    fn body_overrides_query_and_json_is_accepted() {
        let params = collect(
            Some("app=a&user=1"),
            Some("application/json"),
            br#"{"user":2,"msg":{"x":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            Value::Object(params),
            json!({"app": "a", "user": 2, "msg": {"x": [1]}})
        );
        let params = collect(None, None, b"user=3").unwrap();
        assert_eq!(Value::Object(params), json!({"user": "3"}));
        let params = collect(
            None,
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"msg[a]=1",
        )
        .unwrap();
        assert_eq!(Value::Object(params), json!({"msg": {"a": "1"}}));
        assert_eq!(
            collect(None, Some("application/json"), b"[1]")
                .unwrap_err()
                .code,
            "invalid_body"
        );
        assert_eq!(
            collect(None, Some("application/json"), b"{")
                .unwrap_err()
                .code,
            "bad_json"
        );
        assert_eq!(
            collect(None, Some("multipart/form-data; boundary=x"), b"--x")
                .unwrap_err()
                .code,
            "unsupported_media_type"
        );
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any query string or body decodes or fails with a 4xx, never panics.
        #[test]
        fn arbitrary_params(query in "[a-z\\[\\]=&%0-9+]{0,200}", body in proptest::collection::vec(any::<u8>(), 0..200), json in any::<bool>()) {
            let content_type = if json { "application/json" } else { "application/x-www-form-urlencoded" };
            if let Err(error) = collect(Some(&query), Some(content_type), &body) {
                prop_assert!(error.status.is_client_error());
            }
        }
    }
}
