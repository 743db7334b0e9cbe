//! Sandbox mounts kept by the server: one sandbox-view FUSE mount per agent in use, made
//! when first needed, shared by everything that needs it at the same time, unmounted once
//! idle, and cleaned up at start if a crash left some behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fuse::{Mount, MountConfig};
use crate::vfs::{Vfs, VfsOptions};
use crate::{AgentId, Error, Result, Store};

#[derive(Debug, Clone)]
pub struct MountManagerOptions {
    /// The directory the mounts live in, one subdirectory per agent id.
    pub base: PathBuf,
    /// How long an unused mount stays.
    pub idle: Duration,
    /// The owner files are shown with (the sandbox's user).
    pub uid: u32,
    pub gid: u32,
    /// Threads serving each mount.
    pub threads: usize,
    /// How long one of them watches for the next request before sleeping.
    pub busy_poll: Duration,
}

struct Managed {
    mount: Mount,
    leases: usize,
    idle_since: Instant,
}

/// The server's sandbox mounts.
pub struct MountManager {
    store: Store,
    options: MountManagerOptions,
    mounts: Mutex<HashMap<AgentId, Managed>>,
}

/// A mount in use: it stays mounted at least while any lease on it lives.
pub struct MountLease {
    manager: Arc<MountManager>,
    agent: AgentId,
    path: PathBuf,
}

impl MountLease {
    /// Where the agent's sandbox view is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MountLease {
    fn drop(&mut self) {
        let mut mounts = self.manager.lock();
        if let Some(managed) = mounts.get_mut(&self.agent) {
            managed.leases = managed.leases.saturating_sub(1);
            if managed.leases == 0 {
                managed.idle_since = Instant::now();
            }
        }
    }
}

impl MountManager {
    /// Creates the manager, first unmounting and removing whatever a previous process left
    /// in `options.base`.
    pub fn new(store: Store, options: MountManagerOptions) -> Result<Arc<MountManager>> {
        std::fs::create_dir_all(&options.base)
            .map_err(Error::io(format!("creating {}", options.base.display())))?;
        clean_up(&options.base)?;
        Ok(Arc::new(MountManager {
            store,
            options,
            mounts: Mutex::new(HashMap::new()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Managed>> {
        self.mounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent's sandbox view, mounting it if it is not mounted yet.
    pub fn acquire(self: &Arc<Self>, agent: AgentId) -> Result<MountLease> {
        let path = self.options.base.join(agent.to_string());
        let mut mounts = self.lock();
        let mut leases = 1;
        if let Some(managed) = mounts.get_mut(&agent) {
            // Asking the daemon (`is_served`) waits for a free serving thread, with every
            // agent's acquire waiting on this lock: only a view nothing uses is asked. One in
            // use is trusted unless its threads have ended; if it is dead, its runs fail and
            // give their leases back, and the next acquire mounts it again.
            let served = match managed.leases {
                0 => managed.mount.is_served(),
                _ => !managed.mount.is_finished(),
            };
            if served {
                managed.leases += 1;
                return Ok(MountLease {
                    manager: self.clone(),
                    agent,
                    path,
                });
            }
            // Unmounted or cut off from outside (`fusermount3 -u`, an aborted connection): a
            // sandbox given the bare directory would see an empty tree, and nothing it wrote
            // would reach the agent's. It is mounted again; the leases still out carry over.
            tracing::warn!(agent, path = %path.display(), "a sandbox view was unmounted from outside; mounting it again");
            if let Some(dead) = mounts.remove(&agent) {
                leases += dead.leases;
                // Stops serving whatever is left; the mount point itself may be gone.
                let _ = dead.mount.unmount();
            }
            if matches!(std::fs::metadata(&path), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
            {
                detach(&path)?;
            }
        }
        std::fs::create_dir_all(&path)
            .map_err(Error::io(format!("creating {}", path.display())))?;
        let vfs = Vfs::new(
            self.store.clone(),
            agent,
            VfsOptions {
                sandbox: true,
                ..VfsOptions::default()
            },
        );
        let config = MountConfig {
            uid: self.options.uid,
            gid: self.options.gid,
            threads: self.options.threads,
            busy_poll: self.options.busy_poll,
            allow_other: true,
            fs_name: format!("agentbox-sandbox:{agent}"),
        };
        let mount = crate::fuse::mount(vfs, &path, &config)?;
        tracing::info!(agent, path = %path.display(), "mounted a sandbox view");
        mounts.insert(
            agent,
            Managed {
                mount,
                leases,
                idle_since: Instant::now(),
            },
        );
        Ok(MountLease {
            manager: self.clone(),
            agent,
            path,
        })
    }

    /// Agents whose sandbox view is mounted now.
    pub fn mounted(&self) -> Vec<AgentId> {
        let mut agents: Vec<_> = self.lock().keys().copied().collect();
        agents.sort_unstable();
        agents
    }

    /// Unmounts the views nothing has used for longer than the idle time.
    pub fn unmount_idle(&self) -> Result<()> {
        let idle: Vec<(AgentId, Managed)> = {
            let mut mounts = self.lock();
            let expired: Vec<AgentId> = mounts
                .iter()
                .filter(|(_, m)| m.leases == 0 && m.idle_since.elapsed() >= self.options.idle)
                .map(|(agent, _)| *agent)
                .collect();
            expired
                .into_iter()
                .filter_map(|agent| mounts.remove(&agent).map(|m| (agent, m)))
                .collect()
        };
        for (agent, managed) in idle {
            let path = managed.mount.mountpoint().to_owned();
            managed.mount.unmount()?;
            let _ = std::fs::remove_dir(&path);
            tracing::info!(agent, "unmounted an idle sandbox view");
        }
        Ok(())
    }

    /// Unmounts everything (at shutdown).
    pub fn unmount_all(&self) -> Result<()> {
        let all: Vec<Managed> = self.lock().drain().map(|(_, m)| m).collect();
        for managed in all {
            let path = managed.mount.mountpoint().to_owned();
            managed.mount.unmount()?;
            let _ = std::fs::remove_dir(&path);
        }
        Ok(())
    }
}

/// Mount points under `base`, from the kernel's mount table.
pub fn mounts_under(base: &Path) -> Result<Vec<PathBuf>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(Error::io("reading /proc/self/mountinfo"))?;
    let base = base
        .canonicalize()
        .map_err(Error::io(format!("resolving {}", base.display())))?;
    Ok(table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|point| point.starts_with(&base) && *point != base)
        .collect())
}

/// Mount table paths escape space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok());
            if let Some(byte) = octal {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Detaches every mount under `base` and removes the empty mount points.
fn clean_up(base: &Path) -> Result<()> {
    for point in mounts_under(base)? {
        tracing::warn!(path = %point.display(), "unmounting a sandbox view left by an earlier run");
        detach(&point)?;
    }
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    Ok(())
}

/// Lazily unmounts `path`: directly as root, through `fusermount3` otherwise.
fn detach(path: &Path) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} contains NUL", path.display())))?;
    // SAFETY: a valid NUL-terminated path; the call has no other memory effects.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .status()
        .map_err(Error::io("running fusermount3"))?;
    if !status.success() {
        return Err(Error::Io {
            context: format!("unmounting {}", path.display()),
            source: std::io::Error::other("fusermount3 -u -z failed"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_escapes_are_undone() {
        assert_eq!(unescape_mount_path(r"/a\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_mount_path(r"/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mount_path(r"/x\134y"), PathBuf::from(r"/x\y"));
    }
}
