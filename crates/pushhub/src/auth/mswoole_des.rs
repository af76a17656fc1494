//! MSwoole's encrypted `auth` string (seed 001), for backends that keep minting it while
//! they migrate to tokens.
//!
//! MSwoole decoded `?auth=` with `\Encrypt::undes($auth, 'kfw001-websocket')`: the key
//! right-padded with `'0'` to 24 bytes (mcrypt ignores anything past 24), Triple DES
//! (EDE3) in ECB mode, PKCS#5 padding, base64 with `+` `/` `=` written as `*` `:` `_` so
//! the string survives a URL. The plaintext is JSON: `id` (the user), `type`, `code` (the
//! room), `nickname` and `ctime` (when the backend made it, Unix seconds).
//!
//! This is not a secure credential: it has no integrity check (ECB blocks can be cut and
//! spliced), the key is shared by every backend and has little entropy, and nothing but
//! `ctime` limits replay. Apps that use it are warned about at start; docs/security.md
//! gives the way to tokens.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use des::TdesEde3;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::common::InnerInit;
use ecb::cipher::{BlockModeDecrypt, KeyInit};
use serde_json::Value;

/// Longest `auth` string accepted: far above what id, type, room, nickname and time make,
/// small enough that a hostile one costs nothing to refuse.
pub const MAX_AUTH_BYTES: usize = 4096;

/// The key length Triple DES takes; MSwoole padded shorter keys to it with `'0'`.
const KEY_BYTES: usize = 24;

/// Seconds a `ctime` may lie ahead of this server's clock (the backend's clock may run a
/// little fast), as for tokens.
const CLOCK_SKEW_SECS: u64 = crate::auth::token::LEEWAY_SECS;

/// base64 as PHP's `base64_decode` reads what `base64_encode` wrote: standard alphabet,
/// padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an `auth` string was refused. Each says what to fix, for the 403 the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesAuthError {
    /// The string is longer than [`MAX_AUTH_BYTES`].
    #[error("auth is longer than {MAX_AUTH_BYTES} bytes")]
    TooLong,
    /// Not base64 (in MSwoole's URL-safe spelling), or not whole 8-byte blocks.
    #[error("auth is not an MSwoole DES string (base64 of 8-byte blocks)")]
    NotCiphertext,
    /// The padding is wrong after decryption: made with another key, or damaged.
    #[error("auth does not decrypt with this app's DES key")]
    WrongKey,
    /// It decrypts, but not to a JSON object.
    #[error("auth does not decrypt to a JSON object")]
    NotJson,
    /// A field is missing or of the wrong type.
    #[error("auth field {0:?} is missing or not {1}")]
    BadField(&'static str, &'static str),
    /// `ctime` is older than the app accepts.
    #[error("auth expired: made {age} s ago, this app accepts {max_age} s")]
    Expired {
        /// Seconds since `ctime`.
        age: u64,
        /// The app's `max_age`.
        max_age: u64,
    },
    /// `ctime` lies in the future beyond the allowed clock skew.
    #[error("auth ctime is {0} s in the future: check the backend's clock")]
    FromTheFuture(u64),
}

impl DesAuthError {
    /// Whether the string was good once and has aged: the client needs a fresh one from its
    /// backend, not a fix.
    pub fn is_expiry(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }
}

/// What an `auth` string says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesClaims {
    /// `id`: the user id (a number or a string in the JSON).
    pub user: String,
    /// `code`: the room the user is in, when it names one.
    pub room: Option<String>,
    /// Every other field but `ctime` (`type`, `nickname`, anything the backend added),
    /// for the backend's RPC calls as MSwoole kept them with the connection.
    pub info: Option<Value>,
    /// `ctime`, Unix seconds.
    pub ctime: u64,
}

/// One app's DES key and how old an `auth` string may be.
#[derive(Clone)]
pub struct MSwooleDes {
    cipher: TdesEde3,
    max_age: Duration,
}

impl fmt::Debug for MSwooleDes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MSwooleDes")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl MSwooleDes {
    /// Decrypts with `key` as MSwoole's `Encrypt::undes` used it (padded with `'0'` to 24
    /// bytes, cut there) and accepts strings made at most `max_age` ago.
    pub fn new(key: &str, max_age: Duration) -> Self {
        let mut padded = [b'0'; KEY_BYTES];
        let used = key.len().min(KEY_BYTES);
        padded[..used].copy_from_slice(&key.as_bytes()[..used]);
        Self {
            cipher: TdesEde3::new(&padded.into()),
            max_age,
        }
    }

    /// The claims of `auth` at `now` (Unix seconds), or why it is refused.
    pub fn open(&self, auth: &str, now: u64) -> Result<DesClaims, DesAuthError> {
        let plaintext = self.decrypt(auth)?;
        let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&plaintext) else {
            return Err(DesAuthError::NotJson);
        };
        let user = match fields.remove("id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            Some(Value::Number(id)) if id.is_u64() || id.is_i64() => id.to_string(),
            _ => {
                return Err(DesAuthError::BadField(
                    "id",
                    "a non-empty string or integer",
                ))
            }
        };
        let room = match fields.remove("code") {
            None | Some(Value::Null) => None,
            Some(Value::String(code)) => Some(code).filter(|code| !code.is_empty()),
            Some(Value::Number(code)) if code.is_u64() || code.is_i64() => Some(code.to_string()),
            Some(_) => return Err(DesAuthError::BadField("code", "a string or integer")),
        };
        let ctime = match fields.remove("ctime") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(text)) => text.parse().ok(),
            _ => None,
        }
        .ok_or(DesAuthError::BadField("ctime", "Unix seconds"))?;
        self.check_age(ctime, now)?;
        Ok(DesClaims {
            user,
            room,
            info: (!fields.is_empty()).then_some(Value::Object(fields)),
            ctime,
        })
    }

    /// The plaintext of `auth`: MSwoole's URL-safe base64 undone, decrypted, unpadded.
    fn decrypt(&self, auth: &str) -> Result<Vec<u8>, DesAuthError> {
        if auth.len() > MAX_AUTH_BYTES {
            return Err(DesAuthError::TooLong);
        }
        let standard: String = auth
            .chars()
            .map(|c| match c {
                '*' => '+',
                ':' => '/',
                '_' => '=',
                other => other,
            })
            .collect();
        let ciphertext = BASE64
            .decode(standard)
            .map_err(|_| DesAuthError::NotCiphertext)?;
        if ciphertext.is_empty() || ciphertext.len() % 8 != 0 {
            return Err(DesAuthError::NotCiphertext);
        }
        let mut plaintext = ciphertext;
        let len = ecb::Decryptor::<TdesEde3>::inner_init(self.cipher.clone())
            .decrypt_padded::<Pkcs7>(&mut plaintext)
            .map_err(|_| DesAuthError::WrongKey)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
    }

    fn check_age(&self, ctime: u64, now: u64) -> Result<(), DesAuthError> {
        if ctime > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(DesAuthError::FromTheFuture(ctime - now));
        }
        let age = now.saturating_sub(ctime);
        let max_age = self.max_age.as_secs();
        if age > max_age {
            return Err(DesAuthError::Expired { age, max_age });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecb::cipher::BlockModeEncrypt;

    const NOW: u64 = 1_700_000_000;

    /// MSwoole's `Encrypt::des` in Rust, for unit tests only: the integration tests make
    /// their strings with PHP, so compatibility is never proved against this.
    fn seal(key: &str, plaintext: &str) -> String {
        let des = MSwooleDes::new(key, Duration::ZERO);
        let mut buffer = plaintext.as_bytes().to_vec();
        buffer.resize(plaintext.len() + 8, 0);
        let sealed = ecb::Encryptor::<TdesEde3>::inner_init(des.cipher)
            .encrypt_padded::<Pkcs7>(&mut buffer, plaintext.len())
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(sealed)
            .replace('+', "*")
            .replace('/', ":")
            .replace('=', "_")
    }

    fn des() -> MSwooleDes {
        MSwooleDes::new("kfw001-websocket", Duration::from_secs(3600))
    }

    #[test]
    fn the_seed_fields_become_user_room_and_info() {
        let auth = seal(
            "kfw001-websocket",
            &format!(
                r#"{{"id":1001,"type":"wechatUser","code":"r7","nickname":"Ann","ctime":{NOW}}}"#
            ),
        );
        let claims = des().open(&auth, NOW + 10).unwrap();
        assert_eq!(claims.user, "1001");
        assert_eq!(claims.room.as_deref(), Some("r7"));
        assert_eq!(
            claims.info,
            Some(serde_json::json!({"type": "wechatUser", "nickname": "Ann"}))
        );
    }

    #[test]
    fn a_string_php_made_with_mcrypt_opens() {
        // `php docs/examples/mswoole_auth.php kfw001-websocket 1001 wechatUser room-7 小明
        // 1700000000`: mcrypt's Triple DES, as MSwoole's Encrypt::des.
        let auth = "uCLaksGSXcF5swx*tcxmbNjSfJDVZvjGa24cRI1majoBN8kCxh3LMWTLxUyReT78z0dVRbG:eOT:LD0ISS1PTnzCmsSTHK790LJXi5qMQe1Pc6lMevzoF62SdAlX0U7w";
        let claims = des().open(auth, NOW).unwrap();
        assert_eq!(
            (claims.user.as_str(), claims.room.as_deref(), claims.ctime),
            ("1001", Some("room-7"), NOW)
        );
        assert_eq!(claims.info.unwrap()["nickname"], "小明");
    }

    #[test]
    fn each_fault_has_its_own_error() {
        let des = des();
        let good = format!(r#"{{"id":"7","ctime":"{NOW}"}}"#);
        assert_eq!(
            des.open("not base64!", NOW),
            Err(DesAuthError::NotCiphertext)
        );
        assert_eq!(des.open("QUJD", NOW), Err(DesAuthError::NotCiphertext));
        assert_eq!(
            des.open(&seal("another-key", &good), NOW),
            Err(DesAuthError::WrongKey)
        );
        assert_eq!(
            des.open(&seal("kfw001-websocket", "[1]"), NOW),
            Err(DesAuthError::NotJson)
        );
        let no_id = seal("kfw001-websocket", &format!(r#"{{"ctime":{NOW}}}"#));
        assert!(matches!(
            des.open(&no_id, NOW),
            Err(DesAuthError::BadField("id", _))
        ));
        let no_ctime = seal("kfw001-websocket", r#"{"id":7}"#);
        assert!(matches!(
            des.open(&no_ctime, NOW),
            Err(DesAuthError::BadField("ctime", _))
        ));
        let auth = seal("kfw001-websocket", &good);
        assert_eq!(
            des.open(&auth, NOW + 3601),
            Err(DesAuthError::Expired {
                age: 3601,
                max_age: 3600
            })
        );
        assert_eq!(
            des.open(&auth, NOW - 60),
            Err(DesAuthError::FromTheFuture(60))
        );
        assert_eq!(des.open(&auth, NOW + 3600).unwrap().user, "7");
        assert_eq!(
            des.open(&"A".repeat(MAX_AUTH_BYTES + 1), NOW),
            Err(DesAuthError::TooLong)
        );
    }

    /// Fuzz finding (`mswoole_des`, seed `regress_deep_plaintext`): 128 nested `[` sealed
    /// as an `auth`. The fuzz harness's own JSON check overflowed its 256 KiB ASAN stack;
    /// the server's parse stays within serde_json's 128 levels, so on the stack a
    /// connection task has (2 MiB), the deepest plaintext an `auth` can hold is refused
    /// and the deepest JSON serde reads opens.
    #[test]
    fn deeply_nested_plaintexts_are_refused_or_read_on_a_task_sized_stack() {
        let opened = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let deepest_sealable = "[".repeat(MAX_AUTH_BYTES * 3 / 4 - 16);
                let deep = seal("kfw001-websocket", &deepest_sealable);
                let nested = format!(
                    r#"{{"id":1,"ctime":{NOW},"x":{}{}}}"#,
                    "[".repeat(126),
                    "]".repeat(126)
                );
                let kept = seal("kfw001-websocket", &nested);
                (des().open(&deep, NOW), des().open(&kept, NOW))
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(opened.0, Err(DesAuthError::NotJson));
        assert_eq!(opened.1.unwrap().user, "1");
    }

    #[test]
    fn keys_past_24_bytes_are_cut_as_mcrypt_did() {
        let long = "kfw001-websocket-and-more-than-24";
        let auth = seal(&long[..24], &format!(r#"{{"id":1,"ctime":{NOW}}}"#));
        let claims = MSwooleDes::new(long, Duration::from_secs(60))
            .open(&auth, NOW)
            .unwrap();
        assert_eq!(claims.user, "1");
    }
}
