//! Integration tests of the store on real SQLite files and a real blob directory: a
//! model-based property test of the tree, snapshots and forks, and focused tests of
//! deduplication, chunking, quotas, the sweep and fsck.

mod batches;
mod fuse;
mod model;
mod mounts;

use std::time::Duration;

use fsd::{Error, FsPath, Quota, Store, StoreOptions, View, WriteOptions};

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            durable: false,
            sweep_grace: Duration::ZERO,
            batch_window: Some(fsd::BATCH_WINDOW),
        },
    )
    .unwrap()
}

fn path(p: &str) -> FsPath {
    FsPath::parse(p).unwrap()
}

fn put(store: &Store, agent: i64, p: &str, data: &[u8]) -> fsd::Attr {
    store
        .write_file(agent, &path(p), &mut &data[..], &WriteOptions::default())
        .unwrap()
}

fn read(store: &Store, agent: i64, p: &str, view: &View) -> Vec<u8> {
    store.read_file(agent, &path(p), view, 0, u64::MAX).unwrap()
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

#[test]
fn identical_content_is_stored_once_across_files_and_agents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = store.create_agent("a").unwrap().id;
    let b = store.create_agent("b").unwrap().id;
    let data = pseudo_random(3 * 1024 * 1024, 1);
    put(&store, a, "/one.bin", &data);
    let after_first = store.store_stats().unwrap();
    put(&store, a, "/two.bin", &data);
    put(&store, b, "/deep/three.bin", &data);
    let after_all = store.store_stats().unwrap();
    assert_eq!(after_first.blobs, after_all.blobs);
    assert_eq!(after_first.blob_bytes, after_all.blob_bytes);
    assert!(
        after_all.blob_bytes >= data.len() as u64
            && after_all.blob_bytes < data.len() as u64 + 1024
    );
    assert_eq!(read(&store, b, "/deep/three.bin", &View::Live), data);
    let stats = store.agent_stats(a).unwrap();
    assert_eq!(stats.logical_bytes, 2 * data.len() as u64);
    assert_eq!(stats.stored_bytes, data.len() as u64);
}

#[test]
fn one_byte_changed_in_a_50_mb_file_stores_a_few_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let agent = store.create_agent("a").unwrap().id;
    let mut data = pseudo_random(50 * 1024 * 1024, 2);
    put(&store, agent, "/big.bin", &data);
    let before = store.store_stats().unwrap();
    data[25 * 1024 * 1024] ^= 1;
    put(&store, agent, "/big-v2.bin", &data);
    let after = store.store_stats().unwrap();
    let new_blobs = after.blobs - before.blobs;
    let new_bytes = after.blob_bytes - before.blob_bytes;
    assert!((1..=3).contains(&new_blobs), "{new_blobs} new blobs");
    assert!(
        new_bytes <= 3 * fsd::CHUNK_MAX as u64,
        "{new_bytes} new bytes"
    );
    // The same edit as a ranged write also stores only the touched chunks.
    let before = store.store_stats().unwrap();
    store
        .write_at(agent, &path("/big.bin"), 10 * 1024 * 1024, b"edited")
        .unwrap();
    let after = store.store_stats().unwrap();
    assert!(after.blobs - before.blobs <= 3);
    let mut expected = read(&store, agent, "/big-v2.bin", &View::Live);
    expected[25 * 1024 * 1024] ^= 1;
    expected[10 * 1024 * 1024..10 * 1024 * 1024 + 6].copy_from_slice(b"edited");
    assert!(read(&store, agent, "/big.bin", &View::Live) == expected);
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn snapshots_freeze_the_tree_and_restore_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let agent = store.create_agent("a").unwrap().id;
    put(&store, agent, "/docs/a.txt", b"first");
    put(&store, agent, "/docs/b.txt", b"keep");
    let snap = store.create_snapshot(agent, Some("before")).unwrap();
    assert_eq!(snap.files, 2);
    put(&store, agent, "/docs/a.txt", b"second");
    store.remove(agent, &path("/docs/b.txt"), false).unwrap();
    put(&store, agent, "/new.txt", b"new");
    let old = View::Snapshot(snap.id.clone());
    assert_eq!(read(&store, agent, "/docs/a.txt", &old), b"first");
    assert_eq!(read(&store, agent, "/docs/a.txt", &View::Live), b"second");
    assert_eq!(
        store.list_dir(agent, &path("/docs"), &old).unwrap().len(),
        2
    );
    let diff = store
        .diff(agent, &View::Snapshot("before".into()), &View::Live)
        .unwrap();
    let shown: Vec<_> = diff
        .iter()
        .map(|d| format!("{} {}", d.change.as_str(), d.path))
        .collect();
    assert_eq!(
        shown,
        [
            "modified /docs/a.txt",
            "removed /docs/b.txt",
            "added /new.txt"
        ]
    );
    store.restore_snapshot(agent, "before").unwrap();
    assert_eq!(read(&store, agent, "/docs/a.txt", &View::Live), b"first");
    assert_eq!(read(&store, agent, "/docs/b.txt", &View::Live), b"keep");
    assert!(matches!(
        store.stat(agent, &path("/new.txt"), &View::Live),
        Err(Error::NotFound(_))
    ));
    assert!(store.diff(agent, &old, &View::Live).unwrap().is_empty());
    assert_eq!(store.agent_stats(agent).unwrap().files, 2);
    store.delete_snapshot(agent, &snap.id).unwrap();
    assert!(matches!(
        store.snapshot(agent, &snap.id),
        Err(Error::NoSuchSnapshot(_))
    ));
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn a_fork_starts_from_a_snapshot_and_goes_its_own_way() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let source = store.create_agent("source").unwrap().id;
    put(&store, source, "/state.json", b"{\"step\": 1}");
    let snap = store.create_snapshot(source, None).unwrap();
    put(&store, source, "/state.json", b"{\"step\": 2}");
    let fork = store.fork_agent(source, &snap.id, "fork").unwrap();
    assert_eq!(
        fork.forked_from.as_deref(),
        Some(format!("source/{}", snap.id).as_str())
    );
    assert_eq!(
        read(&store, fork.id, "/state.json", &View::Live),
        b"{\"step\": 1}"
    );
    put(&store, fork.id, "/only-in-fork", b"x");
    assert!(
        store
            .stat(source, &path("/only-in-fork"), &View::Live)
            .is_err()
    );
    assert_eq!(
        read(&store, source, "/state.json", &View::Live),
        b"{\"step\": 2}"
    );
    // Another agent's snapshot is invisible.
    assert!(matches!(
        store.snapshot(fork.id, &snap.id),
        Err(Error::NoSuchSnapshot(_))
    ));
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn quotas_refuse_growth_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let agent = store.create_agent("a").unwrap().id;
    store
        .set_quota(
            agent,
            Quota {
                max_bytes: Some(1000),
                max_files: Some(3),
            },
        )
        .unwrap();
    put(&store, agent, "/a", &[1; 600]);
    let too_big = store.write_file(
        agent,
        &path("/b"),
        &mut &[2u8; 600][..],
        &WriteOptions::default(),
    );
    assert!(
        matches!(too_big, Err(Error::QuotaExceeded(_))),
        "{too_big:?}"
    );
    assert!(store.stat(agent, &path("/b"), &View::Live).is_err());
    put(&store, agent, "/b", &[2; 100]);
    put(&store, agent, "/c", &[3; 100]);
    let too_many = store.mkdir(agent, &path("/d"), false, 0o755);
    assert!(matches!(too_many, Err(Error::QuotaExceeded(_))));
    // Shrinking always works, even over quota.
    store
        .set_quota(
            agent,
            Quota {
                max_bytes: Some(10),
                max_files: Some(1),
            },
        )
        .unwrap();
    store.remove(agent, &path("/a"), false).unwrap();
    assert_eq!(store.agent_stats(agent).unwrap().logical_bytes, 200);
}

#[test]
fn the_sweep_removes_unreferenced_blobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let agent = store.create_agent("a").unwrap().id;
    let keep = pseudo_random(600_000, 3);
    let drop = pseudo_random(600_000, 4);
    put(&store, agent, "/keep", &keep);
    put(&store, agent, "/drop", &drop);
    let snap = store.create_snapshot(agent, None).unwrap();
    store.remove(agent, &path("/drop"), false).unwrap();
    // Still referenced by the snapshot.
    assert_eq!(store.sweep().unwrap().blobs_removed, 0);
    store.delete_snapshot(agent, &snap.id).unwrap();
    let report = store.sweep().unwrap();
    assert!(report.blobs_removed > 0);
    assert!(report.bytes_removed >= drop.len() as u64);
    assert_eq!(read(&store, agent, "/keep", &View::Live), keep);
    let stats = store.store_stats().unwrap();
    assert_eq!(stats.unreferenced_blobs, 0);
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn a_blob_is_kept_for_the_grace_period_after_its_last_reference_goes() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(2);
    let options = StoreOptions {
        durable: false,
        sweep_grace: grace,
        batch_window: None,
    };
    let store = Store::open(dir.path(), options).unwrap();
    let agent = store.create_agent("a").unwrap().id;
    // One blob in a file, one inline in the index.
    let large = pseudo_random(100_000, 7);
    let small = pseudo_random(3_000, 8);
    put(&store, agent, "/large", &large);
    put(&store, agent, "/small", &small);
    // Referenced for longer than the grace period, then dropped: the period runs from the
    // drop, not from when the blobs were stored.
    std::thread::sleep(grace + Duration::from_secs(1));
    store.remove(agent, &path("/large"), false).unwrap();
    store.remove(agent, &path("/small"), false).unwrap();
    assert_eq!(store.store_stats().unwrap().unreferenced_blobs, 2);
    assert_eq!(store.sweep().unwrap().blobs_removed, 0);
    // Taken again and dropped again within the period: still kept.
    put(&store, agent, "/small-again", &small);
    store.remove(agent, &path("/small-again"), false).unwrap();
    assert_eq!(store.sweep().unwrap().blobs_removed, 0);
    std::thread::sleep(grace + Duration::from_secs(1));
    assert_eq!(store.sweep().unwrap().blobs_removed, 2);
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn fsck_finds_a_damaged_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let agent = store.create_agent("a").unwrap().id;
    let attr = put(&store, agent, "/f", &pseudo_random(100_000, 5));
    assert!(store.fsck().unwrap().is_clean());
    let hex = attr.hash.unwrap().to_hex();
    let blob = dir.path().join("blobs").join(&hex[..2]).join(&hex[2..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let report = store.fsck().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("does not hash to its name"));
    std::fs::remove_file(&blob).unwrap();
    assert!(store.fsck().unwrap().problems[0].contains("unreadable"));
}

#[test]
fn bad_names_and_conflicts_are_refused_without_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let agent = store.create_agent("a").unwrap().id;
    put(&store, agent, "/file", b"x");
    let under_file = store.write_file(
        agent,
        &path("/file/child"),
        &mut &b"y"[..],
        &WriteOptions::default(),
    );
    assert!(matches!(under_file, Err(Error::NotADirectory(_))));
    store.mkdir(agent, &path("/dir/sub"), true, 0o755).unwrap();
    let onto_dir = store.write_file(
        agent,
        &path("/dir"),
        &mut &b"y"[..],
        &WriteOptions::default(),
    );
    assert!(matches!(onto_dir, Err(Error::IsADirectory(_))));
    assert!(matches!(
        store.remove(agent, &path("/dir"), false),
        Err(Error::DirectoryNotEmpty(_))
    ));
    assert!(matches!(
        store.rename(
            agent,
            &path("/dir"),
            &path("/dir/sub/inside"),
            Default::default()
        ),
        Err(Error::InvalidArgument(_))
    ));
    // Symlinks are stored, never followed.
    store.symlink(agent, b"/etc", &path("/link")).unwrap();
    let through = store.write_file(
        agent,
        &path("/link/passwd"),
        &mut &b"y"[..],
        &WriteOptions::default(),
    );
    assert!(matches!(through, Err(Error::NotADirectory(_))));
    assert_eq!(
        store.readlink(agent, &path("/link"), &View::Live).unwrap(),
        b"/etc"
    );
    let names: Vec<_> = store
        .list_dir(agent, &FsPath::root(), &View::Live)
        .unwrap()
        .iter()
        .map(|e| e.name_lossy())
        .collect();
    assert_eq!(names, ["dir", "file", "link"]);

    // Top-level system names are the sandbox's: nothing is created under them.
    for reserved in ["/etc/passwd", "/tmp/x", "/usr/bin/python3", "/proc"] {
        let result = store.write_file(
            agent,
            &path(reserved),
            &mut &b"y"[..],
            &WriteOptions::default(),
        );
        assert!(
            matches!(result, Err(Error::Reserved(_))),
            "{reserved}: {result:?}"
        );
    }
    assert!(matches!(
        store.mkdir(agent, &path("/dev"), false, 0o755),
        Err(Error::Reserved(_))
    ));
    assert!(matches!(
        store.rename(agent, &path("/file"), &path("/run"), Default::default()),
        Err(Error::Reserved(_))
    ));
    put(&store, agent, "/dir/etc", b"only the top level is reserved");
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn a_reopened_store_has_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(1_000_000, 6);
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let agent = store.create_agent("a").unwrap().id;
        put(&store, agent, "/x/y.bin", &data);
        store.create_snapshot(agent, Some("s")).unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let agent = store.agent("a").unwrap().unwrap().id;
    assert_eq!(
        read(&store, agent, "/x/y.bin", &View::Snapshot("s".into())),
        data
    );
    assert!(store.fsck().unwrap().is_clean());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..Default::default()
    })]

    #[test]
    fn the_store_behaves_like_a_simple_model(ops in proptest::collection::vec(model::op(), 1..48)) {
        model::run(&ops);
    }
}

#[test]
fn compute_usage_adds_up_per_agent_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let store = open(dir.path());
        let a = store.create_agent("a").unwrap().id;
        let b = store.create_agent("b").unwrap().id;
        assert_eq!(
            store.compute_usage(a).unwrap(),
            fsd::ComputeUsage::default()
        );
        store.record_run(a, 120, 80).unwrap();
        store.record_run(a, 30, 5).unwrap();
        store.record_browser_time(a, 60_000, true).unwrap();
        store.record_browser_time(a, 1_500, false).unwrap();
        store.record_browser_time(b, 10, true).unwrap();
        (a, b)
    };
    let store = open(dir.path());
    let usage = store.compute_usage(a).unwrap();
    assert_eq!(
        usage,
        fsd::ComputeUsage {
            runs: 2,
            run_ms: 150,
            run_cpu_ms: 85,
            browser_sessions: 1,
            browser_ms: 61_500,
        }
    );
    assert_eq!(store.compute_usage(b).unwrap().browser_ms, 10);
    assert_eq!(store.compute_usage(b).unwrap().runs, 0);
    assert!(matches!(
        store.record_run(999, 1, 1),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(store.compute_usage(999), Err(Error::NotFound(_))));
}
