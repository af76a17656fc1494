//! How the hub gets wire bytes without knowing wire formats.
//!
//! Each kind of connection (a dialect over a transport) brings a [`Render`]. During one
//! fan-out the hub asks each distinct format once and hands every connection of that
//! format the same refcounted bytes (DESIGN.md principle 4: encode once, frame once).
//!
//! The encodings live here, on the hub side, not in the [`Publication`] the engines carry:
//! a [`RenderStore`] remembers them per publication for as long as something (a channel's
//! history, a send queue) still holds that publication, so live fan-out and every later
//! replay to any number of reconnecting clients share one encoding per format.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::engine::Publication;
use crate::sync::lock;

/// Identity of one wire format, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FormatId(u32);

impl FormatId {
    /// A fresh id; call once per distinct format at startup.
    pub fn unique() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Turns a publication into the exact bytes a connection of one format writes.
pub trait Render: Send + Sync {
    /// Which format this is; equal ids must render equal bytes.
    fn format(&self) -> FormatId;

    /// The complete frame(s) for `publication`, ready to write.
    fn render(&self, publication: &Publication) -> Bytes;

    /// The transport's and the dialect's names (`("websocket", "native")`): opaque labels
    /// for metrics and the operator's view of a connection, which the hub passes on
    /// without reading.
    fn kind(&self) -> (&'static str, &'static str);

    /// Whether this format shows presence member changes (a publication whose message
    /// has `member` set); formats that do not are never handed one.
    fn shows_members(&self) -> bool {
        false
    }
}

/// Shards of the store: publishes on different threads rarely meet on one lock.
const STORE_SHARDS: usize = 16;

/// Fewest entries a shard takes between two sweeps of the publications nobody holds any
/// more; a shard holding more live entries waits for as many inserts as it holds, so a
/// sweep costs O(1) per insert and dead entries never outnumber live ones by much.
const SWEEP_AFTER_INSERTS: usize = 1024;

/// Encodings of one publication, valid while the publication is alive.
struct Encodings {
    /// Keeps the publication's allocation (not the publication) while the entry exists, so
    /// its address, the key, cannot be reused by another publication meanwhile.
    publication: Weak<Publication>,
    rendered: Vec<(FormatId, Bytes)>,
}

#[derive(Default)]
struct StoreShard {
    entries: HashMap<usize, Encodings>,
    inserts: usize,
    live_at_sweep: usize,
}

/// Encodings per live publication (by identity), per format. A std mutex per shard:
/// nothing awaits under it, and it is taken once per publication and format, not per
/// recipient.
pub struct RenderStore {
    shards: Box<[Mutex<StoreShard>]>,
}

impl RenderStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            shards: (0..STORE_SHARDS)
                .map(|_| Mutex::new(StoreShard::default()))
                .collect(),
        }
    }

    /// `publication` in `renderer`'s format: rendered on first use, then shared for as
    /// long as the publication lives.
    pub fn get(&self, publication: &Arc<Publication>, renderer: &dyn Render) -> Bytes {
        let format = renderer.format();
        let key = Arc::as_ptr(publication) as usize;
        let shard = &self.shards[(key >> 4) % STORE_SHARDS];
        if let Some(entry) = lock(shard).entries.get(&key) {
            if let Some((_, bytes)) = entry.rendered.iter().find(|(f, _)| *f == format) {
                return bytes.clone();
            }
        }
        // Rendered without the lock: a racing render of the same format is harmless (equal
        // bytes), a lock held across rendering is not.
        let bytes = renderer.render(publication);
        let mut shard = lock(shard);
        shard.inserts += 1;
        if shard.inserts >= SWEEP_AFTER_INSERTS.max(shard.live_at_sweep) {
            shard.inserts = 0;
            shard
                .entries
                .retain(|_, e| e.publication.strong_count() > 0);
            shard.live_at_sweep = shard.entries.len();
        }
        let entry = shard.entries.entry(key).or_insert_with(|| Encodings {
            publication: Arc::downgrade(publication),
            rendered: Vec::with_capacity(2),
        });
        if !entry.rendered.iter().any(|(f, _)| *f == format) {
            entry.rendered.push((format, bytes.clone()));
        }
        bytes
    }

    /// Entries held, live or waiting for a sweep; for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }
}

impl Default for RenderStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Rendered bytes of one publication, per format, held locally for the length of one
/// fan-out so the shared store is consulted once per format.
pub struct RenderCache<'a> {
    publication: &'a Arc<Publication>,
    store: &'a RenderStore,
    rendered: Vec<(FormatId, Bytes)>,
}

impl<'a> RenderCache<'a> {
    /// An empty cache for `publication`, backed by `store`.
    pub fn new(publication: &'a Arc<Publication>, store: &'a RenderStore) -> Self {
        Self {
            publication,
            store,
            rendered: Vec::with_capacity(4),
        }
    }

    /// The bytes for `renderer`'s format: from this fan-out's own list without locking,
    /// else from the store (which renders each format once per publication).
    pub fn get(&mut self, renderer: &dyn Render) -> Bytes {
        let format = renderer.format();
        if let Some((_, bytes)) = self.rendered.iter().find(|(f, _)| *f == format) {
            return bytes.clone();
        }
        let bytes = self.store.get(self.publication, renderer);
        self.rendered.push((format, bytes.clone()));
        bytes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{Message, StreamPosition};
    use std::sync::atomic::AtomicUsize;

    /// A renderer that counts its calls, for tests of who renders how often.
    pub(crate) struct Counting(pub(crate) FormatId, pub(crate) AtomicUsize);

    impl Render for Counting {
        fn format(&self) -> FormatId {
            self.0
        }
        fn render(&self, _: &Publication) -> Bytes {
            self.1.fetch_add(1, Ordering::Relaxed);
            Bytes::from_static(b"frame")
        }
        fn kind(&self) -> (&'static str, &'static str) {
            ("test", "test")
        }
    }

    fn publication() -> Arc<Publication> {
        Arc::new(Publication::new(
            "a:all".into(),
            StreamPosition::empty(),
            Arc::new(Message::for_test("x")),
        ))
    }

    /// One render per publication and format, however often asked; entries of
    /// publications nobody holds any more are swept.
    #[test]
    fn renders_once_per_format_and_forgets_dead_publications() {
        let store = RenderStore::new();
        let (one, two) = (
            Counting(FormatId::unique(), AtomicUsize::new(0)),
            Counting(FormatId::unique(), AtomicUsize::new(0)),
        );
        let kept = publication();
        for _ in 0..3 {
            store.get(&kept, &one);
            store.get(&kept, &two);
        }
        assert_eq!(one.1.load(Ordering::Relaxed), 1);
        assert_eq!(two.1.load(Ordering::Relaxed), 1);
        for _ in 0..2 * SWEEP_AFTER_INSERTS * STORE_SHARDS {
            store.get(&publication(), &one);
        }
        assert!(
            store.len() <= SWEEP_AFTER_INSERTS * STORE_SHARDS + 1,
            "dead entries were swept"
        );
        store.get(&kept, &one);
        assert_eq!(
            one.1.load(Ordering::Relaxed),
            1 + 2 * SWEEP_AFTER_INSERTS * STORE_SHARDS
        );
    }
}
