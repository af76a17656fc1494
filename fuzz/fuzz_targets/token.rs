//! Client tokens: `auth::token::TokenKeys::verify`, what every token a client presents
//! (`?token=`, `auth`/`refresh`/`connect` frames, jdserver `init`) goes through.
//!
//! Input: 1 byte choosing the mode, then:
//! - `0`: the token text itself, verified against an HS256 key and against a key set
//!   with one HS256, one RS256 and one ES256 key;
//! - `1`: a claims payload, signed with the HS256 secret under a fixed header;
//! - `2`: a header line, then a claims payload, signed with the HS256 secret;
//! - `3`: a user id, minted into a token with `auth::token::mint` and verified back.
//!
//! Checks: no panic; a token that verifies has exactly the claims its payload says, is
//! for this app (or names none) and is not past `exp` (plus leeway); a correctly signed
//! token with plain valid claims verifies; a minted token verifies as its user.

#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use pushhub::auth::token::{mint, Claims, TokenError, TokenKeys, LEEWAY_SECS};
use pushhub_fuzz::{all_keys, hs256_keys, SECRET};
use sha2::Sha256;

const APP: &str = "wms";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `header.payload.signature`, signed with [`SECRET`] (HS256).
fn sign(header: &[u8], payload: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Verify `token` with `keys`; what verifies must be what the payload says.
fn verify(keys: &TokenKeys, token: &str, payload: Option<&[u8]>) -> Result<Claims, TokenError> {
    let result = keys.verify(token, APP);
    match &result {
        Ok(claims) => {
            assert!(
                claims.app.as_deref().is_none_or(|app| app == APP),
                "{claims:?}"
            );
            assert!(
                claims.exp + LEEWAY_SECS >= now(),
                "expired token verified: {claims:?}"
            );
            if let Some(payload) = payload {
                let said: Claims = serde_json::from_slice(payload).expect("verified claims parse");
                assert_eq!(&said, claims);
            }
        }
        Err(TokenError::Invalid(why)) => assert!(!why.is_empty()),
        Err(TokenError::Expired) => {}
    }
    result
}

/// True when `payload` is a JSON object of only the claims pushhub reads, all well
/// formed, for this app, and not expiring within the next minute: such a token must
/// verify when correctly signed.
fn plainly_valid(payload: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(payload) else {
        return false;
    };
    let Ok(claims) = serde_json::from_slice::<Claims>(payload) else {
        return false;
    };
    object
        .keys()
        .all(|k| matches!(k.as_str(), "sub" | "exp" | "app" | "groups"))
        && claims.exp > now() + 60
        && claims.app.as_deref().is_none_or(|app| app == APP)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let _ = verify(&hs256_keys(), &token, None);
            let _ = verify(all_keys(), &token, None);
        }
        1 => {
            let token = sign(br#"{"alg":"HS256","typ":"JWT"}"#, rest);
            let result = verify(&hs256_keys(), &token, Some(rest));
            if plainly_valid(rest) {
                assert!(result.is_ok(), "a valid token was refused: {result:?}");
            }
            let _ = verify(all_keys(), &token, Some(rest));
        }
        2 => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b""[..]),
            };
            let token = sign(header, payload);
            let _ = verify(&hs256_keys(), &token, Some(payload));
            let _ = verify(all_keys(), &token, Some(payload));
        }
        _ => {
            let user = String::from_utf8_lossy(rest);
            let groups = vec![user.chars().rev().collect::<String>()];
            let token = mint(SECRET, APP, &user, &groups, 3600).expect("mint");
            let claims = verify(&hs256_keys(), &token, None).expect("a minted token verifies");
            assert_eq!(claims.sub, user);
            assert_eq!(claims.groups, groups);
        }
    }
});
