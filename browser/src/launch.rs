//! Starting one Chromium: its profile directory, the unprivileged user it runs as, a clean
//! environment, and the wait for its DevTools endpoint (read from its stderr).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::{Error, Result};

/// A started browser whose DevTools endpoint answers.
pub struct Launched {
    pub child: Child,
    /// Chromium's own browser-level WebSocket URL; never handed to clients.
    pub devtools_url: String,
}

/// Creates the profile directory of a session, owned by the browser's user and closed to
/// everyone else.
pub fn create_profile(dir: &Path, credentials: Option<confine::Credentials>) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("creating {}", dir.display())))?;
    if let Some(c) = credentials {
        std::os::unix::fs::chown(dir, Some(c.uid), Some(c.gid)).map_err(Error::io(format!(
            "handing {} to uid {}",
            dir.display(),
            c.uid
        )))?;
    }
    Ok(())
}

/// Fails unless the browser's user can pass through every directory on the way to `dir`
/// (search permission), naming the first that stops it.
pub fn check_reachable(dir: &Path, credentials: Option<confine::Credentials>) -> Result<()> {
    let Some(closed) = credentials.and_then(|c| c.closed_directory_above(dir)) else {
        return Ok(());
    };
    Err(Error::Launch(format!(
        "the browsers' user cannot reach {}: {} is closed to it; make it traversable \
         (chmod o+x) or move the data directory",
        dir.display(),
        closed.display()
    )))
}

/// Creates the directory that holds the profiles: traversable, not listable, by the
/// browsers' user.
pub fn create_profiles_root(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(Error::io(format!("setting the mode of {}", dir.display())))
}

/// Starts `binary` with `args` and waits up to `timeout` for "DevTools listening on".
/// `setup` prepares the child before exec (cgroup, session, credentials).
pub async fn launch(
    binary: &Path,
    args: &[String],
    profile_dir: &Path,
    setup: confine::ChildSetup,
    timeout: Duration,
) -> Result<Launched> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", profile_dir)
        .env("XDG_CONFIG_HOME", profile_dir.join(".config"))
        .env("XDG_CACHE_HOME", profile_dir.join(".cache"))
        .env("LANG", "C.UTF-8")
        .current_dir(profile_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    setup.apply_to(command.as_std_mut());
    let mut child = command
        .spawn()
        .map_err(|e| Error::Launch(format!("cannot start {}: {e}", binary.display())))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, endpoint) = oneshot::channel::<String>();
    tokio::spawn(follow_stderr(stderr, found));
    let outcome = tokio::select! {
        url = endpoint => url.map_err(|_| "it exited before DevTools was ready".to_string()),
        _ = tokio::time::sleep(timeout) => Err(format!("DevTools was not ready within {timeout:?}")),
    };
    match outcome {
        Ok(devtools_url) => Ok(Launched {
            child,
            devtools_url,
        }),
        Err(why) => {
            let _ = child.start_kill();
            let status = child.wait().await.ok();
            Err(Error::Launch(match status {
                Some(status) => format!("{} failed: {why} ({status})", binary.display()),
                None => format!("{} failed: {why}", binary.display()),
            }))
        }
    }
}

/// Reads Chromium's stderr to its end: hands over the DevTools URL when it appears, logs the
/// rest at debug level (Chromium is chatty about D-Bus and GPUs it does not have).
async fn follow_stderr(stderr: tokio::process::ChildStderr, found: oneshot::Sender<String>) {
    let mut found = Some(found);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("DevTools listening on ") {
            if let Some(found) = found.take() {
                let _ = found.send(url.trim().to_string());
            }
            continue;
        }
        tracing::debug!(target: "chromium", "{line}");
    }
}

/// Removes a profile directory and everything in it (the browser has exited).
pub fn remove_profile(dir: &PathBuf) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, dir = %dir.display(), "removing a browser profile failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_directory_that_blocks_the_browser_user() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        let user = Some(confine::Credentials {
            uid: 61000,
            gid: 61000,
        });
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = check_reachable(&inner, user).unwrap_err().to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable(&inner, user).unwrap();
        // Without a user change there is nothing to check.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        check_reachable(&inner, None).unwrap();
    }
}
