//! Form and query parameters: `api::params::collect` and `api::params::form`, how the
//! jdserver endpoints (`/push`, `/getUsers`, `getMsg`) read PHP-style parameters from a
//! query string, a form body or a JSON body, with PHP bracket notation (`msg[id]=1`,
//! `list[]=a`).
//!
//! Input: 1 byte choosing the content type, then the query string (first line) and the
//! body (the rest). Checks:
//! - no panic; a refusal is a 4xx;
//! - a decoded form has at most `MAX_VARS` values, nested at most `MAX_DEPTH` deep, all
//!   strings; written back in bracket notation it decodes to the same parameters;
//! - the body's parameters override the query's, and the query's others are kept.

#![no_main]

use form_urlencoded::Serializer;
use libfuzzer_sys::fuzz_target;
use pushhub::api::params::{collect, form, php_query, MAX_DEPTH, MAX_VARS};
use serde_json::{Map, Value};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some(""),
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("text/plain"),
    Some("multipart/form-data; boundary=x"),
    Some(" Application/JSON ;charset=utf-8"),
];

/// Leaves (values) under `value` and its depth (a leaf at the top is depth 1).
fn shape(value: &Value) -> (usize, usize) {
    let children: Vec<&Value> = match value {
        Value::String(_) => return (1, 1),
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => map.values().collect(),
        other => panic!("a form value is a string, list or map: {other}"),
    };
    assert!(!children.is_empty(), "an empty nested array");
    children
        .into_iter()
        .map(shape)
        .fold((0, 0), |(leaves, depth), (l, d)| {
            (leaves + l, depth.max(d + 1))
        })
}

/// `value` in bracket notation under `key`.
fn write(key: &str, value: &Value, out: &mut Serializer<String>) {
    match value {
        Value::String(s) => {
            out.append_pair(key, s);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                write(&format!("{key}[{i}]"), item, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                write(&format!("{key}[{k}]"), item, out);
            }
        }
        other => panic!("a form value is a string, list or map: {other}"),
    }
}

/// Check a decoded form and write it back.
fn check_form(params: &Map<String, Value>) {
    let (mut leaves, mut depth) = (0, 0);
    for value in params.values() {
        let (l, d) = shape(value);
        leaves += l;
        depth = depth.max(d);
    }
    assert!(leaves <= MAX_VARS, "{leaves} values");
    assert!(depth <= MAX_DEPTH, "nested {depth} deep");
    let mut out = Serializer::new(String::new());
    for (key, value) in params {
        write(key, value, &mut out);
    }
    let written = out.finish();
    let again = form(written.as_bytes()).expect("written parameters decode");
    assert_eq!(&again, params, "written back as {written:?}");
    // The API's own encoder (PHP's http_build_query) writes what decodes the same.
    let php = php_query(&Value::Object(params.clone()));
    let again = form(php.as_bytes()).expect("php_query output decodes");
    assert_eq!(&again, params, "php_query wrote {php:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let query_text = String::from_utf8_lossy(query);
    let from_query = form(query_text.as_bytes());
    if let Ok(params) = &from_query {
        check_form(params);
    }
    if let Ok(params) = form(body) {
        check_form(&params);
    }
    let content_type = CONTENT_TYPES[usize::from(mode) % CONTENT_TYPES.len()];
    let query = (mode & 0x80 == 0).then_some(&*query_text);
    match collect(query, content_type, body) {
        Err(error) => assert!(error.status.is_client_error(), "{error:?}"),
        Ok(params) => {
            let from_query = match query {
                Some(_) => from_query.expect("collect accepted the query"),
                None => Map::new(),
            };
            let mime = content_type
                .and_then(|c| c.split(';').next())
                .map(|m| m.trim().to_ascii_lowercase())
                .unwrap_or_default();
            let form_body = matches!(
                mime.as_str(),
                "" | "application/x-www-form-urlencoded" | "text/plain"
            ) && !body.iter().all(u8::is_ascii_whitespace)
                && body.first() != Some(&b'{');
            if form_body {
                if let Ok(from_body) = form(body) {
                    for (key, value) in &params {
                        let expected = from_body.get(key).or(from_query.get(key));
                        assert_eq!(Some(value), expected, "parameter {key:?}");
                    }
                }
            }
            for key in from_query.keys() {
                assert!(params.contains_key(key), "query parameter {key:?} lost");
            }
        }
    }
});
