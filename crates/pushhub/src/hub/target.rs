//! The push target grammar, jdserver's: `100`, `100,101`, `*`, `group1/*` (any depth,
//! `a/b/*`), and any comma-separated mix of them.

use super::{names, HubError};

/// Most items one target expression may name; larger fan-outs should use a group.
pub const MAX_TARGET_ITEMS: usize = 10_000;

/// One item of a target expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection of the app (`*`).
    All,
    /// Every connection of one user.
    User(String),
    /// Every connection whose user id starts with `group/` (`group/*`).
    Group(String),
    /// Every connection in a room (the API's `room` field; not part of the grammar).
    Room(String),
}

/// Parse a target expression into its distinct items, in the order given.
pub fn parse(expr: &str) -> Result<Vec<Target>, HubError> {
    if expr.trim().is_empty() {
        return Err(HubError::InvalidTarget("target is empty".into()));
    }
    let mut targets = Vec::new();
    for item in expr.split(',') {
        let item = item.trim();
        let target = if item.is_empty() {
            return Err(HubError::InvalidTarget(format!(
                "target {expr:?} has an empty item"
            )));
        } else if item == "*" {
            Target::All
        } else if let Some(group) = item.strip_suffix("/*") {
            if group.is_empty() || group.contains('*') || group.ends_with('/') {
                return Err(HubError::InvalidTarget(format!(
                    "group wildcard {item:?} must look like \"group/*\""
                )));
            }
            names::check_user(group)
                .map_err(|e| HubError::InvalidTarget(format!("group {group:?}: {e}")))?;
            Target::Group(group.to_owned())
        } else if item.contains('*') {
            return Err(HubError::InvalidTarget(format!(
                "{item:?}: '*' is allowed only as \"*\" or at the end of \"group/*\""
            )));
        } else {
            names::check_user(item).map_err(|e| HubError::InvalidTarget(e.to_string()))?;
            Target::User(item.to_owned())
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
        if targets.len() > MAX_TARGET_ITEMS {
            return Err(HubError::InvalidTarget(format!(
                "more than {MAX_TARGET_ITEMS} targets in one push"
            )));
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        assert_eq!(parse("100").unwrap(), [Target::User("100".into())]);
        assert_eq!(
            parse("100, 101,100").unwrap(),
            [Target::User("100".into()), Target::User("101".into())]
        );
        assert_eq!(parse("*").unwrap(), [Target::All]);
        assert_eq!(parse("group1/*").unwrap(), [Target::Group("group1".into())]);
        assert_eq!(parse("a/b/*").unwrap(), [Target::Group("a/b".into())]);
        assert_eq!(
            parse("7,g/*").unwrap(),
            [Target::User("7".into()), Target::Group("g".into())]
        );
    }

    #[test]
    fn bad_forms_are_refused() {
        for bad in [
            "", " ", "a,,b", ",", "/*", "g*", "a/*/b", "*/x", "g//*", "**",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn too_many_items() {
        let many: Vec<String> = (0..=MAX_TARGET_ITEMS).map(|i| i.to_string()).collect();
        assert!(parse(&many.join(",")).is_err());
    }
}

#[cfg(test)]
mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any expression parses into valid targets or is refused, never panics.
        #[test]
        fn arbitrary_expressions(expr in "[a-z0-9/*, \\x00-\\x1f]{0,60}") {
            if let Ok(targets) = parse(&expr) {
                prop_assert!(!targets.is_empty());
                for target in targets {
                    if let Target::User(u) | Target::Group(u) = target {
                        prop_assert!(names::check_user(&u).is_ok());
                    }
                }
            }
        }
    }
}
