//! POSIX conformance of `agentbox mount`: pjdfstest, through `scripts/pjdfstest.sh`, against
//! an agent's tree mounted with FUSE, with an ext4 (or other local) directory as the second
//! file system for the EXDEV tests. The failures the agent filesystem has by design are
//! listed, each with its reason, in `tests/pjdfstest.exclude`; any other failure fails the
//! test. `docs/conformance.md` records the counts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{agentbox_bin, free_port};

/// How long `agentbox serve` may take to start, and a mount to appear.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the mount may take to unmount after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The signal number of SIGTERM.
const SIGTERM: i32 = 15;
/// How long pjdfstest may run (a run takes seconds).
const PJDFSTEST_TIMEOUT_SECS: &str = "300";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives inside the workspace")
        .to_path_buf()
}

/// Whether `path` (canonical) is a mount point, according to `/proc/self/mountinfo`.
fn is_mounted(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    // The fifth field is the mount point, with space, tab, newline and backslash escaped
    // as octal.
    let wanted = path
        .to_str()
        .expect("a UTF-8 temporary path")
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

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
    assert!(
        Path::new("/dev/fuse").exists() && on_path("fusermount3"),
        "mounting needs /dev/fuse and fusermount3: run scripts/setup.sh (Debian package fuse3)"
    );
    if effective_uid() == 0 {
        assert!(
            user_exists("nobody") && user_exists("tests"),
            "pjdfstest switches to the users nobody and tests: run scripts/setup.sh to create them"
        );
    }
}

/// Sends SIGTERM to a process (with the shell's `kill`, which every Debian system has).
fn terminate(child: &Child) {
    let _ = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
        .status();
}

/// Waits up to `timeout` for a process to exit.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_tail(log: &Path) -> String {
    let bytes = fs::read(log).unwrap_or_default();
    let start = bytes.len().saturating_sub(4000);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
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
                    log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match exited {
            Some(_) if log_tail(log).contains("in use") => continue,
            Some(status) => panic!(
                "agentbox serve exited with {status} before writing {}:\n{}",
                key_file.display(),
                log_tail(log)
            ),
            None => {}
        }
        terminate(&server);
        let status = wait_for_exit(&mut server, STOP_TIMEOUT).unwrap_or_else(|| {
            let _ = server.kill();
            let _ = server.wait();
            panic!(
                "agentbox serve did not stop within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                log_tail(log)
            )
        });
        // Ended by SIGTERM itself if the signal came before the server's handler was in
        // place: the data directory is complete either way, since the key is written last.
        assert!(
            status.success() || status.signal() == Some(SIGTERM),
            "agentbox serve exited with {status} on SIGTERM:\n{}",
            log_tail(log)
        );
        return;
    }
    panic!("agentbox serve could not find a free port in three tries");
}

/// A running `agentbox mount`. Dropping it unmounts: SIGTERM to the process, then
/// `fusermount3 -u` and `umount -l` if the mount is still there.
struct MountProcess {
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl MountProcess {
    /// Starts `agentbox mount MOUNTPOINT --data-dir DATA_DIR` and waits for the mount.
    fn start(data_dir: &Path, mountpoint: &Path, log: &Path) -> MountProcess {
        let log_file = fs::File::create(log).expect("create the mount log");
        let child = Command::new(agentbox_bin())
            .arg("mount")
            .arg(mountpoint)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("AGENTBOX_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agentbox_bin().display()));
        let mut mount = MountProcess {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !is_mounted(mountpoint) {
            let child = mount.child.as_mut().expect("a mount process");
            if let Some(status) = child.try_wait().expect("poll the mount process") {
                mount.child = None;
                panic!(
                    "agentbox mount exited with {status} before mounting:\n{}",
                    mount.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} was not mounted within {READY_TIMEOUT:?}:\n{}",
                mountpoint.display(),
                mount.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Whether the mount process is still running.
    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("poll the mount process").is_none())
    }

    /// Unmounts: SIGTERM (the clean way), SIGKILL if that does not end the process in
    /// time, then `fusermount3 -u` and `umount -l` while the mount is still there.
    /// Returns how the process exited, `None` if it had to be killed.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut exit = None;
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            exit = wait_for_exit(&mut child, STOP_TIMEOUT);
            if exit.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .status();
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
        exit
    }
}

impl Drop for MountProcess {
    fn drop(&mut self) {
        self.stop();
    }
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

    let work = tempfile::Builder::new()
        .prefix("agentbox-pjdfstest-")
        .tempdir()
        .expect("create a temporary directory");
    // pjdfstest switches to the users nobody and tests, who must reach the mount.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
        .expect("open the temporary directory to other users");
    let base = work
        .path()
        .canonicalize()
        .expect("canonicalize the temporary directory");
    let data_dir = base.join("data");
    let mountpoint = base.join("mnt");
    let secondary = base.join("secondary");
    for dir in [&mountpoint, &secondary] {
        fs::create_dir(dir).expect("create a directory");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .expect("open a directory to other users");
    }

    bootstrap_data_dir(&data_dir, &base.join("serve.log"));
    let mut mount = MountProcess::start(&data_dir, &mountpoint, &base.join("mount.log"));

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
