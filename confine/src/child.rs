//! Preparing a child between fork and exec: join its cgroup first (so every descendant is
//! counted and killed with it), start a new session, set rlimits, drop to an unprivileged
//! user and forbid regaining privileges. Runs in a `pre_exec` hook, so it only makes
//! async-signal-safe calls and allocates nothing.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::group::Joiner;

/// The unprivileged identity a child runs as. Supplementary groups are cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

impl Credentials {
    /// The first directory above `path` this identity may not pass through (no search
    /// permission for it as owner, group or other; it has no supplementary groups), or `None`
    /// when it can reach `path`. Directories that do not exist yet are skipped.
    pub fn closed_directory_above(&self, path: &Path) -> Option<PathBuf> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        path.ancestors().skip(1).find_map(|dir| {
            let meta = std::fs::metadata(dir).ok()?;
            let search = if meta.uid() == self.uid {
                0o100
            } else if meta.gid() == self.gid {
                0o010
            } else {
                0o001
            };
            (meta.mode() & search == 0).then(|| dir.to_path_buf())
        })
    }
}

/// A resource limit set as soft = hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    /// Core dump size.
    Core,
    /// Open file descriptors.
    OpenFiles,
    /// Largest file the process may write.
    FileSize,
    /// Processes of the (real) user; counts across the whole host.
    Processes,
    /// Virtual address space.
    AddressSpace,
}

impl Rlimit {
    fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::OpenFiles => libc::RLIMIT_NOFILE,
            Rlimit::FileSize => libc::RLIMIT_FSIZE,
            Rlimit::Processes => libc::RLIMIT_NPROC,
            Rlimit::AddressSpace => libc::RLIMIT_AS,
        }
    }
}

/// Everything done to a child before exec, in this order: cgroup, session, rlimits,
/// credentials, no-new-privileges, parent-death signal.
#[derive(Debug, Default)]
pub struct ChildSetup {
    pub cgroup: Option<Joiner>,
    pub new_session: bool,
    pub rlimits: Vec<(Rlimit, u64)>,
    pub credentials: Option<Credentials>,
    pub no_new_privileges: bool,
    /// Delivered when the thread that spawned the child exits: spawn from a long-lived thread.
    /// Set after the uid change, which would clear it. A child whose parent died before the
    /// signal was set is not executed (the spawn fails with `ESRCH`).
    pub parent_death_signal: Option<i32>,
}

impl ChildSetup {
    /// Installs the steps as `command`'s pre_exec hook. With tokio, pass
    /// `command.as_std_mut()`.
    pub fn apply_to(self, command: &mut Command) {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the hook only makes async-signal-safe system calls on data prepared before
        // the fork; it allocates nothing and takes no locks.
        unsafe {
            command.pre_exec(move || self.run_in_child(parent));
        }
    }

    fn run_in_child(&self, parent: libc::pid_t) -> io::Result<()> {
        if let Some(joiner) = &self.cgroup {
            joiner.join()?;
        }
        if self.new_session {
            // SAFETY: setsid has no memory effects.
            check(unsafe { libc::setsid() })?;
        }
        for &(limit, value) in &self.rlimits {
            let rlimit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: the pointer is to a local of the right type.
            check(unsafe { libc::setrlimit(limit.resource(), &rlimit) })?;
        }
        if let Some(credentials) = self.credentials {
            // SAFETY: plain system calls; a null list with length 0 clears the groups.
            unsafe {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setresgid(
                    credentials.gid,
                    credentials.gid,
                    credentials.gid,
                ))?;
                check(libc::setresuid(
                    credentials.uid,
                    credentials.uid,
                    credentials.uid,
                ))?;
            }
        }
        if self.no_new_privileges {
            // SAFETY: prctl with integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        if let Some(signal) = self.parent_death_signal {
            // SAFETY: prctl with integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) })?;
            // The signal covers only a parent that dies from now on; one that died since the
            // fork has left this child to another parent, and it must not go on.
            // SAFETY: getppid has no memory effects.
            if unsafe { libc::getppid() } != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
