//! A redb storage backend that reads the store file and keeps every write in memory.
//!
//! redb verifies a file only while opening it for writing: its integrity check walks every
//! page's checksum and then repairs, which may roll the file back to its previous commit.
//! A check must not change what it checks (`pushhub store check` on a damaged file, the
//! check `serve` runs before it decides to refuse), and copying a store of gigabytes to
//! check it would be slow and could fill the disk. So the check opens the file through
//! this backend: reads come from the file, writes (the repair's commit, the allocator
//! state) land in memory blocks laid over it, and the file is never written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::sync::lock;

/// The unit of the in-memory overlay.
const BLOCK: u64 = 4096;

/// The store file, read-only, with writes kept in memory.
#[derive(Debug)]
pub(super) struct ScratchBackend {
    file: FileBackend,
    overlay: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// Blocks written since open, by block number.
    blocks: HashMap<u64, Vec<u8>>,
    /// The length redb sees.
    len: u64,
    /// Bytes of the file below this offset are visible; above it they read as zeros
    /// (redb shrank the storage and may grow it again).
    visible: u64,
}

impl ScratchBackend {
    /// Open `path` for a check. It is opened for writing only so that redb's locks (which
    /// need a writable handle) keep a running server and a check apart; nothing is
    /// written to it.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        let file: File = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file: FileBackend::new(file).map_err(io::Error::other)?,
            overlay: Mutex::new(Overlay {
                blocks: HashMap::new(),
                len,
                visible: len,
            }),
        })
    }
}

impl Overlay {
    /// Read block `number` as redb last left it.
    fn block(&self, file: &FileBackend, number: u64) -> io::Result<Vec<u8>> {
        if let Some(block) = self.blocks.get(&number) {
            return Ok(block.clone());
        }
        let mut block = vec![0; BLOCK as usize];
        let start = number * BLOCK;
        let from_file = self.visible.saturating_sub(start).min(BLOCK) as usize;
        if from_file > 0 {
            file.read(start, &mut block[..from_file])?;
        }
        Ok(block)
    }
}

impl StorageBackend for ScratchBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(lock(&self.overlay).len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let overlay = lock(&self.overlay);
        let end = offset.saturating_add(out.len() as u64);
        if end > overlay.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {offset}..{end} past the end ({})", overlay.len),
            ));
        }
        let mut at = offset;
        while at < end {
            let number = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let take = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            let into = (at - offset) as usize;
            match overlay.blocks.get(&number) {
                Some(block) => {
                    out[into..into + take].copy_from_slice(&block[within..within + take])
                }
                None => {
                    let from_file = overlay.visible.saturating_sub(at).min(take as u64) as usize;
                    if from_file > 0 {
                        self.file.read(at, &mut out[into..into + from_file])?;
                    }
                    out[into + from_file..into + take].fill(0);
                }
            }
            at += take as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut overlay = lock(&self.overlay);
        if len < overlay.len {
            overlay.visible = overlay.visible.min(len);
            overlay.blocks.retain(|number, _| number * BLOCK < len);
            let tail = len / BLOCK;
            if let Some(block) = overlay.blocks.get_mut(&tail) {
                block[(len % BLOCK) as usize..].fill(0);
            }
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut overlay = lock(&self.overlay);
        let end = offset.saturating_add(data.len() as u64);
        let mut at = offset;
        while at < end {
            let number = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let take = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            let mut block = overlay.block(&self.file, number)?;
            let from = (at - offset) as usize;
            block[within..within + take].copy_from_slice(&data[from..from + take]);
            overlay.blocks.insert(number, block);
            at += take as u64;
        }
        overlay.len = overlay.len.max(end);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_in_memory_and_read_back_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let original: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let scratch = ScratchBackend::open(&path).unwrap();
        scratch.write(BLOCK - 2, &[9; 5]).unwrap();
        scratch.write(4 * BLOCK, &[7; 3]).unwrap();
        assert_eq!(scratch.len().unwrap(), 4 * BLOCK + 3);
        let mut all = vec![0; (4 * BLOCK + 3) as usize];
        scratch.read(0, &mut all).unwrap();
        let mut expected = original.clone();
        expected[(BLOCK - 2) as usize..(BLOCK + 3) as usize].fill(9);
        expected.resize((4 * BLOCK) as usize, 0);
        expected.extend([7; 3]);
        assert_eq!(all, expected);
        let mut past = [0; 4];
        assert!(scratch.read(4 * BLOCK, &mut past).is_err());
        scratch.set_len(BLOCK).unwrap();
        scratch.set_len(2 * BLOCK).unwrap();
        let mut regrown = vec![1; BLOCK as usize];
        scratch.read(BLOCK, &mut regrown).unwrap();
        assert!(
            regrown.iter().all(|b| *b == 0),
            "shrunk bytes read as zeros"
        );
        drop(scratch);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            original,
            "the file is untouched"
        );
    }
}
