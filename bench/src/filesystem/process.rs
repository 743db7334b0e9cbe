//! The processes behind a mount, found, waited for and reaped.
//!
//! `juicefs mount -d` forks a supervisor and a daemon and returns. The benchmark makes
//! itself a child subreaper, so such orphans become its children rather than init's: it can
//! wait for them when it unmounts, and reap them. A process belongs to a mount when it
//! descends from the benchmark and its command line names the mount point, a path inside
//! the benchmark's own temporary directory.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

pub type Pid = libc::pid_t;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);
/// How long processes get after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long leftovers get after SIGTERM at the very end.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// Makes orphaned descendants of this process its children (`PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process; it reads and
    // writes no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        bail!(
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The state letter and parent of `pid`, from `/proc/<pid>/stat`.
pub(crate) fn stat(pid: Pid) -> Option<(char, Pid)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `pid (comm) S ppid ...`; the command name may itself contain spaces and `)`.
fn parse_stat(text: &str) -> Option<(char, Pid)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

fn own_pid() -> Pid {
    // SAFETY: getpid(2) cannot fail and touches no memory.
    unsafe { libc::getpid() }
}

fn descends_from_us(pid: Pid) -> bool {
    let us = own_pid();
    let mut current = pid;
    for _ in 0..64 {
        match stat(current) {
            Some((_, parent)) if parent == us => return true,
            Some((_, parent)) if parent > 1 => current = parent,
            _ => return false,
        }
    }
    false
}

/// Every process's id.
pub(crate) fn pids() -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The arguments `pid` was started with (none for a zombie or a kernel thread).
pub(crate) fn arguments(pid: Pid) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|word| !word.is_empty())
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect(),
    )
}

fn command_line(pid: Pid) -> Option<String> {
    arguments(pid).map(|words| words.join(" "))
}

/// The processes descending from this one whose command line names `path`.
pub fn naming(path: &Path) -> Vec<Pid> {
    let needle = path.display().to_string();
    pids()
        .into_iter()
        .filter(|&pid| command_line(pid).is_some_and(|line| line.contains(&needle)))
        .filter(|&pid| descends_from_us(pid))
        .collect()
}

/// Reaps `pid` if it is an exited child of ours; true when it is gone for good.
fn reaped_or_gone(pid: Pid) -> bool {
    match stat(pid) {
        None => true,
        Some((state, parent)) if parent == own_pid() => {
            let mut status = 0;
            // SAFETY: waitpid writes only into `status`; `pid` is a child of ours, so no
            // other code of ours waits for it (std's Child handles are never made for the
            // processes passed here).
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            reaped == pid || (reaped < 0 && state == 'Z')
        }
        // A zombie of another process is that process's to reap (or ours, once adopted).
        Some((state, _)) => state == 'Z',
    }
}

fn signal(pid: Pid, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; `pid` was found among our own descendants and
    // has not been reaped by us, so the id still names that process.
    unsafe { libc::kill(pid, signal) };
}

/// Waits up to `grace` for every process of `pids` to exit, kills the rest with SIGKILL,
/// and reaps those that are our children. Returns the ids that had to be killed.
pub fn wait_gone(pids: &[Pid], grace: Duration) -> Vec<Pid> {
    let mut left: Vec<Pid> = pids.to_vec();
    let started = Instant::now();
    while !left.is_empty() && started.elapsed() < grace {
        left.retain(|&pid| !reaped_or_gone(pid));
        if !left.is_empty() {
            std::thread::sleep(POLL);
        }
    }
    let killed = left.clone();
    for &pid in &left {
        signal(pid, libc::SIGKILL);
    }
    let killed_at = Instant::now();
    while !left.is_empty() && killed_at.elapsed() < KILL_GRACE {
        left.retain(|&pid| !reaped_or_gone(pid));
        std::thread::sleep(POLL);
    }
    killed
}

/// Stops (SIGTERM, then SIGKILL) and reaps every child this process still has. Only for
/// the very end, when no `std::process::Child` is waiting to be reaped. Returns what it
/// found still running, for a warning.
pub fn stop_adopted() -> Vec<String> {
    let us = own_pid();
    let children: Vec<(Pid, char)> = pids()
        .into_iter()
        .filter_map(|pid| match stat(pid) {
            Some((state, parent)) if parent == us => Some((pid, state)),
            _ => None,
        })
        .collect();
    let running: Vec<Pid> = children
        .iter()
        .filter(|(_, state)| *state != 'Z')
        .map(|(pid, _)| *pid)
        .collect();
    let described = running
        .iter()
        .map(|&pid| format!("{pid} {}", command_line(pid).unwrap_or_default()))
        .collect();
    for &pid in &running {
        signal(pid, libc::SIGTERM);
    }
    let all: Vec<Pid> = children.iter().map(|(pid, _)| *pid).collect();
    wait_gone(&all, TERM_GRACE);
    described
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn parses_stat_lines() {
        assert_eq!(parse_stat("42 (juicefs) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("42 (a) b) Z 1 0"), Some(('Z', 1)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_own_descendants_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 30; : {}", marker.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        // The child names the path once it has exec'd the shell.
        let started = Instant::now();
        let mut found = naming(&marker);
        while found.is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(POLL);
            found = naming(&marker);
        }
        // The shell, and for a moment the copy of it that forks into `sleep`.
        assert!(found.contains(&(child.id() as Pid)), "{found:?}");
        for pid in &found {
            signal(*pid, libc::SIGKILL);
        }
        // And the `sleep` it started, whichever moment it was caught at.
        signal(-(child.id() as Pid), libc::SIGKILL);
        child.wait().unwrap();
        let started = Instant::now();
        while !naming(&marker).is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(POLL);
        }
        assert!(naming(&marker).is_empty());
    }
}
