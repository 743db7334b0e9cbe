//! The FUSE adapter of a mount from a server: answers the kernel from the path table, the
//! content reader and the handle table. Read-only: every change is refused with `EROFS`.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow,
};

use super::content::{Content, FileRef};
use super::handles::{DirRow, Handles};
use super::meta::{Kind, Meta};
use super::remote::{Error, Remote};
use super::tree::{self, Cached, Tree};

const BLOCK_SIZE: u32 = 4096;

/// The filesystem served to the kernel.
pub struct RemoteFs {
    tree: Tree,
    content: Content<Remote>,
    handles: Handles,
    uid: u32,
    gid: u32,
}

/// Why a request failed: an errno ready to send.
type Reply<T> = Result<T, Errno>;

fn errno(error: &Error) -> Errno {
    match error {
        Error::Api { status, .. } if *status < 500 && *status != 401 => {
            tracing::debug!(%error, "filesystem request refused");
        }
        _ => tracing::warn!(%error, "filesystem request failed"),
    }
    Errno::from_i32(error.to_errno())
}

fn kind(kind: Kind) -> fuser::FileType {
    match kind {
        Kind::File => fuser::FileType::RegularFile,
        Kind::Directory => fuser::FileType::Directory,
        Kind::Symlink => fuser::FileType::Symlink,
    }
}

/// A name the kernel asks about, as the UTF-8 the API speaks.
fn name_of(name: &OsStr) -> Reply<&str> {
    // A name that is not UTF-8 cannot exist on the server.
    name.to_str().ok_or(Errno::ENOENT)
}

/// The attributes of a listing row, or `None` for a row to leave out: one the kernel could
/// not be shown (a name with `/`, `.`, `..`) or whose attributes make no sense.
fn row_meta(entry: &super::meta::Entry) -> Option<Meta> {
    if entry.name.is_empty()
        || entry.name.contains('/')
        || matches!(entry.name.as_str(), "." | "..")
    {
        tracing::warn!(name = %entry.name, "skipping an entry with an impossible name");
        return None;
    }
    entry
        .meta()
        .inspect_err(|error| tracing::warn!(%error, "skipping an entry"))
        .ok()
}

impl RemoteFs {
    pub fn new(content: Content<Remote>, ttl: Duration, uid: u32, gid: u32) -> RemoteFs {
        RemoteFs {
            tree: Tree::new(ttl),
            content,
            handles: Handles::default(),
            uid,
            gid,
        }
    }

    fn remote(&self) -> &Remote {
        self.content.source()
    }

    fn ttl(&self) -> Duration {
        self.tree.ttl()
    }

    fn attr(&self, ino: u64, meta: &Meta) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: meta.size,
            blocks: meta.size.div_ceil(512),
            atime: meta.mtime,
            mtime: meta.mtime,
            ctime: meta.mtime,
            crtime: meta.mtime,
            kind: kind(meta.kind),
            perm: (meta.mode & 0o7777) as u16,
            nlink: if meta.kind == Kind::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    fn path(&self, ino: u64) -> Reply<String> {
        self.tree.path(ino).ok_or(Errno::ESTALE)
    }

    /// Asks the server for `path`'s attributes and records them.
    fn stat(&self, path: &str) -> Reply<(u64, Meta)> {
        let entry = self.remote().stat(path).map_err(|error| {
            self.tree.invalidate(path);
            errno(&error)
        })?;
        let meta = entry.meta().map_err(|why| errno(&Error::Protocol(why)))?;
        let ino = self.tree.record(path, meta.clone(), Instant::now());
        Ok((ino, meta))
    }

    /// The attributes of `ino`, from the cache while fresh.
    fn meta(&self, ino: u64) -> Reply<Meta> {
        if let Some(meta) = self.tree.fresh(ino, Instant::now()) {
            return Ok(meta);
        }
        let (found, meta) = self.stat(&self.path(ino)?)?;
        if found != ino {
            // The path now holds another kind of entry, which has a number of its own.
            return Err(Errno::ESTALE);
        }
        Ok(meta)
    }

    fn lookup_child(&self, parent: u64, name: &OsStr) -> Reply<(u64, Meta)> {
        let name = name_of(name)?;
        match self.tree.cached_child(parent, name, Instant::now()) {
            Cached::Found(ino, meta) => Ok((ino, meta)),
            Cached::Missing => Err(Errno::ENOENT),
            Cached::Unknown => self.stat(&tree::child_path(&self.path(parent)?, name)),
        }
    }

    fn open_file(&self, ino: u64, flags: OpenFlags) -> Reply<(u64, bool)> {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return Err(Errno::EROFS);
        }
        let meta = self.meta(ino)?;
        match meta.kind {
            Kind::File => {}
            Kind::Directory => return Err(Errno::EISDIR),
            Kind::Symlink => return Err(Errno::ELOOP),
        }
        let file = FileRef {
            path: self.path(ino)?,
            hash: meta.hash,
            size: meta.size,
        };
        Ok(self.handles.open_file(ino, file))
    }

    fn read_file(&self, fh: u64, offset: u64, size: u32) -> Reply<Vec<u8>> {
        let open = self.handles.file(fh).ok_or(Errno::EBADF)?;
        match self.content.read(&open.file, offset, size) {
            Ok(data) => Ok(data),
            Err(Error::Changed) if !open.served => {
                // Nothing of the old version was served: go on with the current one.
                self.tree.invalidate(&open.file.path);
                let (ino, meta) = self.stat(&open.file.path)?;
                if ino != open.ino || meta.kind != Kind::File {
                    return Err(Errno::ESTALE);
                }
                let file = FileRef {
                    path: open.file.path.clone(),
                    hash: meta.hash,
                    size: meta.size,
                };
                self.handles.replace(fh, file.clone());
                self.content
                    .read(&file, offset, size)
                    .map_err(|error| errno(&error))
            }
            Err(error) => {
                if matches!(error, Error::Changed) {
                    self.tree.invalidate(&open.file.path);
                }
                Err(errno(&error))
            }
        }
    }

    /// `.`, `..` and the entries of directory `ino`, as the server lists them now.
    fn listing(&self, ino: u64) -> Reply<Vec<DirRow>> {
        let meta = self.meta(ino)?;
        if meta.kind != Kind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let path = self.path(ino)?;
        let entries = self.remote().list(&path).map_err(|error| errno(&error))?;
        let entries = entries
            .iter()
            .filter_map(|entry| Some((entry.name.clone(), row_meta(entry)?)))
            .collect();
        let rows = self.tree.record_listing(&path, entries, Instant::now());
        let parent = self.tree.ino(tree::parent_path(&path));
        let mut out = Vec::with_capacity(rows.len() + 2);
        // The kernel takes no attributes from `.` and `..` rows; the directory's own do.
        for (row_ino, name) in [(ino, "."), (parent, "..")] {
            out.push(DirRow {
                ino: row_ino,
                name: name.to_owned(),
                meta: meta.clone(),
            });
        }
        out.extend(
            rows.into_iter()
                .map(|(ino, name, meta)| DirRow { ino, name, meta }),
        );
        Ok(out)
    }

    fn statfs_figures(&self) -> Reply<[u64; 5]> {
        let usage = self.remote().usage().map_err(|error| errno(&error))?;
        let storage = usage.storage;
        let block = u64::from(BLOCK_SIZE);
        // Without a quota, report room for 1 PiB and 2^32 files.
        let blocks = storage.quota_bytes.unwrap_or(1 << 50) / block;
        let free = blocks.saturating_sub(storage.logical_bytes.div_ceil(block));
        let files = storage.quota_files.unwrap_or(1 << 32);
        let files_free = files.saturating_sub(storage.files + storage.directories);
        Ok([blocks, free, free, files, files_free])
    }
}

impl Filesystem for RemoteFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_child(parent.0, name) {
            Ok((ino, meta)) => reply.entry(&self.ttl(), &self.attr(ino, &meta), Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.meta(ino.0) {
            Ok(meta) => reply.attr(&self.ttl(), &self.attr(ino.0, &meta)),
            Err(errno) => reply.error(errno),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.meta(ino.0) {
            Ok(Meta {
                kind: Kind::Symlink,
                target: Some(target),
                ..
            }) => reply.data(target.as_bytes()),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino.0, flags) {
            Ok((fh, keep)) => {
                let flags = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags);
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_file(fh.0, offset, size) {
            Ok(data) => {
                self.handles.serving(fh.0);
                reply.data(&data);
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.close_file(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino.0) {
            Ok(rows) => reply.opened(FileHandle(self.handles.open_dir(rows)), FopenFlags::empty()),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(rows) = self.handles.dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, row) in rows.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(row.ino),
                i as u64 + 1,
                kind(row.meta.kind),
                &row.name,
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(rows) = self.handles.dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let ttl = self.ttl();
        for (i, row) in rows.iter().enumerate().skip(offset as usize) {
            let attr = self.attr(row.ino, &row.meta);
            let next = i as u64 + 1;
            if reply.add(
                INodeNo(row.ino),
                next,
                &row.name,
                &ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.close_dir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.statfs_figures() {
            Ok([blocks, bfree, bavail, files, ffree]) => {
                reply.statfs(
                    blocks, bfree, bavail, files, ffree, BLOCK_SIZE, 255, BLOCK_SIZE,
                );
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // The API carries no extended attributes.
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // `default_permissions` makes the kernel check modes, and the read-only mount
        // refuses writes, before asking.
        reply.ok();
    }

    // Every change is refused: the mount is read-only.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
}
