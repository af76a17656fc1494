//! Where a channel lives in Redis: its meta hash, its stream and its pub/sub channel, all
//! under the configured prefix and one hash tag, so a Redis Cluster keeps the three in one
//! slot (the publish script touches them together) while different channels spread over
//! every slot.

/// The names of one channel's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelKeys {
    /// Hash with the stream's epoch (`e`), top offset (`o`), history TTL in ms (`t`) and
    /// whether a stream is kept (`h`).
    pub meta: String,
    /// The stream of kept messages; entry ids are `<offset>-0`.
    pub stream: String,
    /// The (sharded) pub/sub channel every node subscribed to the channel listens on.
    pub pubsub: String,
}

/// Builds key names from channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (escaped like channel names, so a brace in it cannot make a
    /// hash tag of its own).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: escape(prefix),
        }
    }

    /// The keys of `channel`: `<prefix>:{<channel>}` plus `:m` and `:s`.
    pub fn channel(&self, channel: &str) -> ChannelKeys {
        let base = format!("{}:{{{}}}", self.prefix, escape(channel));
        ChannelKeys {
            meta: format!("{base}:m"),
            stream: format!("{base}:s"),
            pubsub: base,
        }
    }
}

/// `text` with `%`, `{` and `}` percent-encoded: the result holds no brace, so the tag
/// around a channel name is always exactly that name (a non-empty one), and distinct
/// names stay distinct.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::util::redis_keyslot;

    #[test]
    fn a_channel_keeps_its_keys_in_one_slot_whatever_its_name() {
        let keys = Keys::new("pushhub");
        for name in [
            "wms:user:1",
            "a}b",
            "{x}",
            "}",
            "{",
            "%7B",
            "user:{}:1",
            "é:😀",
        ] {
            let k = keys.channel(name);
            let slot = redis_keyslot(k.pubsub.as_bytes());
            assert_eq!(redis_keyslot(k.meta.as_bytes()), slot, "{name}");
            assert_eq!(redis_keyslot(k.stream.as_bytes()), slot, "{name}");
        }
        assert_eq!(
            keys.channel("wms:user:1"),
            ChannelKeys {
                meta: "pushhub:{wms:user:1}:m".into(),
                stream: "pushhub:{wms:user:1}:s".into(),
                pubsub: "pushhub:{wms:user:1}".into(),
            }
        );
    }

    #[test]
    fn distinct_names_get_distinct_keys_and_channels_spread_over_slots() {
        let keys = Keys::new("p{}");
        assert_ne!(keys.channel("{").meta, keys.channel("%7B").meta);
        assert_eq!(keys.channel("a").pubsub, "p%7B%7D:{a}");
        let slots: std::collections::HashSet<u16> = (0..100)
            .map(|i| redis_keyslot(keys.channel(&format!("a:user:{i}")).meta.as_bytes()))
            .collect();
        assert!(slots.len() > 90, "{} slots", slots.len());
    }
}
