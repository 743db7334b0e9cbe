//! A FUSE mount the benchmark made, and taking it down again.
//!
//! A [`Mount`] is unmounted when it is dropped, on success and on error alike. A daemon
//! that runs in the foreground as our child gets SIGTERM, on which it unmounts and exits;
//! whatever is still mounted then is unmounted with the filesystem's own command (or
//! `fusermount3 -u`), retried while the mount is busy, with a lazy `fusermount3 -u -z` as
//! the last resort. Detached daemon processes get a grace period to exit before they are
//! killed, and are reaped.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::interrupt;
use super::process::{self, Pid};

/// How long a daemon may take to exit once its mount is gone.
const EXIT_GRACE: Duration = Duration::from_secs(15);
/// Unmount attempts while the mount is busy, and the pause between them.
const UNMOUNT_TRIES: usize = 10;
const UNMOUNT_PAUSE: Duration = Duration::from_millis(500);
/// Lines of a log shown with an error.
const LOG_TAIL_LINES: usize = 15;

/// A mounted FUSE filesystem and the processes serving it.
pub struct Mount {
    name: &'static str,
    mountpoint: PathBuf,
    /// The command that unmounts it, mount point included (after the child, if any, was
    /// asked to).
    unmount: Vec<OsString>,
    /// The daemon, when it runs in the foreground as our child.
    child: Option<Child>,
    /// Daemon processes that detached from the command that mounted.
    detached: Vec<Pid>,
    /// The daemon's log, quoted in errors.
    log: PathBuf,
    /// Set once [`teardown`](Self::teardown) has run, so it runs once.
    torn_down: bool,
}

impl Mount {
    /// Takes charge of a mount that is up: from now on it is unmounted on drop.
    pub fn new(
        name: &'static str,
        mountpoint: &Path,
        unmount: Vec<OsString>,
        child: Option<Child>,
        log: &Path,
    ) -> Mount {
        interrupt::register(mountpoint);
        let own = child.as_ref().map(|c| c.id() as Pid);
        let detached = process::naming(mountpoint)
            .into_iter()
            .filter(|&pid| Some(pid) != own)
            .collect();
        Mount {
            name,
            mountpoint: mountpoint.to_path_buf(),
            unmount,
            child,
            detached,
            log: log.to_path_buf(),
            torn_down: false,
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Fails when the filesystem is no longer mounted or its daemon has exited.
    pub fn check(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "the {} daemon exited ({status}); its log:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        if !is_mounted(&self.mountpoint) {
            bail!(
                "{} is no longer mounted on {}; the log:\n{}",
                self.name,
                self.mountpoint.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Unmounts, and waits for (or kills) the daemon's processes.
    pub fn unmount(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if let Some(mut child) = self.child.take() {
            match terminate(&mut child) {
                Ok(None) => {}
                Ok(Some(how)) => problems.push(format!("the daemon {how}")),
                Err(error) => problems.push(format!("stopping the daemon: {error:#}")),
            }
        }
        if let Err(error) = self.unmount_now() {
            problems.push(format!("{error:#}"));
        }
        let killed = process::wait_gone(&self.detached, EXIT_GRACE);
        if !killed.is_empty() {
            problems.push(format!(
                "killed daemon processes {killed:?} that did not exit within {EXIT_GRACE:?} of \
                 the unmount"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "{} on {}: {}",
                self.name,
                self.mountpoint.display(),
                problems.join("; ")
            )
        }
    }

    fn unmount_now(&mut self) -> Result<()> {
        let mut last_error = String::new();
        for _ in 0..UNMOUNT_TRIES {
            if !is_mounted(&self.mountpoint) {
                break;
            }
            match run_quietly(&self.unmount) {
                Ok(()) => {}
                Err(error) => last_error = format!("{error:#}"),
            }
            if is_mounted(&self.mountpoint) {
                std::thread::sleep(UNMOUNT_PAUSE);
            }
        }
        if is_mounted(&self.mountpoint) {
            let lazy: Vec<OsString> = vec![
                "fusermount3".into(),
                "-u".into(),
                "-z".into(),
                self.mountpoint.clone().into(),
            ];
            run_quietly(&lazy)?;
            if is_mounted(&self.mountpoint) {
                bail!("still mounted after unmounting ({last_error}) and a lazy unmount");
            }
            eprintln!(
                "agentbox-bench: {} was busy ({last_error}); unmounted lazily",
                self.mountpoint.display()
            );
        }
        interrupt::unregister(&self.mountpoint);
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(error) = self.teardown() {
            eprintln!("agentbox-bench: unmounting: {error:#}");
        }
    }
}

/// Stops a foreground daemon the way Ctrl-C would (it unmounts and exits on SIGTERM),
/// killing it if it does not exit in time. Returns what had to be done, if anything.
fn terminate(child: &mut Child) -> Result<Option<&'static str>> {
    if child.try_wait()?.is_some() {
        return Ok(None);
    }
    let pid = Pid::try_from(child.id()).context("daemon pid out of range")?;
    // SAFETY: kill(2) has no memory effects; `pid` is our child and not yet reaped
    // (try_wait saw it running), so the id cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if wait_for(child, EXIT_GRACE)? {
        return Ok(None);
    }
    child.kill()?;
    child.wait()?;
    Ok(Some("was killed: it did not exit on SIGTERM"))
}

fn wait_for(child: &mut Child, limit: Duration) -> Result<bool> {
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if started.elapsed() > limit {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_quietly(command: &[OsString]) -> Result<()> {
    let (program, args) = command.split_first().context("empty command")?;
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            program.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until `path` is a FUSE mount point; fails early, quoting `log`, if `child` exits
/// with an error first. A child that exits successfully may have detached its daemon.
pub fn wait_until_mounted(
    path: &Path,
    mut child: Option<&mut Child>,
    log: &Path,
    limit: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if fuse_type(path).is_some() {
            return Ok(());
        }
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.try_wait()?
            && !status.success()
        {
            bail!(
                "it exited ({status}) without mounting; its log:\n{}",
                log_tail(log)
            );
        }
        interrupt::check()?;
        if started.elapsed() > limit {
            bail!(
                "{} was not mounted within {limit:?}; the log:\n{}",
                path.display(),
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    mount_type(path).is_some()
}

/// The filesystem type of the mount at `path` when it is a FUSE one (`fuse.juicefs`).
pub fn fuse_type(path: &Path) -> Option<String> {
    mount_type(path).filter(|kind| kind == "fuse" || kind.starts_with("fuse."))
}

fn mount_type(path: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = path.to_str()?;
    info.lines()
        .filter_map(parse_mountinfo)
        .filter(|(point, _)| point == wanted)
        .map(|(_, kind)| kind)
        .next_back()
}

/// The mount point and filesystem type of one `/proc/self/mountinfo` line.
fn parse_mountinfo(line: &str) -> Option<(String, String)> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let kind = after.split(' ').next()?;
    Some((unescape(point), kind.to_string()))
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        if bytes[i] == b'\\'
            && let Some(digits) = octal
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last lines of a log without terminal colours, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..]
        .iter()
        .map(|line| strip_colours(line))
        .collect::<Vec<_>>()
        .join("\n")
}

fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let line = "36 35 0:31 / /var/tmp/a\\040b/mnt rw,nosuid shared:1 - fuse.juicefs \
                    JuiceFS:x rw,user_id=0";
        assert_eq!(
            parse_mountinfo(line),
            Some(("/var/tmp/a b/mnt".to_string(), "fuse.juicefs".to_string()))
        );
        assert_eq!(parse_mountinfo("nonsense"), None);
    }

    #[test]
    fn the_root_is_mounted_and_not_fuse() {
        assert!(is_mounted(Path::new("/")));
        assert!(fuse_type(Path::new("/")).is_none());
        assert!(!is_mounted(Path::new("/definitely/not/a/mount/point")));
    }

    #[test]
    fn strips_colours_from_log_lines() {
        assert_eq!(strip_colours("\u{1b}[92mOK\u{1b}[0m, ready"), "OK, ready");
    }
}
