//! `agentbox mount MOUNTPOINT --url URL --key KEY`: an agent's tree served by a running
//! server, mounted read-only with FUSE. Everything read through the mount with `std::fs`
//! must equal what the API serves; every change must fail with `EROFS`; changes made
//! through the API must show within a couple of seconds; `--snapshot` must show the tree
//! as it was; SIGINT and SIGTERM must unmount cleanly; and a bad key or URL must be refused
//! before anything is mounted.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::json;

use crate::support::{
    Client, MOUNT_TIMEOUT, Mount, Rng, Server, agentbox_bin, force_unmount, free_port, is_mounted,
    parse_rfc3339_utc, require_fuse, wait_for_exit,
};

/// How soon a change made through the API must be visible through the mount. The mount
/// trusts attributes for one second and lets the kernel cache them for one more, so two
/// seconds is the design bound; the rest is slack for a loaded machine.
const CHANGE_DEADLINE: Duration = Duration::from_secs(4);
/// Block size of the mount's content cache: the large file spans several blocks.
const BLOCK: usize = 4 << 20;

/// `agentbox mount MOUNTPOINT --url URL [--key KEY] --cache-dir CACHE ...`, with nothing
/// from the environment.
fn mount_command(
    url: &str,
    key: Option<&str>,
    mountpoint: &Path,
    cache: &Path,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(agentbox_bin());
    command.arg("mount").arg(mountpoint).args(["--url", url]);
    if let Some(key) = key {
        command.args(["--key", key]);
    }
    command
        .arg("--cache-dir")
        .arg(cache)
        .args(extra)
        .env_remove("AGENTBOX_URL")
        .env_remove("AGENTBOX_KEY")
        .env_remove("AGENTBOX_DATA_DIR")
        .env_remove("AGENTBOX_CACHE_DIR")
        .env_remove("AGENTBOX_CACHE_BYTES")
        .stdin(Stdio::null());
    command
}

/// Stops a mount with `SIG{signal_name}` and requires a clean exit with the mount gone.
fn stop_cleanly(mut mount: Mount, signal_name: &str) {
    let status = mount.signal_and_wait(signal_name);
    let log = mount.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "agentbox mount did not exit cleanly on SIG{signal_name} ({status:?}):\n{log}"
    );
    assert!(
        !is_mounted(mount.mountpoint()),
        "{} is still mounted after SIG{signal_name}:\n{log}",
        mount.mountpoint().display()
    );
    assert!(log.contains("unmounted"), "{log}");
}

/// What `std::fs` shows of one entry under the mount.
#[derive(Debug, PartialEq)]
struct Seen {
    kind: &'static str,
    size: Option<u64>,
    mode: u32,
    mtime: i64,
}

/// Every entry under `root`, by its path in the agent's tree.
fn walk(root: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().into_string().expect("a UTF-8 name");
            let path = format!("{prefix}/{name}");
            let metadata = fs::symlink_metadata(entry.path()).expect("lstat through the mount");
            let kind = if metadata.is_dir() {
                pending.push((entry.path(), path.clone()));
                "directory"
            } else if metadata.is_symlink() {
                "symlink"
            } else {
                "file"
            };
            let mtime = metadata
                .modified()
                .expect("an mtime")
                .duration_since(UNIX_EPOCH)
                .expect("an mtime after 1970")
                .as_secs() as i64;
            out.insert(
                path,
                Seen {
                    kind,
                    size: (kind == "file").then_some(metadata.len()),
                    mode: metadata.permissions().mode() & 0o7777,
                    mtime,
                },
            );
        }
    }
    out
}

/// What the API says the same entries are.
fn expected(client: &Client, snapshot: Option<&str>) -> BTreeMap<String, Seen> {
    client
        .tree_in(snapshot)
        .into_iter()
        .map(|(path, entry)| {
            let kind = match entry["type"].as_str() {
                Some("file") => "file",
                Some("directory") => "directory",
                Some("symlink") => "symlink",
                other => panic!("unknown type {other:?} in {entry}"),
            };
            let modified = entry["modified_at"].as_str().expect("modified_at");
            let seen = Seen {
                kind,
                size: (kind == "file").then(|| entry["size"].as_u64().expect("size")),
                mode: entry["mode"].as_u64().expect("mode") as u32 & 0o7777,
                mtime: parse_rfc3339_utc(modified).expect("an RFC 3339 modified_at"),
            };
            (path, seen)
        })
        .collect()
}

/// Requires the mount to show exactly the tree and the file contents the API serves.
fn assert_same_tree(mount: &Mount, client: &Client, snapshot: Option<&str>) {
    let want = expected(client, snapshot);
    let seen = walk(mount.mountpoint());
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the mount lists other paths than the API"
    );
    for (path, want) in &want {
        assert_eq!(&seen[path], want, "attributes of {path}");
        if want.kind == "file" {
            let through_mount =
                fs::read(mount.path(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
            let through_api = match snapshot {
                Some(snapshot) => client.read_at(path, snapshot),
                None => client.read(path),
            };
            assert!(
                through_mount == through_api,
                "{path}: the mount read {} bytes that differ from the API's {}",
                through_mount.len(),
                through_api.len()
            );
        }
    }
}

/// Requires every kind of change under the mount to fail with EROFS.
fn assert_read_only(mount: &Mount, existing_file: &str, existing_dir: &str) {
    let file = mount.path(existing_file);
    let dir = mount.path(existing_dir);
    let new = mount.path("/created-through-the-mount");
    let attempts: Vec<(&str, std::io::Result<()>)> = vec![
        ("create a file", fs::write(&new, b"x")),
        ("truncate a file", fs::write(&file, b"x")),
        (
            "append to a file",
            fs::OpenOptions::new().append(true).open(&file).map(drop),
        ),
        ("make a directory", fs::create_dir(&new)),
        ("remove a file", fs::remove_file(&file)),
        ("remove a directory", fs::remove_dir(&dir)),
        ("rename", fs::rename(&file, &new)),
        (
            "change a mode",
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)),
        ),
        ("make a symlink", std::os::unix::fs::symlink("target", &new)),
        ("make a hard link", fs::hard_link(&file, &new)),
    ];
    for (what, result) in attempts {
        match result {
            Ok(()) => panic!("{what} through a read-only mount succeeded"),
            Err(error) => assert_eq!(
                error.kind(),
                ErrorKind::ReadOnlyFilesystem,
                "{what} through the mount failed with {error} instead of EROFS"
            ),
        }
    }
}

/// Polls until `check` holds, for at most [`CHANGE_DEADLINE`]; returns how long it took.
fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            let took = start.elapsed();
            eprintln!("{what}: visible through the mount after {took:?}");
            return took;
        }
        assert!(
            start.elapsed() < CHANGE_DEADLINE,
            "{what}: not visible through the mount within {CHANGE_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_mount_from_a_server_shows_the_tree_read_only_and_follows_changes() {
    require_fuse();
    let server = Server::start();
    let client = server.client();
    let mut rng = Rng::new("remote_mount");
    let one_mb = rng.bytes(1_000_000);
    let large = rng.bytes(2 * BLOCK + 12_345);
    client.put("/hello.txt", b"hello, mount\n");
    client.put("/empty.txt", b"");
    client.put_raw("/data/one-mb.bin", &one_mb);
    client.put_raw("/data/large.bin", &large);
    client.put("/a/b/c/deep.txt", b"deep down\n");
    client.put("/a/b/sibling.txt", b"next to c\n");
    client.put("/dir with space/\u{fc}n\u{ef}code.txt", b"names survive\n");
    client
        .req("PUT", "/v1/compute/fs")
        .json(&json!({"path": "/bin-tools/run.sh", "content": "IyEvYmluL3NoCg==", "mode": 0o755}))
        .ok();
    client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/empty-dir"}))
        .ok();
    client.snapshot(Some("before"));

    let work = tempfile::tempdir().expect("a temporary directory");
    let (live_dir, snap_dir) = (work.path().join("live"), work.path().join("snapshot"));
    fs::create_dir(&live_dir).expect("create a mount point");
    fs::create_dir(&snap_dir).expect("create a mount point");
    let cache = work.path().join("cache");
    let live = Mount::start(
        mount_command(&server.url, Some(&server.key), &live_dir, &cache, &[]),
        &live_dir,
        &work.path().join("live.log"),
    );

    // Everything reads back as the API serves it, attributes included.
    assert_same_tree(&live, &client, None);
    assert_eq!(
        fs::metadata(live.path("/bin-tools/run.sh"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let uid = fs::metadata(work.path()).expect("stat").uid();
    assert_eq!(
        fs::metadata(live.path("/hello.txt")).expect("stat").uid(),
        uid
    );

    // Reads at any offset, across block boundaries, in small pieces.
    let mut file = fs::File::open(live.path("/data/large.bin")).expect("open through the mount");
    for offset in [0, BLOCK - 10, BLOCK, 2 * BLOCK - 1, 2 * BLOCK + 12_000, 17] {
        let len = 4096.min(large.len() - offset);
        let mut buf = vec![0; len];
        file.seek(SeekFrom::Start(offset as u64)).expect("seek");
        file.read_exact(&mut buf).expect("read through the mount");
        assert!(buf == large[offset..offset + len], "bytes at {offset}");
    }
    let mut rest = Vec::new();
    file.seek(SeekFrom::Start(large.len() as u64 - 5))
        .expect("seek");
    file.read_to_end(&mut rest).expect("read to the end");
    assert_eq!(rest, &large[large.len() - 5..]);
    drop(file);

    // Contents are cached on disk under their content hash.
    let hash = client.stat("/data/one-mb.bin").ok()["hash"]
        .as_str()
        .expect("a hash")
        .to_owned();
    let cached: Vec<String> = walk_files(&cache);
    assert!(
        cached.iter().any(|name| name.starts_with(&hash)),
        "no file named by {hash} in the cache directory: {cached:?}"
    );

    // Nothing can be changed through it, and nothing was.
    let before = client.state();
    assert_read_only(&live, "/hello.txt", "/a/b/c");
    crate::support::assert_unchanged("changes through the mount", &before, &client.state());

    // Changes made through the API show up.
    client.put("/hello.txt", b"changed through the API\n");
    eventually("a rewritten file", || {
        fs::read(live.path("/hello.txt")).is_ok_and(|b| b == b"changed through the API\n")
    });
    client.put("/later/new.txt", b"new\n");
    eventually("a new file", || {
        fs::read(live.path("/later/new.txt")).is_ok_and(|b| b == b"new\n")
    });
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/data/one-mb.bin")
        .call()
        .ok();
    eventually("a deleted file", || {
        !live.path("/data/one-mb.bin").exists()
            && fs::read_dir(live.path("/data"))
                .expect("list through the mount")
                .all(|e| e.expect("an entry").file_name() != "one-mb.bin")
    });
    std::thread::sleep(Duration::from_millis(2100));
    assert_same_tree(&live, &client, None);

    // A snapshot shows the tree as it was, read-only too.
    let snapshot = Mount::start(
        mount_command(
            &server.url,
            Some(&server.key),
            &snap_dir,
            &cache,
            &["--snapshot", "before"],
        ),
        &snap_dir,
        &work.path().join("snapshot.log"),
    );
    assert_eq!(
        fs::read(snapshot.path("/hello.txt")).expect("read the snapshot"),
        b"hello, mount\n"
    );
    assert_eq!(
        fs::read(snapshot.path("/data/one-mb.bin")).expect("read the snapshot"),
        one_mb
    );
    assert!(!snapshot.path("/later").exists());
    assert_same_tree(&snapshot, &client, Some("before"));
    assert_read_only(&snapshot, "/hello.txt", "/a/b/c");

    stop_cleanly(live, "INT");
    stop_cleanly(snapshot, "TERM");
}

/// Names of the files under `dir`, at any depth.
fn walk_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        {
            let entry = entry.expect("a directory entry");
            if entry.file_type().expect("a file type").is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Runs a mount command that must be refused; returns its stderr.
fn refused(mut command: Command, mountpoint: &Path) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", agentbox_bin().display()));
    let status = wait_for_exit(&mut child, MOUNT_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
    }
    let output: Output = child.wait_with_output().expect("wait for agentbox mount");
    let mounted = is_mounted(mountpoint);
    force_unmount(mountpoint);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        status.is_some() && !output.status.success() && !mounted,
        "a mount that should be refused was made ({:?}):\n{stderr}",
        output.status
    );
    stderr
}

#[test]
fn a_mount_from_a_server_refuses_a_bad_key_url_or_snapshot() {
    require_fuse();
    let server = Server::start();
    let work = tempfile::tempdir().expect("a temporary directory");
    let mountpoint = work.path().join("mnt");
    fs::create_dir(&mountpoint).expect("create a mount point");
    let cache = work.path().join("cache");

    let (url, key) = (server.url.as_str(), Some(server.key.as_str()));
    let bad_key = mount_command(url, Some("abx_not_a_key"), &mountpoint, &cache, &[]);
    let stderr = refused(bad_key, &mountpoint);
    assert!(
        stderr.contains("unauthorized") && stderr.contains("--key"),
        "{stderr}"
    );

    // A mount point with files in it: mounted over, they would be hidden.
    let mine = mountpoint.join("mine.txt");
    fs::write(&mine, b"kept").expect("write into the mount point");
    let stderr = refused(
        mount_command(url, key, &mountpoint, &cache, &[]),
        &mountpoint,
    );
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(fs::read(&mine).expect("the file is still there"), b"kept");
    fs::remove_file(&mine).expect("empty the mount point again");

    let port = free_port();
    let unreachable = format!("http://127.0.0.1:{port}");
    let stderr = refused(
        mount_command(&unreachable, key, &mountpoint, &cache, &[]),
        &mountpoint,
    );
    assert!(
        stderr.contains("cannot reach") && stderr.contains(&unreachable),
        "{stderr}"
    );

    let not_agentbox = format!("{}/not/the/api", server.url);
    let stderr = refused(
        mount_command(&not_agentbox, key, &mountpoint, &cache, &[]),
        &mountpoint,
    );
    assert!(stderr.contains("--url"), "{stderr}");

    let no_snapshot = ["--snapshot", "no-such-snapshot"];
    let stderr = refused(
        mount_command(url, key, &mountpoint, &cache, &no_snapshot),
        &mountpoint,
    );
    assert!(stderr.contains("no-such-snapshot"), "{stderr}");

    let stderr = refused(
        mount_command(url, None, &mountpoint, &cache, &[]),
        &mountpoint,
    );
    assert!(stderr.contains("no API key"), "{stderr}");

    // The key can come from the environment, like the other client commands.
    let mut from_env = Command::new(agentbox_bin());
    from_env
        .arg("mount")
        .arg(&mountpoint)
        .arg("--cache-dir")
        .arg(&cache)
        .env("AGENTBOX_URL", &server.url)
        .env("AGENTBOX_KEY", &server.key)
        .env_remove("AGENTBOX_DATA_DIR")
        .stdin(Stdio::null());
    let mount = Mount::start(from_env, &mountpoint, &work.path().join("env.log"));
    assert!(fs::read_dir(&mountpoint).is_ok());
    stop_cleanly(mount, "TERM");
}
