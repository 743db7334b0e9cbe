//! The sandbox view: the reserved top-level names a sandbox lays the host's system trees
//! (or fresh ones) over, shown as empty directories or as the usual merged-`/usr`
//! symlinks. They exist only in the view: nothing is stored for them, and nothing can be
//! created, changed or removed through them.

use crate::{Attr, DirEntry, FileType};

/// What a reserved name is in the view.
#[derive(Debug, Clone, Copy)]
enum Node {
    Directory,
    Symlink(&'static [u8]),
}

const NODES: &[(&str, Node)] = &[
    ("bin", Node::Symlink(b"usr/bin")),
    ("dev", Node::Directory),
    ("etc", Node::Directory),
    ("lib", Node::Symlink(b"usr/lib")),
    ("lib64", Node::Symlink(b"usr/lib64")),
    ("proc", Node::Directory),
    ("run", Node::Directory),
    ("sbin", Node::Symlink(b"usr/sbin")),
    ("sys", Node::Directory),
    ("tmp", Node::Directory),
    ("usr", Node::Directory),
];

/// Inode numbers of the view's own entries: far above any the store hands out.
const FIRST_INO: u64 = u64::MAX - 64;

pub(crate) struct SandboxView {
    /// When the view was made: the times its entries show.
    created_ns: i64,
}

impl SandboxView {
    pub fn new() -> SandboxView {
        SandboxView {
            created_ns: crate::index::now_ns(),
        }
    }

    /// The inode of reserved name `name` at the top level.
    pub fn ino_of(&self, name: &[u8]) -> Option<u64> {
        NODES
            .iter()
            .position(|(n, _)| n.as_bytes() == name)
            .map(|i| FIRST_INO + i as u64)
    }

    pub fn is_reserved(&self, name: &[u8]) -> bool {
        self.ino_of(name).is_some()
    }

    pub fn owns(&self, ino: u64) -> bool {
        (FIRST_INO..FIRST_INO + NODES.len() as u64).contains(&ino)
    }

    fn node(&self, ino: u64) -> Option<Node> {
        self.owns(ino).then(|| NODES[(ino - FIRST_INO) as usize].1)
    }

    pub fn attr(&self, ino: u64) -> Option<Attr> {
        let (kind, mode, size, nlink) = match self.node(ino)? {
            Node::Directory => (FileType::Directory, 0o755, 0, 2),
            Node::Symlink(target) => (FileType::Symlink, 0o777, target.len() as u64, 1),
        };
        Some(Attr {
            ino,
            kind,
            mode,
            size,
            nlink,
            atime_ns: self.created_ns,
            mtime_ns: self.created_ns,
            ctime_ns: self.created_ns,
            hash: None,
        })
    }

    pub fn target(&self, ino: u64) -> Option<Vec<u8>> {
        match self.node(ino)? {
            Node::Symlink(target) => Some(target.to_vec()),
            Node::Directory => None,
        }
    }

    /// The top-level listing: the stored entries (minus any with a reserved name) and the
    /// view's own, sorted by name.
    pub fn merge_root(&self, stored: Vec<DirEntry>) -> Vec<DirEntry> {
        let mut entries: Vec<DirEntry> = stored
            .into_iter()
            .filter(|e| !self.is_reserved(&e.name))
            .collect();
        for (i, (name, _)) in NODES.iter().enumerate() {
            if let Some(attr) = self.attr(FIRST_INO + i as u64) {
                entries.push(DirEntry {
                    name: name.as_bytes().to_vec(),
                    attr,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_get_their_own_inodes_and_kinds() {
        let view = SandboxView::new();
        let usr = view.ino_of(b"usr").unwrap();
        let bin = view.ino_of(b"bin").unwrap();
        assert!(view.owns(usr) && view.owns(bin) && !view.owns(1));
        assert_eq!(view.attr(usr).unwrap().kind, FileType::Directory);
        assert_eq!(view.target(bin).unwrap(), b"usr/bin");
        assert!(view.ino_of(b"home").is_none());
        let names: Vec<_> = view
            .merge_root(Vec::new())
            .iter()
            .map(|e| e.name_lossy())
            .collect();
        assert_eq!(names.len(), crate::RESERVED_NAMES.len());
        for name in crate::RESERVED_NAMES {
            assert!(
                names.iter().any(|n| n == name),
                "{name} is missing from the view"
            );
        }
    }
}
