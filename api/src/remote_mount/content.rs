//! File contents, read in blocks: from memory, else from the disk cache, else from the
//! server (the whole file when it fits in one block, else one `Range` request per block).
//! Every block is keyed by the file's content hash, so a cached block is valid for as long
//! as the file has that hash, and for every other file with the same content.
//!
//! What the server sends is checked before it is kept: the `ETag` must name the hash being
//! read (else the file changed since its attributes were fetched), and for files of at most
//! 256 KiB, whose hash is the blake3 of their bytes, the bytes must hash to it. Larger
//! files' hashes are of their chunk list, so there the matching `ETag` is the check.
//! Threads wanting the same block wait for one fetch rather than each making their own.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard};

use bytes::Bytes;

use super::cache::{BlockKey, MemoryCache};
use super::disk::DiskCache;
use super::remote::{Error, Source};

/// Bytes per block: the unit of fetching and caching.
pub const BLOCK: u64 = 4 << 20;
/// Files up to this size are hashed as one blake3 of their bytes.
pub const SMALL_FILE: u64 = 256 * 1024;

/// One version of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRef {
    pub path: String,
    /// The content hash (absent only for empty files).
    pub hash: Option<blake3::Hash>,
    pub size: u64,
}

/// The content reader with its caches.
pub struct Content<S> {
    source: S,
    block_size: u64,
    /// Files up to this size are checked against their hash.
    small_file: u64,
    memory: MemoryCache,
    disk: Option<DiskCache>,
    in_flight: Mutex<HashSet<BlockKey>>,
    fetched: Condvar,
}

/// A claim on fetching one block; released (and waiters woken) when dropped.
struct Claim<'a, S> {
    content: &'a Content<S>,
    key: BlockKey,
}

impl<S> Drop for Claim<'_, S> {
    fn drop(&mut self) {
        self.content.in_flight().remove(&self.key);
        self.content.fetched.notify_all();
    }
}

impl<S> Content<S> {
    fn in_flight(&self) -> MutexGuard<'_, HashSet<BlockKey>> {
        // The set is changed by single inserts and removes.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S: Source> Content<S> {
    /// A reader fetching from `source`, keeping up to `memory_bytes` in memory and, when
    /// given, more on disk.
    pub fn new(source: S, memory_bytes: u64, disk: Option<DiskCache>) -> Self {
        Self::with_sizes(source, BLOCK, SMALL_FILE, memory_bytes, disk)
    }

    fn with_sizes(
        source: S,
        block_size: u64,
        small_file: u64,
        memory_bytes: u64,
        disk: Option<DiskCache>,
    ) -> Self {
        Content {
            source,
            block_size,
            small_file,
            memory: MemoryCache::new(memory_bytes),
            disk,
            in_flight: Mutex::new(HashSet::new()),
            fetched: Condvar::new(),
        }
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// Up to `len` bytes of `file` from `offset` (fewer at its end).
    pub fn read(&self, file: &FileRef, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
        let end = file.size.min(offset.saturating_add(u64::from(len)));
        if offset >= end {
            return Ok(Vec::new());
        }
        let hash = file
            .hash
            .ok_or_else(|| Error::Protocol(format!("{} has no content hash", file.path)))?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / self.block_size;
            let block_start = index * self.block_size;
            let block = self.block(file, BlockKey { hash, index })?;
            let from = (pos - block_start) as usize;
            let to = (end - block_start).min(block.len() as u64) as usize;
            if from >= to {
                return Err(Error::Protocol(format!(
                    "block {index} of {} is shorter than the file",
                    file.path
                )));
            }
            out.extend_from_slice(&block[from..to]);
            pos = block_start + to as u64;
        }
        Ok(out)
    }

    /// One block, from the first place that has it.
    fn block(&self, file: &FileRef, key: BlockKey) -> Result<Bytes, Error> {
        let _claim = loop {
            if let Some(block) = self.memory.get(&key) {
                return Ok(block);
            }
            let mut in_flight = self.in_flight();
            if in_flight.insert(key) {
                break Claim { content: self, key };
            }
            // Another thread is fetching it: wait, then look again.
            drop(
                self.fetched
                    .wait_while(in_flight, |set| set.contains(&key))
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
        };
        if let Some(block) = self.memory.get(&key) {
            return Ok(block);
        }
        if let Some(block) = self.disk.as_ref().and_then(|disk| disk.get(&key)) {
            self.memory.put(key, block.clone());
            return Ok(block);
        }
        let block = self.fetch(file, key)?;
        if let Some(disk) = &self.disk {
            disk.put(key, &block);
        }
        self.memory.put(key, block.clone());
        Ok(block)
    }

    /// One block from the source, checked.
    fn fetch(&self, file: &FileRef, key: BlockKey) -> Result<Bytes, Error> {
        let start = key.index * self.block_size;
        let end = file.size.min(start + self.block_size);
        let whole = start == 0 && end == file.size;
        let range = (!whole).then_some((start, end - 1));
        let fetched = self.source.fetch(&file.path, range, end - start)?;
        match fetched.etag {
            Some(etag) if etag == key.hash => {}
            Some(_) => return Err(Error::Changed),
            None => return Err(Error::Protocol("a read without an ETag".into())),
        }
        if fetched.body.len() as u64 != end - start {
            return Err(Error::Protocol(format!(
                "{} bytes for block {} of {} (expected {})",
                fetched.body.len(),
                key.index,
                file.path,
                end - start
            )));
        }
        if file.size <= self.small_file && blake3::hash(&fetched.body) != key.hash {
            return Err(Error::Corrupt);
        }
        Ok(Bytes::from(fetched.body))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::remote_mount::remote::Fetched;

    /// Files by path, each with the hash its ETag carries; counts requests.
    #[derive(Default)]
    struct Table {
        files: Mutex<HashMap<String, (blake3::Hash, Vec<u8>)>>,
        requests: AtomicUsize,
        ranges: Mutex<Vec<Option<(u64, u64)>>>,
        delay: Duration,
    }

    impl Table {
        fn add(&self, path: &str, bytes: &[u8], hash: blake3::Hash) -> FileRef {
            self.files
                .lock()
                .unwrap()
                .insert(path.to_owned(), (hash, bytes.to_vec()));
            FileRef {
                path: path.to_owned(),
                hash: Some(hash),
                size: bytes.len() as u64,
            }
        }
    }

    impl Source for Arc<Table> {
        fn fetch(&self, path: &str, range: Option<(u64, u64)>, _: u64) -> Result<Fetched, Error> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.ranges.lock().unwrap().push(range);
            std::thread::sleep(self.delay);
            let files = self.files.lock().unwrap();
            let (hash, bytes) = files.get(path).ok_or(Error::Api {
                status: 404,
                code: Some("not_found".into()),
                message: String::new(),
            })?;
            let body = match range {
                Some((a, b)) => bytes[a as usize..=b as usize].to_vec(),
                None => bytes.clone(),
            };
            Ok(Fetched {
                etag: Some(*hash),
                body,
            })
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn small_files_are_fetched_whole_once() {
        let table = Arc::new(Table::default());
        let bytes = pattern(1000);
        let file = table.add("/a", &bytes, blake3::hash(&bytes));
        let content = Content::new(table.clone(), 1 << 20, None);
        assert_eq!(content.read(&file, 0, 4096).unwrap(), bytes);
        assert_eq!(content.read(&file, 10, 5).unwrap(), &bytes[10..15]);
        assert_eq!(content.read(&file, 1000, 5).unwrap(), b"");
        assert_eq!(table.requests.load(Ordering::SeqCst), 1);
        assert_eq!(*table.ranges.lock().unwrap(), vec![None]);
    }

    #[test]
    fn large_files_are_fetched_in_ranged_blocks() {
        let table = Arc::new(Table::default());
        let bytes = pattern(2500);
        // A large file's hash is not the hash of its bytes; the ETag match is the check.
        let file = table.add("/big", &bytes, blake3::hash(b"chunk list"));
        let content = Content::with_sizes(table.clone(), 1000, 1000, 1 << 20, None);
        assert_eq!(content.read(&file, 900, 1200).unwrap(), &bytes[900..2100]);
        assert_eq!(content.read(&file, 0, 4000).unwrap(), bytes);
        assert_eq!(
            *table.ranges.lock().unwrap(),
            vec![Some((0, 999)), Some((1000, 1999)), Some((2000, 2499))]
        );
    }

    #[test]
    fn a_changed_or_damaged_file_is_refused_and_not_kept() {
        let table = Arc::new(Table::default());
        let old = table.add("/a", b"old", blake3::hash(b"old"));
        table.add("/a", b"new", blake3::hash(b"new"));
        let content = Content::new(table.clone(), 1 << 20, None);
        assert!(matches!(content.read(&old, 0, 10), Err(Error::Changed)));
        // A small file whose bytes do not hash to its name.
        let bad = table.add("/b", b"bytes", blake3::hash(b"other"));
        assert!(matches!(content.read(&bad, 0, 10), Err(Error::Corrupt)));
        assert!(matches!(content.read(&bad, 0, 10), Err(Error::Corrupt)));
        assert_eq!(
            table.requests.load(Ordering::SeqCst),
            3,
            "nothing was cached"
        );
    }

    #[test]
    fn concurrent_readers_share_one_fetch() {
        let table = Arc::new(Table {
            delay: Duration::from_millis(50),
            ..Table::default()
        });
        let bytes = pattern(4000);
        let file = table.add("/a", &bytes, blake3::hash(&bytes));
        let content = Arc::new(Content::new(table.clone(), 1 << 20, None));
        let readers: Vec<_> = (0..8)
            .map(|i| {
                let (content, file) = (content.clone(), file.clone());
                std::thread::spawn(move || content.read(&file, i * 100, 100).unwrap())
            })
            .collect();
        for (i, reader) in readers.into_iter().enumerate() {
            assert_eq!(reader.join().unwrap(), &bytes[i * 100..i * 100 + 100]);
        }
        assert_eq!(table.requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_disk_cache_serves_a_new_mount() {
        let dir = tempfile::tempdir().unwrap();
        let table = Arc::new(Table::default());
        let bytes = pattern(3000);
        let file = table.add("/a", &bytes, blake3::hash(&bytes));
        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let first = Content::new(table.clone(), 1 << 20, Some(disk));
        assert_eq!(first.read(&file, 0, 3000).unwrap(), bytes);
        drop(first);
        let disk = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let second = Content::new(table.clone(), 1 << 20, Some(disk));
        assert_eq!(second.read(&file, 0, 3000).unwrap(), bytes);
        assert_eq!(table.requests.load(Ordering::SeqCst), 1);
    }
}
