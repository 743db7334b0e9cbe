//! Ctrl-C, SIGTERM and SIGHUP: the first one asks the run to stop at its next check, so it
//! unwinds through the code that unmounts and stops everything; a second one lazily
//! unmounts what is still mounted and exits at once.
//!
//! The signals are blocked in every thread and taken by one thread with `sigwait`, so no
//! code runs in a signal handler. Child processes start with an empty signal mask (std
//! resets it), so they still see Ctrl-C as usual.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Blocks the signals in this thread (and the threads it starts later) and starts the
/// thread that takes them. Call before starting any other thread.
pub fn install() -> Result<()> {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset initializes it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the sigset functions only write into `set`, which lives through the calls;
    // pthread_sigmask reads it and writes no old mask (null).
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!("pthread_sigmask: {}", io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            loop {
                let mut signal = 0;
                // SAFETY: sigwait reads `set` and writes the signal number into `signal`.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    continue;
                }
                if REQUESTED.swap(true, Ordering::SeqCst) {
                    eprintln!("agentbox-bench: interrupted again: unmounting lazily and exiting");
                    unmount_all_lazily();
                    std::process::exit(128 + signal);
                }
                eprintln!(
                    "agentbox-bench: interrupted: stopping after the current step and unmounting \
                     (interrupt again to abandon that)"
                );
            }
        })?;
    Ok(())
}

/// True once a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Fails once a stop was asked for.
pub fn check() -> Result<()> {
    if requested() {
        bail!("interrupted");
    }
    Ok(())
}

/// Remembers a mount point for the last-resort lazy unmount.
pub fn register(mountpoint: &Path) {
    let mut mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    mounts.push(mountpoint.to_path_buf());
}

/// Forgets a mount point once it is unmounted.
pub fn unregister(mountpoint: &Path) {
    let mut mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    mounts.retain(|m| m != mountpoint);
}

fn unmount_all_lazily() {
    let mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for mountpoint in mounts {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&mountpoint)
            .stdin(Stdio::null())
            .status();
    }
}
