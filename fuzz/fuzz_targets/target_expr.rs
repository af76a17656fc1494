//! Push target expressions: `hub::target::parse`, what the API does with `to`/`user`
//! (`100`, `100,101`, `*`, `group1/*`, and any comma-separated mix).
//!
//! Checks: no panic; a parsed expression has 1 to `MAX_TARGET_ITEMS` distinct items, all
//! users, groups or `*` (rooms are not part of the grammar); every user and group passes
//! `names::check_user`; written back in the grammar, it parses to the same items.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pushhub::hub::names::check_user;
use pushhub::hub::target::{parse, MAX_TARGET_ITEMS};
use pushhub::hub::Target;

/// `targets` written in the target grammar.
fn write(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| match t {
            Target::All => "*".to_owned(),
            Target::User(user) => user.clone(),
            Target::Group(group) => format!("{group}/*"),
            other => panic!("the grammar has no {other:?}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fuzz_target!(|data: &[u8]| {
    let expr = String::from_utf8_lossy(data);
    let Ok(targets) = parse(&expr) else {
        return;
    };
    assert!(!targets.is_empty() && targets.len() <= MAX_TARGET_ITEMS);
    for (i, target) in targets.iter().enumerate() {
        assert!(!targets[..i].contains(target), "duplicate {target:?}");
        if let Target::User(name) | Target::Group(name) = target {
            check_user(name).expect("a parsed user or group is a valid user id");
        }
    }
    let written = write(&targets);
    assert_eq!(
        parse(&written).expect("written targets parse"),
        targets,
        "{written:?}"
    );
});
