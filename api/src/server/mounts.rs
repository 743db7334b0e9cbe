//! The agents' sandbox mounts as the server runs them: made at start (after cleaning up
//! what a crashed server left), idle ones unmounted in the background.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The agents' sandbox mounts under `<data-dir>/mounts` (or `--mount-dir`), after
/// unmounting whatever a crashed server left there. `None`, with a warning, where FUSE is
/// not available.
pub fn sandbox_mounts(
    store: &fsd::Store,
    args: &crate::cli::ServeArgs,
) -> anyhow::Result<Option<Arc<fsd::mounts::MountManager>>> {
    if !Path::new("/dev/fuse").exists() {
        tracing::warn!("/dev/fuse is missing: sandbox mounts are unavailable (install fuse3)");
        return Ok(None);
    }
    let base = mount_base(args);
    // Code in a run owns its tree: the view shows every file as the sandbox user's, who runs
    // code and browsers on it.
    let options = fsd::mounts::MountManagerOptions {
        base,
        idle: Duration::from_secs(args.mount_idle_seconds),
        uid: args.sandbox_uid,
        gid: args.sandbox_gid,
        threads: fsd::fuse::DEFAULT_THREADS,
        busy_poll: fsd::fuse::DEFAULT_BUSY_POLL,
    };
    Ok(Some(fsd::mounts::MountManager::new(
        store.clone(),
        options,
    )?))
}

/// Where the agents' sandbox views are mounted: `--mount-dir`, or `<data-dir>/mounts`.
pub fn mount_base(args: &crate::cli::ServeArgs) -> PathBuf {
    args.mount_dir
        .clone()
        .unwrap_or_else(|| args.data.data_dir.join("mounts"))
}

/// Unmounts sandbox views nothing has used for a while, checking every ten seconds.
pub fn spawn_idle_unmounter(mounts: Arc<fsd::mounts::MountManager>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(10));
        loop {
            ticks.tick().await;
            let mounts = mounts.clone();
            match tokio::task::spawn_blocking(move || mounts.unmount_idle()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "unmounting idle sandbox views failed"),
                Err(error) => tracing::warn!(%error, "the idle unmounter stopped"),
            }
        }
    })
}
