//! The on-disk content cache: one file per block, named `<hash>.<block>`, in a directory
//! that outlives the mount and may be shared by several mounts. Bounded in bytes; the least
//! recently used files go first (recency is the file's modification time, refreshed on
//! every hit, so the order survives a restart).
//!
//! A file is written under a temporary name and renamed into place, so no reader ever
//! sees half of one; and every file starts with a header holding the blake3 digest of its
//! bytes, checked on every read, so a file torn by a crash or damaged on disk is dropped
//! rather than served.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::cache::BlockKey;
use super::lru::LruIndex;

const MAGIC: &[u8; 8] = b"abxblk1\n";
/// Magic and the payload's blake3 digest.
const HEADER: usize = 8 + 32;
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this were left by a crash (younger ones may belong to a
/// mount writing right now).
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Blocks kept in a directory.
pub struct DiskCache {
    dir: PathBuf,
    index: Mutex<LruIndex<BlockKey>>,
    budget: u64,
    temp_counter: AtomicU64,
}

impl DiskCache {
    /// Opens (creating if need be) the cache in `dir`, holding at most `budget` bytes, and
    /// indexes what earlier mounts left there, oldest first.
    pub fn open(dir: &Path, budget: u64) -> io::Result<DiskCache> {
        fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        let now = SystemTime::now();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(TEMP_PREFIX) {
                let age = now.duration_since(modified).unwrap_or_default();
                if age > STALE_TEMP {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            if let Some(key) = BlockKey::parse(name)
                && metadata.is_file()
            {
                found.push((modified, key, metadata.len()));
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        let cache = DiskCache {
            dir: dir.to_owned(),
            index: Mutex::new(LruIndex::new(budget)),
            budget,
            temp_counter: AtomicU64::new(0),
        };
        for (_, key, size) in found {
            let evicted = cache.lock().insert(key, size);
            cache.delete(&evicted);
        }
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, LruIndex<BlockKey>> {
        // The index is changed by single calls that leave it consistent.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, key: &BlockKey) -> PathBuf {
        self.dir.join(key.to_string())
    }

    /// The block, if held and intact (it becomes the most recently used).
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        if !self.lock().touch(key) {
            return None;
        }
        match self.read(key) {
            Ok(Some(block)) => Some(block),
            Ok(None) => {
                tracing::warn!(block = %key, "dropping a damaged file from the content cache");
                self.forget(key);
                None
            }
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(block = %key, %error, "cannot read from the content cache");
                }
                self.forget(key);
                None
            }
        }
    }

    /// The payload of `key`'s file, `None` if its header or digest is wrong.
    fn read(&self, key: &BlockKey) -> io::Result<Option<Bytes>> {
        let mut file = File::open(self.path(key))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // Recency for the next start; a failure only costs ordering.
        let _ = file.set_modified(SystemTime::now());
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Ok(None);
        }
        let payload = &bytes[HEADER..];
        if blake3::hash(payload).as_bytes()[..] != bytes[8..HEADER] {
            return Ok(None);
        }
        Ok(Some(Bytes::from(bytes).slice(HEADER..)))
    }

    /// Keeps a block, evicting the least recently used files beyond the budget. Failures
    /// are logged, never fatal: a block not kept is fetched again.
    pub fn put(&self, key: BlockKey, block: &[u8]) {
        let size = (HEADER + block.len()) as u64;
        if size > self.budget || self.lock().touch(&key) {
            return;
        }
        if let Err(error) = self.write(&key, block) {
            tracing::warn!(block = %key, %error, "cannot write to the content cache");
            return;
        }
        let mut evicted = self.lock().insert(key, size);
        evicted.retain(|old| *old != key);
        self.delete(&evicted);
    }

    fn write(&self, key: &BlockKey, block: &[u8]) -> io::Result<()> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{key}-{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = File::create_new(&temp)?;
            file.write_all(MAGIC)?;
            file.write_all(blake3::hash(block).as_bytes())?;
            file.write_all(block)?;
            drop(file);
            fs::rename(&temp, self.path(key))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn forget(&self, key: &BlockKey) {
        self.lock().remove(key);
        let _ = fs::remove_file(self.path(key));
    }

    fn delete(&self, keys: &[BlockKey]) {
        for key in keys {
            // Already gone is fine: another mount sharing the directory may have evicted it.
            let _ = fs::remove_file(self.path(key));
        }
    }

    /// Bytes held (as indexed by this process).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> BlockKey {
        BlockKey {
            hash: blake3::hash(&[n]),
            index: 0,
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stores_and_reads_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(cache.get(&key(1)).is_none());
        cache.put(key(1), b"hello");
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&b"hello"[..]));
        assert_eq!(files(dir.path()), vec![key(1).to_string()]);
        assert_eq!(cache.bytes(), (HEADER + 5) as u64);
    }

    #[test]
    fn evicts_least_recently_used_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 3 * (HEADER as u64 + 100);
        let cache = DiskCache::open(dir.path(), budget).unwrap();
        cache.put(key(1), &[1; 100]);
        cache.put(key(2), &[2; 100]);
        cache.put(key(3), &[3; 100]);
        assert!(cache.get(&key(1)).is_some());
        cache.put(key(4), &[4; 100]);
        assert!(cache.get(&key(2)).is_none(), "the least recently used goes");
        for n in [1, 3, 4] {
            assert!(cache.get(&key(n)).is_some(), "{n} stays");
        }
        assert!(cache.bytes() <= budget);
        assert_eq!(files(dir.path()).len(), 3);
        cache.put(key(5), &vec![5; budget as usize]);
        assert!(cache.get(&key(5)).is_none(), "larger than the budget");
        assert_eq!(files(dir.path()).len(), 3);
    }

    #[test]
    fn survives_reopening_with_its_recency_order() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 3 * (HEADER as u64 + 10);
        {
            let cache = DiskCache::open(dir.path(), budget).unwrap();
            for n in 1..=3 {
                cache.put(key(n), &[n; 10]);
                // Modification times order the files on reopening.
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(cache.get(&key(1)).is_some());
        }
        let cache = DiskCache::open(dir.path(), budget).unwrap();
        assert_eq!(cache.bytes(), budget);
        cache.put(key(4), &[4; 10]);
        assert!(
            cache.get(&key(2)).is_none(),
            "2 was the least recently used"
        );
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&[1; 10][..]));
        assert_eq!(cache.get(&key(3)).as_deref(), Some(&[3; 10][..]));

        // Reopening with a smaller budget trims to it, oldest first.
        drop(cache);
        let small = DiskCache::open(dir.path(), HEADER as u64 + 10).unwrap();
        assert_eq!(files(dir.path()).len(), 1);
        assert!(small.get(&key(3)).is_some(), "the most recently used stays");
    }

    #[test]
    fn damaged_and_temporary_files_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(key(1), b"good bytes");
        let path = dir.path().join(key(1).to_string());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(cache.get(&key(1)).is_none());
        assert!(!path.exists(), "a damaged file is removed");

        // A torn write (a file cut short) and a temporary left by a crash.
        cache.put(key(2), b"0123456789");
        let path = dir.path().join(key(2).to_string());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        fs::write(
            dir.path().join(format!("{TEMP_PREFIX}{}-1-0", key(3))),
            b"x",
        )
        .unwrap();
        drop(cache);
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(3)).is_none());
    }
}
