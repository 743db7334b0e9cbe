//! The in-memory content cache: blocks of file contents keyed by content hash and block
//! number, bounded in bytes, least recently used evicted first. Content addressing makes
//! every entry valid forever: a changed file has a new hash.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use super::lru::LruIndex;

/// One block of one file version: bytes `index * BLOCK ..` of the content named `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub hash: blake3::Hash,
    pub index: u64,
}

impl fmt::Display for BlockKey {
    /// The key as a file name: `<64 hex digits>.<block number>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hash.to_hex(), self.index)
    }
}

impl BlockKey {
    /// Reads a key back from its file name; `None` for any other name.
    pub fn parse(name: &str) -> Option<BlockKey> {
        let (hex, index) = name.split_once('.')?;
        let hash = blake3::Hash::from_hex(hex).ok()?;
        let index: u64 = index.parse().ok()?;
        // Only the canonical spelling, so one key has one file.
        let key = BlockKey { hash, index };
        (key.to_string() == name).then_some(key)
    }
}

/// Blocks held in memory.
pub struct MemoryCache {
    inner: Mutex<Memory>,
}

struct Memory {
    index: LruIndex<BlockKey>,
    blocks: HashMap<BlockKey, Bytes>,
}

impl MemoryCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> MemoryCache {
        MemoryCache {
            inner: Mutex::new(Memory {
                index: LruIndex::new(budget),
                blocks: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        // Index and map are changed together under the lock, never half-way by a panic.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The block, if held (it becomes the most recently used).
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let mut memory = self.lock();
        memory.index.touch(key);
        memory.blocks.get(key).cloned()
    }

    /// Keeps a block, evicting the least recently used ones beyond the budget.
    pub fn put(&self, key: BlockKey, block: Bytes) {
        let mut memory = self.lock();
        let evicted = memory.index.insert(key, block.len() as u64);
        memory.blocks.insert(key, block);
        for old in evicted {
            memory.blocks.remove(&old);
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.lock().index.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn key(n: u8, index: u64) -> BlockKey {
        BlockKey {
            hash: blake3::hash(&[n]),
            index,
        }
    }

    #[test]
    fn keys_round_trip_through_file_names() {
        let k = key(1, 7);
        let name = k.to_string();
        assert_eq!(name.len(), 64 + 2);
        assert_eq!(BlockKey::parse(&name), Some(k));
        for bad in [
            "x",
            ".tmp-abc",
            &format!("{}.07", k.hash.to_hex()),
            &format!("{}.7", k.hash.to_hex().to_ascii_uppercase()),
            &format!("{}", k.hash.to_hex()),
        ] {
            assert_eq!(BlockKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn memory_is_bounded_and_evicts_the_oldest() {
        let cache = MemoryCache::new(100);
        cache.put(key(1, 0), Bytes::from(vec![1; 40]));
        cache.put(key(2, 0), Bytes::from(vec![2; 40]));
        assert!(cache.get(&key(1, 0)).is_some());
        cache.put(key(3, 0), Bytes::from(vec![3; 40]));
        assert!(
            cache.get(&key(2, 0)).is_none(),
            "the least recently used goes"
        );
        assert_eq!(cache.get(&key(1, 0)).as_deref(), Some(&[1; 40][..]));
        assert_eq!(cache.get(&key(3, 0)).as_deref(), Some(&[3; 40][..]));
        assert_eq!(cache.bytes(), 80);
        cache.put(key(4, 0), Bytes::from(vec![4; 101]));
        assert!(cache.get(&key(4, 0)).is_none(), "larger than the budget");
        assert_eq!(cache.bytes(), 80);
    }
}
