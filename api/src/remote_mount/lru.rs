//! The bookkeeping behind both content caches: which keys are held, how many bytes each
//! takes, and in what order they were last used, with a byte budget. It holds no data
//! itself; inserting reports the keys that must be dropped to stay within the budget.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Keys ordered from least to most recently used, with their sizes.
#[derive(Debug)]
pub struct LruIndex<K> {
    /// Each key's size and the tick of its last use.
    entries: HashMap<K, (u64, u64)>,
    /// Ticks of last use, oldest first.
    order: BTreeMap<u64, K>,
    next_tick: u64,
    bytes: u64,
    budget: u64,
}

impl<K: Eq + Hash + Clone> LruIndex<K> {
    /// An empty index that keeps at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            bytes: 0,
            budget,
        }
    }

    /// Marks `key` as the most recently used; false if it is not held.
    pub fn touch(&mut self, key: &K) -> bool {
        let tick = self.tick();
        match self.entries.get_mut(key) {
            Some((_, last)) => {
                self.order.remove(last);
                *last = tick;
                self.order.insert(tick, key.clone());
                true
            }
            None => false,
        }
    }

    /// Adds (or replaces) `key` as the most recently used, and returns the keys evicted to
    /// stay within the budget, least recently used first. A key larger than the whole
    /// budget is not kept: it is returned itself.
    pub fn insert(&mut self, key: K, size: u64) -> Vec<K> {
        self.remove(&key);
        if size > self.budget {
            return vec![key];
        }
        let mut evicted = Vec::new();
        while self.bytes + size > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((old_size, _)) = self.entries.remove(&oldest) {
                self.bytes -= old_size;
            }
            evicted.push(oldest);
        }
        let tick = self.tick();
        self.entries.insert(key.clone(), (size, tick));
        self.order.insert(tick, key);
        self.bytes += size;
        evicted
    }

    /// Forgets `key`; false if it was not held.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.entries.remove(key) {
            Some((size, tick)) => {
                self.order.remove(&tick);
                self.bytes -= size;
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut lru = LruIndex::new(30);
        assert!(lru.insert("a", 10).is_empty());
        assert!(lru.insert("b", 10).is_empty());
        assert!(lru.insert("c", 10).is_empty());
        assert!(lru.touch(&"a"));
        // b is now the oldest, then c.
        assert_eq!(lru.insert("d", 15), vec!["b", "c"]);
        assert!(lru.contains(&"a") && lru.contains(&"d"));
        assert_eq!((lru.len(), lru.bytes()), (2, 25));
    }

    #[test]
    fn never_exceeds_the_budget() {
        let mut lru = LruIndex::new(100);
        for i in 0..1000u64 {
            lru.insert(i, i % 37 + 1);
            assert!(lru.bytes() <= 100, "{} bytes after {i}", lru.bytes());
        }
        assert_eq!(lru.insert(5000, 101), vec![5000]);
        assert!(!lru.contains(&5000));
    }

    #[test]
    fn replacing_a_key_updates_its_size() {
        let mut lru = LruIndex::new(100);
        lru.insert("a", 60);
        assert!(lru.insert("a", 80).is_empty());
        assert_eq!((lru.len(), lru.bytes()), (1, 80));
        assert!(lru.remove(&"a"));
        assert!(!lru.remove(&"a"));
        assert!(!lru.touch(&"a"));
        assert!(lru.is_empty());
        assert_eq!(lru.bytes(), 0);
    }
}
