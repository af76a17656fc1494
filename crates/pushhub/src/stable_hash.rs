//! A string hash every process agrees on.
//!
//! Sharding (the registry's user shards, the memory broker's stream shards, and the
//! channel-to-instance mapping a sharded Redis engine needs) must give the same answer on
//! every node and across restarts and upgrades, so it cannot use the standard library's
//! per-process random keys. FNV-1a is fully specified (any language computes the same
//! value), has no per-process key, and is fast on the short names it is given here. It is
//! not for hash tables fed by clients: it has no protection against chosen collisions.

use std::hash::Hasher;

/// The 64-bit FNV-1a hash of `s`.
pub fn stable_hash(s: &str) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(s.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed values: a change here would split a cluster's nodes (and a restarted node
    /// from its peers) over which shard holds what.
    #[test]
    fn is_the_same_in_every_process() {
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash("wms:all"), stable_hash("wms:all"));
        assert_ne!(stable_hash("wms:all"), stable_hash("wms:al"));
    }
}
