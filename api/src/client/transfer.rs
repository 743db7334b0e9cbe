//! `agentbox fs put` and `agentbox fs get`: uploads and downloads that stream, so no file is
//! ever held whole in memory, with a progress bar for the big ones. A download lands in a
//! temporary file beside its destination and is renamed into place only when complete.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use serde::Deserialize;

use super::format;
use super::fs::remote_path;
use super::http::{self, Client};
use super::print;
use super::progress;
use super::upload;

const BUFFER_BYTES: usize = 256 * 1024;

/// What an upload reports.
#[derive(Debug, Deserialize)]
struct Written {
    path: String,
    size: u64,
    hash: String,
}

/// Where an upload goes: `REMOTE`, or `REMOTE/<local name>` when `REMOTE` ends in `/`
/// (as `cp` does with a directory).
pub fn upload_target(remote: &str, local_name: Option<&str>) -> String {
    match local_name {
        Some(name) if remote.is_empty() || remote.ends_with('/') => {
            remote_path(&format!("{remote}{name}"))
        }
        _ => remote_path(remote),
    }
}

/// The last segment of a remote path, if it has one.
fn remote_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|name| !name.is_empty())
}

/// Reads the upload body, moving the progress bar, holding back exactly the length that was
/// announced, and keeping any local read error so it can be reported as such (rather than
/// as a failed request).
struct UploadReader<R> {
    inner: R,
    bar: ProgressBar,
    sent: u64,
    expected: Option<u64>,
    error: Rc<RefCell<Option<String>>>,
}

impl<R: Read> Read for UploadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.expected {
            Some(expected) => {
                let left = expected.saturating_sub(self.sent);
                buf.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        if want == 0 && !buf.is_empty() {
            return Ok(0);
        }
        let result = loop {
            match self.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) if self.expected.is_some_and(|e| self.sent < e) => {
                let message = "the file shrank while it was being uploaded".to_owned();
                *self.error.borrow_mut() = Some(message.clone());
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, message))
            }
            Ok(n) => {
                self.sent += n as u64;
                self.bar.inc(n as u64);
                Ok(n)
            }
            Err(e) => {
                *self.error.borrow_mut() = Some(e.to_string());
                Err(e)
            }
        }
    }
}

pub fn put(client: &Client, local: &Path, remote: &str, json: bool) -> anyhow::Result<()> {
    let from_stdin = local == Path::new("-");
    let (reader, len, local_name): (Box<dyn Read>, Option<u64>, Option<String>) = if from_stdin {
        if remote.is_empty() || remote.ends_with('/') {
            bail!("REMOTE must name a file when uploading standard input");
        }
        (Box::new(io::stdin().lock()), None, None)
    } else {
        let file = File::open(local).with_context(|| format!("cannot open {}", local.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", local.display()))?;
        if meta.is_dir() {
            bail!(
                "{} is a directory; `fs put` uploads one file",
                local.display()
            );
        }
        // Pipes and devices have no length known up front: send those chunked.
        let len = meta.is_file().then_some(meta.len());
        let name = local
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        (Box::new(file), len, name)
    };
    let target = upload_target(remote, local_name.as_deref());

    let bar = progress::bar("uploading", len);
    let local_error = Rc::new(RefCell::new(None));
    let body = UploadReader {
        inner: reader,
        bar: bar.clone(),
        sent: 0,
        expected: len,
        error: Rc::clone(&local_error),
    };
    let result = upload::put(
        client,
        "/v1/compute/fs/content",
        &[("path", Some(&target))],
        len,
        body,
    );
    drop(bar);
    if let Some(message) = local_error.borrow_mut().take() {
        let source = if from_stdin {
            "standard input".to_owned()
        } else {
            local.display().to_string()
        };
        bail!("reading {source}: {message}");
    }
    let text = result?;
    if json {
        return print::json_text(&text);
    }
    let written: Written = http::parse_json(&text)?;
    print::out(&format::key_values(&[
        ("path", format::quote(&written.path)),
        (
            "size",
            format!(
                "{} ({} bytes)",
                format::human_size(written.size),
                written.size
            ),
        ),
        ("hash", written.hash),
    ]))
}

pub fn get(
    client: &Client,
    remote: &str,
    local: Option<&Path>,
    snapshot: Option<&str>,
) -> anyhow::Result<()> {
    let remote = remote_path(remote);
    let destination = match local {
        None => None,
        Some(path) if path == Path::new("-") => None,
        Some(path) if path.is_dir() => {
            // Into a directory, as `cp` does: the file keeps its remote name.
            let Some(name) = remote_name(&remote) else {
                bail!("{remote} is not a file");
            };
            Some(path.join(name))
        }
        Some(path) if path.as_os_str().to_string_lossy().ends_with('/') => {
            bail!("no such directory: {}", path.display());
        }
        Some(path) => Some(path.to_path_buf()),
    };
    let request = client.request(
        "GET",
        "/v1/compute/fs/content",
        &[("path", Some(&remote)), ("snapshot", snapshot)],
    );
    let response = client.call(request)?;
    let len = response
        .header("Content-Length")
        .and_then(|value| value.trim().parse::<u64>().ok());
    let bar = progress::bar("downloading", len);
    let body = response.into_reader();
    match destination {
        None => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            match copy(body, &mut out, &bar, len) {
                // A reader that stopped early (`| head`) is not a failure.
                Err(CopyError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(e.into_anyhow("standard output")),
                Ok(_) => out.flush().or_else(|e| {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        Ok(())
                    } else {
                        Err(e).context("writing standard output")
                    }
                }),
            }
        }
        Some(path) => {
            let written = download_to(&path, body, &bar, len)?;
            drop(bar);
            print::out(&format!(
                "wrote {} ({})\n",
                path.display(),
                format::human_size(written)
            ))
        }
    }
}

/// Writes the download to a temporary file beside `path` and renames it into place once
/// it is complete, so `path` is never left half written.
fn download_to(
    path: &Path,
    body: impl Read,
    bar: &ProgressBar,
    len: Option<u64>,
) -> anyhow::Result<u64> {
    let name = path
        .file_name()
        .with_context(|| format!("{} does not name a file", path.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(format!(".{name}.agentbox-{}.part", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    // A file being replaced keeps its permissions.
    if let Ok(existing) = std::fs::metadata(path) {
        // Best effort: the download itself matters more than its mode.
        let _ = file.set_permissions(existing.permissions());
    }
    let result = copy(body, &mut file, bar, len)
        .map_err(|e| e.into_anyhow(&path.display().to_string()))
        .and_then(|written| {
            file.sync_all()
                .with_context(|| format!("writing {}", temp.display()))?;
            drop(file);
            std::fs::rename(&temp, path)
                .with_context(|| format!("cannot move {} to {}", temp.display(), path.display()))?;
            Ok(written)
        });
    if result.is_err() {
        // The partial file is worthless; failing to remove it changes nothing for the user.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Which side of a copy failed.
#[derive(Debug)]
enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Short { expected: u64, got: u64 },
}

impl CopyError {
    fn into_anyhow(self, destination: &str) -> anyhow::Error {
        match self {
            CopyError::Read(e) => {
                anyhow::Error::new(e).context("reading the download from the server")
            }
            CopyError::Write(e) => anyhow::Error::new(e).context(format!("writing {destination}")),
            CopyError::Short { expected, got } => {
                anyhow::anyhow!("the download ended early: got {got} of {expected} bytes")
            }
        }
    }
}

fn copy(
    mut from: impl Read,
    to: &mut impl Write,
    bar: &ProgressBar,
    len: Option<u64>,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
        bar.inc(n as u64);
    }
    match len {
        Some(expected) if expected != total => Err(CopyError::Short {
            expected,
            got: total,
        }),
        _ => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_to_a_directory_keep_the_local_name() {
        assert_eq!(upload_target("/docs/", Some("a.txt")), "/docs/a.txt");
        assert_eq!(upload_target("/", Some("a.txt")), "/a.txt");
        assert_eq!(upload_target("", Some("a.txt")), "/a.txt");
        assert_eq!(upload_target("/docs/b.txt", Some("a.txt")), "/docs/b.txt");
        assert_eq!(upload_target("docs/b.txt", None), "/docs/b.txt");
    }

    #[test]
    fn copies_check_the_announced_length() {
        let bar = ProgressBar::hidden();
        let mut out = Vec::new();
        assert_eq!(copy(&b"hello"[..], &mut out, &bar, Some(5)).unwrap(), 5);
        assert_eq!(out, b"hello");
        let short = copy(&b"hel"[..], &mut Vec::new(), &bar, Some(5));
        assert!(matches!(
            short,
            Err(CopyError::Short {
                expected: 5,
                got: 3
            })
        ));
    }

    #[test]
    fn uploads_send_exactly_the_announced_length() {
        let error = Rc::new(RefCell::new(None));
        let mut reader = UploadReader {
            inner: &b"hello world"[..],
            bar: ProgressBar::hidden(),
            sent: 0,
            expected: Some(5),
            error: Rc::clone(&error),
        };
        let mut sent = Vec::new();
        reader.read_to_end(&mut sent).unwrap();
        assert_eq!(sent, b"hello");

        let mut shrunk = UploadReader {
            inner: &b"hel"[..],
            bar: ProgressBar::hidden(),
            sent: 0,
            expected: Some(5),
            error: Rc::clone(&error),
        };
        assert!(shrunk.read_to_end(&mut Vec::new()).is_err());
        assert!(error.borrow().is_some());
    }

    #[test]
    fn downloads_replace_the_file_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let bar = ProgressBar::hidden();
        assert!(download_to(&path, &b"ne"[..], &bar, Some(3)).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(download_to(&path, &b"new"[..], &bar, Some(3)).unwrap(), 3);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1);
    }
}
