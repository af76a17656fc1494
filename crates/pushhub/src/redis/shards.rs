//! Which of several independent Redis deployments holds a key.

use crate::stable_hash::stable_hash;

/// The shard (0..`shards`) that holds `key`: Lamping and Veach's jump consistent hash
/// over [`stable_hash`], so every node agrees, and adding an instance at the end moves
/// only about 1/n of the keys (those that move go to the new instance).
pub fn shard_of(key: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut hash = stable_hash(key);
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < shards as i64 {
        bucket = next;
        hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
    }
    bucket as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_holds_everything() {
        assert_eq!(shard_of("wms:all", 1), 0);
        assert_eq!(shard_of("wms:all", 0), 0);
    }

    /// Keys spread evenly, and a fourth instance takes about a quarter of the keys from
    /// the other three without moving any between them.
    #[test]
    fn spreads_evenly_and_moves_little_when_one_is_added() {
        let keys: Vec<String> = (0..30_000).map(|i| format!("app:user:{i}")).collect();
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for key in &keys {
            let before = shard_of(key, 3);
            counts[before] += 1;
            let after = shard_of(key, 4);
            if after != before {
                assert_eq!(after, 3, "{key} moved between old shards");
                moved += 1;
            }
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "uneven: {counts:?}");
        }
        assert!((6_500..8_500).contains(&moved), "moved {moved}");
    }

    /// Fixed values (also what the published algorithm gives over FNV-1a in any
    /// language): nodes of every version must agree on where a channel lives.
    #[test]
    fn is_the_same_in_every_process() {
        assert_eq!(
            (0..8)
                .map(|i| shard_of(&format!("k{i}"), 5))
                .collect::<Vec<_>>(),
            [4, 4, 2, 0, 0, 2, 2, 1]
        );
        assert_eq!(shard_of("wms:user:100", 16), 13);
    }
}
