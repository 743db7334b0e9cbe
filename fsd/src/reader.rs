//! [`FileReader`]: streams one version of a file, fetching a chunk at a time.

use std::io::{self, Read, Seek, SeekFrom};

use crate::chunker::Manifest;
use crate::store::Store;
use crate::{Error, Hash};

/// Reads one version of a file; implements [`Read`] and [`Seek`]. Later writes to the
/// path do not change what it returns.
pub struct FileReader {
    store: Store,
    manifest: Manifest,
    hash: Hash,
    pos: u64,
    cached: Option<(usize, Vec<u8>)>,
}

impl FileReader {
    pub(crate) fn new(store: Store, manifest: Manifest, hash: Hash) -> FileReader {
        FileReader {
            store,
            manifest,
            hash,
            pos: 0,
            cached: None,
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
        let index = self.manifest.chunk_at(self.pos).unwrap_or(0);
        let chunk = self.manifest.chunks[index];
        if self
            .cached
            .as_ref()
            .is_none_or(|(cached, _)| *cached != index)
        {
            let bytes = self
                .store
                .blob(&chunk.hash, chunk.len)
                .map_err(io::Error::other)?;
            if bytes.len() as u64 != chunk.len {
                return Err(io::Error::other(Error::Corrupt(format!(
                    "blob {} has the wrong size",
                    chunk.hash
                ))));
            }
            self.cached = Some((index, bytes));
        }
        let bytes = self
            .cached
            .as_ref()
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        let from = (self.pos - chunk.offset) as usize;
        let n = buf.len().min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
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
