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
