//! The agentbox column: agent `default` of a fresh data directory, mounted read-write with
//! `agentbox mount MOUNTPOINT --data-dir DIR`.
//!
//! `agentbox serve` makes the data directory and the agent, so the benchmark starts a
//! server once on it and stops it again (a data directory held by a server cannot be
//! mounted). The mount runs in the foreground as the benchmark's child; at the end it gets
//! SIGTERM, on which it unmounts and exits, with `fusermount3 -u` as the fallback.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::mount::{self, Mount};
use crate::server::Server;

/// How long `agentbox mount` may take to mount.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes a data directory in `work`, and mounts its agent `default` on `work/agentbox-mnt`.
pub fn mount(binary: &Path, work: &Path) -> Result<Mount> {
    if !binary.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p api` (bench/run.sh does)",
            binary.display()
        );
    }
    let help = Command::new(binary)
        .args(["mount", "--help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} mount --help", binary.display()))?;
    if !help.status.success() {
        bail!("{} has no `mount` command", binary.display());
    }

    let data_dir = work.join("agentbox-data");
    let mountpoint = work.join("agentbox-mnt");
    for dir in [&data_dir, &mountpoint] {
        fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let server = Server::start(binary, &data_dir, &work.join("agentbox-serve.log"))
        .context("creating the data directory with agentbox serve")?;
    server.stop().context("stopping agentbox serve")?;

    let log = work.join("agentbox-mount.log");
    let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(binary)
        .arg("mount")
        .arg(&mountpoint)
        .arg("--data-dir")
        .arg(&data_dir)
        .env_remove("AGENTBOX_NO_FSYNC")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {} mount", binary.display()))?;
    let mounted = mount::wait_until_mounted(&mountpoint, Some(&mut child), &log, MOUNT_TIMEOUT);
    // A mount command that returned success has left its daemon running detached.
    let child = match child.try_wait() {
        Ok(Some(status)) if status.success() => None,
        _ => Some(child),
    };
    let unmount: Vec<OsString> = vec![
        "fusermount3".into(),
        "-u".into(),
        mountpoint.as_os_str().to_owned(),
    ];
    // Take charge even on failure, so a half-made mount is taken down.
    let guard = Mount::new("agentbox", &mountpoint, unmount, child, &log);
    mounted.context("agentbox mount")?;
    Ok(guard)
}
