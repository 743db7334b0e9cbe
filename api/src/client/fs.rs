//! `agentbox fs`: list, upload, download, remove, move, stat and create directories in the
//! agent's tree. Uploads and downloads stream; nothing holds a whole file in memory.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use serde::Deserialize;
use serde_json::json;

use super::format::{self, Align, Table};
use super::http::{self, ApiError, Client};
use super::print;
use super::progress;
use super::upload;

const BUFFER_BYTES: usize = 256 * 1024;

/// A directory entry or stat result.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub mode: Option<u32>,
    #[serde(default)]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Listing {
    entries: Vec<Entry>,
}

/// What an upload reports.
#[derive(Debug, Deserialize)]
struct Written {
    path: String,
    size: u64,
    hash: String,
}

/// A path in the agent's tree as the server wants it: absolute (the client treats a relative
/// path as relative to `/`, there being no remote working directory) and without trailing
/// slashes. Anything else wrong with it is for the server to report.
pub fn remote_path(path: &str) -> String {
    let mut out = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
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

fn api_code(error: &anyhow::Error) -> Option<&str> {
    error
        .downcast_ref::<ApiError>()
        .and_then(|e| e.code.as_deref())
}

pub fn ls(client: &Client, path: &str, snapshot: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = remote_path(path);
    let request = client.request(
        "GET",
        "/v1/compute/fs",
        &[("path", Some(&path)), ("snapshot", snapshot)],
    );
    let response = match client.call(request) {
        Ok(response) => response,
        // `ls FILE` shows the file, as ls does.
        Err(error) if !json && api_code(&error) == Some("not_a_directory") => {
            match fetch_stat(client, &path, snapshot) {
                Ok(entry) if entry.kind != "directory" => {
                    print::out(&entry_table(std::slice::from_ref(&entry)).render())?;
                    return Ok(());
                }
                _ => return Err(error),
            }
        }
        Err(error) => return Err(error),
    };
    if json {
        return print::json_text(&http::read_text(response)?);
    }
    let listing: Listing = http::read_json(response)?;
    let table = entry_table(&listing.entries);
    if !table.is_empty() {
        print::out(&table.render())?;
    }
    Ok(())
}

/// The name column of a listing: directories end in `/`, symlinks show their target.
pub fn display_name(entry: &Entry) -> String {
    let name = if entry.name.is_empty() {
        entry.path.as_str()
    } else {
        entry.name.as_str()
    };
    let name = format::quote(name);
    match entry.kind.as_str() {
        "directory" => format!("{name}/"),
        "symlink" => match &entry.target {
            Some(target) => format!("{name} -> {}", format::quote(target)),
            None => name,
        },
        _ => name,
    }
}

fn entry_table(entries: &[Entry]) -> Table {
    let mut table = Table::new(&[
        ("TYPE", Align::Left),
        ("SIZE", Align::Right),
        ("MODIFIED (UTC)", Align::Left),
        ("NAME", Align::Left),
    ]);
    for entry in entries {
        let size = if entry.kind == "directory" {
            "-".to_owned()
        } else {
            format::human_size(entry.size)
        };
        let modified = entry
            .modified_at
            .as_deref()
            .map(format::short_time)
            .unwrap_or_else(|| "-".to_owned());
        table.push(vec![
            entry.kind.clone(),
            size,
            modified,
            display_name(entry),
        ]);
    }
    table
}

fn fetch_stat(client: &Client, path: &str, snapshot: Option<&str>) -> anyhow::Result<Entry> {
    let request = client.request(
        "GET",
        "/v1/compute/fs/stat",
        &[("path", Some(path)), ("snapshot", snapshot)],
    );
    http::read_json(client.call(request)?)
}

pub fn stat(client: &Client, path: &str, snapshot: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = remote_path(path);
    let request = client.request(
        "GET",
        "/v1/compute/fs/stat",
        &[("path", Some(&path)), ("snapshot", snapshot)],
    );
    let response = client.call(request)?;
    if json {
        return print::json_text(&http::read_text(response)?);
    }
    let entry: Entry = http::read_json(response)?;
    print::out(&stat_text(&entry))
}

/// `key  value` lines describing one entry.
pub fn stat_text(entry: &Entry) -> String {
    let mut rows = vec![
        ("path", format::quote(&entry.path)),
        ("type", entry.kind.clone()),
    ];
    if entry.kind != "directory" {
        rows.push((
            "size",
            format!("{} ({} bytes)", format::human_size(entry.size), entry.size),
        ));
    }
    if let Some(mode) = entry.mode {
        rows.push(("mode", format::mode(mode)));
    }
    if let Some(modified) = &entry.modified_at {
        rows.push(("modified", format!("{} UTC", format::short_time(modified))));
    }
    if let Some(hash) = &entry.hash {
        rows.push(("hash", hash.clone()));
    }
    if let Some(target) = &entry.target {
        rows.push(("target", format::quote(target)));
    }
    key_values(&rows)
}

fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n"))
        .collect()
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
    print::out(&key_values(&[
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
            let Some(name) = remote_name(&remote) else {
                bail!("{remote} is not a file");
            };
            Some(path.join(name))
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
        .with_context(|| format!("cannot create {}", temp.display()))?;
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

pub fn rm(client: &Client, path: &str, recursive: bool) -> anyhow::Result<()> {
    let path = remote_path(path);
    let request = client.request(
        "DELETE",
        "/v1/compute/fs",
        &[
            ("path", Some(&path)),
            ("recursive", recursive.then_some("true")),
        ],
    );
    client.call(request)?;
    print::out(&format!("removed {}\n", format::quote(&path)))
}

pub fn mv(client: &Client, from: &str, to: &str, no_clobber: bool) -> anyhow::Result<()> {
    let (from, to) = (remote_path(from), remote_path(to));
    let request = client.request("POST", "/v1/compute/fs/move", &[]);
    let body = json!({"from": from, "to": to, "overwrite": !no_clobber});
    let entry: Entry = http::read_json(client.send_json(request, &body)?)?;
    print::out(&format!(
        "moved {} -> {}\n",
        format::quote(&from),
        format::quote(&entry.path)
    ))
}

pub fn mkdir(client: &Client, path: &str) -> anyhow::Result<()> {
    let path = remote_path(path);
    let request = client.request("POST", "/v1/compute/fs/mkdir", &[]);
    let body = json!({"path": path, "parents": true});
    let entry: Entry = http::read_json(client.send_json(request, &body)?)?;
    print::out(&format!("created {}\n", display_name_of_path(&entry)))
}

fn display_name_of_path(entry: &Entry) -> String {
    let path = format::quote(&entry.path);
    if entry.kind == "directory" && entry.path != "/" {
        format!("{path}/")
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, name: &str, target: Option<&str>) -> Entry {
        Entry {
            name: name.to_owned(),
            path: format!("/{name}"),
            kind: kind.to_owned(),
            size: 1536,
            mode: Some(0o644),
            modified_at: Some("2026-12-04T15:38:02.123456789Z".to_owned()),
            hash: (kind == "file").then(|| "ab".repeat(32)),
            target: target.map(str::to_owned),
        }
    }

    #[test]
    fn remote_paths_are_absolute_without_trailing_slashes() {
        assert_eq!(remote_path("/a/b"), "/a/b");
        assert_eq!(remote_path("a/b/"), "/a/b");
        assert_eq!(remote_path(""), "/");
        assert_eq!(remote_path("/"), "/");
        assert_eq!(remote_path("///"), "/");
        assert_eq!(remote_path("/a b/#1"), "/a b/#1");
    }

    #[test]
    fn uploads_to_a_directory_keep_the_local_name() {
        assert_eq!(upload_target("/docs/", Some("a.txt")), "/docs/a.txt");
        assert_eq!(upload_target("/", Some("a.txt")), "/a.txt");
        assert_eq!(upload_target("", Some("a.txt")), "/a.txt");
        assert_eq!(upload_target("/docs/b.txt", Some("a.txt")), "/docs/b.txt");
        assert_eq!(upload_target("docs/b.txt", None), "/docs/b.txt");
    }

    #[test]
    fn names_show_their_type() {
        assert_eq!(display_name(&entry("file", "a.txt", None)), "a.txt");
        assert_eq!(display_name(&entry("directory", "sub", None)), "sub/");
        assert_eq!(
            display_name(&entry("symlink", "link", Some("/a.txt"))),
            "link -> /a.txt"
        );
        assert_eq!(
            display_name(&entry("file", "odd\nname", None)),
            "\"odd\\nname\""
        );
    }

    #[test]
    fn listings_are_tables() {
        let text = entry_table(&[
            entry("directory", "sub", None),
            entry("file", "a.txt", None),
        ])
        .render();
        assert_eq!(
            text,
            "TYPE          SIZE  MODIFIED (UTC)       NAME\n\
             directory        -  2026-12-04 15:38:02  sub/\n\
             file       1.5 KiB  2026-12-04 15:38:02  a.txt\n"
        );
    }

    #[test]
    fn stat_shows_every_known_attribute() {
        let text = stat_text(&entry("file", "a.txt", None));
        assert!(
            text.starts_with("path      /a.txt\ntype      file\n"),
            "{text}"
        );
        assert!(text.contains("size      1.5 KiB (1536 bytes)\n"), "{text}");
        assert!(text.contains("mode      0644\n"), "{text}");
        assert!(
            text.contains("modified  2026-12-04 15:38:02 UTC\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("hash      {}\n", "ab".repeat(32))),
            "{text}"
        );
    }

    #[test]
    fn entries_parse_from_the_documented_shape() {
        let entry: Entry = serde_json::from_str(
            r#"{"name": "summary.txt", "path": "/reports/summary.txt", "type": "file",
                "size": 12, "mode": 420, "modified_at": "2026-12-04T15:38:02.123456789Z",
                "hash": "00"}"#,
        )
        .unwrap();
        assert_eq!(entry.kind, "file");
        assert_eq!(entry.size, 12);
        assert_eq!(entry.target, None);
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
