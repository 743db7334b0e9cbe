//! The filesystem as a mount sees it, independent of FUSE: inode-level operations on one
//! agent's tree, open-file handles that commit their writes to the store on flush, fsync
//! and release (writes from a file's start are stored as they arrive, by an appender;
//! other writes are buffered and also committed once the buffer grows large), directory
//! handles that keep a listing stable while it is read, read-only views (snapshots,
//! read-only mounts), and the attributes kept between requests (`vfs/attrs.rs`).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::Appender;
use crate::watch::{Origin, WatchId, with_origin};
use crate::{
    AgentId, Attr, DirEntry, Error, FileReader, FsUsage, NewNode, RenameMode, Result, SetAttr,
    Store, View, XattrMode,
};

mod attrs;
mod sandbox;

use attrs::{AttrCache, Forget};
use sandbox::SandboxView;

/// The root directory's inode.
const ROOT: u64 = 1;

/// A handle's buffered writes are committed once they exceed this many bytes.
pub const WRITE_BUFFER_MAX: usize = 32 * 1024 * 1024;

/// What a mount shows and allows.
#[derive(Debug, Clone)]
pub struct VfsOptions {
    /// Refuse every change with [`Error::ReadOnly`].
    pub read_only: bool,
    /// The version of the tree shown; anything but [`View::Live`] is read-only.
    pub view: View,
    /// Show the reserved top-level names as a sandbox needs them (see `vfs/sandbox.rs`).
    pub sandbox: bool,
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions {
            read_only: false,
            view: View::Live,
            sandbox: false,
        }
    }
}

/// One open file.
struct FileHandle {
    ino: u64,
    /// Writes from the start of a file that was empty, stored as they arrive (see
    /// `store/appender.rs`); the other writes are buffered in `pending`.
    appender: Option<Appender>,
    /// Buffered writes, in order; adjacent writes are merged into one range.
    pending: Vec<(u64, Vec<u8>)>,
    pending_bytes: usize,
    /// A reader kept across reads while the file's content does not change.
    reader: Option<FileReader>,
}

/// One open directory: its inode (kept while open, like a file's) and its listing.
struct OpenDir {
    ino: u64,
    entries: Arc<Vec<DirEntry>>,
}

/// One agent's tree served to a mount.
pub struct Vfs {
    store: Store,
    agent: AgentId,
    /// Marks the store changes made through this view, so its own watcher skips them.
    origin: Origin,
    sandbox: Option<SandboxView>,
    options: VfsOptions,
    files: Mutex<HashMap<u64, Arc<Mutex<FileHandle>>>>,
    /// Per inode, the handle that wrote to it last. A write through another handle commits
    /// that one's buffered writes first, so writes through different handles land in the
    /// order they were made.
    writers: Mutex<HashMap<u64, u64>>,
    dirs: Mutex<HashMap<u64, OpenDir>>,
    next_handle: AtomicU64,
    /// Attributes known to be current (live views only: see `vfs/attrs.rs`).
    attrs: Option<Arc<AttrCache>>,
    /// The store watch that keeps `attrs` true to changes made elsewhere.
    watch: Option<WatchId>,
}

impl FileHandle {
    /// Whether this handle has writes not committed yet.
    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.appender.as_ref().is_some_and(|a| a.has_uncommitted())
    }
}

impl Drop for Vfs {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            self.store.unwatch(watch);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Vfs {
    pub fn new(store: Store, agent: AgentId, options: VfsOptions) -> Vfs {
        let origin = crate::watch::new_origin();
        let (attrs, watch) = if options.view == View::Live {
            let attrs = Arc::new(AttrCache::default());
            let forget = attrs.clone();
            let watch = store.watch(agent, origin, move |changes| forget.forget_changes(changes));
            (Some(attrs), Some(watch))
        } else {
            (None, None)
        };
        Vfs {
            store,
            agent,
            origin,
            sandbox: options.sandbox.then(SandboxView::new),
            options,
            files: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            attrs,
            watch,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn agent(&self) -> AgentId {
        self.agent
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Runs a store call with its changes attributed to this view.
    /// Its commits are not flushed to stable storage one by one: [`Vfs::fsync`] does that.
    fn mine<T>(&self, f: impl FnOnce() -> T) -> T {
        with_origin(self.origin, || self.store.deferring_sync(f))
    }

    /// Runs a change of this view's own ([`Vfs::mine`]) that touches the attributes of
    /// what `forget` says.
    fn change<T>(&self, forget: Forget, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(attrs) = &self.attrs else {
            return self.mine(f);
        };
        let epoch = attrs.begin();
        let result = self.mine(f);
        attrs.finish(epoch, forget, &[]);
        result
    }

    /// [`Vfs::change`] for a change that returns the attributes it left an inode with
    /// (`created`: a new inode).
    fn change_attr(
        &self,
        forget: Forget,
        created: bool,
        f: impl FnOnce() -> Result<Attr>,
    ) -> Result<Attr> {
        let Some(attrs) = &self.attrs else {
            return self.mine(f);
        };
        let epoch = attrs.begin();
        let result = self.mine(f);
        let kept: Vec<(&Attr, bool)> = result.iter().map(|attr| (attr, created)).collect();
        attrs.finish(epoch, forget, &kept);
        result
    }

    /// The attributes of `ino` as stored (writes still buffered aside), from the cache
    /// when it has them.
    fn stored_attr(&self, ino: u64) -> Result<Attr> {
        let Some(attrs) = &self.attrs else {
            return self.store.getattr(self.agent, self.view(), ino);
        };
        if let Some(attr) = attrs.get(ino) {
            return Ok(attr);
        }
        let epoch = attrs.epoch();
        let attr = self.store.getattr(self.agent, self.view(), ino)?;
        attrs.keep(epoch, &attr);
        Ok(attr)
    }

    pub fn is_read_only(&self) -> bool {
        self.options.read_only || self.options.view != View::Live
    }

    fn writable(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly("this mount is read-only".into()));
        }
        Ok(())
    }

    /// Refuses changes to, in or of the sandbox view's own entries.
    fn changeable(&self, ino: u64, name: Option<&[u8]>) -> Result<()> {
        self.writable()?;
        if let Some(view) = &self.sandbox {
            let reserved_name = ino == ROOT && name.is_some_and(|n| view.is_reserved(n));
            if view.owns(ino) || reserved_name {
                let shown = name
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                return Err(Error::Reserved(format!("/{shown}")));
            }
        }
        Ok(())
    }

    fn view(&self) -> &View {
        &self.options.view
    }

    // ----- metadata -----

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if let Some(attr) = self.sandbox.as_ref().and_then(|view| view.attr(ino)) {
            return Ok(attr);
        }
        self.flush_inode(ino)?;
        self.stored_attr(ino)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        if let Some(view) = &self.sandbox {
            if view.owns(parent) {
                return Err(Error::NotFound(String::from_utf8_lossy(name).into_owned()));
            }
            if parent == ROOT
                && let Some(attr) = view.ino_of(name).and_then(|ino| view.attr(ino))
            {
                return Ok(attr);
            }
        }
        let epoch = self.attrs.as_ref().map(|attrs| attrs.epoch());
        let attr = self.store.lookup(self.agent, self.view(), parent, name)?;
        if self.has_pending(attr.ino) {
            return self.getattr(attr.ino);
        }
        if let (Some(attrs), Some(epoch)) = (&self.attrs, epoch) {
            attrs.keep(epoch, &attr);
        }
        Ok(attr)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        if let Some(target) = self.sandbox.as_ref().and_then(|view| view.target(ino)) {
            return Ok(target);
        }
        self.store.readlink_ino(self.agent, self.view(), ino)
    }

    pub fn create(&self, parent: u64, name: &[u8], node: NewNode<'_>) -> Result<Attr> {
        self.changeable(parent, Some(name))?;
        // A directory made in a set-group-ID directory is set-group-ID too.
        let node = match node {
            NewNode::Directory { mode } if self.getattr(parent)?.mode & 0o2000 != 0 => {
                NewNode::Directory {
                    mode: mode | 0o2000,
                }
            }
            other => other,
        };
        let create = || self.mine(|| self.store.create_at(self.agent, parent, name, node));
        let Some(attrs) = &self.attrs else {
            return create().map(|(created, _)| created);
        };
        // The kernel asks for the directory's attributes again after every create (its
        // mode, to check permissions): keep them as the change left them.
        let epoch = attrs.begin();
        let result = create();
        let kept = match &result {
            Ok((created, dir)) => vec![(created, true), (dir, false)],
            Err(_) => Vec::new(),
        };
        attrs.finish(epoch, Forget::Inodes(vec![parent]), &kept);
        result.map(|(created, _)| created)
    }

    pub fn remove(&self, parent: u64, name: &[u8], directory: bool) -> Result<()> {
        self.changeable(parent, Some(name))?;
        self.change(Forget::All, || {
            self.store.remove_at(self.agent, parent, name, directory)
        })
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> Result<()> {
        self.changeable(parent, Some(name))?;
        self.changeable(new_parent, Some(new_name))?;
        self.change(Forget::All, || {
            self.store
                .rename_at(self.agent, parent, name, new_parent, new_name, mode)
        })
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<Attr> {
        self.changeable(ino, None)?;
        self.changeable(new_parent, Some(new_name))?;
        self.change_attr(Forget::Inodes(vec![ino, new_parent]), false, || {
            self.store.link_at(self.agent, ino, new_parent, new_name)
        })
    }

    pub fn setattr(&self, ino: u64, changes: &SetAttr) -> Result<Attr> {
        self.changeable(ino, None)?;
        self.flush_inode(ino)?;
        self.change_attr(Forget::Inodes(vec![ino]), false, || {
            self.store.set_attr_ino(self.agent, ino, changes)
        })
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        if self.sandbox.as_ref().is_some_and(|view| view.owns(ino)) {
            return Err(Error::NoSuchAttribute(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        if self
            .attrs
            .as_ref()
            .is_some_and(|attrs| attrs.has_no_xattrs(ino))
        {
            return Err(Error::NoSuchAttribute(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        self.store.get_xattr(self.agent, self.view(), ino, name)
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        if self.sandbox.as_ref().is_some_and(|view| view.owns(ino)) {
            return Ok(Vec::new());
        }
        let Some(attrs) = &self.attrs else {
            return self.store.list_xattrs(self.agent, self.view(), ino);
        };
        if attrs.has_no_xattrs(ino) {
            return Ok(Vec::new());
        }
        let epoch = attrs.epoch();
        let names = self.store.list_xattrs(self.agent, self.view(), ino)?;
        if names.is_empty() {
            attrs.keep_no_xattrs(epoch, ino);
        }
        Ok(names)
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrMode) -> Result<()> {
        self.changeable(ino, None)?;
        self.change(Forget::Inodes(vec![ino]), || {
            self.store.set_xattr(self.agent, ino, name, value, mode)
        })
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        self.changeable(ino, None)?;
        self.change(Forget::Inodes(vec![ino]), || {
            self.store.remove_xattr(self.agent, ino, name)
        })
    }

    pub fn statfs(&self) -> Result<FsUsage> {
        self.store.fs_usage(self.agent)
    }

    // ----- directories -----

    /// Opens directory `ino`: its listing (with `.` and `..` first) is taken now and read
    /// from the handle until it is released.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let epoch = self.attrs.as_ref().map(|attrs| attrs.epoch());
        let entries = match &self.sandbox {
            Some(view) if view.owns(ino) => Vec::new(),
            Some(view) if ino == ROOT => {
                view.merge_root(self.store.read_dir(self.agent, self.view(), ino)?)
            }
            _ => self.store.read_dir(self.agent, self.view(), ino)?,
        };
        if let (Some(attrs), Some(epoch)) = (&self.attrs, epoch) {
            for entry in &entries {
                if self
                    .sandbox
                    .as_ref()
                    .is_none_or(|view| !view.owns(entry.attr.ino))
                {
                    attrs.keep(epoch, &entry.attr);
                }
            }
        }
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        if self.sandbox.as_ref().is_none_or(|view| !view.owns(ino)) {
            self.store.pin_inode(self.agent, ino);
        }
        lock(&self.dirs).insert(
            handle,
            OpenDir {
                ino,
                entries: Arc::new(entries),
            },
        );
        Ok(handle)
    }

    /// The listing of an open directory.
    pub fn dir_entries(&self, handle: u64) -> Result<Arc<Vec<DirEntry>>> {
        lock(&self.dirs)
            .get(&handle)
            .map(|dir| dir.entries.clone())
            .ok_or_else(|| Error::InvalidArgument("unknown directory handle".into()))
    }

    pub fn parent_of(&self, ino: u64) -> Result<u64> {
        if self.sandbox.as_ref().is_some_and(|view| view.owns(ino)) {
            return Ok(ROOT);
        }
        self.store.parent_dir(self.agent, ino)
    }

    pub fn releasedir(&self, handle: u64) -> Result<()> {
        let released = lock(&self.dirs).remove(&handle);
        match released {
            Some(dir) => self.mine(|| self.store.unpin_inode(self.agent, dir.ino)),
            None => Ok(()),
        }
    }

    // ----- files -----

    /// Opens file `ino`; `write` asks for write access.
    pub fn open(&self, ino: u64, write: bool) -> Result<u64> {
        if write {
            self.changeable(ino, None)?;
        }
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let file = FileHandle {
            ino,
            appender: None,
            pending: Vec::new(),
            pending_bytes: 0,
            reader: None,
        };
        self.store.pin_inode(self.agent, ino);
        lock(&self.files).insert(handle, Arc::new(Mutex::new(file)));
        Ok(handle)
    }

    fn file(&self, handle: u64) -> Result<Arc<Mutex<FileHandle>>> {
        lock(&self.files)
            .get(&handle)
            .cloned()
            .ok_or_else(|| Error::InvalidArgument("unknown file handle".into()))
    }

    /// Up to `size` bytes of the file at `offset`, including writes still buffered.
    pub fn read(&self, handle: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let file = self.file(handle)?;
        let ino = lock(&file).ino;
        self.flush_inode(ino)?;
        let mut file = lock(&file);
        let current = self.stored_attr(ino)?;
        let stale = file
            .reader
            .as_ref()
            .is_none_or(|reader| Some(reader.hash()) != current.hash);
        if stale {
            file.reader = Some(self.store.open_ino(self.agent, self.view(), ino)?);
        }
        let reader = file
            .reader
            .as_mut()
            .ok_or_else(|| Error::Corrupt("reader vanished".into()))?;
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(Error::io("seeking in a file"))?;
        let mut out = Vec::with_capacity(size as usize);
        reader
            .take(u64::from(size))
            .read_to_end(&mut out)
            .map_err(Error::io("reading a file"))?;
        Ok(out)
    }

    /// Stores or buffers a write. Writes from the start of a file, each where the previous
    /// one ended, are chunked and stored as they come; any other write is buffered, and the
    /// buffer committed if it has grown past [`WRITE_BUFFER_MAX`].
    pub fn write(&self, handle: u64, offset: u64, data: &[u8]) -> Result<u32> {
        self.writable()?;
        let file = self.file(handle)?;
        let ino = lock(&file).ino;
        self.commit_previous_writer(ino, handle)?;
        let mut file = lock(&file);
        file.reader = None;
        let appending = file.appender.as_ref().map(|a| a.len() == offset);
        if appending == Some(false) {
            // No longer sequential: commit what was appended, buffer from here on.
            self.commit(&mut file)?;
            file.appender = None;
        } else if appending.is_none() && offset == 0 && file.pending.is_empty() {
            let attr = self.stored_attr(file.ino)?;
            let content = attr.hash.filter(|_| attr.size > 0);
            file.appender = Some(Appender::new(&self.store, file.ino, content));
        }
        if let Some(appender) = file.appender.as_mut() {
            self.store.append(appender, data)?;
            return Ok(data.len() as u32);
        }
        match file.pending.last_mut() {
            Some((start, bytes)) if *start + bytes.len() as u64 == offset => {
                bytes.extend_from_slice(data)
            }
            _ => file.pending.push((offset, data.to_vec())),
        }
        file.pending_bytes += data.len();
        if file.pending_bytes >= WRITE_BUFFER_MAX {
            self.commit(&mut file)?;
        }
        Ok(data.len() as u32)
    }

    /// `copy_file_range`: `len` bytes at `offset_in` of `handle_in`'s file to `offset_out`
    /// of `handle_out`'s. A copy of a whole file over the whole of another (what `cp` asks
    /// for) shares the chunks instead of copying bytes: instant, and stored once. Returns
    /// the bytes copied, or `None` for any other copy, which the caller makes by reading
    /// and writing.
    pub fn copy_range(
        &self,
        handle_in: u64,
        offset_in: u64,
        handle_out: u64,
        offset_out: u64,
        len: u64,
    ) -> Result<Option<u64>> {
        let ino_in = lock(&*self.file(handle_in)?).ino;
        let ino_out = lock(&*self.file(handle_out)?).ino;
        self.changeable(ino_out, None)?;
        // What the handles have buffered is part of the files.
        self.flush_inode(ino_in)?;
        self.flush_inode(ino_out)?;
        let source = self.stored_attr(ino_in)?;
        if offset_in >= source.size {
            return Ok(Some(0));
        }
        let target = self.stored_attr(ino_out)?;
        let whole = offset_in == 0
            && offset_out == 0
            && len >= source.size
            && target.size <= source.size
            && ino_in != ino_out;
        if !whole {
            return Ok(None);
        }
        self.change_attr(Forget::Inodes(vec![ino_out]), false, || {
            self.store.share_content_ino(self.agent, ino_in, ino_out)
        })?;
        Ok(Some(source.size))
    }

    /// Makes `handle` the last writer of `ino`, committing what another handle that wrote to
    /// it before has buffered.
    fn commit_previous_writer(&self, ino: u64, handle: u64) -> Result<()> {
        let previous = lock(&self.writers).insert(ino, handle);
        let Some(other) = previous.filter(|other| *other != handle) else {
            return Ok(());
        };
        let Some(file) = lock(&self.files).get(&other).cloned() else {
            return Ok(());
        };
        let mut file = lock(&file);
        if file.has_pending() {
            self.commit(&mut file)?;
        }
        Ok(())
    }

    /// Commits a handle's buffered writes (flush and fsync).
    pub fn flush(&self, handle: u64) -> Result<()> {
        let file = self.file(handle)?;
        let mut file = lock(&file);
        self.commit(&mut file)
    }

    /// Makes everything committed so far durable.
    pub fn sync(&self) -> Result<()> {
        self.store.sync()
    }

    /// Commits a handle's buffered writes and makes everything committed durable.
    pub fn fsync(&self, handle: u64) -> Result<()> {
        self.flush(handle)?;
        self.store.sync()
    }

    /// Commits and forgets a handle.
    pub fn release(&self, handle: u64) -> Result<()> {
        let file = lock(&self.files).remove(&handle);
        match file {
            Some(file) => {
                let mut file = lock(&file);
                {
                    let mut writers = lock(&self.writers);
                    if writers.get(&file.ino) == Some(&handle) {
                        writers.remove(&file.ino);
                    }
                }
                let committed = self.commit(&mut file);
                let unpinned = self.mine(|| self.store.unpin_inode(self.agent, file.ino));
                committed.and(unpinned)
            }
            None => Ok(()),
        }
    }

    fn commit(&self, file: &mut FileHandle) -> Result<()> {
        if let Some(appender) = file.appender.as_mut().filter(|a| a.has_uncommitted()) {
            let mut going_on = false;
            let committed = self.change_attr(Forget::Inodes(vec![file.ino]), false, || {
                let (attr, more) = self.store.commit_appended(self.agent, appender)?;
                going_on = more;
                Ok(attr)
            });
            if !going_on {
                // Done, or failed: a failure is reported once, here, as a write-back error.
                file.appender = None;
            }
            committed?;
        }
        let pending = std::mem::take(&mut file.pending);
        file.pending_bytes = 0;
        if pending.is_empty() {
            return Ok(());
        }
        // All buffered writes in one commit: one new chunk list however scattered they are.
        let writes: Vec<(u64, &[u8])> = pending
            .iter()
            .map(|(offset, bytes)| (*offset, bytes.as_slice()))
            .collect();
        self.change_attr(Forget::Inodes(vec![file.ino]), false, || {
            self.store.write_many_ino(self.agent, file.ino, &writes)
        })?;
        Ok(())
    }

    fn has_pending(&self, ino: u64) -> bool {
        let files: Vec<_> = lock(&self.files).values().cloned().collect();
        files.iter().any(|file| {
            let file = lock(file);
            file.ino == ino && file.has_pending()
        })
    }

    /// Commits every handle's buffered writes to `ino`, so reads see them.
    fn flush_inode(&self, ino: u64) -> Result<()> {
        let files: Vec<_> = lock(&self.files).values().cloned().collect();
        for file in files {
            let mut file = lock(&file);
            if file.ino == ino && file.has_pending() {
                self.commit(&mut file)?;
            }
        }
        Ok(())
    }
}
