//! [`FileReader`]: streams one version of a file, fetching a chunk at a time.

use std::io::{self, Read, Seek, SeekFrom};

use crate::Hash;
use crate::chunker::{ChunkCursor, Manifest};
use crate::store::Store;

/// Reads one version of a file; implements [`Read`] and [`Seek`]. Later writes to the
/// path do not change what it returns.
pub struct FileReader {
    store: Store,
    manifest: Manifest,
    hash: Hash,
    pos: u64,
    cursor: ChunkCursor,
}

impl FileReader {
    pub(crate) fn new(store: Store, manifest: Manifest, hash: Hash) -> FileReader {
        FileReader {
            store,
            manifest,
            hash,
            pos: 0,
            cursor: ChunkCursor::default(),
        }
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.manifest.size
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.size == 0
    }

    /// The file's content hash.
    pub fn hash(&self) -> crate::Hash {
        self.hash
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.manifest.size || buf.is_empty() {
            return Ok(0);
        }
        let store = &self.store;
        let fetch = |hash: &Hash, len: u64| store.blob(hash, len);
        let n = self.cursor.read_at(&self.manifest, self.pos, buf, &fetch)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.manifest.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}
