//! Pusher Channels credentials: the signatures Pusher's libraries make with an app's key
//! and secret, checked here so that pusher-js, Laravel Echo and the Pusher server SDKs work
//! unchanged (issue 19).
//!
//! Four things are signed with the app secret, each an HMAC-SHA256 in lowercase hex:
//! - a subscription to a `private-` or `presence-` channel, by the app's auth endpoint:
//!   `socket_id:channel` (and `:channel_data` for presence), sent as `key:signature`;
//! - a user's sign-in (`pusher:signin`), by the same endpoint: `socket_id::user::user_data`;
//! - every HTTP API request, by the server SDKs: `METHOD\nPATH\nQUERY`, where QUERY is the
//!   request's parameters but `auth_signature`, keys lowercased, sorted, joined `k=v` with
//!   `&` unencoded; `body_md5` in the query binds the body, and `auth_timestamp` limits
//!   replays;
//! - each webhook pushhub sends, over its body (`X-Pusher-Signature`).
//!
//! The test vectors below come from the npm `pusher` SDK itself (see each test).

use subtle::ConstantTimeEq;

use crate::backend::signature::hmac_sha256;
use hmac::Mac;
use md5::{Digest, Md5};

/// How far a request's `auth_timestamp` may be from this server's clock, as Pusher allows.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// Why a signature was refused. The texts are for the developer who wired the library:
/// they name what was expected, never the secret or the right signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PusherAuthError {
    /// `auth` is not `key:signature`.
    #[error("the auth string is not \"key:signature\"")]
    Malformed,
    /// The key in `auth` or `auth_key` is not this app's.
    #[error("unknown app key \"{0}\"")]
    UnknownKey(String),
    /// A request lacks a parameter every signed request carries.
    #[error("the request is not signed: {0} is missing")]
    Missing(&'static str),
    /// `auth_version` other than 1.0, the only one there is.
    #[error("auth_version must be 1.0, not \"{0}\"")]
    Version(String),
    /// `auth_timestamp` too far from now (a replay, or a wrong clock).
    #[error(
        "auth_timestamp is {0} s away from the server's clock (at most {MAX_CLOCK_SKEW_SECS} s)"
    )]
    Expired(u64),
    /// `auth_timestamp` is not a number.
    #[error("auth_timestamp is not a Unix time in seconds")]
    BadTimestamp,
    /// The body is not the one `body_md5` was computed over.
    #[error("body_md5 does not match the request body")]
    BodyChanged,
    /// The signature is not HMAC-SHA256 of the text shown with the app's secret.
    #[error("invalid signature: expected HMAC-SHA256 (hex) with the app secret of {0:?}")]
    Signature(String),
}

/// An app's Pusher key and secret: the key names the app to clients and in signatures,
/// the secret signs.
#[derive(Debug, Clone, Copy)]
pub struct PusherSecret<'a> {
    /// The public key (pusher-js `new Pusher(key)`, `auth_key`).
    pub key: &'a str,
    /// The secret both sides sign with.
    pub secret: &'a str,
}

impl PusherSecret<'_> {
    /// HMAC-SHA256 of `text` with the secret, lowercase hex.
    pub fn sign(&self, text: &str) -> String {
        hex(&sign_bytes(self.secret.as_bytes(), text.as_bytes()))
    }

    /// Check `auth` (`key:signature`) for a subscription of `socket_id` to `channel`;
    /// `channel_data` is the presence member's JSON exactly as the client sent it.
    pub fn verify_channel(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
        auth: &str,
    ) -> Result<(), PusherAuthError> {
        let text = match channel_data {
            Some(data) => format!("{socket_id}:{channel}:{data}"),
            None => format!("{socket_id}:{channel}"),
        };
        self.verify_auth(&text, auth)
    }

    /// Check `auth` (`key:signature`) for `pusher:signin` of `socket_id` as `user_data`
    /// (the user's JSON exactly as the client sent it).
    pub fn verify_user(
        &self,
        socket_id: &str,
        user_data: &str,
        auth: &str,
    ) -> Result<(), PusherAuthError> {
        self.verify_auth(&format!("{socket_id}::user::{user_data}"), auth)
    }

    /// `X-Pusher-Signature` of a webhook with this body.
    pub fn webhook_signature(&self, body: &[u8]) -> String {
        hex(&sign_bytes(self.secret.as_bytes(), body))
    }

    /// Check a signed HTTP API request: `query` is its parameters, decoded, in any order;
    /// `now_secs` is this server's Unix time.
    pub fn verify_request(
        &self,
        request: &SignedRequest<'_>,
        now_secs: u64,
    ) -> Result<(), PusherAuthError> {
        let param = |name: &'static str| {
            request
                .query
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
                .ok_or(PusherAuthError::Missing(name))
        };
        let key = param("auth_key")?;
        if key != self.key {
            return Err(PusherAuthError::UnknownKey(key.to_owned()));
        }
        let signature = param("auth_signature")?;
        let version = param("auth_version")?;
        if version != "1.0" {
            return Err(PusherAuthError::Version(version.to_owned()));
        }
        let timestamp: u64 = param("auth_timestamp")?
            .parse()
            .map_err(|_| PusherAuthError::BadTimestamp)?;
        let skew = now_secs.abs_diff(timestamp);
        if skew > MAX_CLOCK_SKEW_SECS {
            return Err(PusherAuthError::Expired(skew));
        }
        if !request.body.is_empty() {
            let md5 = hex(&Md5::digest(request.body));
            let given = param("body_md5")?;
            if !bool::from(md5.as_bytes().ct_eq(given.to_ascii_lowercase().as_bytes())) {
                return Err(PusherAuthError::BodyChanged);
            }
        }
        let text = request.string_to_sign();
        if equal_hex(&self.sign(&text), signature) {
            Ok(())
        } else {
            Err(PusherAuthError::Signature(text))
        }
    }

    /// Check `auth` = `key:HMAC(text)`.
    fn verify_auth(&self, text: &str, auth: &str) -> Result<(), PusherAuthError> {
        let (key, signature) = auth.split_once(':').ok_or(PusherAuthError::Malformed)?;
        if key != self.key {
            return Err(PusherAuthError::UnknownKey(key.to_owned()));
        }
        if equal_hex(&self.sign(text), signature) {
            Ok(())
        } else {
            Err(PusherAuthError::Signature(text.to_owned()))
        }
    }
}

/// An HTTP API request as its signature covers it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// The path without the query, e.g. `/apps/123/events`.
    pub path: &'a str,
    /// The query's parameters, decoded.
    pub query: &'a [(String, String)],
    /// The body as received.
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    /// `METHOD\nPATH\nk=v&...`: every parameter but `auth_signature`, keys lowercased
    /// and sorted, values as decoded.
    fn string_to_sign(&self) -> String {
        let mut params: Vec<(String, &str)> = self
            .query
            .iter()
            .filter(|(key, _)| !key.eq_ignore_ascii_case("auth_signature"))
            .map(|(key, value)| (key.to_ascii_lowercase(), value.as_str()))
            .collect();
        params.sort();
        let joined: Vec<String> = params
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        format!(
            "{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            self.path,
            joined.join("&")
        )
    }
}

fn sign_bytes(secret: &[u8], text: &[u8]) -> Vec<u8> {
    let mut mac = hmac_sha256(secret);
    mac.update(text);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare a computed lowercase hex digest with a given one (of either case) in
/// constant time.
fn equal_hex(expected: &str, given: &str) -> bool {
    bool::from(
        expected
            .as_bytes()
            .ct_eq(given.to_ascii_lowercase().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: PusherSecret<'static> = PusherSecret {
        key: "app-key-1234",
        secret: "app-secret-5678",
    };

    /// `Date.now() = 1765000000123`, in seconds.
    const SIGNED_AT: u64 = 1_765_000_000;

    fn query(text: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    // The vectors: npm `pusher` 5.3.4 with `Date.now = () => 1765000000123`:
    //   const token = new Token("app-key-1234", "app-secret-5678");
    //   requests.createSignedQueryString(token, {method, path, body | params});
    //   auth.getSocketSignature(pusher, token, channel, "1234.5678", data);
    //   auth.getSocketSignatureForUser(token, "1234.5678", {id: "u1", name: "Ann"});
    //   token.sign(webhookBody)

    #[test]
    fn a_trigger_signed_by_the_node_sdk_is_accepted() {
        let body = br#"{"name":"order","channels":["private-orders","news"],"data":"{\"id\":7}"}"#;
        let query = query("auth_key=app-key-1234&auth_timestamp=1765000000&auth_version=1.0&body_md5=503851d5f665cb246b1da97412fbec90&auth_signature=2c660fe0ae07916020f0555cac9554a6c80cd206f53d8b034d1525fdf3f9deae");
        let request = SignedRequest {
            method: "POST",
            path: "/apps/123/events",
            query: &query,
            body,
        };
        assert_eq!(APP.verify_request(&request, SIGNED_AT + 5), Ok(()));
        // Another body, path, method or secret: refused.
        let other_body = SignedRequest {
            body: br#"{"name":"order","channels":["news"],"data":"{}"}"#,
            ..request
        };
        assert_eq!(
            APP.verify_request(&other_body, SIGNED_AT),
            Err(PusherAuthError::BodyChanged)
        );
        let other_path = SignedRequest {
            path: "/apps/124/events",
            ..request
        };
        assert!(matches!(
            APP.verify_request(&other_path, SIGNED_AT),
            Err(PusherAuthError::Signature(text)) if text.starts_with("POST\n/apps/124/events\nauth_key=")
        ));
        let other_secret = PusherSecret {
            secret: "another",
            ..APP
        };
        assert!(matches!(
            other_secret.verify_request(&request, SIGNED_AT),
            Err(PusherAuthError::Signature(_))
        ));
    }

    #[test]
    fn a_query_with_parameters_signed_by_the_node_sdk_is_accepted_in_any_order() {
        let mut query = query("auth_key=app-key-1234&auth_timestamp=1765000000&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=faa20f7c6d606ff3df943ef20de4b6a5d3a76a3820e60d436fda65a8b00c387e");
        query.reverse();
        let request = SignedRequest {
            method: "GET",
            path: "/apps/123/channels",
            query: &query,
            body: b"",
        };
        assert_eq!(APP.verify_request(&request, SIGNED_AT), Ok(()));
        // A parameter changed after signing.
        let mut changed = query.clone();
        changed[1].1 = "subscription_count".into();
        let request = SignedRequest {
            query: &changed,
            ..request
        };
        assert!(matches!(
            APP.verify_request(&request, SIGNED_AT),
            Err(PusherAuthError::Signature(_))
        ));
    }

    #[test]
    fn requests_are_refused_for_what_they_lack_or_when_replayed() {
        let signed = query("auth_key=app-key-1234&auth_timestamp=1765000000&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=faa20f7c6d606ff3df943ef20de4b6a5d3a76a3820e60d436fda65a8b00c387e");
        let request = |query: &[(String, String)], now| {
            APP.verify_request(
                &SignedRequest {
                    method: "GET",
                    path: "/apps/123/channels",
                    query,
                    body: b"",
                },
                now,
            )
        };
        assert_eq!(
            request(&signed, SIGNED_AT + MAX_CLOCK_SKEW_SECS + 1),
            Err(PusherAuthError::Expired(MAX_CLOCK_SKEW_SECS + 1))
        );
        assert_eq!(request(&signed, SIGNED_AT - MAX_CLOCK_SKEW_SECS), Ok(()));
        for (name, error) in [
            ("auth_key", PusherAuthError::Missing("auth_key")),
            ("auth_signature", PusherAuthError::Missing("auth_signature")),
            ("auth_version", PusherAuthError::Missing("auth_version")),
            ("auth_timestamp", PusherAuthError::Missing("auth_timestamp")),
        ] {
            let without: Vec<_> = signed.iter().filter(|(k, _)| k != name).cloned().collect();
            assert_eq!(request(&without, SIGNED_AT), Err(error), "{name}");
        }
        let other_key =
            query("auth_key=nope&auth_timestamp=1765000000&auth_version=1.0&auth_signature=00");
        assert_eq!(
            request(&other_key, SIGNED_AT),
            Err(PusherAuthError::UnknownKey("nope".into()))
        );
        let v2 = query(
            "auth_key=app-key-1234&auth_timestamp=1765000000&auth_version=2.0&auth_signature=00",
        );
        assert_eq!(
            request(&v2, SIGNED_AT),
            Err(PusherAuthError::Version("2.0".into()))
        );
        let body_unsigned = SignedRequest {
            method: "POST",
            path: "/apps/123/events",
            query: &signed,
            body: b"{}",
        };
        assert_eq!(
            APP.verify_request(&body_unsigned, SIGNED_AT),
            Err(PusherAuthError::Missing("body_md5"))
        );
    }

    #[test]
    fn channel_and_user_signatures_of_the_node_sdk_are_accepted() {
        APP.verify_channel(
            "1234.5678",
            "private-orders",
            None,
            "app-key-1234:2a5ac7d63aedb2eb1211931e119f263c98eac8ef0eb58c1c0831d7a84e95ae68",
        )
        .unwrap();
        let member = r#"{"user_id":"u1","user_info":{"name":"Ann"}}"#;
        APP.verify_channel(
            "1234.5678",
            "presence-room",
            Some(member),
            "app-key-1234:ec85cc8937f4f0fc9f96e8e3c0ed80e86a6c3af74c61c888c1194976b261b561",
        )
        .unwrap();
        APP.verify_user(
            "1234.5678",
            r#"{"id":"u1","name":"Ann"}"#,
            "app-key-1234:71ecaf86dbcdf4291cb63950b63d47340505d699ae72b6e243d1c04bcd588951",
        )
        .unwrap();
        // The same signature for another socket, channel or member: refused.
        let private =
            "app-key-1234:2a5ac7d63aedb2eb1211931e119f263c98eac8ef0eb58c1c0831d7a84e95ae68";
        assert!(APP
            .verify_channel("1234.5679", "private-orders", None, private)
            .is_err());
        assert!(APP
            .verify_channel("1234.5678", "private-other", None, private)
            .is_err());
        assert!(APP
            .verify_channel(
                "1234.5678",
                "presence-room",
                Some(r#"{"user_id":"u2","user_info":{"name":"Ann"}}"#),
                "app-key-1234:ec85cc8937f4f0fc9f96e8e3c0ed80e86a6c3af74c61c888c1194976b261b561",
            )
            .is_err());
        assert_eq!(
            APP.verify_channel("1234.5678", "private-orders", None, "no-colon"),
            Err(PusherAuthError::Malformed)
        );
        assert_eq!(
            APP.verify_channel("1234.5678", "private-orders", None, "other-key:2a5a"),
            Err(PusherAuthError::UnknownKey("other-key".into()))
        );
    }

    #[test]
    fn webhooks_are_signed_as_the_node_sdk_checks_them() {
        let body =
            br#"{"time_ms":1765000000123,"events":[{"name":"channel_occupied","channel":"news"}]}"#;
        assert_eq!(
            APP.webhook_signature(body),
            "18abd2c6ef2f402ab8f081e1107d097e61048125eabc88e03a03df9dbf8f7be7"
        );
    }
}
