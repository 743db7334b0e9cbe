//! What `agentbox serve` does around the router: the data-directory lock, the first agent
//! and its key, the cgroup watchman and trees, the background sweep, and the shutdown
//! signals.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::ServeArgs;
use crate::keys;

/// The name of the agent created when a store has none.
pub const DEFAULT_AGENT: &str = "default";

/// The name of the cgroup tree of this server's `kind` of confined processes (`runs`,
/// `browsers`): one per data directory, so that a restarted server finds (and removes) what
/// it left, and servers on other data directories are left alone.
pub fn cgroup_purpose(kind: &str, data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex();
    format!("{kind}-{}", &hash[..16])
}

/// The server's cgroup trees: its runs' and its browsers'.
fn server_cgroup_purposes(args: &ServeArgs) -> [String; 2] {
    ["runs", "browsers"].map(|kind| cgroup_purpose(kind, &args.data.data_dir))
}

/// Opens the run and browser cgroup trees and starts the watchman that kills what they hold
/// when this server ends, however it ends. `None` (with a warning) where the host offers no
/// cgroups: runs and browsers then report themselves unavailable, or run unconfined.
pub fn start_watchman(args: &ServeArgs) -> Option<confine::Watchman> {
    let purposes: Vec<String> = server_cgroup_purposes(args)
        .into_iter()
        .filter(|purpose| match confine::CgroupTree::open(purpose) {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(%error, purpose, "no cgroup tree to watch");
                false
            }
        })
        .collect();
    if purposes.is_empty() {
        return None;
    }
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => {
            tracing::warn!(%error, "cannot find this binary to start the cgroup watchman");
            return None;
        }
    };
    let mut command = std::process::Command::new(program);
    command.arg("watch-cgroups");
    for purpose in &purposes {
        command.arg("--purpose").arg(purpose);
    }
    match confine::Watchman::spawn(command) {
        Ok(watchman) => Some(watchman),
        Err(error) => {
            tracing::warn!(%error, "cannot start the cgroup watchman");
            None
        }
    }
}

/// Removes the run and browser cgroup trees once the server has ended its runs and browsers,
/// so a server stopped in good order leaves nothing in the cgroup hierarchies. Best effort:
/// anything left is removed at the next start.
pub fn remove_cgroup_trees(args: &ServeArgs) {
    for purpose in server_cgroup_purposes(args) {
        match confine::CgroupTree::existing(&purpose) {
            Ok(Some(tree)) => {
                if let Err(error) = tree.remove() {
                    tracing::warn!(%error, purpose, "removing a cgroup tree failed");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, purpose, "no cgroup tree to remove"),
        }
    }
}

/// Takes the exclusive lock that keeps a second server off the same data directory. The
/// lock lasts as long as the returned file is open.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<File> {
    let path = data_dir.join("server.lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => bail!(
            "another agentbox server is already using the data directory {} (it holds {})",
            data_dir.display(),
            path.display()
        ),
        Err(TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", path.display()));
        }
    }
    // The holder's pid, for an operator wondering which process that is.
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

/// On a store with no agents, creates agent `default` with one key, prints the key once
/// and saves it to `<data-dir>/default.key` (mode 0600).
pub fn bootstrap_default_agent(store: &fsd::Store, data_dir: &Path) -> anyhow::Result<()> {
    if !store.list_agents().context("listing agents")?.is_empty() {
        return Ok(());
    }
    let agent = store
        .create_agent(DEFAULT_AGENT)
        .with_context(|| format!("creating agent {DEFAULT_AGENT:?}"))?;
    let key = keys::generate();
    store
        .add_key(agent.id, &key.id, keys::hash(&key.key))
        .context("recording the key")?;
    let path = data_dir.join(format!("{DEFAULT_AGENT}.key"));
    write_secret(&path, &format!("{}\n", key.key))
        .with_context(|| format!("saving the key to {}", path.display()))?;
    println!(
        "Created agent {DEFAULT_AGENT:?}. Its API key is below; it is shown only now and was \
         saved to {} (readable by you alone):",
        path.display()
    );
    println!("{}", key.key);
    tracing::info!(agent = DEFAULT_AGENT, key_id = %key.id, "created the first agent");
    Ok(())
}

fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open; make sure it is private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Sweeps unreferenced blobs every `interval_seconds` (never for 0).
pub fn spawn_sweeper(
    store: fsd::Store,
    interval_seconds: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval_seconds == 0 {
        return None;
    }
    let period = Duration::from_secs(interval_seconds);
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.sweep()).await {
                Ok(Ok(report)) => tracing::info!(
                    blobs_removed = report.blobs_removed,
                    bytes_removed = report.bytes_removed,
                    orphan_files_removed = report.orphan_files_removed,
                    "sweep finished"
                ),
                Ok(Err(error)) => tracing::warn!(error = %error, "sweep failed"),
                Err(error) => tracing::warn!(error = %error, "sweep task failed"),
            }
        }
    }))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_data_directory_has_its_own_cgroups() {
        let a = cgroup_purpose("runs", Path::new("/srv/a"));
        assert_eq!(a, cgroup_purpose("runs", Path::new("/srv/a")));
        assert_ne!(a, cgroup_purpose("runs", Path::new("/srv/b")));
        assert_ne!(a, cgroup_purpose("browsers", Path::new("/srv/a")));
        assert!(a.starts_with("runs-"));
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let error = lock_data_dir(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("another agentbox server"),
            "{error}"
        );
        drop(first);
        lock_data_dir(dir.path()).unwrap();
    }

    #[test]
    fn secrets_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "old").unwrap();
        write_secret(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
