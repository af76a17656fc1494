//! How the hub gets wire bytes without knowing wire formats.
//!
//! Each kind of connection (a dialect over a transport) brings a [`Render`]. During one
//! fan-out the hub asks each distinct format once and hands every connection of that
//! format the same refcounted bytes (DESIGN.md principle 4: encode once, frame once).

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::message::Publication;

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
}

/// Rendered bytes of one publication, per format, held locally for the length of one
/// fan-out so the publication's own (locked) cache is consulted once per format.
pub struct RenderCache<'a> {
    publication: &'a Publication,
    rendered: Vec<(FormatId, Bytes)>,
}

impl<'a> RenderCache<'a> {
    /// An empty cache for `publication`.
    pub fn new(publication: &'a Publication) -> Self {
        Self {
            publication,
            rendered: Vec::with_capacity(4),
        }
    }

    /// The bytes for `renderer`'s format: from this fan-out's own list without locking,
    /// else from the publication (which renders each format once, ever).
    pub fn get(&mut self, renderer: &dyn Render) -> Bytes {
        let format = renderer.format();
        if let Some((_, bytes)) = self.rendered.iter().find(|(f, _)| *f == format) {
            return bytes.clone();
        }
        let bytes = self.publication.rendered(renderer);
        self.rendered.push((format, bytes.clone()));
        bytes
    }
}
