//! Downloads: a browser saves into a staging directory of its session, the one place it can
//! write besides its profile (it never sees the agent's files). Each finished download is
//! copied into the agent's `/downloads` under its suggested name and removed from staging.
//!
//! The staging directory belongs to the server (sticky, writable by the browser's user, like
//! `/tmp`), so the browser can plant nothing but the file itself, and the server opens that
//! without following symlinks: a browser cannot make it copy anything else.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::session::lock;

/// What one browser message meant for downloads.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// Not a download event.
    Other,
    /// A download began or progressed.
    Progress,
    /// A download finished as this file of the staging directory (reported once).
    Completed(String),
}

/// Downloads a browser has begun and not yet finished, and those already delivered.
#[derive(Debug)]
pub struct DownloadTracker {
    staging: PathBuf,
    in_progress: HashSet<String>,
    delivered: HashSet<String>,
}

impl DownloadTracker {
    pub fn new(staging: PathBuf) -> DownloadTracker {
        DownloadTracker {
            staging,
            in_progress: HashSet::new(),
            delivered: HashSet::new(),
        }
    }

    /// Follows one event. The same event may arrive twice (on the server's connection and
    /// on a client's); a completed download is reported once.
    pub fn observe_event(&mut self, method: &str, params: &Value) -> Observed {
        let Some(guid) = params.get("guid").and_then(Value::as_str) else {
            return Observed::Other;
        };
        match method {
            "Browser.downloadWillBegin" | "Page.downloadWillBegin" => {
                if !self.delivered.contains(guid) {
                    self.in_progress.insert(guid.to_string());
                }
                Observed::Progress
            }
            "Browser.downloadProgress" | "Page.downloadProgress" => {
                let state = params.get("state").and_then(Value::as_str);
                if state == Some("inProgress") {
                    return Observed::Progress;
                }
                self.in_progress.remove(guid);
                if state != Some("completed") {
                    return Observed::Progress;
                }
                // Only `Browser.downloadProgress` names the file; `Page.downloadProgress`
                // (which may come first) does not.
                let path = params
                    .get("filePath")
                    .and_then(Value::as_str)
                    .map(Path::new);
                match path.and_then(|p| Some((p.parent()?, p.file_name()?.to_str()?))) {
                    Some((parent, name))
                        if parent == self.staging && self.delivered.insert(guid.to_string()) =>
                    {
                        Observed::Completed(name.to_string())
                    }
                    _ => Observed::Progress,
                }
            }
            _ => Observed::Other,
        }
    }

    pub fn active(&self) -> usize {
        self.in_progress.len()
    }
}

/// A session's downloads: where they are staged, where they go, what is in flight.
#[derive(Debug)]
pub struct Downloads {
    staging: PathBuf,
    destination: OnceLock<PathBuf>,
    tracker: Mutex<DownloadTracker>,
}

impl Downloads {
    pub fn new(staging: PathBuf) -> Downloads {
        Downloads {
            tracker: Mutex::new(DownloadTracker::new(staging.clone())),
            staging,
            destination: OnceLock::new(),
        }
    }

    /// The directory the browser saves into.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Where finished downloads go: the agent's `/downloads`, set once the browser has an
    /// owner.
    pub fn deliver_to(&self, destination: PathBuf) {
        let _ = self.destination.set(destination);
    }

    pub fn active(&self) -> usize {
        lock(&self.tracker).active()
    }

    /// Follows one event; true when it concerned a download. A finished download is copied
    /// into the destination on the blocking pool.
    pub fn observe_event(&self, method: &str, params: &Value) -> bool {
        let observed = lock(&self.tracker).observe_event(method, params);
        match observed {
            Observed::Other => false,
            Observed::Progress => true,
            Observed::Completed(name) => {
                self.deliver(name);
                true
            }
        }
    }

    /// [`observe_event`](Self::observe_event) for a raw message from the browser.
    pub fn observe_message(&self, text: &str) -> bool {
        if !text.contains("Browser.download") && !text.contains("Page.download") {
            return false;
        }
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return false;
        };
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        self.observe_event(method, &params)
    }

    fn deliver(&self, name: String) {
        let Some(destination) = self.destination.get().cloned() else {
            tracing::warn!(name, "a download finished in a browser with no owner");
            return;
        };
        let staging = self.staging.clone();
        tokio::task::spawn_blocking(move || match deliver_file(&staging, &name, &destination) {
            Ok(path) => tracing::info!(path = %path.display(), "download delivered"),
            Err(error) => tracing::warn!(%error, name, "delivering a download failed"),
        });
    }
}

/// Makes the staging directory: the server's, sticky, writable by everyone (the browser's
/// user among them), so that the browser can create and rename its own files there and
/// nothing else.
pub fn create_staging(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1733))
}

/// Copies the staged file `name` into `destination` under that name (or `name (1)`, ...,
/// if taken) and removes it from staging. Refuses anything but a regular file.
pub fn deliver_file(staging: &Path, name: &str, destination: &Path) -> io::Result<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    let staged = staging.join(name);
    // No symlink is followed, and a FIFO does not block the open.
    let mut source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&staged)?;
    if !source.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", staged.display()),
        ));
    }
    std::fs::create_dir_all(destination)?;
    let (mut target, path) = create_unique(destination, name)?;
    io::copy(&mut source, &mut target)?;
    target.sync_all()?;
    std::fs::remove_file(&staged)?;
    Ok(path)
}

/// Creates `dir/name`, or `dir/stem (n).ext` with the first free `n`.
fn create_unique(dir: &Path, name: &str) -> io::Result<(std::fs::File, PathBuf)> {
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    for n in 0..1000 {
        let candidate = if n == 0 {
            name.to_string()
        } else {
            format!("{stem} ({n}){extension}")
        };
        let path = dir.join(&candidate);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {name} in {}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tracks_downloads_and_reports_a_completion_once() {
        let mut tracker = DownloadTracker::new(PathBuf::from("/s/dl"));
        let begin = json!({"guid": "g1", "url": "http://x/a", "suggestedFilename": "a.csv"});
        assert_eq!(
            tracker.observe_event("Browser.downloadWillBegin", &begin),
            Observed::Progress
        );
        assert_eq!(tracker.active(), 1);
        let progress = json!({"guid": "g1", "state": "inProgress", "receivedBytes": 5});
        tracker.observe_event("Browser.downloadProgress", &progress);
        assert_eq!(tracker.active(), 1);
        // The page's event comes first and names no file.
        let page_done = json!({"guid": "g1", "state": "completed"});
        assert_eq!(
            tracker.observe_event("Page.downloadProgress", &page_done),
            Observed::Progress
        );
        let done = json!({"guid": "g1", "state": "completed", "filePath": "/s/dl/a.csv"});
        assert_eq!(
            tracker.observe_event("Browser.downloadProgress", &done),
            Observed::Completed("a.csv".into())
        );
        assert_eq!(tracker.active(), 0);
        // The same event from a second connection delivers nothing more.
        assert_eq!(
            tracker.observe_event("Browser.downloadProgress", &done),
            Observed::Progress
        );
        assert_eq!(
            tracker.observe_event("Page.frameNavigated", &json!({})),
            Observed::Other
        );
    }

    #[test]
    fn files_outside_staging_are_never_reported() {
        let mut tracker = DownloadTracker::new(PathBuf::from("/s/dl"));
        for path in ["/etc/shadow", "/s/dl/../x", "/s/dl/sub/a", "relative"] {
            let done = json!({"guid": path, "state": "completed", "filePath": path});
            assert_eq!(
                tracker.observe_event("Browser.downloadProgress", &done),
                Observed::Progress,
                "{path}"
            );
        }
        let canceled = json!({"guid": "c", "state": "canceled", "filePath": "/s/dl/a"});
        assert_eq!(
            tracker.observe_event("Browser.downloadProgress", &canceled),
            Observed::Progress
        );
    }

    #[test]
    fn delivers_under_free_names_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let destination = dir.path().join("downloads");
        create_staging(&staging).unwrap();
        for round in 0..3 {
            std::fs::write(staging.join("report.csv"), format!("round {round}")).unwrap();
            deliver_file(&staging, "report.csv", &destination).unwrap();
            assert!(!staging.join("report.csv").exists());
        }
        let read = |name: &str| std::fs::read_to_string(destination.join(name)).unwrap();
        assert_eq!(read("report.csv"), "round 0");
        assert_eq!(read("report (1).csv"), "round 1");
        assert_eq!(read("report (2).csv"), "round 2");

        std::os::unix::fs::symlink("/etc/hostname", staging.join("link")).unwrap();
        assert!(deliver_file(&staging, "link", &destination).is_err());
        assert!(!destination.join("link").exists());
        for bad in ["", "..", "a/b"] {
            assert!(deliver_file(&staging, bad, &destination).is_err(), "{bad}");
        }
    }
}
