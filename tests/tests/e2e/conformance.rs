//! POSIX conformance of `agentbox mount`: pjdfstest, through `scripts/pjdfstest.sh`, against
//! an agent's tree mounted with FUSE, with an ext4 (or other local) directory as the second
//! file system for the EXDEV tests. The failures the agent filesystem has by design are
//! listed, each with its reason, in `tests/pjdfstest.exclude`; any other failure fails the
//! test. `docs/conformance.md` records the counts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Mount, STOP_TIMEOUT, agentbox_bin, free_port, is_mounted, log_tail, require_fuse, signal,
    wait_for_exit, workspace_root,
};

/// How long `agentbox serve` may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The signal number of SIGTERM.
const SIGTERM: i32 = 15;
/// How long pjdfstest may run (a run takes seconds).
const PJDFSTEST_TIMEOUT_SECS: &str = "300";
/// How much of a log to show in a message.
const LOG_TAIL: usize = 4000;

/// The effective user id of this process, from `/proc/self/status`.
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("an effective uid in /proc/self/status")
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn on_path(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Fails with what to install unless pjdfstest, FUSE and (as root) pjdfstest's users are
/// there.
fn require_system_components() {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let in_cargo_home = cargo_home.is_some_and(|home| home.join("bin/pjdfstest").is_file());
    assert!(
        on_path("pjdfstest") || in_cargo_home,
        "pjdfstest is not installed: run scripts/setup.sh (it runs `cargo install --locked pjdfstest`)"
    );
    require_fuse();
    if effective_uid() == 0 {
        assert!(
            user_exists("nobody") && user_exists("tests"),
            "pjdfstest switches to the users nobody and tests: run scripts/setup.sh to create them"
        );
    }
}

/// Makes a data directory with the `default` agent: starts `agentbox serve` on it until
/// `default.key` is written and `/healthz` answers, then stops it with SIGTERM so that the
/// directory is free.
fn bootstrap_data_dir(data_dir: &Path, log: &Path) {
    for _attempt in 0..3 {
        let listen = format!("127.0.0.1:{}", free_port());
        let log_file = fs::File::create(log).expect("create the server log");
        let mut server = Command::new(agentbox_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &listen])
            .env_remove("AGENTBOX_DATA_DIR")
            .env_remove("AGENTBOX_LISTEN")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agentbox_bin().display()));
        let key_file = data_dir.join("default.key");
        let healthz = format!("http://{listen}/healthz");
        let probe = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let deadline = Instant::now() + READY_TIMEOUT;
        let exited = loop {
            if let Some(status) = server.try_wait().expect("poll the server") {
                break Some(status);
            }
            // The key comes first; once `/healthz` answers, SIGTERM stops the server cleanly.
            if fs::read_to_string(&key_file).is_ok_and(|key| !key.trim().is_empty())
                && probe
                    .get(&healthz)
                    .call()
                    .is_ok_and(|response| response.status() == 200)
            {
                break None;
            }
            if Instant::now() >= deadline {
                let _ = server.kill();
                let _ = server.wait();
                panic!(
                    "agentbox serve did not write {} and answer {healthz} within \
                     {READY_TIMEOUT:?}:\n{}",
                    key_file.display(),
                    log_tail(log, LOG_TAIL)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match exited {
            Some(_) if log_tail(log, LOG_TAIL).contains("in use") => continue,
            Some(status) => panic!(
                "agentbox serve exited with {status} before writing {}:\n{}",
                key_file.display(),
                log_tail(log, LOG_TAIL)
            ),
            None => {}
        }
        signal(&server, "TERM");
        let status = wait_for_exit(&mut server, STOP_TIMEOUT).unwrap_or_else(|| {
            let _ = server.kill();
            let _ = server.wait();
            panic!(
                "agentbox serve did not stop within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                log_tail(log, LOG_TAIL)
            )
        });
        // Ended by SIGTERM itself if the signal came before the server's handler was in
        // place: the data directory is complete either way, since the key is written last.
        assert!(
            status.success() || status.signal() == Some(SIGTERM),
            "agentbox serve exited with {status} on SIGTERM:\n{}",
            log_tail(log, LOG_TAIL)
        );
        return;
    }
    panic!("agentbox serve could not find a free port in three tries");
}

/// A new temporary directory and its canonical path (mount points are compared with the
/// mount table as given, so without symlinks).
fn work_dir(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory");
    let base = work
        .path()
        .canonicalize()
        .expect("canonicalize the temporary directory");
    (work, base)
}

/// A new data directory made by `agentbox serve` and an empty mount point beside it, in a
/// new temporary directory: (the directory, its path, the data directory, the mount point).
fn data_dir_and_mountpoint(prefix: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let (work, base) = work_dir(prefix);
    let data_dir = base.join("data");
    let mountpoint = base.join("mnt");
    fs::create_dir(&mountpoint).expect("create the mount point");
    bootstrap_data_dir(&data_dir, &base.join("serve.log"));
    (work, base, data_dir, mountpoint)
}

/// `agentbox mount MOUNTPOINT --data-dir DATA_DIR`, with nothing from the environment.
fn mount_command(data_dir: &Path, mountpoint: &Path) -> Command {
    let mut command = Command::new(agentbox_bin());
    command
        .arg("mount")
        .arg(mountpoint)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("AGENTBOX_DATA_DIR");
    command
}

/// Runs `scripts/pjdfstest.sh` on `dir`, with `secondary` for the EXDEV tests and the
/// exclusion list of this crate.
fn run_pjdfstest(dir: &Path, secondary: &Path) -> Output {
    let root = workspace_root();
    let script = root.join("scripts/pjdfstest.sh");
    let exclude = root.join("tests/pjdfstest.exclude");
    Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg("--secondary")
        .arg(secondary)
        .arg("--exclude")
        .arg(&exclude)
        .args(["--timeout", PJDFSTEST_TIMEOUT_SECS])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

#[test]
fn pjdfstest_passes_on_an_agent_mount() {
    require_system_components();

    let (_work, base) = work_dir("agentbox-pjdfstest-");
    // pjdfstest switches to the users nobody and tests, who must reach the mount.
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755))
        .expect("open the temporary directory to other users");
    let data_dir = base.join("data");
    let mountpoint = base.join("mnt");
    let secondary = base.join("secondary");
    for dir in [&mountpoint, &secondary] {
        fs::create_dir(dir).expect("create a directory");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .expect("open a directory to other users");
    }

    bootstrap_data_dir(&data_dir, &base.join("serve.log"));
    let mut mount = Mount::start(
        mount_command(&data_dir, &mountpoint),
        &mountpoint,
        &base.join("mount.log"),
    );

    let output = run_pjdfstest(&mountpoint, &secondary);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stdout}{stderr}");
    let mount_alive = mount.is_running();
    assert!(
        output.status.success(),
        "scripts/pjdfstest.sh failed with {} (mount process {}): a failure above that is not \
         in tests/pjdfstest.exclude is a bug to fix\nagentbox mount log:\n{}",
        output.status,
        if mount_alive { "running" } else { "gone" },
        mount.log_tail()
    );
    assert!(
        stdout.contains("pjdfstest: "),
        "scripts/pjdfstest.sh printed no summary line"
    );
    assert!(
        !stderr.contains("could not remove its working directory"),
        "pjdfstest could not remove its working directory from the mount"
    );
    assert!(mount_alive, "agentbox mount exited during the run");

    let exit = mount.stop();
    assert!(
        !is_mounted(&mountpoint),
        "{} is still mounted after stopping agentbox mount",
        mountpoint.display()
    );
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "agentbox mount did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
            mount.log_tail()
        )
    });
    assert!(
        exit.success(),
        "agentbox mount exited with {exit} on SIGTERM:\n{}",
        mount.log_tail()
    );
}

#[test]
fn a_mount_unmounted_from_outside_exits_and_frees_the_data_directory() {
    require_fuse();
    let (_work, base, data_dir, mountpoint) = data_dir_and_mountpoint("agentbox-unmounted-");

    let mut mount = Mount::start(
        mount_command(&data_dir, &mountpoint),
        &mountpoint,
        &base.join("mount.log"),
    );
    fs::write(mount.path("/kept.txt"), b"written before the unmount").expect("write a file");
    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(&mountpoint)
        .status()
        .expect("run fusermount3");
    assert!(unmounted.success(), "fusermount3 -u failed: {unmounted}");

    let exit = mount.wait(STOP_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "agentbox mount still runs {STOP_TIMEOUT:?} after being unmounted, holding the \
             data directory:\n{}",
            mount.log_tail()
        )
    });
    assert!(
        exit.success(),
        "agentbox mount exited with {exit} after being unmounted:\n{}",
        mount.log_tail()
    );
    assert!(
        mount.log().contains("was unmounted"),
        "agentbox mount did not say it was unmounted:\n{}",
        mount.log_tail()
    );

    // The lock went with the process: the directory can be mounted again at once.
    let again = Mount::start(
        mount_command(&data_dir, &mountpoint),
        &mountpoint,
        &base.join("mount-again.log"),
    );
    assert_eq!(
        fs::read(again.path("/kept.txt")).expect("read the file through the new mount"),
        b"written before the unmount"
    );
}

/// Contents of file `i` of round `round`: different for every file.
fn killed_mount_contents(round: usize, i: usize) -> Vec<u8> {
    format!("round {round} file {i}\n")
        .repeat(i % 50 + 1)
        .into_bytes()
}

#[test]
fn files_a_killed_mount_had_closed_are_there_when_it_mounts_again() {
    require_fuse();
    const ROUNDS: usize = 5;
    const FILES: usize = 100;
    let (_work, base, data_dir, mountpoint) = data_dir_and_mountpoint("agentbox-killed-mount-");

    // Each round mounts, checks every file closed before earlier kills, writes more and
    // is killed with SIGKILL right after its last close, inside the batch that holds it.
    let mut replayed = 0;
    for round in 0..=ROUNDS {
        let mut mount = Mount::start(
            mount_command(&data_dir, &mountpoint),
            &mountpoint,
            &base.join(format!("mount-{round}.log")),
        );
        if mount.log().contains("changes a stopped process left") {
            replayed += 1;
        }
        for earlier in 0..round {
            for i in 0..FILES {
                let path = mount.path(&format!("r{earlier}/f{i}"));
                let read = fs::read(&path).unwrap_or_else(|e| {
                    panic!(
                        "{} was closed before the mount was killed, yet reads {e} in round {round}",
                        path.display()
                    )
                });
                assert_eq!(
                    read,
                    killed_mount_contents(earlier, i),
                    "{}",
                    path.display()
                );
            }
        }
        if round == ROUNDS {
            break;
        }
        fs::create_dir(mount.path(&format!("r{round}"))).expect("make a directory");
        for i in 0..FILES {
            fs::write(
                mount.path(&format!("r{round}/f{i}")),
                killed_mount_contents(round, i),
            )
            .expect("write a file");
        }
        mount.kill();
        crate::support::force_unmount(&mountpoint);
    }
    // A round whose kill came after its batch committed tests nothing new; most kills
    // land inside the batch (it commits 10 ms after it opens).
    eprintln!("{replayed} of {ROUNDS} kills left changes in the intent log");
    assert!(
        replayed > 0,
        "in {ROUNDS} kills no mount found changes to apply in the intent log"
    );
}

#[test]
fn a_read_write_mount_sweeps_the_blobs_of_removed_files() {
    require_fuse();
    let (_work, base, data_dir, mountpoint) = data_dir_and_mountpoint("agentbox-mount-sweep-");

    let mut command = mount_command(&data_dir, &mountpoint);
    command.args([
        "--sweep-grace-seconds",
        "0",
        "--sweep-interval-seconds",
        "1",
    ]);
    let mount = Mount::start(command, &mountpoint, &base.join("mount.log"));
    // Large enough to be a blob file of its own, small enough to be one blob.
    let content: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = crate::support::blake3_hex(&content);
    let blob = data_dir.join("blobs").join(&hash[..2]).join(&hash[2..]);
    let kept: Vec<u8> = content.iter().map(|byte| byte ^ 0x5a).collect();
    fs::write(mount.path("/kept.bin"), &kept).expect("write a file to keep");
    fs::write(mount.path("/removed.bin"), &content).expect("write a file");
    assert!(blob.is_file(), "{} was not stored", blob.display());
    fs::remove_file(mount.path("/removed.bin")).expect("remove the file");

    let deadline = Instant::now() + Duration::from_secs(30);
    while blob.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !blob.exists(),
        "the blob of a removed file is still there 30 s later, with a sweep every second and \
         no grace period:\n{}",
        mount.log_tail()
    );
    let kept_hash = crate::support::blake3_hex(&kept);
    let kept_blob = data_dir
        .join("blobs")
        .join(&kept_hash[..2])
        .join(&kept_hash[2..]);
    assert!(
        kept_blob.is_file(),
        "the sweep took {}, the blob of a file that still exists",
        kept_blob.display()
    );
}

/// `flock(2)` on `file`, as a `Result` of the errno.
fn flock(file: &fs::File, operation: i32) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; flock touches no memory of ours.
    match unsafe { libc::flock(file.as_raw_fd(), operation) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
    }
}

/// An open-file-description record lock (`fcntl(F_OFD_SETLK)`, or `F_OFD_GETLK` with
/// `test`) of `len` bytes at `start`; returns the lock type found or set.
fn record_lock(file: &fs::File, test: bool, kind: i32, start: i64, len: i64) -> Result<i32, i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero flock is valid (l_pid must be 0 for these locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    let command = if test {
        libc::F_OFD_GETLK
    } else {
        libc::F_OFD_SETLK
    };
    // SAFETY: a valid open descriptor and a flock that outlives the call.
    match unsafe { libc::fcntl(file.as_raw_fd(), command, &mut lock) } {
        0 => Ok(i32::from(lock.l_type)),
        _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
    }
}

#[test]
fn locks_taken_through_a_mount_exclude_each_other() {
    require_fuse();
    let (_work, base, data_dir, mountpoint) = data_dir_and_mountpoint("agentbox-locks-");
    let mount = Mount::start(
        mount_command(&data_dir, &mountpoint),
        &mountpoint,
        &base.join("mount.log"),
    );
    let path = mount.path("/locked.db");
    fs::write(&path, vec![0u8; 4096]).expect("write the file to lock");
    let open = || {
        fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the file to lock")
    };
    let (first, second) = (open(), open());

    // Whole-file locks (flock), between two opens of the file.
    assert_eq!(flock(&first, libc::LOCK_EX | libc::LOCK_NB), Ok(()));
    assert_eq!(
        flock(&second, libc::LOCK_EX | libc::LOCK_NB),
        Err(libc::EWOULDBLOCK),
        "a second exclusive flock was granted"
    );
    assert_eq!(
        flock(&second, libc::LOCK_SH | libc::LOCK_NB),
        Err(libc::EWOULDBLOCK),
        "a shared flock was granted beside an exclusive one"
    );
    assert_eq!(flock(&first, libc::LOCK_UN), Ok(()));
    assert_eq!(flock(&second, libc::LOCK_SH | libc::LOCK_NB), Ok(()));
    assert_eq!(flock(&first, libc::LOCK_SH | libc::LOCK_NB), Ok(()));
    assert_eq!(flock(&first, libc::LOCK_UN), Ok(()));
    assert_eq!(flock(&second, libc::LOCK_UN), Ok(()));

    // Byte-range locks (fcntl), between two opens of the file.
    let (write, unlocked) = (
        i32::from(libc::F_WRLCK as i16),
        i32::from(libc::F_UNLCK as i16),
    );
    assert_eq!(record_lock(&first, false, write, 0, 100), Ok(write));
    assert_eq!(
        record_lock(&second, false, write, 50, 100),
        Err(libc::EAGAIN),
        "an overlapping write lock was granted"
    );
    assert_eq!(
        record_lock(&second, true, write, 50, 100),
        Ok(write),
        "F_OFD_GETLK does not report the conflicting lock"
    );
    assert_eq!(record_lock(&second, false, write, 100, 100), Ok(write));
    assert_eq!(record_lock(&second, true, write, 150, 10), Ok(unlocked));
    drop(first);
    assert_eq!(
        record_lock(&second, false, write, 0, 100),
        Ok(write),
        "a lock outlived the close of its file"
    );

    // A classic POSIX lock held by another process, as a database takes it.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl, sys\n\
             f = open(sys.argv[1], 'r+b')\n\
             fcntl.lockf(f, fcntl.LOCK_EX, 10, 1000)\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n",
        )
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3 to hold a lock");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("the holder's output")),
        &mut line,
    )
    .expect("read from the lock holder");
    assert_eq!(line.trim(), "locked", "the other process could not lock");
    let third = open();
    let blocked = record_lock(&third, false, write, 1000, 1);
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(
        blocked,
        Err(libc::EAGAIN),
        "a lock overlapping another process's was granted"
    );
    assert_eq!(
        record_lock(&third, false, write, 1000, 1),
        Ok(write),
        "the lock of an exited process was not released"
    );
}
