//! The members a joining connection was just listed, kept for a moment so that member
//! events racing its join do not tell it twice.
//!
//! A member joins a room in three steps: it starts taking the room's publications, enters
//! presence, then reads the member list its answer carries. Another member entering
//! between the first step and the third is both in that list and announced to it by a
//! `member_added` that arrives after the answer (held during the join on this node, or
//! carried from another node by the bus). Pusher's clients fire `member_added` for it a
//! second time. The joiner's view starts as the list and takes each member event in
//! order: an event that would not change it (an addition of a member it has, a removal of
//! one it lacks) is dropped, everything else passes and changes it. Kept only for
//! [`LISTED_MEMBERS_GRACE`]: past that no event that raced the list can still arrive,
//! and a room of many members would otherwise cost each connection its own copy.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// How long a joiner's list is checked against member events: much longer than a member
/// event takes to reach every node, short enough that joins in a busy large room hold
/// few copies of its list at a time.
pub const LISTED_MEMBERS_GRACE: Duration = Duration::from_secs(3);

/// A joiner's view of a room's members: a hash of each user id (8 bytes each, no copy of
/// the ids), until it expires.
pub struct ListedMembers {
    hashes: HashSet<u64>,
    hasher: RandomState,
    until: Instant,
}

impl ListedMembers {
    /// The view of a joiner just listed `users`, checked until [`LISTED_MEMBERS_GRACE`]
    /// from now.
    pub fn new<'a>(users: impl Iterator<Item = &'a str>) -> Self {
        let hasher = RandomState::new();
        let hashes = users.map(|user| hasher.hash_one(user)).collect();
        Self {
            hashes,
            hasher,
            until: Instant::now() + LISTED_MEMBERS_GRACE,
        }
    }

    /// Whether the view is past its grace at `now` (and should be dropped).
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.until
    }

    /// Take a member event (`user` joined, or left): true when it is news to the joiner,
    /// which then sees it; false when its list already said so.
    pub fn take(&mut self, user: &str, joined: bool) -> bool {
        let hash = self.hasher.hash_one(user);
        if joined {
            self.hashes.insert(hash)
        } else {
            self.hashes.remove(&hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_the_list_already_told_are_dropped_and_the_rest_change_the_view() {
        let mut view = ListedMembers::new(["a", "b"].into_iter());
        assert!(!view.take("a", true), "a was listed");
        assert!(view.take("c", true), "c is new");
        assert!(!view.take("c", true), "c was just told");
        assert!(view.take("b", false), "b was listed, now gone");
        assert!(!view.take("b", false), "b is gone already");
        assert!(view.take("b", true), "b came back");
        assert!(!view.take("z", false), "z was never listed");
    }

    #[test]
    fn a_view_expires_after_its_grace() {
        let view = ListedMembers::new(std::iter::empty());
        assert!(!view.expired(Instant::now()));
        assert!(view.expired(Instant::now() + LISTED_MEMBERS_GRACE));
    }
}
