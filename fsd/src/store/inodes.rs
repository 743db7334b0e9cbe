//! The store's operations by inode number and entry name, as a POSIX mount needs them.
//! They share the tree primitives, the transactions and the quota checks of the path-based
//! operations in `store.rs`. Creating, removing and renaming entries are in
//! `store/logged.rs`, since a mount's batches hold them.

use crate::index::{InodeRow, Tree, check_xattr};
use crate::splice::{Edit, Overlay};
use crate::store::Store;
use crate::watch::{Change, Origin, WatchId};
use crate::{
    AgentId, Attr, DirEntry, Error, FileReader, FileType, Hash, Quota, Result, SetAttr, View,
    validate_name,
};

/// Applies `changes` to `row`, at time `now`: mode, times and a size of 0 (any other size
/// changes content, which the content edit makes).
pub(super) fn apply_attrs(row: &mut InodeRow, changes: &SetAttr, now: i64) {
    if changes.size == Some(0) && row.kind == FileType::File {
        // Emptied: the one size change that stores no content (see `set_attr_ino`).
        row.size = 0;
        row.content = None;
    }
    if let Some(mode) = changes.mode {
        row.mode = mode & 0o7777;
    }
    if let Some(atime) = changes.atime_ns {
        row.atime = atime;
    }
    if let Some(mtime) = changes.mtime_ns {
        row.mtime = mtime;
    } else if changes.size.is_some() && row.kind == FileType::File {
        // A truncate counts as a modification even when the size stays.
        row.mtime = now;
    }
    row.ctime = now;
}

/// A node to create in a directory.
#[derive(Debug, Clone, Copy)]
pub enum NewNode<'a> {
    File { mode: u32 },
    Directory { mode: u32 },
    Symlink { target: &'a [u8] },
}

/// When setting an extended attribute may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Any,
    /// Fail with [`Error::AlreadyExists`] if it exists.
    Create,
    /// Fail with [`Error::NoSuchAttribute`] unless it exists.
    Replace,
}

/// What a mount reports through `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub logical_bytes: u64,
    /// Files, directories and symlinks.
    pub entries: u64,
    pub quota: Quota,
}

const ROOT: u64 = 1;

pub(super) fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Names longer than a directory entry can hold are refused before anything else.
pub(super) fn check_name_length(name: &[u8]) -> Result<()> {
    if name.len() > crate::MAX_NAME_LEN {
        return Err(Error::NameTooLong(format!("{}...", shown(&name[..32]))));
    }
    Ok(())
}

/// Refuses names a directory entry cannot have, and the reserved names at the top level.
pub(super) fn check_new_name(parent: u64, name: &[u8]) -> Result<()> {
    check_name_length(name)?;
    validate_name(name)
        .map_err(|reason| Error::InvalidPath(format!("{:?}: {reason}", shown(name))))?;
    let reserved = crate::RESERVED_NAMES.iter().any(|r| r.as_bytes() == name);
    if parent == ROOT && reserved {
        return Err(Error::Reserved(format!("/{}", shown(name))));
    }
    Ok(())
}

/// Inode `ino`, which must be a regular file.
pub(super) fn regular_file(tree: &Tree<'_>, ino: u64) -> Result<InodeRow> {
    let row = tree
        .inode(ino)?
        .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
    if row.kind != FileType::File {
        return Err(Error::InvalidArgument(format!("inode {ino} is not a file")));
    }
    Ok(row)
}

pub(super) fn directory(tree: &Tree<'_>, ino: u64) -> Result<InodeRow> {
    let row = tree
        .inode(ino)?
        .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
    if row.kind != FileType::Directory {
        return Err(Error::NotADirectory(format!("inode {ino}")));
    }
    Ok(row)
}

impl Store {
    /// Attributes of inode `ino`.
    pub fn getattr(&self, agent: AgentId, view: &View, ino: u64) -> Result<Attr> {
        self.read_tree(agent, view, |tree| {
            Ok(tree
                .inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?
                .attr())
        })
    }

    /// The entry `name` in directory `parent`.
    pub fn lookup(&self, agent: AgentId, view: &View, parent: u64, name: &[u8]) -> Result<Attr> {
        check_name_length(name)?;
        self.read_tree(agent, view, |tree| {
            directory(tree, parent)?;
            let ino = tree
                .lookup(parent, name)?
                .ok_or_else(|| Error::NotFound(shown(name)))?;
            Ok(tree.get(ino)?.attr())
        })
    }

    /// The entries of directory `ino`, sorted by name.
    pub fn read_dir(&self, agent: AgentId, view: &View, ino: u64) -> Result<Vec<DirEntry>> {
        self.read_tree(agent, view, |tree| {
            directory(tree, ino)?;
            Ok(tree
                .children(ino)?
                .into_iter()
                .map(|(name, row)| DirEntry {
                    name,
                    attr: row.attr(),
                })
                .collect())
        })
    }

    /// The parent directory of directory `ino` (the root is its own parent).
    pub fn parent_dir(&self, agent: AgentId, ino: u64) -> Result<u64> {
        if ino == ROOT {
            return Ok(ROOT);
        }
        self.read_tree(agent, &View::Live, |tree| {
            Ok(tree.parent_of(ino)?.unwrap_or(ROOT))
        })
    }

    pub fn readlink_ino(&self, agent: AgentId, view: &View, ino: u64) -> Result<Vec<u8>> {
        self.read_tree(agent, view, |tree| {
            let row = tree
                .inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            row.target
                .ok_or_else(|| Error::InvalidArgument(format!("inode {ino} is not a symlink")))
        })
    }

    /// A reader over file `ino` as it is now in `view`.
    pub fn open_ino(&self, agent: AgentId, view: &View, ino: u64) -> Result<FileReader> {
        let (manifest, hash) = self.index().read(|tx| {
            let generation = crate::store::view_gen(tx, agent, view)?;
            let row = Tree::at(tx, agent, generation)
                .inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            if row.kind != FileType::File {
                return Err(match row.kind {
                    FileType::Directory => Error::IsADirectory(format!("inode {ino}")),
                    _ => Error::InvalidArgument(format!("inode {ino} is not a regular file")),
                });
            }
            let hash = row.content.unwrap_or_else(|| Hash::of(b""));
            Ok((tx.manifest(row.content.as_ref())?, hash))
        })?;
        Ok(FileReader::new(self.clone(), manifest, hash))
    }

    /// Makes `new_name` in `new_parent` another name for file `ino`.
    pub fn link_at(
        &self,
        agent: AgentId,
        ino: u64,
        new_parent: u64,
        new_name: &[u8],
    ) -> Result<Attr> {
        check_new_name(new_parent, new_name)?;
        self.change(agent, |tree| {
            let source = tree
                .inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            if source.kind == FileType::Directory {
                return Err(Error::IsADirectory(
                    "directories cannot be hard-linked".into(),
                ));
            }
            directory(tree, new_parent)?;
            if tree.lookup(new_parent, new_name)?.is_some() {
                return Err(Error::AlreadyExists(shown(new_name)));
            }
            let now = tree.tx.now;
            tree.insert_dentry(new_parent, new_name, ino)?;
            tree.modify(new_parent, |p| {
                p.mtime = now;
                p.ctime = now;
            })?;
            Ok(tree
                .modify(ino, |r| {
                    r.nlink += 1;
                    r.ctime = now;
                })?
                .attr())
        })
    }

    /// Changes mode, size and times of inode `ino`.
    pub fn set_attr_ino(&self, agent: AgentId, ino: u64, changes: &SetAttr) -> Result<Attr> {
        // Emptying a file (an open with O_TRUNC) stores nothing: it is made like a change of
        // mode or times, and so joins a mount's batch. Any other new size is a content edit.
        if let Some(size) = changes.size.filter(|&size| size != 0) {
            let current = self.getattr(agent, &View::Live, ino)?;
            if current.kind == FileType::File && current.size != size {
                let locate = |tree: &Tree<'_>| {
                    tree.inode(ino)?
                        .ok_or_else(|| Error::NotFound(format!("inode {ino}")))
                };
                let shown = format!("inode {ino}");
                return self.edit(agent, &locate, &shown, &Edit::Resize { size }, |r| {
                    let now = r.ctime;
                    apply_attrs(r, changes, now)
                });
            }
        }
        self.set_attrs_logged(agent, ino, changes)
    }

    /// Writes `data` at `offset` in file `ino`.
    pub fn write_ino(&self, agent: AgentId, ino: u64, offset: u64, data: &[u8]) -> Result<Attr> {
        self.write_many_ino(agent, ino, &[(offset, data)])
    }

    /// Applies several writes to file `ino` in one commit (in order: later writes win where
    /// they overlap). Only the chunks the writes touch are stored anew.
    pub fn write_many_ino(
        &self,
        agent: AgentId,
        ino: u64,
        writes: &[(u64, &[u8])],
    ) -> Result<Attr> {
        let locate = |tree: &Tree<'_>| {
            tree.inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))
        };
        let edit = Edit::Write(Overlay::new(writes.iter().copied()));
        self.edit(agent, &locate, &format!("inode {ino}"), &edit, |_| {})
    }

    /// Makes file `to` hold exactly the content of file `from`, as a whole-file copy does,
    /// by sharing its chunks: nothing is read or stored again. Returns `to`'s attributes.
    pub fn share_content_ino(&self, agent: AgentId, from: u64, to: u64) -> Result<Attr> {
        self.change(agent, |tree| {
            let source = regular_file(tree, from)?;
            regular_file(tree, to)?;
            let now = tree.tx.now;
            let row = tree.modify(to, |r| {
                r.content = source.content;
                r.size = source.size;
                r.mtime = now;
                r.ctime = now;
            })?;
            Ok(row.attr())
        })
    }

    /// The value of extended attribute `name` of inode `ino`.
    pub fn get_xattr(&self, agent: AgentId, view: &View, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.read_tree(agent, view, |tree| {
            tree.inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            tree.xattr(ino, name)?
                .ok_or_else(|| Error::NoSuchAttribute(shown(name)))
        })
    }

    pub fn list_xattrs(&self, agent: AgentId, view: &View, ino: u64) -> Result<Vec<Vec<u8>>> {
        self.read_tree(agent, view, |tree| {
            tree.inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            tree.xattr_names(ino)
        })
    }

    /// Sets extended attribute `name` of inode `ino`, as `mode` allows.
    pub fn set_xattr(
        &self,
        agent: AgentId,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        check_xattr(name, Some(value))?;
        self.change(agent, |tree| {
            tree.inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            let exists = tree.xattr(ino, name)?.is_some();
            match mode {
                XattrMode::Create if exists => return Err(Error::AlreadyExists(shown(name))),
                XattrMode::Replace if !exists => return Err(Error::NoSuchAttribute(shown(name))),
                _ => {}
            }
            tree.set_xattr(ino, name, Some(value))
        })
    }

    pub fn remove_xattr(&self, agent: AgentId, ino: u64, name: &[u8]) -> Result<()> {
        check_xattr(name, None)?;
        self.change(agent, |tree| {
            tree.inode(ino)?
                .ok_or_else(|| Error::NotFound(format!("inode {ino}")))?;
            if tree.xattr(ino, name)?.is_none() {
                return Err(Error::NoSuchAttribute(shown(name)));
            }
            tree.set_xattr(ino, name, None)
        })
    }

    /// Makes every change committed so far durable, including those a mount committed
    /// with its flush deferred (see [`Store::deferring_sync`]).
    pub fn sync(&self) -> Result<()> {
        self.index().sync()
    }

    /// Runs `f` with its commits acknowledged once they survive a killed process; they
    /// survive a power loss after the next [`Store::sync`]. This is what a mount's writes
    /// use: `close` commits, `fsync` makes durable.
    pub fn deferring_sync<T>(&self, f: impl FnOnce() -> T) -> T {
        crate::index::with_sync_deferred(f)
    }

    /// Records that inode `ino` is open. While it is, its last unlink leaves it in place
    /// without a name (readable and writable through the open handle) instead of
    /// removing it; [`Store::unpin_inode`] removes it then.
    pub fn pin_inode(&self, agent: AgentId, ino: u64) {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
        *pins.counts.entry((agent, ino)).or_default() += 1;
    }

    /// Records that one open handle of `ino` closed; removes the inode if that was the
    /// last one and no name is left. Only an inode unlinked while open costs a transaction.
    pub fn unpin_inode(&self, agent: AgentId, ino: u64) -> Result<()> {
        let orphan = {
            let mut pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
            let count = pins.counts.entry((agent, ino)).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                pins.counts.remove(&(agent, ino));
                pins.orphans.remove(&(agent, ino))
            } else {
                false
            }
        };
        if orphan {
            self.remove_orphan(agent, ino)?;
        }
        Ok(())
    }

    /// Called once a change that left pinned inode `ino` without a name has committed: the
    /// last close removes it, or, if that close came first, this does.
    pub(crate) fn orphaned(&self, agent: AgentId, ino: u64) -> Result<()> {
        let closed = {
            let mut pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
            let open = pins.counts.contains_key(&(agent, ino));
            if open {
                pins.orphans.insert((agent, ino));
            }
            !open
        };
        if closed {
            self.remove_orphan(agent, ino)?;
        }
        Ok(())
    }

    /// Ends inode `ino` if it still has no name and nothing has opened it since.
    fn remove_orphan(&self, agent: AgentId, ino: u64) -> Result<()> {
        self.change(agent, |tree| match tree.inode(ino)? {
            Some(row) if row.nlink == 0 && !self.pinned(agent).contains(&ino) => {
                tree.end_inode(ino)
            }
            _ => Ok(()),
        })
    }

    /// Inodes of `agent` that are open somewhere.
    pub(crate) fn pinned(&self, agent: AgentId) -> Vec<u64> {
        let pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.counts
            .keys()
            .filter(|(a, _)| *a == agent)
            .map(|(_, ino)| *ino)
            .collect()
    }

    /// Removes files left without a name by a process that stopped while they were open.
    /// Only the process that holds the data directory (server or mount) may call this.
    pub fn remove_orphans(&self) -> Result<u64> {
        self.index().write(|tx| tx.remove_orphans())
    }

    /// Calls `callback` with what each committed change to `agent`'s live tree touched,
    /// unless `origin` made it (see [`crate::watch`]). The callback runs on the writer's
    /// thread and must not block.
    pub fn watch(
        &self,
        agent: AgentId,
        origin: Origin,
        callback: impl Fn(&[Change]) + Send + Sync + 'static,
    ) -> WatchId {
        self.index().watchers.add(agent, origin, Box::new(callback))
    }

    pub fn unwatch(&self, id: WatchId) {
        self.index().watchers.remove(id);
    }

    /// Usage and quota, cheaply, for `statfs`.
    pub fn fs_usage(&self, agent: AgentId) -> Result<FsUsage> {
        self.index().read(|tx| {
            let usage = tx.usage(agent)?;
            Ok(FsUsage {
                logical_bytes: usage.bytes as u64,
                entries: (usage.files + usage.dirs) as u64,
                quota: tx.quota(agent)?,
            })
        })
    }
}
