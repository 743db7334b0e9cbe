//! The FUSE floor: a filesystem that keeps everything in memory and does nothing else,
//! served with agentbox's own mount settings (the same fuser build, serving threads, busy
//! polling, mount options, kernel capabilities and cache lifetimes, negative entries
//! included). Its figures are the most any FUSE filesystem can do on this machine: the
//! kernel's round trips and copies with nothing behind them. Next to them, agentbox's say
//! how much of a gap to ext4 is FUSE itself and how much is agentbox's own work.
//!
//! Only what the workloads need, done simply: no links, renames, symlinks or extended
//! attributes (ENOSYS or none), one lock around everything, file bytes in 64 KiB blocks
//! (so large files grow without copying) that are reused once freed, so a round after the
//! first does not pay for the kernel's first touch of new memory any more than a
//! filesystem writing into a warm page cache does.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, MountOption, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};

/// How long the kernel may keep entries and attributes: agentbox's mounts use the same.
const TTL: Duration = Duration::from_secs(10);
/// File bytes are kept in blocks of this size.
const BLOCK: usize = 64 * 1024;
const ROOT: u64 = 1;

/// Mounts the floor filesystem at `mountpoint`; it is served until the session is dropped.
pub fn mount(mountpoint: &Path) -> Result<fuser::BackgroundSession> {
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("fuse-floor".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        MountOption::RW,
    ];
    if uid == 0 {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(fsd::fuse::DEFAULT_THREADS);
    config.clone_fd = fsd::fuse::DEFAULT_THREADS > 1;
    config.busy_poll = fsd::fuse::DEFAULT_BUSY_POLL;
    let fs = MemoryFs::new(uid, gid);
    fuser::spawn_mount(fs, mountpoint, &config)
        .with_context(|| format!("mounting the FUSE floor at {}", mountpoint.display()))
}

enum Content {
    Directory(BTreeMap<Vec<u8>, u64>),
    File {
        blocks: Vec<Option<Box<[u8]>>>,
        size: u64,
    },
}

struct Node {
    content: Content,
    mode: u16,
    nlink: u32,
    /// Open handles: an unlinked file lives until the last is released.
    open: u32,
    mtime: SystemTime,
    ctime: SystemTime,
}

struct Nodes {
    next_ino: u64,
    map: HashMap<u64, Node>,
    /// Blocks of removed or shortened files, for reuse.
    spare: Vec<Box<[u8]>>,
}

impl Nodes {
    /// Removes `ino`, keeping its blocks for reuse.
    fn drop_node(&mut self, ino: u64) {
        if let Some(Node {
            content: Content::File { blocks, .. },
            ..
        }) = self.map.remove(&ino)
        {
            self.spare.extend(blocks.into_iter().flatten());
        }
    }
}

struct MemoryFs {
    uid: u32,
    gid: u32,
    nodes: Mutex<Nodes>,
}

impl MemoryFs {
    fn new(uid: u32, gid: u32) -> MemoryFs {
        let now = SystemTime::now();
        let root = Node {
            content: Content::Directory(BTreeMap::new()),
            mode: 0o755,
            nlink: 2,
            open: 0,
            mtime: now,
            ctime: now,
        };
        MemoryFs {
            uid,
            gid,
            nodes: Mutex::new(Nodes {
                next_ino: ROOT + 1,
                map: HashMap::from([(ROOT, root)]),
                spare: Vec::new(),
            }),
        }
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn attr(&self, ino: u64, node: &Node) -> FileAttr {
        let (kind, size) = match &node.content {
            Content::Directory(children) => (FileType::Directory, children.len() as u64),
            Content::File { size, .. } => (FileType::RegularFile, *size),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.ctime,
            crtime: node.ctime,
            kind,
            perm: node.mode,
            nlink: node.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Adds a new node named `name` in directory `parent`; its attributes.
    fn add(
        &self,
        parent: u64,
        name: &OsStr,
        content: Content,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut nodes = self.nodes();
        let now = SystemTime::now();
        let is_dir = matches!(content, Content::Directory(_));
        let ino = nodes.next_ino;
        let parent_node = nodes.map.get_mut(&parent).ok_or(Errno::ENOENT)?;
        let Content::Directory(children) = &mut parent_node.content else {
            return Err(Errno::ENOTDIR);
        };
        if children.contains_key(name.as_bytes()) {
            return Err(Errno::EEXIST);
        }
        children.insert(name.as_bytes().to_vec(), ino);
        parent_node.mtime = now;
        parent_node.ctime = now;
        if is_dir {
            parent_node.nlink += 1;
        }
        nodes.next_ino += 1;
        let node = Node {
            content,
            mode: (mode & 0o7777) as u16,
            nlink: if is_dir { 2 } else { 1 },
            open: 0,
            mtime: now,
            ctime: now,
        };
        let attr = self.attr(ino, &node);
        nodes.map.insert(ino, node);
        Ok(attr)
    }

    /// Removes entry `name` of `parent`, a directory (which must be empty) or not.
    fn remove(&self, parent: u64, name: &OsStr, directory: bool) -> Result<(), Errno> {
        let mut nodes = self.nodes();
        let ino = match nodes.map.get(&parent).map(|node| &node.content) {
            Some(Content::Directory(children)) => {
                *children.get(name.as_bytes()).ok_or(Errno::ENOENT)?
            }
            Some(Content::File { .. }) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::ENOENT),
        };
        let node = nodes.map.get_mut(&ino).ok_or(Errno::ENOENT)?;
        match (&node.content, directory) {
            (Content::Directory(children), true) if !children.is_empty() => {
                return Err(Errno::ENOTEMPTY);
            }
            (Content::Directory(_), false) => return Err(Errno::EISDIR),
            (Content::File { .. }, true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        node.nlink = node.nlink.saturating_sub(if directory { 2 } else { 1 });
        if node.nlink == 0 && node.open == 0 {
            nodes.drop_node(ino);
        }
        let now = SystemTime::now();
        if let Some(parent_node) = nodes.map.get_mut(&parent) {
            if let Content::Directory(children) = &mut parent_node.content {
                children.remove(name.as_bytes());
            }
            parent_node.mtime = now;
            parent_node.ctime = now;
            if directory {
                parent_node.nlink -= 1;
            }
        }
        Ok(())
    }

    /// The entries of directory `ino` from position `offset` on.
    fn listing(&self, ino: u64, offset: u64) -> Result<Vec<(u64, Vec<u8>, FileAttr)>, Errno> {
        let nodes = self.nodes();
        let Content::Directory(children) = &nodes.map.get(&ino).ok_or(Errno::ENOENT)?.content
        else {
            return Err(Errno::ENOTDIR);
        };
        Ok(children
            .iter()
            .skip(offset as usize)
            .filter_map(|(name, child)| {
                let node = nodes.map.get(child)?;
                Some((*child, name.clone(), self.attr(*child, node)))
            })
            .collect())
    }
}

/// Copies `data` into `blocks` at `offset`, adding the blocks it reaches (zeroed spare
/// ones first).
fn write_blocks(
    blocks: &mut Vec<Option<Box<[u8]>>>,
    spare: &mut Vec<Box<[u8]>>,
    offset: u64,
    data: &[u8],
) {
    let mut position = offset as usize;
    let mut rest = data;
    while !rest.is_empty() {
        let (index, within) = (position / BLOCK, position % BLOCK);
        if blocks.len() <= index {
            blocks.resize_with(index + 1, || None);
        }
        let block = blocks[index].get_or_insert_with(|| match spare.pop() {
            Some(mut block) => {
                block.fill(0);
                block
            }
            None => vec![0; BLOCK].into_boxed_slice(),
        });
        let n = rest.len().min(BLOCK - within);
        block[within..within + n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        position += n;
    }
}

/// Up to `size` bytes at `offset` of a file of `file_size` bytes; holes read as zeros.
fn read_blocks(blocks: &[Option<Box<[u8]>>], file_size: u64, offset: u64, size: u32) -> Vec<u8> {
    let end = file_size.min(offset.saturating_add(u64::from(size)));
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut position = offset;
    while position < end {
        let (index, within) = ((position as usize) / BLOCK, (position as usize) % BLOCK);
        let n = ((end - position) as usize).min(BLOCK - within);
        match blocks.get(index).and_then(Option::as_ref) {
            Some(block) => out.extend_from_slice(&block[within..within + n]),
            None => out.resize(out.len() + n, 0),
        }
        position += n as u64;
    }
    out
}

/// Shortens or lengthens a file to `size`: the blocks past it go to `spare`, the rest of
/// the last one is zeroed so a later extension reads zeros.
fn resize(
    blocks: &mut Vec<Option<Box<[u8]>>>,
    spare: &mut Vec<Box<[u8]>>,
    file_size: &mut u64,
    size: u64,
) {
    let size_usize = size as usize;
    let kept = size_usize.div_ceil(BLOCK).min(blocks.len());
    spare.extend(blocks.drain(kept..).flatten());
    if let Some(Some(last)) = blocks.get_mut(size_usize / BLOCK) {
        last[size_usize % BLOCK..].fill(0);
    }
    *file_size = size;
}

fn to_time(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for MemoryFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // What agentbox's mounts ask for (`fsd/src/fuse.rs`), so the kernel behaves the same.
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let nodes = self.nodes();
        let child = match nodes.map.get(&parent.0).map(|node| &node.content) {
            Some(Content::Directory(children)) => children.get(name.as_bytes()).copied(),
            Some(Content::File { .. }) => return reply.error(Errno::ENOTDIR),
            None => return reply.error(Errno::ENOENT),
        };
        match child.and_then(|ino| nodes.map.get(&ino).map(|node| (ino, node))) {
            Some((ino, node)) => reply.entry(&TTL, &self.attr(ino, node), Generation(0)),
            // A negative entry, as agentbox answers: the kernel keeps the absence.
            None => {
                let mut absent = self.attr(ROOT, &nodes.map[&ROOT]);
                absent.ino = INodeNo(0);
                reply.entry(&TTL, &absent, Generation(0))
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let nodes = self.nodes();
        match nodes.map.get(&ino.0) {
            Some(node) => reply.attr(&TTL, &self.attr(ino.0, node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut nodes = self.nodes();
        let Nodes { map, spare, .. } = &mut *nodes;
        let Some(node) = map.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(size) = size {
            match &mut node.content {
                Content::File { blocks, size: now } => resize(blocks, spare, now, size),
                Content::Directory(_) => return reply.error(Errno::EISDIR),
            }
            node.mtime = SystemTime::now();
        }
        if let Some(mode) = mode {
            node.mode = (mode & 0o7777) as u16;
        }
        if let Some(mtime) = mtime {
            node.mtime = to_time(mtime);
        }
        node.ctime = SystemTime::now();
        reply.attr(&TTL, &self.attr(ino.0, node));
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
        let content = Content::Directory(BTreeMap::new());
        match self.add(parent.0, name, content, mode & !umask) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let content = Content::File {
            blocks: Vec::new(),
            size: 0,
        };
        match self.add(parent.0, name, content, mode & !umask) {
            Ok(attr) => {
                if let Some(node) = self.nodes().map.get_mut(&attr.ino.0) {
                    node.open += 1;
                }
                reply.created(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(attr.ino.0),
                    FopenFlags::empty(),
                )
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.nodes().map.get_mut(&ino.0) {
            Some(node) => {
                node.open += 1;
                reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let nodes = self.nodes();
        match nodes.map.get(&ino.0).map(|node| &node.content) {
            Some(Content::File {
                blocks,
                size: file_size,
            }) => reply.data(&read_blocks(blocks, *file_size, offset, size)),
            Some(Content::Directory(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut nodes = self.nodes();
        let Nodes { map, spare, .. } = &mut *nodes;
        let Some(node) = map.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let Content::File { blocks, size } = &mut node.content else {
            return reply.error(Errno::EISDIR);
        };
        write_blocks(blocks, spare, offset, data);
        *size = (*size).max(offset + data.len() as u64);
        node.mtime = SystemTime::now();
        node.ctime = node.mtime;
        reply.written(data.len() as u32);
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

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut nodes = self.nodes();
        if let Some(node) = nodes.map.get_mut(&ino.0) {
            node.open = node.open.saturating_sub(1);
            if node.open == 0 && node.nlink == 0 {
                nodes.drop_node(ino.0);
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(ino.0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.listing(ino.0, offset) {
            Ok(entries) => {
                for (i, (child, name, attr)) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    if reply.add(INodeNo(*child), next, attr.kind, OsStr::from_bytes(name)) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.listing(ino.0, offset) {
            Ok(entries) => {
                for (i, (child, name, attr)) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    let name = OsStr::from_bytes(name);
                    if reply.add(INodeNo(*child), next, name, &TTL, attr, Generation(0)) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Room for 1 PiB and 2^32 files, as an agentbox mount without a quota reports.
        let blocks = (1u64 << 50) / 4096;
        reply.statfs(blocks, blocks, blocks, 1 << 32, 1 << 32, 4096, 255, 4096);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_what_was_written_and_read_zeros_in_holes() {
        let mut blocks = Vec::new();
        let mut spare = Vec::new();
        let mut size = 0u64;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        write_blocks(&mut blocks, &mut spare, 10, &data);
        size = size.max(10 + data.len() as u64);
        let read = read_blocks(&blocks, size, 0, 300_000);
        assert_eq!(read.len(), 200_010);
        assert_eq!(&read[..10], &[0; 10]);
        assert_eq!(&read[10..], &data[..]);

        // Shortened then lengthened, the cut-off bytes read as zeros.
        resize(&mut blocks, &mut spare, &mut size, 70_000);
        assert_eq!(
            spare.len(),
            2,
            "the blocks past the new end are kept for reuse"
        );
        resize(&mut blocks, &mut spare, &mut size, 150_000);
        let read = read_blocks(&blocks, size, 69_990, 20);
        assert_eq!(&read[..10], &data[69_980..69_990]);
        assert_eq!(&read[10..], &[0; 10]);
        assert_eq!(read_blocks(&blocks, size, 149_999, 100).len(), 1);

        // A reused block reads as zeros where nothing was written.
        write_blocks(&mut blocks, &mut spare, 140_000, b"x");
        assert!(spare.len() < 2);
        assert_eq!(read_blocks(&blocks, size, 139_990, 20), {
            let mut expected = vec![0u8; 20];
            expected[10] = b'x';
            expected
        });
    }
}
