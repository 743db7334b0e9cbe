//! The server's sandbox mounts: shared while in use, unmounted when idle, and cleaned up
//! when a previous process left one behind.

use std::fs;
use std::time::Duration;

use fsd::mounts::{MountManager, MountManagerOptions, mounts_under};
use fsd::{FsPath, Store, StoreOptions, WriteOptions};

fn options(base: &std::path::Path, idle: Duration) -> MountManagerOptions {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    MountManagerOptions {
        base: base.to_owned(),
        idle,
        uid,
        gid,
        threads: 2,
        busy_poll: fsd::fuse::DEFAULT_BUSY_POLL,
    }
}

/// A store in a temporary directory with one agent.
fn fresh_store() -> (tempfile::TempDir, Store, i64) {
    assert!(
        std::path::Path::new("/dev/fuse").exists(),
        "needs /dev/fuse: run scripts/setup.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durable: false,
        batch_window: Some(fsd::BATCH_WINDOW),
        ..StoreOptions::default()
    };
    let store = Store::open(&tmp.path().join("data"), options).unwrap();
    let agent = store.create_agent("a").unwrap().id;
    (tmp, store, agent)
}

#[test]
fn sandbox_mounts_are_shared_then_unmounted_when_idle() {
    let (tmp, store, agent) = fresh_store();
    let base = tmp.path().join("mounts");
    let manager = MountManager::new(store.clone(), options(&base, Duration::ZERO)).unwrap();
    let first = manager.acquire(agent).unwrap();
    let second = manager.acquire(agent).unwrap();
    assert_eq!(first.path(), second.path());
    assert_eq!(mounts_under(&base).unwrap().len(), 1);
    // The view is the agent's tree, with the system names laid out.
    let put = WriteOptions::default();
    store
        .write_file(
            agent,
            &FsPath::parse("/reports/summary.txt").unwrap(),
            &mut &b"done"[..],
            &put,
        )
        .unwrap();
    assert_eq!(
        fs::read(first.path().join("reports/summary.txt")).unwrap(),
        b"done"
    );
    assert!(first.path().join("usr").is_dir());
    drop(first);
    manager.unmount_idle().unwrap();
    assert_eq!(manager.mounted(), [agent], "a leased mount stays");
    drop(second);
    manager.unmount_idle().unwrap();
    assert!(manager.mounted().is_empty());
    assert!(mounts_under(&base).unwrap().is_empty());
}

#[test]
fn mounts_left_by_an_earlier_process_are_cleaned_up() {
    let (tmp, store, agent) = fresh_store();
    let base = tmp.path().join("mounts");
    let crashed =
        MountManager::new(store.clone(), options(&base, Duration::from_secs(3600))).unwrap();
    // A lease that is never given back and a manager that never unmounts: what a killed
    // server leaves.
    std::mem::forget(crashed.acquire(agent).unwrap());
    std::mem::forget(crashed);
    assert_eq!(mounts_under(&base).unwrap().len(), 1);
    let manager = MountManager::new(store, options(&base, Duration::from_secs(3600))).unwrap();
    assert!(mounts_under(&base).unwrap().is_empty());
    assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
    // And the agent can be mounted again.
    let lease = manager.acquire(agent).unwrap();
    assert!(lease.path().join("tmp").is_dir());
    drop(lease);
    manager.unmount_all().unwrap();
}

/// Whether `path` is a mount point of its own: a different device from its parent's.
fn is_mount_point(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), fs::metadata(path.parent().unwrap())) {
        (Ok(point), Ok(parent)) => point.dev() != parent.dev(),
        _ => false,
    }
}

/// Writes `name` through the lease's view and reads it back from the store.
fn written_through(store: &Store, agent: i64, lease: &fsd::mounts::MountLease, name: &str) {
    fs::write(lease.path().join(name), name.as_bytes()).unwrap();
    let mut reader = store
        .open_file(
            agent,
            &FsPath::parse(&format!("/{name}")).unwrap(),
            &fsd::View::Live,
        )
        .unwrap();
    let mut stored = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut stored).unwrap();
    assert_eq!(stored, name.as_bytes(), "{name} reached the agent's tree");
}

#[test]
fn a_view_unmounted_or_cut_off_from_outside_is_mounted_again() {
    let (tmp, store, agent) = fresh_store();
    let base = tmp.path().join("mounts");
    let manager =
        MountManager::new(store.clone(), options(&base, Duration::from_secs(3600))).unwrap();
    let lease = manager.acquire(agent).unwrap();
    let path = lease.path().to_owned();
    written_through(&store, agent, &lease, "first.txt");
    drop(lease);

    // Unmounted by hand: the next lease gets a view again, not the bare directory.
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!is_mount_point(&path));
    let lease = manager.acquire(agent).unwrap();
    assert!(is_mount_point(&path), "mounted again");
    written_through(&store, agent, &lease, "second.txt");

    // Its connection aborted while a run uses it (the kernel answers ENOTCONN there); the
    // run gives its lease back, and the next one gets a working view.
    use std::os::unix::fs::MetadataExt;
    let device = fs::metadata(&path).unwrap().dev();
    let minor = libc::minor(device);
    let abort = format!("/sys/fs/fuse/connections/{minor}/abort");
    fs::write(&abort, b"1").unwrap_or_else(|e| {
        panic!("writing {abort}: {e} (the FUSE control filesystem: run scripts/setup.sh as root)")
    });
    let error = fs::metadata(lease.path().join("second.txt")).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::ENOTCONN), "{error}");
    drop(lease);
    let again = manager.acquire(agent).unwrap();
    assert!(is_mount_point(&path), "mounted again");
    written_through(&store, agent, &again, "third.txt");
    assert_eq!(mounts_under(&base).unwrap(), vec![path.clone()]);

    drop(again);
    manager.unmount_idle().unwrap();
    assert_eq!(manager.mounted(), [agent], "not idle for an hour yet");
    manager.unmount_all().unwrap();
    assert!(mounts_under(&base).unwrap().is_empty());
}
