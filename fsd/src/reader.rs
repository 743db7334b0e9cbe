//! [`FileReader`]: streams one version of a file, fetching a chunk at a time and asking the
//! blob store for the chunks ahead of a sequential reader before it needs them.

use std::io::{self, Read, Seek, SeekFrom};

use crate::Hash;
use crate::chunker::{ChunkCursor, Manifest};
use crate::store::Store;

/// How far ahead of a sequential reader chunks are asked for.
const READ_AHEAD: u64 = 8 * 1024 * 1024;
/// A read starting this close to where the previous one ended counts as sequential (a
/// mount serves a reader's requests on several threads, not always in order).
const NEAR: u64 = 2 * 1024 * 1024;

/// Reads one version of a file; implements [`Read`] and [`Seek`]. Later writes to the
/// path do not change what it returns.
pub struct FileReader {
    store: Store,
    manifest: Manifest,
    hash: Hash,
    pos: u64,
    cursor: ChunkCursor,
    /// Chunks before this index have been asked for ahead of time (see [`READ_AHEAD`]).
    prefetched: usize,
    /// Where the previous read ended: a read starting near there is sequential.
    last_end: u64,
}

impl FileReader {
    pub(crate) fn new(store: Store, manifest: Manifest, hash: Hash) -> FileReader {
        FileReader {
            store,
            manifest,
            hash,
            pos: 0,
            cursor: ChunkCursor::default(),
            prefetched: 0,
            last_end: 0,
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
        // Sequential, give or take the reordering of concurrent requests.
        let near = self.pos.abs_diff(self.last_end) <= NEAR;
        if near && self.pos > 0 {
            self.read_ahead();
        }
        let store = &self.store;
        let fetch = |hash: &Hash, len: u64| store.blob(hash, len);
        let n = self.cursor.read_at(&self.manifest, self.pos, buf, &fetch)?;
        self.pos += n as u64;
        self.last_end = self.pos;
        Ok(n)
    }
}

impl FileReader {
    /// Asks for the chunks up to [`READ_AHEAD`] bytes past the current position, half a
    /// window at a time.
    fn read_ahead(&mut self) {
        let Some(current) = self.manifest.chunk_at(self.pos) else {
            return;
        };
        let chunks = &self.manifest.chunks;
        let horizon = self.pos + READ_AHEAD / 2;
        if self.prefetched > current + 1
            && chunks
                .get(self.prefetched)
                .is_none_or(|chunk| chunk.offset > horizon)
        {
            return;
        }
        let until = self.pos + READ_AHEAD;
        let from = self.prefetched.max(current + 1);
        let mut next = from;
        while let Some(chunk) = chunks.get(next) {
            if chunk.offset >= until {
                break;
            }
            self.store.prefetch_blob(&chunk.hash, chunk.len);
            next += 1;
        }
        self.prefetched = next;
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
