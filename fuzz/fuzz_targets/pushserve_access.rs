//! push-serve access keys: `dialect::pushserve::access_key_valid`, what a push-serve
//! client's `/ws?uid=&access_key=` is checked with, and `api::pushserve::is_pushserve`,
//! which tells push-serve's `/push?uid=&password=` from jdserver's `/push`.
//!
//! Input: a uid (first line) and an access key (the rest). Checks, for keys that never
//! expire (the default) and for expiring ones (`access_key_ttl`): no panic; no key the
//! fuzzer makes up is valid (it cannot know the signing password); a key the server
//! hands out opens its own uid and no other; a key that never expires stops opening
//! anything once `access_key_ttl` is set; `is_pushserve` is true exactly when the query
//! names both `uid` and `password`.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pushhub::auth::access_key::{access_key, access_key_valid};
use pushhub::config::PushServe;
use pushhub::dialect::pushserve::api::is_pushserve;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (uid, key) = text.split_once('\n').unwrap_or((&text, ""));
    let forever = PushServe {
        app: "demo".into(),
        password: "abc123".into(),
        addr: None,
        access_key_ttl: None,
    };
    let expiring = PushServe {
        access_key_ttl: Some(Duration::from_secs(60)),
        ..forever.clone()
    };
    for config in [&forever, &expiring] {
        assert!(
            !access_key_valid(config, uid, key),
            "a made-up key opened {uid:?}"
        );
        let issued = access_key(config, uid);
        assert!(access_key_valid(config, uid, &issued));
        assert!(!access_key_valid(config, &format!("{uid}x"), &issued));
        assert!(!access_key_valid(config, uid, &format!("{issued}A")));
    }
    assert!(!access_key_valid(
        &expiring,
        uid,
        &access_key(&forever, uid)
    ));

    let names: Vec<String> = form_urlencoded::parse(text.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    let expected = names.iter().any(|k| k == "uid") && names.iter().any(|k| k == "password");
    assert_eq!(is_pushserve(Some(&text)), expected);
});
