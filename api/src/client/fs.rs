//! `agentbox fs`: list, stat, remove, move and create directories in the agent's tree
//! (uploads and downloads are in `transfer`).

use serde::Deserialize;
use serde_json::json;

use super::format::{self, Align, Table};
use super::http::{self, ApiError, Client};
use super::print;

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

/// A path in the agent's tree as the server wants it: absolute (the client treats a relative
/// path as relative to `/`, there being no remote working directory) and without trailing
/// slashes. Anything else wrong with it is for the server to report.
pub(super) fn remote_path(path: &str) -> String {
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
    format::key_values(&rows)
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
    match client.call(request) {
        Ok(_) => print::out(&format!("removed {}\n", format::quote(&path))),
        Err(mut error) => {
            if let Some(api) = error.downcast_mut::<ApiError>()
                && api.code.as_deref() == Some("directory_not_empty")
            {
                api.hint = Some("pass -r to remove it and everything in it");
            }
            Err(error)
        }
    }
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
}
