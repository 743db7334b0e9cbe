//! The FUSE adapter: serves a [`Vfs`] to the kernel with the fuser crate. A thin layer:
//! it converts types, maps errors to errno (through [`Error::to_errno`]) and answers;
//! everything else is in `vfs.rs` and the store.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, MountOption, Notifier, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
};

use crate::vfs::Vfs;
use crate::watch::{Change, Origin, WatchId};
use crate::{
    AgentId, Attr, Error, FileType, NewNode, RenameMode, Result, SetAttr, Store, XattrMode,
};

/// How long the kernel may cache attributes and entries. Changes made other than
/// through the mount are invalidated explicitly, so this can be long.
const TTL: Duration = Duration::from_secs(10);
/// Threads serving a mount, by default. Two suit programs making calls one after another:
/// one watches for the next request (see [`DEFAULT_BUSY_POLL`]) while the other can serve
/// a slow one. Each thread more is one more the kernel wakes for every request, which
/// measured slower here (stat 82,000/s with two, 69,000/s with four), for both one program
/// and two at once.
pub const DEFAULT_THREADS: usize = 2;
/// The longest a serving thread with nothing to do watches for the next request before it
/// sleeps, by default. A program that makes filesystem calls one after another (stat after
/// stat, create after create) otherwise waits on every call for the kernel to wake a
/// sleeping thread, which on a virtual machine means waking a halted CPU. One thread of the
/// mount polls at a time, and its window adapts to how far apart requests come: sparse ones
/// soon cost no polling (see `third_party/fuser/src/busy_poll.rs`).
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(200);
/// How long [`Mount::unmount`] waits for the serving threads.
const UNMOUNT_WAIT: Duration = Duration::from_secs(3);
const BLOCK: u64 = 4096;

/// How a mount is made.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// The owner every file is shown with.
    pub uid: u32,
    pub gid: u32,
    /// Threads serving requests.
    pub threads: usize,
    /// How long one of them watches for the next request before sleeping (zero: never).
    pub busy_poll: Duration,
    /// Let users other than the mounting one in; needs root or `user_allow_other` in
    /// `/etc/fuse.conf`.
    pub allow_other: bool,
    /// The name shown as the mount's source.
    pub fs_name: String,
}

/// A live mount; unmounted when dropped or by [`Mount::unmount`].
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    /// The watch that invalidates the kernel's caches on changes from elsewhere.
    watch: Option<(Store, WatchId)>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop_watching();
    }
}

impl Mount {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the serving threads to finish, for [`UNMOUNT_WAIT`] at most.
    ///
    /// A mount namespace made while the filesystem was mounted (a sandbox's, say) keeps a
    /// copy of the mount, and with it the kernel's connection, until that namespace ends;
    /// the serving threads go on serving that copy until then. This returns anyway, and the
    /// threads finish when the copy goes (or with the process).
    pub fn unmount(mut self) -> Result<()> {
        self.stop_watching();
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fsd-unmount".into())
            .spawn(move || {
                let _ = done.send(session.umount_and_join());
            })
            .map_err(Error::io("unmounting"))?;
        match finished.recv_timeout(UNMOUNT_WAIT) {
            Ok(result) => result.map_err(Error::io("unmounting")),
            Err(_) => {
                tracing::warn!(
                    mountpoint = %self.mountpoint.display(),
                    "unmounted, but the filesystem is still in use through another mount \
                     namespace; it is served until that namespace ends"
                );
                Ok(())
            }
        }
    }

    /// Whether the filesystem was unmounted from outside (`fusermount3 -u`, `umount`): its
    /// serving threads have finished. [`Mount::join`] then returns at once.
    pub fn is_finished(&self) -> bool {
        self.session
            .as_ref()
            .is_none_or(|session| session.guard.is_finished())
    }

    /// Whether the filesystem is served at its mount point now: not finished, and the mount
    /// point is a mount of its own (not left bare by `umount -l`, not cut off by an aborted
    /// connection).
    pub fn is_served(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        if self.is_finished() {
            return false;
        }
        let parent = self.mountpoint.parent().unwrap_or(Path::new("/"));
        let own_mount = match (
            std::fs::metadata(&self.mountpoint),
            std::fs::metadata(parent),
        ) {
            (Ok(point), Ok(parent)) => point.dev() != parent.dev(),
            _ => false,
        };
        // The kernel may answer that `stat` from its cache; `statfs` always asks the daemon,
        // so a connection cut off fails it (ENOTCONN).
        let Ok(path) = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes()) else {
            return false;
        };
        let mut stats = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: a valid NUL-terminated path and a buffer of the right type.
        let answered = unsafe { libc::statfs(path.as_ptr(), stats.as_mut_ptr()) } == 0;
        own_mount && answered
    }

    /// Waits until the filesystem is unmounted from outside (`fusermount3 -u`).
    pub fn join(mut self) -> Result<()> {
        let joined = match self.session.take() {
            Some(session) => session.join().map_err(Error::io("serving the mount")),
            None => Ok(()),
        };
        self.stop_watching();
        joined
    }

    fn stop_watching(&mut self) {
        if let Some((store, id)) = self.watch.take() {
            store.unwatch(id);
        }
    }
}

/// Mounts `vfs` at `mountpoint`, serving it from background threads.
pub fn mount(vfs: Vfs, mountpoint: &Path, config: &MountConfig) -> Result<Mount> {
    let read_only = vfs.is_read_only();
    let options = vec![
        MountOption::FSName(config.fs_name.clone()),
        MountOption::Subtype("agentbox".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        // Reads do not update access times; say so rather than pretend.
        MountOption::NoAtime,
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    let mut fuse_config = fuser::Config::default();
    if config.allow_other {
        fuse_config.acl = fuser::SessionACL::All;
    }
    fuse_config.mount_options = options;
    fuse_config.n_threads = Some(config.threads.max(1));
    fuse_config.clone_fd = config.threads > 1;
    fuse_config.busy_poll = config.busy_poll;
    let (store, agent, origin) = (vfs.store().clone(), vfs.agent(), vfs.origin());
    let fs = AgentFs {
        vfs,
        uid: config.uid,
        gid: config.gid,
    };
    let session = fuser::spawn_mount(fs, mountpoint, &fuse_config)
        .map_err(Error::io(format!("mounting at {}", mountpoint.display())))?;
    let watch = watch_for_invalidation(&store, agent, origin, session.notifier());
    Ok(Mount {
        session: Some(session),
        mountpoint: mountpoint.to_owned(),
        watch: Some((store, watch)),
    })
}

/// Tells the kernel to drop what it cached about anything that changed in the tree other
/// than through this mount (the HTTP API, another mount), so readers see it at once.
///
/// Notifications are sent from the thread that committed the change, once the commit is
/// done and the store's locks are released: never from a thread serving this mount's
/// requests, since changes made through this mount are not announced to it.
fn watch_for_invalidation(
    store: &Store,
    agent: AgentId,
    origin: Origin,
    notifier: Notifier,
) -> WatchId {
    store.watch(agent, origin, move |changes| {
        for change in changes {
            // An error only means the kernel had nothing cached.
            let _ = match change {
                Change::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                Change::Entry { parent, name } => {
                    notifier.inval_entry(INodeNo(*parent), OsStr::from_bytes(name))
                }
            };
        }
    })
}

/// Answers an attribute read: the size when asked for it (`size` 0), the bytes when they
/// fit, ERANGE when they do not.
fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}

struct AgentFs {
    vfs: Vfs,
    uid: u32,
    gid: u32,
}

fn errno(error: &Error) -> Errno {
    if matches!(
        error,
        Error::Io { .. } | Error::Index(_) | Error::Corrupt(_)
    ) {
        tracing::warn!(%error, "filesystem request failed");
    }
    Errno::from_i32(error.to_errno())
}

fn to_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// A time the kernel sent. Before the epoch, fuser decodes `(seconds, nanoseconds)` as
/// epoch minus |seconds| minus nanoseconds, while the kernel means seconds (negative) plus
/// nanoseconds; this undoes that.
fn from_kernel(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i64,
        Err(before) => {
            let before = before.duration();
            -(before.as_secs() as i64) * 1_000_000_000 + i64::from(before.subsec_nanos())
        }
    }
}

fn time_or_now(time: TimeOrNow) -> i64 {
    match time {
        TimeOrNow::SpecificTime(time) => from_kernel(time),
        TimeOrNow::Now => from_kernel(SystemTime::now()),
    }
}

/// The attributes of a negative entry: only its inode number, 0, means anything.
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK as u32,
        flags: 0,
    }
}

fn kind(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::File => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
    }
}

impl AgentFs {
    fn attr(&self, attr: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(attr.ino),
            size: attr.size,
            blocks: attr.size.div_ceil(512),
            atime: to_time(attr.atime_ns),
            mtime: to_time(attr.mtime_ns),
            ctime: to_time(attr.ctime_ns),
            crtime: to_time(attr.ctime_ns),
            kind: kind(attr.kind),
            perm: (attr.mode & 0o7777) as u16,
            nlink: attr.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK as u32,
            flags: 0,
        }
    }

    fn entry(&self, result: Result<Attr>, reply: ReplyEntry) {
        match result {
            Ok(attr) => reply.entry(&TTL, &self.attr(&attr), Generation(0)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn empty(result: Result<()>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    /// `.`, `..` and the entries of an open directory, from position `offset` on.
    fn listing(&self, ino: u64, handle: u64, offset: u64) -> Result<Vec<(u64, Vec<u8>, Attr)>> {
        let entries = self.vfs.dir_entries(handle)?;
        let mut out = Vec::new();
        if offset == 0 {
            out.push((ino, b".".to_vec(), self.vfs.getattr(ino)?));
        }
        if offset <= 1 {
            let parent = self.vfs.parent_of(ino)?;
            out.push((parent, b"..".to_vec(), self.vfs.getattr(parent)?));
        }
        let skip = offset.saturating_sub(2) as usize;
        out.extend(
            entries
                .iter()
                .skip(skip)
                .map(|e| (e.attr.ino, e.name.clone(), e.attr.clone())),
        );
        Ok(out)
    }
}

impl Filesystem for AgentFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&TTL, &self.attr(&attr), Generation(0)),
            // An entry with inode 0 tells the kernel the name is absent, for TTL: programs
            // probing for files (module resolution, PATH searches) then ask once. A name
            // made other than through this mount is invalidated like any other change.
            Err(Error::NotFound(_)) => reply.entry(&TTL, &absent(), Generation(0)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &self.attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Owners are not stored: every file belongs to the mount's user.
        if uid.is_some_and(|u| u != self.uid) || gid.is_some_and(|g| g != self.gid) {
            return reply.error(Errno::EPERM);
        }
        let changes = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            size,
            atime_ns: atime.map(time_or_now),
            mtime_ns: mtime.map(time_or_now),
        };
        match self.vfs.setattr(ino.0, &changes) {
            Ok(attr) => reply.attr(&TTL, &self.attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Devices, FIFOs and sockets have no place in an agent's stored tree.
            return reply.error(Errno::EPERM);
        }
        let node = NewNode::File {
            mode: mode & !umask & 0o7777,
        };
        self.entry(self.vfs.create(parent.0, name.as_bytes(), node), reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let node = NewNode::Directory {
            mode: mode & !umask & 0o7777,
        };
        self.entry(self.vfs.create(parent.0, name.as_bytes(), node), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.vfs.remove(parent.0, name.as_bytes(), false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.vfs.remove(parent.0, name.as_bytes(), true), reply);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let node = NewNode::Symlink {
            target: target.as_os_str().as_bytes(),
        };
        self.entry(self.vfs.create(parent.0, link_name.as_bytes(), node), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            return reply.error(Errno::EINVAL);
        };
        Self::empty(
            self.vfs.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                mode,
            ),
            reply,
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self.vfs.link(ino.0, newparent.0, newname.as_bytes());
        let result = result.map_err(|error| match error {
            Error::IsADirectory(message) => Error::InvalidArgument(message),
            other => other,
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &self.attr(&attr), Generation(0)),
            Err(Error::InvalidArgument(_)) => reply.error(Errno::EPERM),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        match self.vfs.open(ino.0, write) {
            // Content changes from elsewhere are invalidated, so cached pages stay valid.
            Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::FOPEN_KEEP_CACHE),
            Err(error) => reply.error(errno(&error)),
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
        match self.vfs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.vfs.write(fh.0, offset, data) {
            Ok(written) => reply.written(written),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.vfs.flush(fh.0), reply);
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
        Self::empty(self.vfs.release(fh.0), reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.vfs.fsync(fh.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.vfs.opendir(ino.0) {
            Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::empty()),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.listing(ino.0, fh.0, offset) {
            Ok(entries) => {
                for (i, (ino, name, attr)) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    if reply.add(
                        INodeNo(*ino),
                        next,
                        kind(attr.kind),
                        OsStr::from_bytes(name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.listing(ino.0, fh.0, offset) {
            Ok(entries) => {
                for (i, (ino, name, attr)) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    let attr = self.attr(attr);
                    if reply.add(
                        INodeNo(*ino),
                        next,
                        OsStr::from_bytes(name),
                        &TTL,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.vfs.releasedir(fh.0), reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes commit as they happen; this makes them durable.
        Self::empty(self.vfs.sync(), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.vfs.statfs() {
            Ok(usage) => {
                // Without a quota, report room for 1 PiB and 2^32 files.
                let total_bytes = usage.quota.max_bytes.unwrap_or(1 << 50);
                let total_files = usage.quota.max_files.unwrap_or(1 << 32);
                let blocks = total_bytes / BLOCK;
                let free = blocks.saturating_sub(usage.logical_bytes.div_ceil(BLOCK));
                let files_free = total_files.saturating_sub(usage.entries);
                reply.statfs(
                    blocks,
                    free,
                    free,
                    total_files,
                    files_free,
                    BLOCK as u32,
                    255,
                    BLOCK as u32,
                );
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = match flags {
            0 => XattrMode::Any,
            libc::XATTR_CREATE => XattrMode::Create,
            libc::XATTR_REPLACE => XattrMode::Replace,
            _ => return reply.error(Errno::EINVAL),
        };
        Self::empty(
            self.vfs.setxattr(ino.0, name.as_bytes(), value, mode),
            reply,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name.as_bytes()) {
            Ok(value) => xattr_reply(&value, size, reply),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                xattr_reply(&list, size, reply);
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.vfs.removexattr(ino.0, name.as_bytes()), reply);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // Files here are not terminals or devices (isatty asks this on every open).
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // `default_permissions` makes the kernel check modes before asking.
        reply.ok();
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // The reply counts bytes in 32 bits: larger files are copied by the kernel.
        let len = len.min(u64::from(u32::MAX));
        match self
            .vfs
            .copy_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
        {
            Ok(Some(copied)) => reply.written(copied as u32),
            // Not a whole-file copy: the kernel copies the bytes (read and write) instead.
            Ok(None) => reply.error(Errno::EOPNOTSUPP),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            return reply.error(Errno::EPERM);
        }
        let node = NewNode::File {
            mode: mode & !umask & 0o7777,
        };
        let result = self
            .vfs
            .create(parent.0, name.as_bytes(), node)
            .and_then(|attr| {
                let write = OpenFlags(flags).acc_mode() != OpenAccMode::O_RDONLY;
                Ok((attr.clone(), self.vfs.open(attr.ino, write)?))
            });
        match result {
            Ok((attr, handle)) => reply.created(
                &TTL,
                &self.attr(&attr),
                Generation(0),
                FileHandle(handle),
                FopenFlags::empty(),
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_times_before_the_epoch_keep_their_fraction() {
        // What fuser makes of the kernel's (-2 s, 500_000_000 ns), meaning -1.5 s.
        let decoded = UNIX_EPOCH - Duration::new(2, 500_000_000);
        assert_eq!(from_kernel(decoded), -1_500_000_000);
        assert_eq!(from_kernel(UNIX_EPOCH + Duration::new(3, 7)), 3_000_000_007);
        assert_eq!(
            to_time(-1_500_000_000),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
    }
}
