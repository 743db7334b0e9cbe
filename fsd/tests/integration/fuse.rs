//! The FUSE view through a real kernel mount: ordinary file operations with `std::fs`,
//! a snapshot mounted read-only, and a model-based test replaying random operations on
//! the mount and on a plain temporary directory and comparing every result.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fsd::fuse::{Mount, MountConfig};
use fsd::vfs::{Vfs, VfsOptions};
use fsd::{FsPath, Store, StoreOptions, View, WriteOptions};
use proptest::prelude::*;

/// A store in a temporary directory with agent `a` mounted read-write.
pub struct Mounted {
    pub store: Store,
    pub agent: i64,
    mount: Option<Mount>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    pub fn new() -> Mounted {
        Self::with_view(VfsOptions::default(), |_, _| {})
    }

    fn with_busy_poll(busy_poll: Duration) -> Mounted {
        Self::made(
            VfsOptions::default(),
            |_, _| {},
            busy_poll,
            fsd::BATCH_WINDOW,
        )
    }

    fn with_view(options: VfsOptions, prepare: impl FnOnce(&Store, i64)) -> Mounted {
        Self::made(
            options,
            prepare,
            fsd::fuse::DEFAULT_BUSY_POLL,
            fsd::BATCH_WINDOW,
        )
    }

    /// A mount whose batches of changes commit only after `window` (or when something
    /// else makes them).
    pub fn with_batch_window(window: Duration) -> Mounted {
        Self::made(
            VfsOptions::default(),
            |_, _| {},
            fsd::fuse::DEFAULT_BUSY_POLL,
            window,
        )
    }

    fn made(
        options: VfsOptions,
        prepare: impl FnOnce(&Store, i64),
        busy_poll: Duration,
        batch_window: Duration,
    ) -> Mounted {
        assert!(
            Path::new("/dev/fuse").exists(),
            "these tests need /dev/fuse and fusermount3: run scripts/setup.sh (Debian package fuse3)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(
            &tmp.path().join("data"),
            StoreOptions {
                durable: false,
                sweep_grace: Duration::ZERO,
                batch_window: Some(batch_window),
            },
        )
        .unwrap();
        let agent = store.create_agent("a").unwrap().id;
        prepare(&store, agent);
        let dir = tmp.path().join("mnt");
        fs::create_dir(&dir).unwrap();
        let vfs = Vfs::new(store.clone(), agent, options);
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let config = MountConfig {
            uid,
            gid,
            threads: 2,
            busy_poll,
            allow_other: false,
            fs_name: "agentbox-test".into(),
        };
        let mount =
            fsd::fuse::mount(vfs, &dir, &config).expect("mounting needs /dev/fuse and fusermount3");
        Mounted {
            store,
            agent,
            mount: Some(mount),
            dir,
            _tmp: tmp,
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self._tmp.path().join("data")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mount) = self.mount.take() {
            let _ = mount.unmount();
        }
    }
}

#[test]
fn ordinary_file_operations_work_through_the_mount() {
    let m = Mounted::new();
    fs::create_dir_all(m.path("a/b")).unwrap();
    fs::write(m.path("a/b/hello.txt"), b"hello").unwrap();
    assert_eq!(fs::read(m.path("a/b/hello.txt")).unwrap(), b"hello");
    // Append, overwrite in the middle, extend past the end.
    let mut file = OpenOptions::new()
        .append(true)
        .open(m.path("a/b/hello.txt"))
        .unwrap();
    file.write_all(b" world").unwrap();
    drop(file);
    let mut file = OpenOptions::new()
        .write(true)
        .open(m.path("a/b/hello.txt"))
        .unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"J").unwrap();
    file.seek(SeekFrom::Start(14)).unwrap();
    file.write_all(b"!").unwrap();
    drop(file);
    assert_eq!(
        fs::read(m.path("a/b/hello.txt")).unwrap(),
        b"Jello world\0\0\0!"
    );
    // Truncate, chmod, times.
    let file = OpenOptions::new()
        .write(true)
        .open(m.path("a/b/hello.txt"))
        .unwrap();
    file.set_len(5).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    drop(file);
    fs::set_permissions(m.path("a/b/hello.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let meta = fs::metadata(m.path("a/b/hello.txt")).unwrap();
    assert_eq!(
        (meta.len(), meta.mode() & 0o7777, meta.mtime()),
        (5, 0o600, 1_000_000)
    );
    // Rename, hard link, symlink, readdir.
    fs::rename(m.path("a/b/hello.txt"), m.path("a/hello.txt")).unwrap();
    fs::hard_link(m.path("a/hello.txt"), m.path("a/again.txt")).unwrap();
    assert_eq!(fs::metadata(m.path("a/again.txt")).unwrap().nlink(), 2);
    std::os::unix::fs::symlink("hello.txt", m.path("a/link")).unwrap();
    assert_eq!(
        fs::read_link(m.path("a/link")).unwrap(),
        Path::new("hello.txt")
    );
    assert_eq!(fs::read(m.path("a/link")).unwrap(), b"Jello");
    let mut names: Vec<_> = fs::read_dir(m.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["again.txt", "b", "hello.txt", "link"]);
    // Errors the kernel passes on.
    assert_eq!(
        fs::remove_dir(m.path("a")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        fs::create_dir(m.path("a")).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        fs::rename(m.path("a"), m.path("a/b/c"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EINVAL)
    );
    assert_eq!(
        fs::write(m.path("etc"), b"x").unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
    // What the mount did is in the store.
    let path = |p: &str| FsPath::parse(p).unwrap();
    assert_eq!(
        m.store
            .read_file(m.agent, &path("/a/again.txt"), &View::Live, 0, 100)
            .unwrap(),
        b"Jello"
    );
    fs::remove_file(m.path("a/again.txt")).unwrap();
    fs::remove_dir(m.path("a/b")).unwrap();
    let listed: Vec<_> = m
        .store
        .list_dir(m.agent, &path("/a"), &View::Live)
        .unwrap()
        .iter()
        .map(|e| e.name_lossy())
        .collect();
    assert_eq!(listed, ["hello.txt", "link"]);
    assert!(m.store.fsck().unwrap().is_clean());
}

#[test]
fn posix_details_hold_through_the_mount() {
    let m = Mounted::new();
    // A directory made in a set-group-ID directory inherits the bit.
    fs::create_dir(m.path("shared")).unwrap();
    fs::set_permissions(m.path("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir(m.path("shared/sub")).unwrap();
    assert_eq!(
        fs::metadata(m.path("shared/sub")).unwrap().mode() & 0o2000,
        0o2000
    );
    // A directory removed while open stays usable through its descriptor.
    fs::create_dir(m.path("gone")).unwrap();
    let dir = File::open(m.path("gone")).unwrap();
    fs::remove_dir(m.path("gone")).unwrap();
    assert_eq!(dir.metadata().unwrap().nlink(), 0);
    drop(dir);
    // Truncating to the same size still counts as a modification.
    fs::write(m.path("t"), b"abcd").unwrap();
    let file = OpenOptions::new().write(true).open(m.path("t")).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(978_307_200))
        .unwrap();
    file.set_len(4).unwrap();
    assert!(file.metadata().unwrap().mtime() > 978_307_200);
    // Times before 1970 keep their fraction.
    let old = std::time::UNIX_EPOCH - Duration::from_millis(1500);
    file.set_modified(old).unwrap();
    drop(file);
    let meta = fs::metadata(m.path("t")).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (-2, 500_000_000));
    // An open with O_TRUNC empties the file before it returns, for everyone; as on Linux's
    // own file systems, even an open for reading only.
    fs::write(m.path("rewritten"), b"the old content, longer").unwrap();
    let mut rewriting = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path("rewritten"))
        .unwrap();
    assert_eq!(fs::metadata(m.path("rewritten")).unwrap().len(), 0);
    let path = FsPath::parse("/rewritten").unwrap();
    assert_eq!(m.store.stat(m.agent, &path, &View::Live).unwrap().size, 0);
    rewriting.write_all(b"new").unwrap();
    drop(rewriting);
    assert_eq!(fs::read(m.path("rewritten")).unwrap(), b"new");
    let c_name =
        std::ffi::CString::new(m.path("rewritten").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; the descriptor is closed at once.
    let fd = unsafe { libc::open(c_name.as_ptr(), libc::O_RDONLY | libc::O_TRUNC) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just opened and is closed once.
    unsafe { libc::close(fd) };
    assert_eq!(fs::metadata(m.path("rewritten")).unwrap().len(), 0);
    assert!(m.store.fsck().unwrap().is_clean());
}

#[test]
fn a_large_file_streams_through_the_mount() {
    let m = Mounted::new();
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    fs::write(m.path("big.bin"), &data).unwrap();
    let mut back = Vec::new();
    File::open(m.path("big.bin"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "the file read back differs");
    // A random write in the middle stores a few chunks, not the file again.
    let before = m.store.store_stats().unwrap();
    let mut file = OpenOptions::new()
        .write(true)
        .open(m.path("big.bin"))
        .unwrap();
    file.seek(SeekFrom::Start(10_000_000)).unwrap();
    file.write_all(b"patched").unwrap();
    drop(file);
    let after = m.store.store_stats().unwrap();
    assert!(
        after.blob_bytes - before.blob_bytes < 1_000_000,
        "{} new bytes",
        after.blob_bytes - before.blob_bytes
    );
    let mut expected = data;
    expected[10_000_000..10_000_007].copy_from_slice(b"patched");
    assert!(fs::read(m.path("big.bin")).unwrap() == expected);
}

#[test]
fn a_snapshot_mounts_read_only() {
    let m = Mounted::with_view(
        VfsOptions {
            read_only: false,
            view: View::Snapshot("s".into()),
            sandbox: false,
        },
        |store, agent| {
            let options = WriteOptions::default();
            store
                .write_file(
                    agent,
                    &FsPath::parse("/kept.txt").unwrap(),
                    &mut &b"then"[..],
                    &options,
                )
                .unwrap();
            store.create_snapshot(agent, Some("s")).unwrap();
            store
                .write_file(
                    agent,
                    &FsPath::parse("/kept.txt").unwrap(),
                    &mut &b"now"[..],
                    &options,
                )
                .unwrap();
        },
    );
    assert_eq!(fs::read(m.path("kept.txt")).unwrap(), b"then");
    assert_eq!(
        fs::write(m.path("new.txt"), b"x")
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EROFS)
    );
}

#[test]
fn changes_made_elsewhere_show_in_the_mount_at_once() {
    let m = Mounted::new();
    let path = |p: &str| FsPath::parse(p).unwrap();
    let put = |p: &str, data: &[u8]| {
        m.store
            .write_file(m.agent, &path(p), &mut &data[..], &WriteOptions::default())
            .unwrap();
    };
    // The kernel has the file, its size and its pages cached after these.
    fs::write(m.path("f.txt"), b"one").unwrap();
    assert_eq!(fs::read(m.path("f.txt")).unwrap(), b"one");
    assert_eq!(fs::metadata(m.path("f.txt")).unwrap().len(), 3);
    assert!(fs::metadata(m.path("later.txt")).is_err());
    // Writes through the store (as the HTTP API makes them).
    put("/f.txt", b"the second version");
    assert_eq!(fs::metadata(m.path("f.txt")).unwrap().len(), 18);
    assert_eq!(fs::read(m.path("f.txt")).unwrap(), b"the second version");
    put("/later.txt", b"new");
    assert_eq!(fs::read(m.path("later.txt")).unwrap(), b"new");
    m.store.remove(m.agent, &path("/later.txt"), false).unwrap();
    assert!(fs::metadata(m.path("later.txt")).is_err());
    // The kernel keeps absent names too; a name appearing elsewhere is announced.
    assert!(fs::metadata(m.path("g.txt")).is_err());
    m.store
        .rename(
            m.agent,
            &path("/f.txt"),
            &path("/g.txt"),
            Default::default(),
        )
        .unwrap();
    assert!(fs::metadata(m.path("f.txt")).is_err());
    assert_eq!(fs::read(m.path("g.txt")).unwrap(), b"the second version");
    // A snapshot restore: the mount follows.
    m.store.create_snapshot(m.agent, Some("before")).unwrap();
    fs::write(m.path("g.txt"), b"changed through the mount").unwrap();
    fs::create_dir(m.path("made-later")).unwrap();
    m.store.restore_snapshot(m.agent, "before").unwrap();
    assert_eq!(fs::read(m.path("g.txt")).unwrap(), b"the second version");
    assert!(fs::metadata(m.path("made-later")).is_err());
    // Removed through the mount and looked for (absent, as the kernel now keeps it), then
    // brought back by a restore.
    fs::remove_file(m.path("g.txt")).unwrap();
    assert!(fs::metadata(m.path("g.txt")).is_err());
    m.store.restore_snapshot(m.agent, "before").unwrap();
    assert_eq!(fs::read(m.path("g.txt")).unwrap(), b"the second version");
    // Made in a directory the kernel has listed and found the name absent in.
    fs::create_dir(m.path("d")).unwrap();
    assert!(fs::metadata(m.path("d/n.txt")).is_err());
    put("/d/n.txt", b"made elsewhere");
    assert_eq!(fs::read(m.path("d/n.txt")).unwrap(), b"made elsewhere");
    // And the other way: the store sees what the mount did, as soon as it is closed.
    fs::write(m.path("from-mount.txt"), b"hi").unwrap();
    assert_eq!(
        m.store
            .read_file(m.agent, &path("/from-mount.txt"), &View::Live, 0, 10)
            .unwrap(),
        b"hi"
    );
}

/// The agent's usage once `done` says so, or after 10 s: the kernel sends a release after
/// close returns, so what a close frees is freed a moment later.
fn usage_once(m: &Mounted, done: impl Fn(&fsd::AgentStats) -> bool) -> fsd::AgentStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let usage = m.store.agent_stats(m.agent).unwrap();
        if done(&usage) || std::time::Instant::now() > deadline {
            return usage;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_file_open_across_a_restore_that_removes_it_lives_on_until_closed() {
    let m = Mounted::new();
    m.store.create_snapshot(m.agent, Some("empty")).unwrap();
    // Made after the snapshot, large enough for blob files, and kept open.
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let mut open = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(m.path("open.bin"))
        .unwrap();
    open.write_all(&big).unwrap();
    open.sync_all().unwrap();
    set_xattr(&m.path("open.bin"), "user.kept", b"yes", 0).unwrap();
    fs::write(m.path("closed.txt"), b"not open").unwrap();

    m.store.restore_snapshot(m.agent, "empty").unwrap();
    assert!(
        fs::metadata(m.path("open.bin")).is_err(),
        "its name went with the restore"
    );
    assert!(fs::metadata(m.path("closed.txt")).is_err());

    // As after an unlink: the open file can still be read, written and synced.
    open.seek(SeekFrom::Start(0)).unwrap();
    let mut read = Vec::new();
    open.read_to_end(&mut read).unwrap();
    assert!(read == big, "the open file reads back what was written");
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", open.as_raw_fd()));
    assert_eq!(get_xattr(&fd_path, "user.kept").unwrap(), b"yes");
    open.write_all(b"more").unwrap();
    open.sync_all().unwrap();
    assert_eq!(open.metadata().unwrap().len(), big.len() as u64 + 4);
    let usage = m.store.agent_stats(m.agent).unwrap();
    assert_eq!(usage.files, 1, "the open file counts until it is closed");

    drop(open);
    let usage = usage_once(&m, |usage| usage.files == 0);
    assert_eq!((usage.files, usage.logical_bytes), (0, 0), "{usage:?}");
    let report = m.store.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_directory_open_across_a_restore_that_removes_it_goes_when_closed() {
    let m = Mounted::new();
    m.store.create_snapshot(m.agent, Some("empty")).unwrap();
    fs::create_dir(m.path("listed")).unwrap();
    for name in ["a", "b", "c"] {
        fs::write(m.path(&format!("listed/{name}")), name).unwrap();
    }
    // Held open (as `ls` or a walker does) while the restore removes it.
    let dir = File::open(m.path("listed")).unwrap();
    m.store.restore_snapshot(m.agent, "empty").unwrap();
    assert!(fs::metadata(m.path("listed")).is_err());
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let meta = fs::metadata(&fd_path).expect("the open directory can still be asked about");
    assert!(meta.is_dir());
    let usage = m.store.agent_stats(m.agent).unwrap();
    assert_eq!(usage.files, 0, "its files went with the restore: {usage:?}");

    drop(dir);
    let usage = usage_once(&m, |usage| usage.directories == 0);
    assert_eq!(usage.directories, 0, "{usage:?}");
    let report = m.store.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn only_a_whole_file_copy_is_made_by_sharing_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let agent = store.create_agent("a").unwrap().id;
    let vfs = Vfs::new(store.clone(), agent, VfsOptions::default());
    let content = vec![5u8; 70_000];
    let put = |p: &str, bytes: &[u8]| {
        let p = FsPath::parse(p).unwrap();
        store
            .write_file(agent, &p, &mut &bytes[..], &WriteOptions::default())
            .unwrap()
            .ino
    };
    let (source, empty, longer) = (put("/s", &content), put("/e", b""), put("/l", &[1; 80_000]));
    let open = |ino| vfs.open(ino, true).unwrap();
    let (s, e, l) = (open(source), open(empty), open(longer));
    // Partial copies, and a whole file over a longer one, are left to the kernel.
    assert_eq!(vfs.copy_range(s, 10, e, 0, 100).unwrap(), None);
    assert_eq!(vfs.copy_range(s, 0, e, 5, 70_000).unwrap(), None);
    assert_eq!(vfs.copy_range(s, 0, e, 0, 69_999).unwrap(), None);
    assert_eq!(vfs.copy_range(s, 0, l, 0, 70_000).unwrap(), None);
    assert_eq!(
        vfs.copy_range(s, 70_000, e, 0, 10).unwrap(),
        Some(0),
        "at the end"
    );
    // The whole file onto an empty one: shared at once.
    assert_eq!(vfs.copy_range(s, 0, e, 0, u64::MAX).unwrap(), Some(70_000));
    assert_eq!(
        vfs.getattr(empty).unwrap().hash,
        vfs.getattr(source).unwrap().hash
    );
    assert_eq!(vfs.getattr(empty).unwrap().size, 70_000);
}

/// `copy_file_range(2)` of `len` bytes between two open files at explicit offsets.
fn copy_range(from: &File, offset_in: i64, to: &File, offset_out: i64, len: usize) -> usize {
    let (mut offset_in, mut offset_out) = (offset_in, offset_out);
    // SAFETY: two open descriptors and offsets that outlive the call.
    let copied = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            &mut offset_in,
            to.as_raw_fd(),
            &mut offset_out,
            len,
            0,
        )
    };
    assert!(
        copied >= 0,
        "copy_file_range: {}",
        std::io::Error::last_os_error()
    );
    copied as usize
}

#[test]
fn a_whole_file_copy_shares_the_content_and_other_copies_copy_bytes() {
    let m = Mounted::new();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(m.path("original.bin"), &content).unwrap();
    let stored_before = m.store.agent_stats(m.agent).unwrap().stored_bytes;

    // What `cp` does: the whole file onto a new, empty one.
    let from = File::open(m.path("original.bin")).unwrap();
    let to = File::create(m.path("copy.bin")).unwrap();
    assert_eq!(copy_range(&from, 0, &to, 0, usize::MAX >> 1), content.len());
    assert_eq!(
        copy_range(&from, content.len() as i64, &to, content.len() as i64, 4096),
        0
    );
    drop(to);
    assert!(fs::read(m.path("copy.bin")).unwrap() == content);
    let stat = |p: &str| {
        let p = FsPath::parse(p).unwrap();
        m.store.stat(m.agent, &p, &View::Live).unwrap()
    };
    assert_eq!(
        stat("/copy.bin").hash,
        stat("/original.bin").hash,
        "the chunks are shared"
    );
    let usage = m.store.agent_stats(m.agent).unwrap();
    assert_eq!(usage.stored_bytes, stored_before, "nothing stored twice");
    assert_eq!(usage.logical_bytes, 2 * content.len() as u64);

    // Part of a file, and a whole file over a longer one: the bytes are copied.
    let part = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(m.path("part.bin"))
        .unwrap();
    part.set_len(100).unwrap();
    assert_eq!(copy_range(&from, 1_000, &part, 10, 50), 50);
    drop(part);
    let mut expected = vec![0u8; 100];
    expected[10..60].copy_from_slice(&content[1_000..1_050]);
    assert_eq!(fs::read(m.path("part.bin")).unwrap(), expected);

    fs::write(m.path("longer.bin"), vec![9u8; content.len() + 10]).unwrap();
    let longer = OpenOptions::new()
        .write(true)
        .open(m.path("longer.bin"))
        .unwrap();
    let mut copied = 0;
    while copied < content.len() {
        let offset = copied as i64;
        copied += copy_range(&from, offset, &longer, offset, content.len() - copied);
    }
    drop(longer);
    let mut expected = content.clone();
    expected.extend_from_slice(&[9u8; 10]);
    assert!(fs::read(m.path("longer.bin")).unwrap() == expected);

    // And `cp` itself, which copies with copy_file_range.
    let status = std::process::Command::new("cp")
        .arg(m.path("original.bin"))
        .arg(m.path("by-cp.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(fs::read(m.path("by-cp.bin")).unwrap() == content);
    assert_eq!(stat("/by-cp.bin").hash, stat("/original.bin").hash);
    let report = m.store.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn the_sandbox_view_shows_system_names_that_are_not_stored() {
    let m = Mounted::with_view(
        VfsOptions {
            sandbox: true,
            ..VfsOptions::default()
        },
        |store, agent| {
            let options = WriteOptions::default();
            store
                .write_file(
                    agent,
                    &FsPath::parse("/reports/summary.txt").unwrap(),
                    &mut &b"ok"[..],
                    &options,
                )
                .unwrap();
        },
    );
    let mut names: Vec<_> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = fsd::RESERVED_NAMES.iter().map(|n| n.to_string()).collect();
    expected.push("reports".into());
    expected.sort();
    assert_eq!(names, expected);
    assert!(fs::metadata(m.path("usr")).unwrap().is_dir());
    assert!(fs::metadata(m.path("tmp")).unwrap().is_dir());
    assert_eq!(fs::read_dir(m.path("etc")).unwrap().count(), 0);
    assert_eq!(fs::read_link(m.path("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(fs::read(m.path("reports/summary.txt")).unwrap(), b"ok");
    // Nothing can be made, changed or removed through them.
    assert_eq!(
        fs::write(m.path("tmp/x"), b"x").unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
    assert_eq!(
        fs::remove_dir(m.path("run")).unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
    assert_eq!(
        fs::rename(m.path("reports"), m.path("sys"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    let perms = fs::Permissions::from_mode(0o700);
    assert_eq!(
        fs::set_permissions(m.path("etc"), perms)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    // And none of it is in the store.
    let listed = m
        .store
        .list_dir(m.agent, &FsPath::root(), &View::Live)
        .unwrap();
    assert_eq!(
        listed.iter().map(|e| e.name_lossy()).collect::<Vec<_>>(),
        ["reports"]
    );
}

/// Nanoseconds on a CPU so far of each thread of this process that serves a mount (fuser
/// names them `fuser-N`), by thread id, from the scheduler's own accounting.
fn serving_threads_cpu() -> std::collections::HashMap<String, u64> {
    let mut threads = std::collections::HashMap::new();
    for task in fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let on_cpu = fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        if let (true, Some(ns)) = (
            name.starts_with("fuser-"),
            on_cpu
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok()),
        ) {
            threads.insert(dir.file_name().unwrap().to_string_lossy().into_owned(), ns);
        }
    }
    threads
}

/// CPU time the serving threads of this process's mounts used while `work` ran.
fn serving_threads_cpu_during(work: impl FnOnce()) -> Duration {
    let before = serving_threads_cpu();
    work();
    let used: u64 = serving_threads_cpu()
        .iter()
        .filter_map(|(tid, ns)| Some(ns - before.get(tid)?))
        .sum();
    Duration::from_nanos(used)
}

/// CPU time mount `m`'s serving threads used while `calls` requests came to it (attribute
/// reads, each a round trip), spaced `gap` apart.
fn cpu_for_sparse_requests(m: &Mounted, calls: usize, gap: Duration) -> Duration {
    fs::write(m.path("sparse"), b"x").unwrap();
    let path = m.path("sparse");
    serving_threads_cpu_during(|| {
        for _ in 0..calls {
            assert!(get_xattr(&path, "user.none").is_err());
            std::thread::sleep(gap);
        }
    })
}

#[test]
fn sparse_requests_soon_cost_no_polling() {
    // Requests further apart than the polling window: after a few the window is gone, so
    // they cost the serving threads about what they cost without polling (a fixed 200 us
    // window would add about 60 ms over these 300).
    let gap = Duration::from_millis(2);
    let without = cpu_for_sparse_requests(&Mounted::with_busy_poll(Duration::ZERO), 300, gap);
    let with = cpu_for_sparse_requests(&Mounted::new(), 300, gap);
    assert!(
        with < without + Duration::from_millis(25),
        "{with:?} of CPU with polling against {without:?} without, for 300 sparse requests"
    );
}

#[test]
fn a_quiet_mount_stops_polling_and_sleeps() {
    let m = Mounted::new();
    // Requests one after another, as a program statting its new files makes them.
    for i in 0..300 {
        let path = m.path(&format!("f{i}"));
        fs::write(&path, b"x").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 1);
    }
    // Quiet now: the thread watching for requests gives up after its window and sleeps,
    // so the serving threads use next to no CPU while nothing asks.
    let used = serving_threads_cpu_during(|| std::thread::sleep(Duration::from_millis(800)));
    assert!(
        used < Duration::from_millis(200),
        "{used:?} of CPU in 800 ms of quiet: a serving thread kept polling"
    );
    assert_eq!(fs::read(m.path("f299")).unwrap(), b"x");
}

fn c_path(path: &Path) -> std::ffi::CString {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let status = unsafe {
        libc::setxattr(
            c_path(path).as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            c_path(path).as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn list_xattrs(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 1024];
    // SAFETY: a valid NUL-terminated path and a buffer of the given length.
    let n = unsafe { libc::listxattr(c_path(path).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr failed");
    buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn extended_attributes_are_stored_and_snapshotted() {
    let m = Mounted::new();
    let file = m.path("tagged.txt");
    fs::write(&file, b"x").unwrap();
    set_xattr(&file, "user.origin", b"agent run 7", 0).unwrap();
    set_xattr(&file, "user.note", b"", 0).unwrap();
    assert_eq!(get_xattr(&file, "user.origin").unwrap(), b"agent run 7");
    assert_eq!(list_xattrs(&file), ["user.note", "user.origin"]);
    assert_eq!(
        set_xattr(&file, "user.note", b"y", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    assert_eq!(
        set_xattr(&file, "user.absent", b"y", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    assert_eq!(get_xattr(&file, "user.absent"), Err(libc::ENODATA));
    m.store.create_snapshot(m.agent, Some("tagged")).unwrap();
    set_xattr(&file, "user.origin", b"changed", libc::XATTR_REPLACE).unwrap();
    let name = std::ffi::CString::new("user.note").unwrap();
    // SAFETY: valid NUL-terminated strings.
    assert_eq!(
        unsafe { libc::removexattr(c_path(&file).as_ptr(), name.as_ptr()) },
        0
    );
    assert_eq!(list_xattrs(&file), ["user.origin"]);
    m.store.restore_snapshot(m.agent, "tagged").unwrap();
    assert_eq!(get_xattr(&file, "user.origin").unwrap(), b"agent run 7");
    assert_eq!(list_xattrs(&file), ["user.note", "user.origin"]);
}

// ----- model-based: the mount against a plain directory -----

const NAMES: &[&str] = &["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Open {
        slot: usize,
        path: Vec<String>,
        create: bool,
        truncate: bool,
    },
    Write {
        slot: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    Read {
        slot: usize,
        offset: u64,
        len: usize,
    },
    Close {
        slot: usize,
    },
    Truncate {
        path: Vec<String>,
        size: u64,
    },
    Rename {
        from: Vec<String>,
        to: Vec<String>,
    },
    Unlink {
        path: Vec<String>,
    },
    Mkdir {
        path: Vec<String>,
    },
    Rmdir {
        path: Vec<String>,
    },
}

fn name_path() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        proptest::sample::select(NAMES).prop_map(str::to_owned),
        1..3,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..2, name_path(), any::<bool>(), any::<bool>())
            .prop_map(|(slot, path, create, truncate)| Op::Open { slot, path, create, truncate }),
        5 => (0usize..2, 0u64..400_000, prop_oneof![1usize..100, 1000usize..70_000], any::<u8>())
            .prop_map(|(slot, offset, len, seed)| Op::Write { slot, offset, len, seed }),
        3 => (0usize..2, 0u64..400_000, 1usize..70_000).prop_map(|(slot, offset, len)| Op::Read { slot, offset, len }),
        2 => (0usize..2).prop_map(|slot| Op::Close { slot }),
        1 => (name_path(), 0u64..400_000).prop_map(|(path, size)| Op::Truncate { path, size }),
        2 => (name_path(), name_path()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => name_path().prop_map(|path| Op::Unlink { path }),
        2 => name_path().prop_map(|path| Op::Mkdir { path }),
        1 => name_path().prop_map(|path| Op::Rmdir { path }),
    ]
}

/// One side of the comparison: a root directory and up to two open files.
struct Side {
    root: PathBuf,
    slots: [Option<File>; 2],
}

/// What an operation returned: the bytes read (as their length and hash) or the errno.
type Outcome = Result<String, i32>;

fn shown(bytes: &[u8]) -> String {
    format!(
        "{} bytes {}",
        bytes.len(),
        &blake3::hash(bytes).to_hex()[..16]
    )
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl Side {
    fn path(&self, path: &[String]) -> PathBuf {
        path.iter().fold(self.root.clone(), |p, s| p.join(s))
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        self.apply_raw(op).map(|bytes| shown(&bytes))
    }

    fn apply_raw(&mut self, op: &Op) -> Result<Vec<u8>, i32> {
        let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
        match op {
            Op::Open {
                slot,
                path,
                create,
                truncate,
            } => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(*create)
                    .truncate(*truncate)
                    .open(self.path(path))
                    .map_err(errno)?;
                self.slots[*slot] = Some(file);
                Ok(Vec::new())
            }
            Op::Write {
                slot,
                offset,
                len,
                seed,
            } => match &mut self.slots[*slot] {
                None => Ok(Vec::new()),
                Some(file) => {
                    file.seek(SeekFrom::Start(*offset)).map_err(errno)?;
                    file.write_all(&bytes(*len, *seed)).map_err(errno)?;
                    Ok(Vec::new())
                }
            },
            Op::Read { slot, offset, len } => match &mut self.slots[*slot] {
                None => Ok(Vec::new()),
                Some(file) => {
                    file.seek(SeekFrom::Start(*offset)).map_err(errno)?;
                    let mut out = Vec::new();
                    file.take(*len as u64)
                        .read_to_end(&mut out)
                        .map_err(errno)?;
                    Ok(out)
                }
            },
            Op::Close { slot } => {
                self.slots[*slot] = None;
                Ok(Vec::new())
            }
            Op::Truncate { path, size } => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(self.path(path))
                    .map_err(errno)?;
                file.set_len(*size).map_err(errno)?;
                Ok(Vec::new())
            }
            Op::Rename { from, to } => fs::rename(self.path(from), self.path(to))
                .map(|_| Vec::new())
                .map_err(errno),
            Op::Unlink { path } => fs::remove_file(self.path(path))
                .map(|_| Vec::new())
                .map_err(errno),
            Op::Mkdir { path } => fs::create_dir(self.path(path))
                .map(|_| Vec::new())
                .map_err(errno),
            Op::Rmdir { path } => fs::remove_dir(self.path(path))
                .map(|_| Vec::new())
                .map_err(errno),
        }
    }

    /// Every path beneath the root with its type and content.
    fn tree(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                let shown = path.strip_prefix(&self.root).unwrap().display().to_string();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(path);
                    out.push((shown, "dir".to_owned()));
                } else {
                    let content = fs::read(&path).unwrap();
                    out.push((shown, format!("file {}", blake3::hash(&content).to_hex())));
                }
            }
        }
        out.sort();
        out
    }
}

fn run(ops: &[Op]) {
    let mounted = Mounted::new();
    let plain = tempfile::tempdir().unwrap();
    let mut mount = Side {
        root: mounted.dir.clone(),
        slots: [None, None],
    };
    let mut reference = Side {
        root: plain.path().to_owned(),
        slots: [None, None],
    };
    for (step, op) in ops.iter().enumerate() {
        let expected = reference.apply(op);
        let actual = mount.apply(op);
        assert_eq!(actual, expected, "step {step}: {op:?}");
    }
    mount.slots = [None, None];
    reference.slots = [None, None];
    assert_eq!(mount.tree(), reference.tree());
    assert!(mounted.store.fsck().unwrap().is_clean());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_mount_behaves_like_a_plain_directory(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}
