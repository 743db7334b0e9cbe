//! [`Store`]: the public face of the filesystem. Path-based tree operations for the HTTP
//! API, agents and keys, snapshots, statistics, the sweep and fsck.
//!
//! Writes follow one order: chunk the content and put new blobs in the blob store, make
//! them durable, then commit the index transaction that names them. A write is
//! acknowledged only after that commit, so a crash at any point leaves at worst blob files
//! nothing names yet, which the sweep removes.
//!
//! The operations here take paths; `store/inodes.rs` has the same operations by inode
//! number for the FUSE adapter.

mod appender;
mod inodes;
mod logged;

pub(crate) use appender::Appender;
pub use inodes::{FsUsage, NewNode, XattrMode};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::blobs::{BlobStore, LocalBlobs};
use crate::chunker::{self, INLINE_MAX, Manifest};
use crate::index::{Due, Index, InodeRow, LIVE_VIEW, NewContent, Tree, Tx};
use crate::rename::Place;
use crate::splice::{self, Edit, Overlay};
use crate::{
    AgentId, AgentInfo, AgentStats, Attr, ComputeUsage, DiffEntry, DirEntry, Error, FileReader,
    FileType, FsPath, FsckReport, Hash, KeyInfo, Quota, RenameMode, Result, SetAttr, SnapshotInfo,
    StoreStats, SweepReport, View, WriteOptions,
};

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Flush blob files and the index to stable storage before acknowledging a write
    /// (survives power loss). Without it a write survives a killed process, not a crash of
    /// the machine.
    pub durable: bool,
    /// How long an unreferenced blob is kept before the sweep may remove it.
    pub sweep_grace: Duration,
    /// Commit the changes mounts make most (entries created, removed and renamed, modes
    /// and times set, content written) in batches open at most this long
    /// ([`crate::BATCH_WINDOW`] is the usual), recorded in the intent log `index.intents`
    /// until they commit (see [`crate::index`]), and apply what a killed process left
    /// there. Only for the one process that holds the data
    /// directory: the server or a local mount.
    pub batch_window: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durable: true,
            sweep_grace: Duration::from_secs(3600),
            batch_window: None,
        }
    }
}

/// A handle on one data directory. Cheap to clone; every clone shares the same index
/// connections and blob directory. Safe to use from many threads; all calls block.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Open files: see [`Store::pin_inode`].
    pins: std::sync::Mutex<Pins>,
    /// Blobs stored for content not committed yet (see `store/appender.rs`), with how many
    /// writers hold each: the sweep leaves them alone.
    held: std::sync::Mutex<std::collections::HashMap<Hash, usize>>,
    dir: PathBuf,
    index: Index,
    blobs: Box<dyn BlobStore>,
    options: StoreOptions,
}

/// Which inodes are open, and which of those have lost their last name.
#[derive(Default)]
struct Pins {
    /// Open-handle counts by (agent, inode).
    counts: std::collections::HashMap<(AgentId, u64), usize>,
    /// Open inodes unlinked while open: the last close removes them.
    orphans: std::collections::HashSet<(AgentId, u64)>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let blobs = LocalBlobs::open(&dir.join("blobs"), &dir.join("tmp"))?;
        blobs.clean_partial_writes()?;
        let index = Index::open(&dir.join("index.db"), options.durable)?;
        let batch_window = options.batch_window;
        let store = Store {
            inner: Arc::new(Inner {
                pins: Default::default(),
                held: Default::default(),
                dir: dir.to_owned(),
                index,
                blobs: Box::new(blobs),
                options,
            }),
        };
        if let Some(window) = batch_window {
            store.start_batching(window)?;
        }
        Ok(store)
    }

    /// Applies what the intent log holds and starts the thread that commits batches.
    fn start_batching(&self, window: Duration) -> Result<()> {
        let weak = Arc::downgrade(&self.inner);
        let replay: crate::index::Replay = Box::new(move |tx, record| match weak.upgrade() {
            Some(inner) => Store { inner }.replay(tx, record),
            None => Err(Error::Corrupt("the store is closed".into())),
        });
        let path = self.inner.dir.join("index.intents");
        let replayed = self.index().start_batching(&path, replay, window)?;
        if replayed > 0 {
            tracing::info!(
                log = %path.display(),
                "applied {replayed} changes a stopped process left in the intent log"
            );
        }
        let committer = self.index().committer();
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("agentbox-batch".into())
            .spawn(move || {
                while let Some(due) = committer.wait() {
                    let Some(inner) = weak.upgrade() else {
                        break;
                    };
                    match due {
                        Due::Batch => inner.index.commit_due_batch(),
                        Due::Checkpoint => inner.index.checkpoint(),
                    }
                }
            })
            .map_err(Error::io("starting the batch-committing thread"))?;
        Ok(())
    }

    /// The data directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub(crate) fn index(&self) -> &Index {
        &self.inner.index
    }

    // ----- agents and keys -----

    /// Creates an agent with an empty tree. Names are 1-64 characters of `[A-Za-z0-9_.-]`.
    pub fn create_agent(&self, name: &str) -> Result<AgentInfo> {
        self.index().write(|tx| tx.create_agent(name, None, true))
    }

    pub fn agent(&self, name: &str) -> Result<Option<AgentInfo>> {
        self.index().read(|tx| tx.agent_by_name(name))
    }

    pub fn list_agents(&self) -> Result<Vec<AgentInfo>> {
        self.index().read(|tx| tx.agents())
    }

    /// Creates `new_name` whose tree starts as `snapshot` of `source` (blobs are shared).
    pub fn fork_agent(&self, source: AgentId, snapshot: &str, new_name: &str) -> Result<AgentInfo> {
        self.index().write(|tx| {
            let snap = tx.require_snapshot(source, snapshot)?;
            let source_name = tx
                .agents()?
                .into_iter()
                .find(|a| a.id == source)
                .map(|a| a.name)
                .unwrap_or_default();
            let origin = format!("{source_name}/{}", snap.info.id);
            let agent = tx.create_agent(new_name, Some(&origin), false)?;
            tx.copy_tree(source, &snap, agent.id)?;
            Ok(agent)
        })
    }

    /// Records a key for `agent`: `key_id` is its public part, `secret_hash` the blake3 of
    /// the whole key. The key itself is never stored.
    pub fn add_key(&self, agent: AgentId, key_id: &str, secret_hash: [u8; 32]) -> Result<()> {
        self.index()
            .write(|tx| tx.add_key(agent, key_id, &secret_hash))
    }

    /// The agent owning an unrevoked key with this hash.
    pub fn agent_for_key(&self, secret_hash: [u8; 32]) -> Result<Option<AgentInfo>> {
        self.index().read(|tx| tx.agent_for_key(&secret_hash))
    }

    pub fn list_keys(&self, agent: Option<AgentId>) -> Result<Vec<KeyInfo>> {
        self.index().read(|tx| tx.keys(agent))
    }

    /// Revokes the key with this public id; false if there is none (or it was revoked).
    pub fn revoke_key(&self, key_id: &str) -> Result<bool> {
        self.index().write(|tx| tx.revoke_key(key_id))
    }

    pub fn set_quota(&self, agent: AgentId, quota: Quota) -> Result<()> {
        self.index().write(|tx| tx.set_quota(agent, quota))
    }

    // ----- reading -----

    /// Runs `f` on `agent`'s tree as `view` sees it.
    pub(crate) fn read_tree<T>(
        &self,
        agent: AgentId,
        view: &View,
        f: impl FnOnce(&Tree<'_>) -> Result<T>,
    ) -> Result<T> {
        self.index().read(|tx| {
            let generation = view_gen(tx, agent, view)?;
            f(&Tree::at(tx, agent, generation))
        })
    }

    /// Attributes of the entry at `path`. Symlinks are not followed, here or anywhere.
    pub fn stat(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<Attr> {
        self.read_tree(agent, view, |tree| Ok(tree.resolve(path)?.attr()))
    }

    /// The entries of a directory, sorted by name.
    pub fn list_dir(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<Vec<DirEntry>> {
        self.read_tree(agent, view, |tree| {
            let dir = tree.resolve(path)?;
            if dir.kind != FileType::Directory {
                return Err(Error::NotADirectory(path.to_string()));
            }
            Ok(tree
                .children(dir.ino)?
                .into_iter()
                .map(|(name, row)| DirEntry {
                    name,
                    attr: row.attr(),
                })
                .collect())
        })
    }

    /// Up to `len` bytes of a file from `offset` (fewer at the end of the file).
    pub fn read_file(
        &self,
        agent: AgentId,
        path: &FsPath,
        view: &View,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let mut reader = self.open_file(agent, path, view)?;
        let end = reader.len().min(offset.saturating_add(len));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        if offset < end {
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(offset))
                .map_err(Error::io("seeking in a file"))?;
            reader
                .take(end - offset)
                .read_to_end(&mut out)
                .map_err(Error::io(format!("reading {path}")))?;
        }
        Ok(out)
    }

    /// A reader over a file's bytes as they are now; later writes do not change what it
    /// returns.
    pub fn open_file(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<FileReader> {
        let (manifest, hash) = self.index().read(|tx| {
            let generation = view_gen(tx, agent, view)?;
            let row = Tree::at(tx, agent, generation).resolve(path)?;
            match row.kind {
                FileType::File => {}
                FileType::Directory => return Err(Error::IsADirectory(path.to_string())),
                FileType::Symlink => {
                    return Err(Error::InvalidArgument(format!(
                        "{path} is a symlink; read its target instead"
                    )));
                }
            }
            let hash = row.content.unwrap_or_else(|| Hash::of(b""));
            Ok((tx.manifest(row.content.as_ref())?, hash))
        })?;
        Ok(FileReader::new(self.clone(), manifest, hash))
    }

    /// The bytes of one blob, from the index or the blob store.
    pub(crate) fn blob(&self, hash: &Hash, len: u64) -> Result<Vec<u8>> {
        if (len as usize) < INLINE_MAX
            && let Some(bytes) = self.index().read(|tx| tx.inline_blob(hash))?
        {
            return Ok(bytes);
        }
        self.inner.blobs.get(hash)
    }

    /// Hints that blob `hash` (`len` bytes) will be read soon (see [`BlobStore::prefetch`]).
    pub(crate) fn prefetch_blob(&self, hash: &Hash, len: u64) {
        if len as usize >= INLINE_MAX {
            self.inner.blobs.prefetch(hash);
        }
    }

    pub fn readlink(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<Vec<u8>> {
        self.read_tree(agent, view, |tree| {
            let row = tree.resolve(path)?;
            row.target
                .ok_or_else(|| Error::InvalidArgument(format!("{path} is not a symlink")))
        })
    }

    // ----- writing -----

    /// Puts new chunks in the blob store (or keeps small ones for the index) and makes
    /// them durable.
    fn store_chunks(
        &self,
        produce: impl FnOnce(&mut chunker::ChunkSink<'_>) -> Result<Manifest>,
    ) -> Result<NewContent> {
        let mut inline = Vec::new();
        let mut wrote = false;
        let blobs = &self.inner.blobs;
        let manifest = produce(&mut |hash: Hash, bytes: &[u8]| {
            if bytes.len() < INLINE_MAX {
                inline.push((hash, bytes.to_vec()));
            } else {
                wrote |= blobs.put(&hash, bytes)?;
            }
            Ok(())
        })?;
        if wrote && self.inner.options.durable {
            blobs.sync()?;
        }
        Ok(NewContent { manifest, inline })
    }

    /// Runs one change to `agent`'s live tree; refused with [`Error::QuotaExceeded`] if it
    /// grows usage past a quota.
    pub(crate) fn change<T>(
        &self,
        agent: AgentId,
        f: impl FnOnce(&Tree<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut orphaned = Vec::new();
        let value = self
            .index()
            .write(|tx| self.change_tree(tx, agent, &mut orphaned, f))?;
        for ino in orphaned {
            self.orphaned(agent, ino)?;
        }
        Ok(value)
    }

    /// [`Store::change`] for a change with an intent-log record (see `store/logged.rs`),
    /// which may join the open batch. What is open decides what a last unlink does, and a
    /// replay would not know it: a change that leaves an open inode without a name is made
    /// again outside the batch.
    fn change_logged<T>(
        &self,
        agent: AgentId,
        record: &[u8],
        f: impl Fn(&Tree<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut orphaned = Vec::new();
        let done = self.index().write_logged(record, |tx| {
            let value = self.change_tree(tx, agent, &mut orphaned, &f)?;
            Ok((!tx.batched || orphaned.is_empty()).then_some(value))
        })?;
        let Some(value) = done else {
            return self.change(agent, f);
        };
        for ino in orphaned {
            self.orphaned(agent, ino)?;
        }
        Ok(value)
    }

    /// [`Store::change`] in a transaction already open (a replayed record, which never
    /// leaves an inode without a name).
    fn change_in<T>(
        &self,
        tx: &Tx<'_>,
        agent: AgentId,
        f: impl FnOnce(&Tree<'_>) -> Result<T>,
    ) -> Result<T> {
        self.change_tree(tx, agent, &mut Vec::new(), f)
    }

    /// Runs `f` on `agent`'s live tree in `tx`, checks the quota, and collects the inodes
    /// the change left open without a name in `orphaned`.
    fn change_tree<T>(
        &self,
        tx: &Tx<'_>,
        agent: AgentId,
        orphaned: &mut Vec<u64>,
        f: impl FnOnce(&Tree<'_>) -> Result<T>,
    ) -> Result<T> {
        let before = tx.usage(agent)?;
        let tree = Tree::live(tx, agent)?.with_pins(self.pinned(agent));
        let value = f(&tree)?;
        tx.check_quota(agent, before)?;
        *orphaned = tree.orphaned();
        Ok(value)
    }

    /// Writes a whole file from `data`, creating or replacing it. Nothing changes unless
    /// every byte was stored; returns the new attributes once the write is durable.
    pub fn write_file(
        &self,
        agent: AgentId,
        path: &FsPath,
        data: &mut dyn Read,
        options: &WriteOptions,
    ) -> Result<Attr> {
        path.check_writable()?;
        if path.is_root() {
            return Err(Error::IsADirectory("/".into()));
        }
        let content = self.store_chunks(|sink| chunker::split(data, options.max_size, sink))?;
        let size = content.manifest.size;
        self.change(agent, |tree| {
            let hash = tree.tx.add_content(&content, self.inner.blobs.as_ref())?;
            let (parent_path, name) = path
                .split_last()
                .ok_or_else(|| Error::IsADirectory("/".into()))?;
            let parent = if options.create_parents {
                tree.ensure_dirs(&parent_path, 0o755)?
            } else {
                tree.resolve_parent(path)?.0
            };
            let now = tree.tx.now;
            let existing = tree
                .lookup(parent.ino, name)?
                .map(|ino| tree.get(ino))
                .transpose()?;
            let row = match existing {
                Some(row) if row.kind == FileType::Directory => {
                    return Err(Error::IsADirectory(path.to_string()));
                }
                Some(row) if row.kind == FileType::File => tree.modify(row.ino, |r| {
                    r.content = hash;
                    r.size = size;
                    r.mtime = now;
                    r.ctime = now;
                })?,
                other => {
                    if let Some(symlink) = other {
                        tree.unlink(parent.ino, name, symlink.ino)?;
                    }
                    let mode = options.mode.unwrap_or(0o644);
                    tree.create(parent.ino, name, file_row(now, mode, size, hash))?
                }
            };
            Ok(row.attr())
        })
    }

    /// Writes `data` at `offset` in an existing file, extending it (with zeros across any
    /// gap) if needed. Only the chunks the range touches are stored anew.
    pub fn write_at(
        &self,
        agent: AgentId,
        path: &FsPath,
        offset: u64,
        data: &[u8],
    ) -> Result<Attr> {
        path.check_writable()?;
        self.edit_file(
            agent,
            path,
            &Edit::Write(Overlay::new([(offset, data)])),
            |_| {},
        )
    }

    /// Applies `edit` to the file at `path` and `also` to its attributes.
    fn edit_file(
        &self,
        agent: AgentId,
        path: &FsPath,
        edit: &Edit<'_>,
        also: impl Fn(&mut InodeRow),
    ) -> Result<Attr> {
        self.edit(
            agent,
            &|tree| tree.resolve(path),
            &path.to_string(),
            edit,
            also,
        )
    }

    /// Applies `edit` to the file `locate` finds and `also` to its attributes, retrying if
    /// the file changed between reading its chunk list and committing the new one.
    pub(crate) fn edit(
        &self,
        agent: AgentId,
        locate: &dyn Fn(&Tree<'_>) -> Result<InodeRow>,
        shown: &str,
        edit: &Edit<'_>,
        also: impl Fn(&mut InodeRow),
    ) -> Result<Attr> {
        loop {
            let (before, manifest) = self.index().read(|tx| {
                let row = locate(&Tree::at(tx, agent, LIVE_VIEW))?;
                if row.kind != FileType::File {
                    return Err(match row.kind {
                        FileType::Directory => Error::IsADirectory(shown.to_owned()),
                        _ => Error::InvalidArgument(format!("{shown} is not a regular file")),
                    });
                }
                let manifest = tx.manifest(row.content.as_ref())?;
                Ok((row, manifest))
            })?;
            let fetch = |hash: &Hash, len: u64| self.blob(hash, len);
            let content = self.store_chunks(|sink| splice::apply(&manifest, edit, &fetch, sink))?;
            let size = content.manifest.size;
            let done = self.change(agent, |tree| {
                let row = locate(tree)?;
                if row.ino != before.ino || row.content != before.content {
                    return Ok(None);
                }
                let hash = tree.tx.add_content(&content, self.inner.blobs.as_ref())?;
                let now = tree.tx.now;
                let row = tree.modify(row.ino, |r| {
                    r.content = hash;
                    r.size = size;
                    r.mtime = now;
                    r.ctime = now;
                    also(r);
                })?;
                Ok(Some(row.attr()))
            })?;
            if let Some(attr) = done {
                return Ok(attr);
            }
        }
    }

    /// Creates a directory; with `parents`, creates missing ancestors and accepts an
    /// existing directory.
    pub fn mkdir(&self, agent: AgentId, path: &FsPath, parents: bool, mode: u32) -> Result<Attr> {
        path.check_writable()?;
        self.change(agent, |tree| {
            if parents {
                return Ok(tree.ensure_dirs(path, mode)?.attr());
            }
            if path.is_root() {
                return Err(Error::AlreadyExists("/".into()));
            }
            let (parent, name) = tree.resolve_parent(path)?;
            if tree.lookup(parent.ino, name)?.is_some() {
                return Err(Error::AlreadyExists(path.to_string()));
            }
            Ok(tree.create(parent.ino, name, tree.dir_row(mode))?.attr())
        })
    }

    /// Removes a file, symlink or directory. A non-empty directory needs `recursive`.
    pub fn remove(&self, agent: AgentId, path: &FsPath, recursive: bool) -> Result<()> {
        if path.is_root() {
            return Err(Error::InvalidArgument(
                "the root directory cannot be removed".into(),
            ));
        }
        self.change(agent, |tree| {
            let (parent, name) = tree.resolve_parent(path)?;
            let ino = tree
                .lookup(parent.ino, name)?
                .ok_or_else(|| Error::NotFound(path.to_string()))?;
            let row = tree.get(ino)?;
            if row.kind == FileType::Directory && tree.has_children(ino)? {
                if !recursive {
                    return Err(Error::DirectoryNotEmpty(path.to_string()));
                }
                tree.clear_dir(ino)?;
            }
            tree.unlink(parent.ino, name, ino)
        })
    }

    pub fn rename(
        &self,
        agent: AgentId,
        from: &FsPath,
        to: &FsPath,
        mode: RenameMode,
    ) -> Result<()> {
        to.check_writable()?;
        if from.is_root() || to.is_root() {
            return Err(Error::InvalidArgument(
                "the root directory cannot be moved or replaced".into(),
            ));
        }
        self.change(agent, |tree| {
            let (from_dir, from_name) = tree.resolve_parent(from)?;
            if tree.lookup(from_dir.ino, from_name)?.is_none() {
                return Err(Error::NotFound(from.to_string()));
            }
            let (to_dir, to_name) = tree.resolve_parent(to)?;
            let from = Place {
                dir: from_dir.ino,
                name: from_name,
                shown: from.to_string(),
            };
            let to = Place {
                dir: to_dir.ino,
                name: to_name,
                shown: to.to_string(),
            };
            crate::rename::rename(tree, &from, &to, mode)
        })
    }

    pub fn symlink(&self, agent: AgentId, target: &[u8], link: &FsPath) -> Result<Attr> {
        link.check_writable()?;
        if target.is_empty() || target.contains(&0) || target.len() > 4096 {
            return Err(Error::InvalidArgument(
                "a symlink target is 1-4096 bytes without NUL".into(),
            ));
        }
        self.change(agent, |tree| {
            let (parent, name) = tree.resolve_parent(link)?;
            if tree.lookup(parent.ino, name)?.is_some() {
                return Err(Error::AlreadyExists(link.to_string()));
            }
            let now = tree.tx.now;
            let row = InodeRow {
                kind: FileType::Symlink,
                mode: 0o777,
                size: target.len() as u64,
                nlink: 1,
                target: Some(target.to_vec()),
                ..file_row(now, 0o777, 0, None)
            };
            Ok(tree.create(parent.ino, name, row)?.attr())
        })
    }

    /// Makes `new` another name for the file at `existing`.
    pub fn link(&self, agent: AgentId, existing: &FsPath, new: &FsPath) -> Result<Attr> {
        new.check_writable()?;
        self.change(agent, |tree| {
            let source = tree.resolve(existing)?;
            if source.kind == FileType::Directory {
                return Err(Error::IsADirectory(format!(
                    "{existing}: directories cannot be hard-linked"
                )));
            }
            let (parent, name) = tree.resolve_parent(new)?;
            if tree.lookup(parent.ino, name)?.is_some() {
                return Err(Error::AlreadyExists(new.to_string()));
            }
            let now = tree.tx.now;
            tree.insert_dentry(parent.ino, name, source.ino)?;
            tree.modify(parent.ino, |p| {
                p.mtime = now;
                p.ctime = now;
            })?;
            Ok(tree
                .modify(source.ino, |r| {
                    r.nlink += 1;
                    r.ctime = now;
                })?
                .attr())
        })
    }

    /// Changes mode, size (truncate or extend with zeros) and times of the entry at
    /// `path` (the same as [`Store::set_attr_ino`] on the inode found there).
    pub fn set_attr(&self, agent: AgentId, path: &FsPath, changes: &SetAttr) -> Result<Attr> {
        path.check_writable()?;
        let ino = self.stat(agent, path, &View::Live)?.ino;
        self.set_attr_ino(agent, ino, changes)
    }

    // ----- snapshots -----

    /// Freezes the agent's whole tree. Costs the same for ten files or a million.
    pub fn create_snapshot(&self, agent: AgentId, name: Option<&str>) -> Result<SnapshotInfo> {
        self.index()
            .write(|tx| Ok(tx.create_snapshot(agent, name)?.info))
    }

    pub fn list_snapshots(&self, agent: AgentId) -> Result<Vec<SnapshotInfo>> {
        self.index()
            .read(|tx| Ok(tx.snapshots(agent)?.into_iter().map(|s| s.info).collect()))
    }

    /// Looks a snapshot up by id or name.
    pub fn snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<SnapshotInfo> {
        self.index()
            .read(|tx| Ok(tx.require_snapshot(agent, id_or_name)?.info))
    }

    pub fn delete_snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<()> {
        self.index().write(|tx| {
            let snapshot = tx.require_snapshot(agent, id_or_name)?;
            tx.delete_snapshot(agent, &snapshot)
        })
    }

    /// Makes the live tree exactly what it was in the snapshot.
    pub fn restore_snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<()> {
        let open = self.pinned(agent);
        let revived = self.index().write(|tx| {
            let snapshot = tx.require_snapshot(agent, id_or_name)?;
            let live = Tree::live(tx, agent)?;
            // What is open now and not in the snapshot lives on without a name until it is
            // closed, as after an unlink, with its content and extended attributes.
            let mut held = Vec::new();
            for ino in open {
                if let Some(row) = live.inode(ino)? {
                    let manifest = tx.manifest(row.content.as_ref())?;
                    let mut xattrs = Vec::new();
                    for name in live.xattr_names(ino)? {
                        if let Some(value) = live.xattr(ino, &name)? {
                            xattrs.push((name, value));
                        }
                    }
                    held.push((row, manifest, xattrs));
                }
            }
            tx.restore_snapshot(agent, live.generation(), &snapshot)?;
            let live = Tree::live(tx, agent)?;
            let mut revived = Vec::new();
            for (row, manifest, xattrs) in held {
                if live.inode(row.ino)?.is_some() {
                    // The snapshot has a version of it: the open handles see that one.
                    continue;
                }
                let content = NewContent {
                    manifest,
                    inline: Vec::new(),
                };
                tx.add_content(&content, self.inner.blobs.as_ref())?;
                let ino = row.ino;
                live.revive_unnamed(row)?;
                for (name, value) in xattrs {
                    live.set_xattr(ino, &name, Some(&value))?;
                }
                revived.push(ino);
            }
            Ok(revived)
        })?;
        for ino in revived {
            self.orphaned(agent, ino)?;
        }
        Ok(())
    }

    /// Paths added, removed or modified going from `from` to `to`, sorted by path.
    pub fn diff(&self, agent: AgentId, from: &View, to: &View) -> Result<Vec<DiffEntry>> {
        self.index().read(|tx| {
            let old = Tree::at(tx, agent, view_gen(tx, agent, from)?);
            let new = Tree::at(tx, agent, view_gen(tx, agent, to)?);
            crate::diff::diff(&old, &new)
        })
    }

    // ----- statistics and maintenance -----

    pub fn agent_stats(&self, agent: AgentId) -> Result<AgentStats> {
        self.index().read(|tx| {
            let usage = tx.usage(agent)?;
            Ok(AgentStats {
                logical_bytes: usage.bytes as u64,
                stored_bytes: tx.stored_bytes(agent)?,
                files: usage.files as u64,
                directories: usage.dirs as u64,
                snapshots: tx.snapshots(agent)?.len() as u64,
                quota: tx.quota(agent)?,
            })
        })
    }

    /// Meters one finished code run: its wall-clock and CPU milliseconds.
    pub fn record_run(&self, agent: AgentId, duration_ms: u64, cpu_ms: u64) -> Result<()> {
        let added = ComputeUsage {
            runs: 1,
            run_ms: duration_ms,
            run_cpu_ms: cpu_ms,
            ..ComputeUsage::default()
        };
        self.index().write(|tx| tx.add_compute(agent, added))
    }

    /// Meters browser time since the last record for a session; `new_session` counts the
    /// session itself, once. Recorded periodically and at the session's end, so a crash loses
    /// little.
    pub fn record_browser_time(&self, agent: AgentId, ms: u64, new_session: bool) -> Result<()> {
        let added = ComputeUsage {
            browser_sessions: u64::from(new_session),
            browser_ms: ms,
            ..ComputeUsage::default()
        };
        self.index().write(|tx| tx.add_compute(agent, added))
    }

    /// Compute the agent has used since it was created.
    pub fn compute_usage(&self, agent: AgentId) -> Result<ComputeUsage> {
        self.index().read(|tx| tx.compute_usage(agent))
    }

    pub fn store_stats(&self) -> Result<StoreStats> {
        self.index().read(|tx| {
            Ok(StoreStats {
                agents: tx.count("SELECT COUNT(*) FROM agents")? as u64,
                blobs: tx.count("SELECT COUNT(*) FROM blobs")? as u64,
                blob_bytes: tx.count("SELECT COALESCE(SUM(size), 0) FROM blobs")? as u64,
                inline_blobs: tx.count("SELECT COUNT(*) FROM blobs WHERE data IS NOT NULL")? as u64,
                unreferenced_blobs: tx.count("SELECT COUNT(*) FROM blobs WHERE refs = 0")? as u64,
            })
        })
    }

    /// Removes blobs unreferenced for longer than the grace period, and blob files no index
    /// row names that are older than it.
    pub fn sweep(&self) -> Result<SweepReport> {
        crate::fsck::sweep(
            self.index(),
            self.inner.blobs.as_ref(),
            self.inner.options.sweep_grace,
            &|hash| self.is_held(hash),
        )
    }

    /// Keeps the sweep away from blob `hash` until [`Store::release_blobs`]: a writer
    /// stored it (or found it stored) for content it has not committed yet.
    pub(crate) fn hold_blob(&self, hash: Hash) {
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        *held.entry(hash).or_default() += 1;
    }

    /// Ends one [`Store::hold_blob`] of each of `hashes`.
    pub(crate) fn release_blobs(&self, hashes: &[Hash]) {
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        for hash in hashes {
            if let Some(count) = held.get_mut(hash) {
                *count -= 1;
                if *count == 0 {
                    held.remove(hash);
                }
            }
        }
    }

    fn is_held(&self, hash: &Hash) -> bool {
        let held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        held.contains_key(hash)
    }

    /// Checks every blob exists and hashes to its name, and every reference resolves.
    pub fn fsck(&self) -> Result<FsckReport> {
        crate::fsck::check(self.index(), self.inner.blobs.as_ref())
    }

    /// The configured sweep grace period.
    pub fn sweep_grace(&self) -> Duration {
        self.inner.options.sweep_grace
    }
}

pub(crate) fn file_row(now: i64, mode: u32, size: u64, content: Option<Hash>) -> InodeRow {
    InodeRow {
        ino: 0,
        gen_from: 0,
        kind: FileType::File,
        mode: mode & 0o7777,
        size,
        nlink: 1,
        atime: now,
        mtime: now,
        ctime: now,
        content,
        target: None,
    }
}

/// The generation a view reads at.
pub(crate) fn view_gen(tx: &Tx<'_>, agent: AgentId, view: &View) -> Result<i64> {
    match view {
        View::Live => {
            tx.usage(agent)?;
            Ok(LIVE_VIEW)
        }
        View::Snapshot(id) => Ok(tx.require_snapshot(agent, id)?.generation),
    }
}
