//! The presence contract for members and occupied scopes, as tests: every engine runs
//! these same functions through [`presence_suite!`] (the memory engine in
//! `memory::tests`, the Redis engine in `redis::presence::tests`), so what
//! [`super::Presence::enter`], `exit`, `members` and `scopes` promise is
//! checked the same way for all of them.
//!
//! Each function takes a fresh presence of one node; what only holds across nodes (races
//! between nodes, a dead node's members) is tested with the Redis engine alone.

use std::sync::Arc;

use super::{Entered, Left, Member, Presence};

/// One `#[tokio::test]` per contract function, each on the presence `$make` gives: an
/// expression (it may `.await`, and `return` to skip when its service is missing) yielding
/// `(guard, presence)`, the guard kept alive for the test (the Redis server, say).
macro_rules! presence_suite {
    ($make:expr) => {
        $crate::engine::presence_contract::presence_suite!(@each $make;
            a_member_is_added_by_its_first_connection_and_removed_by_its_last,
            one_member_per_user_with_the_info_of_its_first_join,
            members_are_sorted_and_plain_joins_show_no_info,
            scopes_are_counted_and_filtered_by_prefix,
            a_scope_is_occupied_by_its_first_entry_and_vacated_by_its_last_exit,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, presence) = $make;
            $crate::engine::presence_contract::$name(presence).await;
        }
    )*};
}
pub(crate) use presence_suite;

const ROOM: &str = "chat:room:presence-r";

fn member(user: &str, conns: usize, info: Option<&str>) -> Member {
    Member {
        user: user.into(),
        conns,
        info: info.map(Arc::from),
    }
}

/// `enter` tells the user's first connection in the scope only, and `exit` its last only;
/// a user who comes back is added again.
pub async fn a_member_is_added_by_its_first_connection_and_removed_by_its_last(
    presence: Arc<dyn Presence>,
) {
    let p = &presence;
    assert!(
        p.enter(ROOM, "u1", 1, 10, Some("{}"))
            .await
            .unwrap()
            .first_of_user
    );
    assert!(
        !p.enter(ROOM, "u1", 2, 11, Some("{}"))
            .await
            .unwrap()
            .first_of_user
    );
    assert!(
        p.enter(ROOM, "u2", 3, 12, Some("{}"))
            .await
            .unwrap()
            .first_of_user
    );
    assert!(
        p.enter("chat:room:presence-other", "u1", 4, 13, Some("{}"))
            .await
            .unwrap()
            .first_of_user,
        "first in another scope"
    );
    assert!(!p.exit(ROOM, "u1", 2).await.unwrap().last_of_user);
    assert!(p.exit(ROOM, "u1", 1).await.unwrap().last_of_user);
    assert!(
        p.enter(ROOM, "u1", 5, 14, Some("{}"))
            .await
            .unwrap()
            .first_of_user
    );
    assert!(p.exit(ROOM, "u1", 5).await.unwrap().last_of_user);
    assert!(p.exit(ROOM, "u2", 3).await.unwrap().last_of_user);
    assert!(p.members(ROOM).await.unwrap().is_empty());
    assert_eq!(p.connections(ROOM, "u1").await.unwrap(), 0);
    assert_eq!(
        p.members("chat:room:presence-other").await.unwrap(),
        [member("u1", 1, Some("{}"))]
    );
}

/// A user with several connections is one member counting them all, showing the info its
/// first connection joined with until its last one leaves; then a new first join's info.
pub async fn one_member_per_user_with_the_info_of_its_first_join(presence: Arc<dyn Presence>) {
    let p = &presence;
    p.enter(ROOM, "u1", 1, 10, Some(r#"{"name":"first"}"#))
        .await
        .unwrap();
    p.enter(ROOM, "u1", 2, 11, Some(r#"{"name":"second"}"#))
        .await
        .unwrap();
    p.enter(ROOM, "u1", 3, 12, Some(r#"{"name":"third"}"#))
        .await
        .unwrap();
    assert_eq!(
        p.members(ROOM).await.unwrap(),
        [member("u1", 3, Some(r#"{"name":"first"}"#))]
    );
    assert_eq!(p.users(ROOM).await.unwrap(), [("u1".to_owned(), 3)]);
    assert_eq!(p.connections(ROOM, "u1").await.unwrap(), 3);
    p.exit(ROOM, "u1", 1).await.unwrap();
    assert_eq!(
        p.members(ROOM).await.unwrap(),
        [member("u1", 2, Some(r#"{"name":"first"}"#))],
        "the first connection left, the member keeps its info"
    );
    p.exit(ROOM, "u1", 2).await.unwrap();
    p.exit(ROOM, "u1", 3).await.unwrap();
    p.enter(ROOM, "u1", 4, 13, Some(r#"{"name":"again"}"#))
        .await
        .unwrap();
    assert_eq!(
        p.members(ROOM).await.unwrap(),
        [member("u1", 1, Some(r#"{"name":"again"}"#))]
    );
}

/// Members come sorted by user id whatever the order they joined in; a user who entered
/// without info, or joined with a plain `join`, is listed without info.
pub async fn members_are_sorted_and_plain_joins_show_no_info(presence: Arc<dyn Presence>) {
    let p = &presence;
    for (conn, user) in [(1, "carol"), (2, "alice"), (3, "bob"), (4, "alice")] {
        p.enter(ROOM, user, conn, 10, Some(&format!(r#"{{"id":"{user}"}}"#)))
            .await
            .unwrap();
    }
    p.join(ROOM, "dave", 5, 10).await.unwrap();
    p.enter(ROOM, "erin", 6, 10, None).await.unwrap();
    assert_eq!(
        p.members(ROOM).await.unwrap(),
        [
            member("alice", 2, Some(r#"{"id":"alice"}"#)),
            member("bob", 1, Some(r#"{"id":"bob"}"#)),
            member("carol", 1, Some(r#"{"id":"carol"}"#)),
            member("dave", 1, None),
            member("erin", 1, None),
        ]
    );
    assert!(p
        .members("chat:room:presence-empty")
        .await
        .unwrap()
        .is_empty());
}

/// `scopes(prefix)` lists the occupied scopes starting with `prefix`, sorted, with their
/// connection counts (members' and plain joins' alike); a scope whose last connection
/// left is gone, and an app's own scope is not a room.
pub async fn scopes_are_counted_and_filtered_by_prefix(presence: Arc<dyn Presence>) {
    let p = &presence;
    p.join("chat", "u1", 1, 10).await.unwrap();
    p.enter("chat:room:presence-a", "u1", 1, 10, Some("{}"))
        .await
        .unwrap();
    p.enter("chat:room:presence-a", "u2", 2, 10, Some("{}"))
        .await
        .unwrap();
    p.enter("chat:room:presence-a", "u2", 3, 10, Some("{}"))
        .await
        .unwrap();
    p.join("chat:room:b", "u1", 1, 10).await.unwrap();
    p.join("chat:room:presence-gone", "u3", 4, 10)
        .await
        .unwrap();
    p.leave("chat:room:presence-gone", "u3", 4).await.unwrap();
    p.enter("chat:room:presence-left", "u3", 4, 10, Some("{}"))
        .await
        .unwrap();
    p.exit("chat:room:presence-left", "u3", 4).await.unwrap();
    p.join("chat:rooms:x", "u1", 1, 10).await.unwrap();
    p.join("other:room:c", "u1", 5, 10).await.unwrap();
    let counted = |list: &[(&str, usize)]| -> Vec<(String, usize)> {
        list.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    };
    assert_eq!(
        p.scopes("chat:room:").await.unwrap(),
        counted(&[("chat:room:b", 1), ("chat:room:presence-a", 3)])
    );
    assert_eq!(
        p.scopes("chat:room:presence-").await.unwrap(),
        counted(&[("chat:room:presence-a", 3)])
    );
    assert_eq!(
        p.scopes("other:room:").await.unwrap(),
        counted(&[("other:room:c", 1)])
    );
    assert!(p.scopes("chat:room:zzz").await.unwrap().is_empty());
    p.leave("chat:room:b", "u1", 1).await.unwrap();
    p.exit("chat:room:presence-a", "u2", 2).await.unwrap();
    assert_eq!(
        p.scopes("chat:room:").await.unwrap(),
        counted(&[("chat:room:presence-a", 2)])
    );
}

/// A scope's first entry, a member's or a plain one, is told it occupied the scope, and
/// its last exit that it vacated it; the entries and exits between are told neither. Two
/// users of two connections each, one entering as a member and one plainly; each user's
/// first and last connection is told too, the plain one's included.
pub async fn a_scope_is_occupied_by_its_first_entry_and_vacated_by_its_last_exit(
    presence: Arc<dyn Presence>,
) {
    let p = &presence;
    const SCOPE: &str = "chat:room:presence-occupied";
    let entered = |first_of_user, first_in_scope| Entered {
        first_of_user,
        first_in_scope,
    };
    let left = |last_of_user, last_in_scope| Left {
        last_of_user,
        last_in_scope,
    };
    p.join("chat", "plain", 1, 10).await.unwrap();
    let enter = |user: &'static str, conn: u64, info: Option<&'static str>| async move {
        p.enter(SCOPE, user, conn, 10, info).await.unwrap()
    };
    let exit =
        |user: &'static str, conn: u64| async move { p.exit(SCOPE, user, conn).await.unwrap() };
    assert_eq!(enter("plain", 1, None).await, entered(true, true));
    assert_eq!(enter("m", 2, Some("{}")).await, entered(true, false));
    assert_eq!(enter("m", 3, Some("{}")).await, entered(false, false));
    assert_eq!(enter("plain", 4, None).await, entered(false, false));
    assert_eq!(
        p.members(SCOPE).await.unwrap(),
        [member("m", 2, Some("{}")), member("plain", 2, None)]
    );
    assert_eq!(exit("plain", 1).await, left(false, false));
    assert_eq!(exit("m", 2).await, left(false, false));
    assert_eq!(exit("plain", 4).await, left(true, false));
    assert_eq!(exit("m", 3).await, left(true, true));
    assert!(p.scopes("chat:room:").await.unwrap().is_empty());
    assert_eq!(enter("m", 5, Some("{}")).await, entered(true, true));
    assert_eq!(
        p.enter("chat:room:presence-apart", "m", 5, 10, None)
            .await
            .unwrap(),
        entered(true, true),
        "another scope is occupied apart"
    );
    assert_eq!(exit("m", 5).await, left(true, true));
    assert_eq!(
        p.exit("chat:room:presence-apart", "m", 5).await.unwrap(),
        left(true, true)
    );
    assert_eq!(
        p.total("chat").await.unwrap(),
        1,
        "the app's scope is apart"
    );
}
