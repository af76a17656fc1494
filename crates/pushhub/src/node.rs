//! This process's name among the nodes of a cluster.
//!
//! Connection ids and message ids leave the process (welcome frames, API answers,
//! webhooks, stream entries other nodes read), so they must not collide with another
//! node's, nor with this node's before a restart. A random name per process, drawn at first
//! use, prefixes them: short enough to keep ids small, long enough (8 base-36 characters,
//! about 41 bits) that two live nodes practically never draw the same one.

use std::sync::OnceLock;

/// Length of a node name.
pub const NODE_ID_LEN: usize = 8;

/// This process's node name: 8 characters from `a-z0-9`.
pub fn node_id() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..NODE_ID_LEN)
            .map(|_| alphabet[fastrand::usize(..alphabet.len())] as char)
            .collect()
    })
}

/// The name of this node's connection `id` across nodes: the node's name, a dash, and the
/// id in hex (`k3x9q2ab-1f`), so names from different nodes never collide.
pub fn conn_name(id: u64) -> String {
    format!("{}-{id:x}", node_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_short_url_safe_and_fixed_for_the_process() {
        let id = node_id();
        assert_eq!(id.len(), NODE_ID_LEN);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(node_id(), id);
    }
}
