//! MSwoole's encrypted `auth` strings: `auth::mswoole_des::MSwooleDes::open`, what every
//! `?auth=` of an `auth = "mswoole-des"` app goes through before the handshake.
//!
//! Input: 1 byte choosing the mode, then:
//! - `0`: the `auth` text itself;
//! - `1`: a plaintext, encrypted with the app's key as MSwoole's `Encrypt::des` does
//!   (Triple DES ECB, PKCS#5, base64 with `*` `:` `_`), then opened.
//!
//! Plaintexts nested deeper than the harness's stack parses are left to the unit test
//! `deeply_nested_plaintexts_are_refused_or_read_on_a_task_sized_stack`.
//!
//! Checks: no panic; what opens has a non-empty user, a `ctime` within the allowed age
//! (and not ahead of the clock beyond the skew), no `id`/`code`/`ctime` left in its info;
//! a sealed plaintext that is a JSON object with an integer or non-empty string `id`, a
//! string `code` and `ctime` now (and fits in `MAX_AUTH_BYTES` once sealed) opens to
//! exactly that user and room.

#![no_main]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use des::TdesEde3;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::common::InnerInit;
use ecb::cipher::{BlockModeEncrypt, KeyInit};
use libfuzzer_sys::fuzz_target;
use pushhub::auth::mswoole_des::{DesAuthError, MSwooleDes, MAX_AUTH_BYTES};
use pushhub_fuzz::deeper_than_the_harness_stack;
use serde_json::Value;

/// The seed's key, padded with '0' to 24 bytes as MSwoole did.
const KEY: &[u8; 24] = b"kfw001-websocket00000000";
const NOW: u64 = 1_700_000_000;
const MAX_AGE: u64 = 3600;

/// `plaintext` as MSwoole's `Encrypt::des` writes it.
fn seal(plaintext: &[u8]) -> String {
    let mut buffer = plaintext.to_vec();
    buffer.resize(plaintext.len() + 8, 0);
    let sealed = ecb::Encryptor::<TdesEde3>::inner_init(TdesEde3::new(KEY.into()))
        .encrypt_padded::<Pkcs7>(&mut buffer, plaintext.len())
        .expect("room for the padding");
    STANDARD
        .encode(sealed)
        .replace('+', "*")
        .replace('/', ":")
        .replace('=', "_")
}

/// Whether `plaintext` says plainly who the user is, now: then it must open.
fn plainly_valid(plaintext: &[u8]) -> Option<(String, Option<String>)> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(plaintext) else {
        return None;
    };
    let user = match fields.get("id")? {
        Value::String(id) if !id.is_empty() => id.clone(),
        Value::Number(id) if id.is_u64() || id.is_i64() => id.to_string(),
        _ => return None,
    };
    let room = match fields.get("code") {
        None | Some(Value::Null) => None,
        Some(Value::String(code)) => Some(code.clone()).filter(|c| !c.is_empty()),
        Some(_) => return None,
    };
    (fields.get("ctime")?.as_u64()? == NOW).then_some((user, room))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let des = MSwooleDes::new("kfw001-websocket", Duration::from_secs(MAX_AGE));
    let (auth, expected) = match mode % 2 {
        0 => (String::from_utf8_lossy(rest).into_owned(), None),
        _ if deeper_than_the_harness_stack(rest) => return,
        _ => {
            let auth = seal(rest);
            let fits = auth.len() <= MAX_AUTH_BYTES;
            let expected = plainly_valid(rest).filter(|_| fits);
            (auth, expected)
        }
    };
    match des.open(&auth, NOW) {
        Ok(claims) => {
            assert!(!claims.user.is_empty());
            assert!(claims.ctime <= NOW + 5 && NOW - claims.ctime.min(NOW) <= MAX_AGE);
            if let Some(Value::Object(info)) = &claims.info {
                assert!(!info.is_empty());
                for field in ["id", "code", "ctime"] {
                    assert!(!info.contains_key(field), "{field} left in {info:?}");
                }
            }
            if let Some((user, room)) = expected {
                assert_eq!((claims.user, claims.room), (user, room));
            }
        }
        Err(error) => {
            assert!(expected.is_none(), "a valid auth was refused: {error}");
            assert!(!error.to_string().is_empty());
            if mode % 2 == 1 {
                assert_ne!(error, DesAuthError::WrongKey, "a sealed string decrypts");
                assert_ne!(error, DesAuthError::NotCiphertext);
            }
        }
    }
});
