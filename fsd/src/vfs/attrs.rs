//! What a mount remembers about inodes between requests: their attributes (the content
//! hash included, so an open file's reader knows it is current) and whether an inode has
//! no extended attributes at all. It saves a read transaction on most `getattr`, `read`
//! and `getxattr` requests.
//!
//! Nothing here may outlive the truth. Changes made elsewhere (the HTTP API, another
//! mount, a restore) are announced by the store and forget what they touched; the mount's
//! own changes go through [`AttrCache::begin`] and [`AttrCache::finish`]. A value read
//! from the store is kept only if nothing was forgotten and no change of the mount's own
//! was in progress while it was read (the cache's *epoch* did not move), so a slow reader
//! can never put back what a change has just made stale.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::Attr;
use crate::watch::Change;

#[derive(Debug, Clone)]
struct Cached {
    attr: Attr,
    /// The inode is known to have no extended attributes.
    no_xattrs: bool,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Cached>,
    /// Moves whenever anything is forgotten or a change of the mount's own starts or ends.
    epoch: u64,
    /// Changes of the mount's own in progress.
    changing: usize,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct AttrCache {
    state: Mutex<State>,
}

/// What a reader holds while it reads from the store: the epoch it started at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(Option<u64>);

/// What forgetting a change of the mount's own needs.
pub(crate) enum Forget {
    /// These inodes.
    Inodes(Vec<u64>),
    /// Everything (changes whose effects on other inodes are not known here).
    All,
}

impl AttrCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attributes of `ino`, if known.
    pub fn get(&self, ino: u64) -> Option<Attr> {
        self.lock().inodes.get(&ino).map(|c| c.attr.clone())
    }

    /// Whether `ino` is known to have no extended attributes.
    pub fn has_no_xattrs(&self, ino: u64) -> bool {
        self.lock().inodes.get(&ino).is_some_and(|c| c.no_xattrs)
    }

    /// To call before reading something to keep with [`AttrCache::keep`].
    pub fn epoch(&self) -> Epoch {
        let state = self.lock();
        Epoch((state.changing == 0).then_some(state.epoch))
    }

    /// Keeps `attr`, read from the store since `epoch`, unless it may be stale already.
    pub fn keep(&self, epoch: Epoch, attr: &Attr) {
        let mut state = self.lock();
        if epoch.0 == Some(state.epoch) {
            let no_xattrs = state
                .inodes
                .get(&attr.ino)
                .is_some_and(|c| c.no_xattrs && c.attr.ctime_ns == attr.ctime_ns);
            state.inodes.insert(
                attr.ino,
                Cached {
                    attr: attr.clone(),
                    no_xattrs,
                },
            );
        }
    }

    /// Records that `ino`, whose attributes were read since `epoch`, has no extended
    /// attributes.
    pub fn keep_no_xattrs(&self, epoch: Epoch, ino: u64) {
        let mut state = self.lock();
        if epoch.0 == Some(state.epoch)
            && let Some(cached) = state.inodes.get_mut(&ino)
        {
            cached.no_xattrs = true;
        }
    }

    /// Starts a change of the mount's own: nothing read from now until it finishes is kept.
    pub fn begin(&self) -> Epoch {
        let mut state = self.lock();
        state.changing += 1;
        state.epoch += 1;
        Epoch(Some(state.epoch))
    }

    /// Ends a change started at `epoch`: forgets what it touched and, if no other change
    /// ran meanwhile, keeps the attributes it reports (each with whether the inode was just
    /// created, and so has no extended attributes).
    pub fn finish(&self, epoch: Epoch, forget: Forget, results: &[(&Attr, bool)]) {
        let mut state = self.lock();
        state.changing -= 1;
        // A change that reports attributes left extended attributes alone.
        let had_none: Vec<bool> = results
            .iter()
            .map(|(attr, _)| state.inodes.get(&attr.ino).is_some_and(|c| c.no_xattrs))
            .collect();
        match forget {
            Forget::All => state.inodes.clear(),
            Forget::Inodes(inodes) => {
                for ino in inodes {
                    state.inodes.remove(&ino);
                }
            }
        }
        let alone = epoch.0 == Some(state.epoch) && state.changing == 0;
        for ((attr, new_inode), had_none) in results.iter().zip(had_none).filter(|_| alone) {
            let cached = Cached {
                attr: (*attr).clone(),
                no_xattrs: *new_inode || had_none,
            };
            state.inodes.insert(attr.ino, cached);
        }
        state.epoch += 1;
    }

    /// Forgets what changes made elsewhere touched.
    pub fn forget_changes(&self, changes: &[Change]) {
        let mut state = self.lock();
        for change in changes {
            match change {
                Change::Inode(ino) => {
                    state.inodes.remove(ino);
                }
                // An entry's inode is announced with it when its attributes change.
                Change::Entry { parent, .. } => {
                    state.inodes.remove(parent);
                }
            }
        }
        state.epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileType;

    fn attr(ino: u64, size: u64) -> Attr {
        Attr {
            ino,
            kind: FileType::File,
            mode: 0o644,
            size,
            nlink: 1,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            hash: None,
        }
    }

    #[test]
    fn a_value_read_across_a_change_is_not_kept() {
        let cache = AttrCache::default();
        let epoch = cache.epoch();
        cache.forget_changes(&[Change::Inode(7)]);
        cache.keep(epoch, &attr(7, 1));
        assert!(cache.get(7).is_none());

        let epoch = cache.epoch();
        let change = cache.begin();
        cache.keep(epoch, &attr(7, 1));
        cache.finish(change, Forget::Inodes(vec![7]), &[(&attr(7, 2), true)]);
        assert_eq!(cache.get(7).map(|a| a.size), Some(2));
        assert!(cache.has_no_xattrs(7));

        cache.forget_changes(&[Change::Inode(7)]);
        assert!(cache.get(7).is_none());
    }

    #[test]
    fn overlapping_changes_keep_nothing() {
        let cache = AttrCache::default();
        let first = cache.begin();
        let second = cache.begin();
        cache.finish(second, Forget::Inodes(vec![3]), &[(&attr(3, 2), false)]);
        cache.finish(first, Forget::Inodes(vec![3]), &[(&attr(3, 1), false)]);
        assert!(cache.get(3).is_none());
        let epoch = cache.epoch();
        cache.keep(epoch, &attr(3, 5));
        assert_eq!(cache.get(3).map(|a| a.size), Some(5));
        cache.finish(cache.begin(), Forget::All, &[]);
        assert!(cache.get(3).is_none());
    }
}
