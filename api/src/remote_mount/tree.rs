//! Inode numbers and cached attributes. The mount numbers every path it meets, once, for
//! the mount's life (a path whose kind changes gets a new number, so the kernel never sees
//! one inode turn from a file into a directory). Attributes and directory listings are kept
//! for a short time-to-live, after which they are asked for again, so changes on the
//! server show up.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::meta::{Kind, Meta};

/// The root directory's inode number, as FUSE requires.
pub const ROOT: u64 = 1;

/// What a cached lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// The entry, fresh.
    Found(u64, Meta),
    /// The parent's fresh listing has no such name.
    Missing,
    /// Nothing fresh is known: ask the server.
    Unknown,
}

/// The path table and attribute cache.
#[derive(Debug)]
pub struct Tree {
    inner: Mutex<Inner>,
    ttl: Duration,
}

#[derive(Debug)]
struct Inner {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<String, u64>,
    next: u64,
}

#[derive(Debug)]
struct Node {
    path: String,
    /// The kind the number was given for.
    kind: Option<Kind>,
    meta: Option<(Meta, Instant)>,
    /// For directories: the names of the last listing.
    children: Option<(HashSet<String>, Instant)>,
}

impl Node {
    fn new(path: String, kind: Option<Kind>) -> Node {
        Node {
            path,
            kind,
            meta: None,
            children: None,
        }
    }
}

impl Tree {
    /// A table holding only the root; attributes stay fresh for `ttl`.
    pub fn new(ttl: Duration) -> Tree {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new("/".to_owned(), Some(Kind::Directory)));
        let mut by_path = HashMap::new();
        by_path.insert("/".to_owned(), ROOT);
        Tree {
            inner: Mutex::new(Inner {
                nodes,
                by_path,
                next: ROOT + 1,
            }),
            ttl,
        }
    }

    /// How long attributes stay fresh.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent even if a holder panicked: every change is one insert.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The path numbered `ino`.
    pub fn path(&self, ino: u64) -> Option<String> {
        self.lock().nodes.get(&ino).map(|node| node.path.clone())
    }

    /// The number of `path`, giving it one if it has none.
    pub fn ino(&self, path: &str) -> u64 {
        let mut inner = self.lock();
        match inner.by_path.get(path) {
            Some(&ino) => ino,
            None => inner.assign(path, None),
        }
    }

    /// The fresh attributes of `ino`, if any.
    pub fn fresh(&self, ino: u64, now: Instant) -> Option<Meta> {
        let inner = self.lock();
        let (meta, at) = inner.nodes.get(&ino)?.meta.as_ref()?;
        (now.duration_since(*at) < self.ttl).then(|| meta.clone())
    }

    /// What is freshly known about `name` in directory `parent`.
    pub fn cached_child(&self, parent: u64, name: &str, now: Instant) -> Cached {
        let inner = self.lock();
        let Some(dir) = inner.nodes.get(&parent) else {
            return Cached::Unknown;
        };
        let path = child_path(&dir.path, name);
        if let Some(&ino) = inner.by_path.get(&path)
            && let Some((meta, at)) = inner.nodes.get(&ino).and_then(|n| n.meta.as_ref())
            && now.duration_since(*at) < self.ttl
        {
            return Cached::Found(ino, meta.clone());
        }
        match &dir.children {
            Some((names, at)) if now.duration_since(*at) < self.ttl && !names.contains(name) => {
                Cached::Missing
            }
            _ => Cached::Unknown,
        }
    }

    /// Records `path`'s attributes as of `now` and returns its number.
    pub fn record(&self, path: &str, meta: Meta, now: Instant) -> u64 {
        self.lock().record(path, meta, now)
    }

    /// Records a directory listing (names and attributes) as of `now`; returns the entries
    /// with their numbers, in the order given.
    pub fn record_listing(
        &self,
        dir: &str,
        entries: Vec<(String, Meta)>,
        now: Instant,
    ) -> Vec<(u64, String, Meta)> {
        let mut inner = self.lock();
        let names = entries.iter().map(|(name, _)| name.clone()).collect();
        let out = entries
            .into_iter()
            .map(|(name, meta)| {
                let ino = inner.record(&child_path(dir, &name), meta.clone(), now);
                (ino, name, meta)
            })
            .collect();
        let ino = match inner.by_path.get(dir) {
            Some(&ino) => ino,
            None => inner.assign(dir, Some(Kind::Directory)),
        };
        if let Some(node) = inner.nodes.get_mut(&ino) {
            node.children = Some((names, now));
        }
        out
    }

    /// Forgets what is cached about `path` and about its parent's listing, so both are
    /// asked for again.
    pub fn invalidate(&self, path: &str) {
        let mut inner = self.lock();
        for each in [path, parent_path(path)] {
            if let Some(&ino) = inner.by_path.get(each)
                && let Some(node) = inner.nodes.get_mut(&ino)
            {
                if each == path {
                    node.meta = None;
                }
                node.children = None;
            }
        }
    }
}

impl Inner {
    fn assign(&mut self, path: &str, kind: Option<Kind>) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, Node::new(path.to_owned(), kind));
        self.by_path.insert(path.to_owned(), ino);
        ino
    }

    fn record(&mut self, path: &str, meta: Meta, now: Instant) -> u64 {
        let current = self.by_path.get(path).copied();
        let ino = match current {
            Some(ino)
                if self
                    .nodes
                    .get(&ino)
                    .is_some_and(|n| n.kind == Some(meta.kind)) =>
            {
                ino
            }
            Some(ino) if self.nodes.get(&ino).is_some_and(|n| n.kind.is_none()) => {
                if let Some(node) = self.nodes.get_mut(&ino) {
                    node.kind = Some(meta.kind);
                }
                ino
            }
            // New, or of another kind than before: a new number. The old one keeps its
            // path but no attributes, so asking for it again finds the mismatch.
            _ => {
                if let Some(old) = current.and_then(|ino| self.nodes.get_mut(&ino)) {
                    old.meta = None;
                    old.children = None;
                }
                self.assign(path, Some(meta.kind))
            }
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.meta = Some((meta, now));
        }
        ino
    }
}

/// `parent` joined with one more name.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The directory holding `path` (`/` for `/` itself).
pub fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn meta(kind: Kind, size: u64) -> Meta {
        Meta {
            kind,
            size,
            mode: 0o644,
            mtime: UNIX_EPOCH,
            hash: None,
            target: None,
        }
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
        assert_eq!(parent_path("/a/b"), "/a");
        assert_eq!(parent_path("/a"), "/");
        assert_eq!(parent_path("/"), "/");
    }

    #[test]
    fn numbers_are_stable_per_path() {
        let tree = Tree::new(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(tree.path(ROOT).as_deref(), Some("/"));
        let a = tree.record("/a", meta(Kind::File, 1), now);
        let b = tree.record("/b", meta(Kind::Directory, 0), now);
        assert!(a != b && a != ROOT && b != ROOT);
        assert_eq!(tree.record("/a", meta(Kind::File, 2), now), a);
        assert_eq!(tree.ino("/a"), a);
        assert_eq!(tree.path(a).as_deref(), Some("/a"));
        assert_eq!(tree.fresh(a, now).map(|m| m.size), Some(2));
        // A number handed out before the kind was known keeps its number once it is.
        let c = tree.ino("/c");
        assert_eq!(tree.record("/c", meta(Kind::File, 0), now), c);
    }

    #[test]
    fn a_change_of_kind_is_a_new_inode() {
        let tree = Tree::new(Duration::from_secs(1));
        let now = Instant::now();
        let file = tree.record("/x", meta(Kind::File, 1), now);
        let dir = tree.record("/x", meta(Kind::Directory, 0), now);
        assert_ne!(file, dir);
        assert_eq!(tree.ino("/x"), dir);
        assert_eq!(tree.fresh(file, now), None);
        assert_eq!(tree.path(file).as_deref(), Some("/x"));
    }

    #[test]
    fn attributes_expire() {
        let tree = Tree::new(Duration::from_secs(1));
        let then = Instant::now();
        let a = tree.record("/a", meta(Kind::File, 1), then);
        assert!(tree.fresh(a, then + Duration::from_millis(999)).is_some());
        assert!(tree.fresh(a, then + Duration::from_secs(1)).is_none());
        tree.record("/a", meta(Kind::File, 1), then);
        tree.invalidate("/a");
        assert!(tree.fresh(a, then).is_none());
    }

    #[test]
    fn listings_answer_lookups_and_misses() {
        let tree = Tree::new(Duration::from_secs(1));
        let now = Instant::now();
        let rows = tree.record_listing(
            "/",
            vec![
                ("a".to_owned(), meta(Kind::File, 5)),
                ("d".to_owned(), meta(Kind::Directory, 0)),
            ],
            now,
        );
        assert_eq!(rows.len(), 2);
        let (a, _, _) = &rows[0];
        assert_eq!(
            tree.cached_child(ROOT, "a", now),
            Cached::Found(*a, meta(Kind::File, 5))
        );
        assert_eq!(tree.cached_child(ROOT, "zz", now), Cached::Missing);
        let later = now + Duration::from_secs(2);
        assert_eq!(tree.cached_child(ROOT, "a", later), Cached::Unknown);
        assert_eq!(tree.cached_child(ROOT, "zz", later), Cached::Unknown);
        // Invalidating an entry forgets its parent's listing too.
        tree.invalidate("/a");
        assert_eq!(tree.cached_child(ROOT, "zz", now), Cached::Unknown);
        assert_eq!(tree.cached_child(999, "a", now), Cached::Unknown);
    }
}
