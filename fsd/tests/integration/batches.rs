//! Batches of a mount's small changes (see `fsd/src/index.rs`): seen at once by everything
//! in the process, invisible to other processes until they commit, and never lost while
//! they are open: the data directory as a killed process leaves it (index, write-ahead
//! log, intent log) opens with every file the mount had closed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use fsd::{FsPath, Quota, Store, StoreOptions, View};

use crate::fuse::Mounted;

/// Long enough that nothing but the test commits the batch.
const NEVER: Duration = Duration::from_secs(3600);

fn open(dir: &Path, batch_window: Option<Duration>) -> Store {
    Store::open(
        dir,
        StoreOptions {
            durable: false,
            sweep_grace: Duration::ZERO,
            batch_window,
        },
    )
    .unwrap()
}

fn contents(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(i % 300 + 1).into_bytes()
}

fn names(store: &Store, agent: i64, dir: &str) -> Vec<String> {
    match store.list_dir(agent, &FsPath::parse(dir).unwrap(), &View::Live) {
        Ok(entries) => entries
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect(),
        Err(fsd::Error::NotFound(_)) => Vec::new(),
        Err(other) => panic!("listing {dir}: {other}"),
    }
}

/// Every entry under `dir` with its attributes (times and inode numbers included), and
/// the bytes of each file.
fn tree(store: &Store, agent: i64, dir: &str) -> Vec<(String, fsd::Attr, Vec<u8>)> {
    let mut out = Vec::new();
    let entries = store
        .list_dir(agent, &FsPath::parse(dir).unwrap(), &View::Live)
        .unwrap();
    for entry in entries {
        let name = String::from_utf8(entry.name).unwrap();
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        let bytes = match entry.attr.kind {
            fsd::FileType::File => store
                .read_file(
                    agent,
                    &FsPath::parse(&path).unwrap(),
                    &View::Live,
                    0,
                    u64::MAX,
                )
                .unwrap(),
            fsd::FileType::Symlink => store
                .readlink(agent, &FsPath::parse(&path).unwrap(), &View::Live)
                .unwrap(),
            fsd::FileType::Directory => Vec::new(),
        };
        let directory = entry.attr.kind == fsd::FileType::Directory;
        out.push((path.clone(), entry.attr, bytes));
        if directory {
            out.extend(tree(store, agent, &path));
        }
    }
    out
}

/// Copies what a process killed now would leave on disk of the index.
fn copy_index(from: &Path, to: &Path, with_intent_log: bool) {
    fs::create_dir_all(to).unwrap();
    let mut files = vec!["index.db", "index.db-wal"];
    if with_intent_log {
        files.push("index.intents");
    }
    for name in files {
        fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn a_batch_is_seen_in_the_process_at_once_and_survives_a_kill_before_it_commits() {
    let m = Mounted::with_batch_window(NEVER);
    // Made before the batch opens: a directory is not a batched change.
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..200 {
        fs::write(m.path(&format!("d/f{i:03}")), contents(i)).unwrap();
    }
    let expected: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();

    // The API of the same process reads the open batch.
    assert_eq!(names(&m.store, m.agent, "/d"), expected);
    let read = |store: &Store, agent, i: usize| {
        store
            .read_file(
                agent,
                &FsPath::parse(&format!("/d/f{i:03}")).unwrap(),
                &View::Live,
                0,
                u64::MAX,
            )
            .unwrap()
    };
    assert_eq!(read(&m.store, m.agent, 7), contents(7));

    // Another process sees only what is committed: the directory, not yet its files.
    let data = m.data_dir();
    let other = open(&data, None);
    assert_eq!(names(&other, m.agent, "/d"), Vec::<String>::new());
    drop(other);
    assert!(
        fs::metadata(data.join("index.intents")).unwrap().len() > 0,
        "the open batch's changes are in the intent log"
    );

    // The disk as a kill now would leave it: without the intent log the files are gone,
    // with it every one is back, whole.
    let scratch = tempfile::tempdir().unwrap();
    let without = scratch.path().join("without");
    copy_index(&data, &without, false);
    let store = open(&without, None);
    assert_eq!(names(&store, m.agent, "/d"), Vec::<String>::new());
    drop(store);

    let killed = scratch.path().join("killed");
    copy_index(&data, &killed, true);
    fs::create_dir_all(killed.join("blobs")).unwrap();
    let store = open(&killed, Some(NEVER));
    assert_eq!(names(&store, m.agent, "/d"), expected);
    for i in [0, 1, 99, 199] {
        assert_eq!(read(&store, m.agent, i), contents(i));
    }
    assert_eq!(fs::metadata(killed.join("index.intents")).unwrap().len(), 0);
    let report = store.fsck().unwrap();
    assert!(report.is_clean(), "fsck after the replay: {report:?}");
    drop(store);
    // Applied once: opening again changes nothing.
    let store = open(&killed, Some(NEVER));
    assert_eq!(names(&store, m.agent, "/d"), expected);
    drop(store);

    // A commit (here the mount's fsync) makes the batch everyone's and empties the log.
    m.store.sync().unwrap();
    let other = open(&data, None);
    assert_eq!(names(&other, m.agent, "/d"), expected);
    assert_eq!(read(&other, m.agent, 150), contents(150));
    assert_eq!(fs::metadata(data.join("index.intents")).unwrap().len(), 0);
}

#[test]
fn a_change_refused_inside_a_batch_leaves_the_rest_of_the_batch() {
    let m = Mounted::with_batch_window(NEVER);
    m.store
        .set_quota(
            m.agent,
            Quota {
                max_bytes: None,
                max_files: Some(3),
            },
        )
        .unwrap();
    for i in 0..3 {
        fs::write(m.path(&format!("f{i}")), contents(i)).unwrap();
    }
    let refused = fs::write(m.path("f3"), b"one too many");
    assert!(refused.is_err(), "a fourth file past a quota of three");
    // An existing name is refused too, inside the same batch.
    let exists = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("f0"));
    assert_eq!(
        exists.unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert_eq!(names(&m.store, m.agent, "/"), ["f0", "f1", "f2"]);
    m.store.sync().unwrap();
    let other = open(&m.data_dir(), None);
    assert_eq!(names(&other, m.agent, "/"), ["f0", "f1", "f2"]);
    assert_eq!(
        other
            .read_file(
                m.agent,
                &FsPath::parse("/f2").unwrap(),
                &View::Live,
                0,
                u64::MAX
            )
            .unwrap(),
        contents(2)
    );
}

#[test]
fn every_kind_of_batched_change_replays_to_the_same_tree() {
    let m = Mounted::with_batch_window(NEVER);
    for i in 0..40 {
        fs::write(m.path(&format!("f{i:02}")), contents(i)).unwrap();
    }
    // An unlink of an open file depends on it being open: made outside the batch, which
    // commits first; the batching goes on after it.
    let mut held = fs::File::open(m.path("f00")).unwrap();
    fs::remove_file(m.path("f00")).unwrap();
    assert_eq!(
        fs::metadata(m.data_dir().join("index.intents"))
            .unwrap()
            .len(),
        0,
        "the unlink of an open file committed the batch instead of joining it"
    );
    let mut kept = Vec::new();
    std::io::Read::read_to_end(&mut held, &mut kept).unwrap();
    assert_eq!(kept, contents(0));
    drop(held);

    fs::create_dir_all(m.path("a/b/c")).unwrap();
    std::os::unix::fs::symlink("../f01", m.path("a/link")).unwrap();
    fs::rename(m.path("f02"), m.path("a/b/moved")).unwrap();
    fs::rename(m.path("f03"), m.path("f04")).unwrap();
    fs::remove_file(m.path("f05")).unwrap();
    fs::remove_dir(m.path("a/b/c")).unwrap();
    fs::write(m.path("a/b/later"), b"after the moves").unwrap();
    let intents = || {
        fs::metadata(m.data_dir().join("index.intents"))
            .unwrap()
            .len()
    };
    let before = intents();
    // Opened with O_TRUNC: the file is emptied, then written.
    fs::write(m.path("f06"), b"rewritten").unwrap();
    fs::File::options()
        .write(true)
        .open(m.path("f09"))
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(
        intents() > before,
        "emptying a file committed the batch instead of joining it"
    );
    fs::set_permissions(m.path("f07"), fs::Permissions::from_mode(0o751)).unwrap();
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(m.path("f08"))
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(when).set_accessed(when))
        .unwrap();
    assert!(
        fs::metadata(m.data_dir().join("index.intents"))
            .unwrap()
            .len()
            > 0,
        "the changes since the unlink are in an open batch"
    );

    let expected = tree(&m.store, m.agent, "/");
    assert!(expected.iter().any(|(path, _, _)| path == "/a/b/moved"));
    let f07 = expected.iter().find(|(path, _, _)| path == "/f07").unwrap();
    assert_eq!(f07.1.mode & 0o7777, 0o751);
    let f09 = expected.iter().find(|(path, _, _)| path == "/f09").unwrap();
    assert_eq!((f09.1.size, f09.2.len()), (0, 0));
    let f08 = expected.iter().find(|(path, _, _)| path == "/f08").unwrap();
    assert_eq!(f08.1.mtime_ns, 1_000_000_000 * 1_000_000_000);
    assert!(!expected.iter().any(|(path, _, _)| path == "/f00"));
    let scratch = tempfile::tempdir().unwrap();
    let killed = scratch.path().join("killed");
    copy_index(&m.data_dir(), &killed, true);
    fs::create_dir_all(killed.join("blobs")).unwrap();
    let store = open(&killed, Some(NEVER));
    assert_eq!(tree(&store, m.agent, "/"), expected);
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn the_write_ahead_log_is_checkpointed_beside_the_commits() {
    // SQLite's own checkpoints are off where batching is on: without the committing
    // thread's, the database file would never receive anything.
    let m = Mounted::with_batch_window(fsd::BATCH_WINDOW);
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..50 {
        fs::write(m.path(&format!("d/f{i:02}")), contents(i)).unwrap();
    }
    let expected: Vec<String> = (0..50).map(|i| format!("f{i:02}")).collect();
    let scratch = tempfile::tempdir().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // The database file alone, as if its write-ahead log were lost.
        let copy = tempfile::tempdir_in(scratch.path()).unwrap();
        fs::copy(m.data_dir().join("index.db"), copy.path().join("index.db")).unwrap();
        let store = open(copy.path(), None);
        if names(&store, m.agent, "/d") == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file still lacks the files 20 s after they were written"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The checkpoint sequence number in the write-ahead log's header: SQLite adds one each
/// time the log starts over.
fn wal_restarts(data: &Path) -> u32 {
    let header = fs::read(data.join("index.db-wal")).unwrap_or_default();
    header
        .get(12..16)
        .map_or(0, |bytes| u32::from_be_bytes(bytes.try_into().unwrap()))
}

#[test]
fn the_write_ahead_log_starts_over_while_writes_go_on() {
    // Checkpoints made beside the writer copy what was committed when they began; the log
    // starts over only once everything is copied, so without the catch-up under the
    // writer it would grow for as long as the writes go on.
    let m = Mounted::with_batch_window(fsd::BATCH_WINDOW);
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/first"), b"first").unwrap();
    let before = wal_restarts(&m.data_dir());
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(4) {
        fs::write(m.path(&format!("d/f{i}")), contents(i)).unwrap();
        i += 1;
    }
    let after = wal_restarts(&m.data_dir());
    assert!(
        after > before,
        "the log never started over in 4 s of writes ({i} files)"
    );
}
