//! Ctrl-C, SIGTERM and SIGHUP: the first one asks the run to stop at its next check, so it
//! unwinds through the code that unmounts and stops everything; a second one lazily
//! unmounts what is still mounted and exits at once.
//!
//! The handler only counts signals (an atomic add is safe in a signal handler); a watcher
//! thread does the rest. Handlers are reset by exec, so child processes still get the
//! default behaviour (Ctrl-C ends fio, for instance).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static MOUNTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn on_signal(_signal: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs the handler and starts the thread that acts on it.
pub fn install() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the handler only
        // does an atomic add, which is async-signal-safe; sigaction reads `action` and
        // writes no old action (null).
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("sigaction: {}", io::Error::last_os_error());
        }
    }
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(|| {
            let mut seen = 0;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let count = SIGNALS.load(Ordering::SeqCst);
                if count == seen {
                    continue;
                }
                seen = count;
                if count >= 2 {
                    eprintln!("agentbox-bench: interrupted again: unmounting lazily and exiting");
                    unmount_all_lazily();
                    std::process::exit(130);
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
    SIGNALS.load(Ordering::SeqCst) > 0
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
