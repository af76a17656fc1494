//! Signing pushhub's requests to an app's backend.
//!
//! An RPC request tells the backend "user 100 called `live.user.like`"; the backend must be
//! able to believe it, or anyone who can reach its URL could act as any user. Every request
//! carries `X-Pushhub-Signature: t=UNIX,v1=HEX`, where HEX is
//! HMAC-SHA256(app's `backend_secret`, "UNIX.BODY"). The timestamp inside the signed text
//! lets the backend refuse replays older than a few minutes (docs/api.md shows the check
//! in a few lines of Python and PHP).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-pushhub-signature";

/// The header value for `body` signed with `secret` at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = hmac_sha256(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// An HMAC-SHA256 keyed with `key`. HMAC takes keys of any length, so this cannot fail;
/// one place says so instead of every caller.
pub fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The header value for `body` signed with `secret` now.
pub fn sign_now(secret: &[u8], body: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    sign(secret, now, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'secret'
        assert_eq!(
            sign(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
