//! `agentbox mount MOUNTPOINT --url URL --key KEY`: one agent's tree (or one of its
//! snapshots) served by a running server, mounted read-only with FUSE for local
//! inspection, until Ctrl-C or SIGTERM (then unmounted cleanly).
//!
//! Attributes and listings come from the server and are cached for [`TTL`], so changes made
//! there show up within about twice that (the kernel caches them as long again). File
//! contents are fetched in blocks and cached by content hash in memory and in a cache
//! directory shared by every mount; see `content.rs`.

mod cache;
mod content;
mod disk;
mod fs;
mod handles;
mod lru;
mod meta;
mod remote;
mod tree;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fuser::{MountOption, SessionACL};

use crate::cli::MountArgs;
use crate::client::http;
use crate::mount::Signals;
use content::Content;
use disk::DiskCache;
use remote::{Error, Remote};

/// How long attributes and listings are trusted before the server is asked again (and how
/// long the kernel may cache them).
pub const TTL: Duration = Duration::from_secs(1);
/// The same for a snapshot, which does not change (only a deleted snapshot's name can be
/// given to a new one).
const SNAPSHOT_TTL: Duration = Duration::from_secs(30);
/// File contents kept in memory.
const MEMORY_CACHE_BYTES: u64 = 64 << 20;

/// Mounts the tree served at `url` and waits for a signal to unmount it.
pub fn run(args: &MountArgs, url: &str) -> anyhow::Result<ExitCode> {
    let key = http::api_key(args.key.as_deref())?;
    if !args.mountpoint.is_dir() {
        bail!("{} is not a directory", args.mountpoint.display());
    }
    let base = http::base_url(url)?;
    let remote = Remote::new(base.clone(), key, args.snapshot.clone());
    let usage = remote
        .usage()
        .map_err(|error| startup_error(&remote, error))?;
    if let Some(snapshot) = &args.snapshot {
        remote
            .stat("/")
            .map_err(|error| snapshot_error(&remote, error))
            .with_context(|| format!("cannot mount snapshot {snapshot}"))?;
    }
    let disk = match args.cache_bytes {
        0 => None,
        budget => {
            let dir = cache_dir(args.cache_dir.as_deref())?.join("blocks");
            let cache = DiskCache::open(&dir, budget).with_context(|| {
                format!(
                    "cannot use the cache directory {} (pass --cache-dir, or --cache-bytes 0 \
                     to keep contents in memory only)",
                    dir.display()
                )
            })?;
            tracing::debug!(dir = %dir.display(), bytes = cache.bytes(), budget, "content cache");
            Some(cache)
        }
    };

    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = fs::RemoteFs::new(
        Content::new(remote, MEMORY_CACHE_BYTES, disk),
        if args.snapshot.is_some() {
            SNAPSHOT_TTL
        } else {
            TTL
        },
        uid,
        gid,
    );
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("agentbox:{}", usage.agent)),
        MountOption::Subtype("agentbox".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::RO,
    ];
    if uid == 0 {
        // Root may let everyone in; others would need `user_allow_other` in /etc/fuse.conf.
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(args.threads.max(1));
    config.clone_fd = args.threads > 1;

    let mut signals = Signals::install()?;
    let session = fuser::spawn_mount(fs, &args.mountpoint, &config)
        .with_context(|| format!("mounting at {}", args.mountpoint.display()))?;
    eprintln!(
        "mounted agent {} from {} at {} (read-only{}); Ctrl-C unmounts",
        usage.agent,
        base,
        args.mountpoint.display(),
        args.snapshot
            .as_deref()
            .map(|s| format!(", snapshot {s}"))
            .unwrap_or_default()
    );
    let signalled = signals.wait(|| session.guard.is_finished())?;
    if !signalled {
        session.join().context("serving the mount")?;
        eprintln!("{} was unmounted", args.mountpoint.display());
        return Ok(ExitCode::SUCCESS);
    }
    if unmount(session, &args.mountpoint)? {
        eprintln!("unmounted {}", args.mountpoint.display());
    } else {
        eprintln!(
            "{} was busy; detached it (it goes away when the last user leaves)",
            args.mountpoint.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Unmounts (true); if the mount is busy (a shell inside it, an open file), detaches it
/// (false) so the mount point is free at once and the kernel lets go when the last user does.
fn unmount(session: fuser::BackgroundSession, mountpoint: &Path) -> anyhow::Result<bool> {
    let Err(error) = session.umount_and_join() else {
        return Ok(true);
    };
    tracing::debug!(%error, "unmounting failed; detaching lazily");
    let detached = match std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
        // SAFETY: the path is a valid NUL-terminated string that outlives the call.
        Ok(path) => unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) == 0 },
        Err(_) => false,
    };
    let detached = detached
        || std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status()
            .is_ok_and(|status| status.success());
    if detached {
        Ok(false)
    } else {
        Err(anyhow!(error)).with_context(|| {
            format!(
                "cannot unmount {}; run `fusermount3 -u {0}`",
                mountpoint.display()
            )
        })
    }
}

/// A failure before mounting, said in terms of what to fix.
fn startup_error(remote: &Remote, error: Error) -> anyhow::Error {
    match &error {
        Error::Transport { .. } => {
            anyhow!("{error} (is `agentbox serve` running there? pass --url or set AGENTBOX_URL)")
        }
        _ if error.is_unauthorized() => {
            anyhow!("the server refused the key: {error} (check --key or AGENTBOX_KEY)")
        }
        // The usage route exists on every agentbox server, for every agent.
        Error::Api { status: 404, .. } | Error::Api { code: None, .. } | Error::Protocol(_) => {
            anyhow!(
                "{} does not answer like an agentbox server: {error} (check --url)",
                remote.base()
            )
        }
        _ => anyhow!(error),
    }
}

/// A failure to find the snapshot to mount.
fn snapshot_error(remote: &Remote, error: Error) -> anyhow::Error {
    match &error {
        Error::Api { status: 404, .. } => anyhow!(error),
        _ => startup_error(remote, error),
    }
}

/// `--cache-dir`, else `$XDG_CACHE_HOME/agentbox`, else `~/.cache/agentbox`.
fn cache_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        return Ok(xdg.join("agentbox"));
    }
    match absolute("HOME") {
        Some(home) => Ok(home.join(".cache").join("agentbox")),
        None => {
            bail!("no cache directory: pass --cache-dir (neither XDG_CACHE_HOME nor HOME is set)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_flag_wins() {
        assert_eq!(
            cache_dir(Some(Path::new("/c"))).unwrap(),
            PathBuf::from("/c")
        );
    }
}
