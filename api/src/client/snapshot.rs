//! `agentbox snapshot`: create, list, restore, delete and compare snapshots of the agent's
//! tree.

use serde::Deserialize;
use serde_json::json;

use super::encode;
use super::format::{self, Align, Table};
use super::http::{self, Client};
use super::print;

/// A snapshot as the server describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Deserialize)]
struct SnapshotList {
    snapshots: Vec<Snapshot>,
}

/// The paths that differ between two trees.
#[derive(Debug, Deserialize)]
pub struct Diff {
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
}

/// The route of one snapshot (by id or name), plus an optional suffix.
fn route(id: &str, suffix: &str) -> String {
    format!("/v1/compute/snapshots/{}{suffix}", encode::path_segment(id))
}

pub fn snapshot_table(snapshots: &[Snapshot]) -> Table {
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("CREATED (UTC)", Align::Left),
        ("FILES", Align::Right),
        ("SIZE", Align::Right),
    ]);
    for snapshot in snapshots {
        table.push(vec![
            snapshot.id.clone(),
            snapshot
                .name
                .as_deref()
                .map(format::quote)
                .unwrap_or_else(|| "-".to_owned()),
            snapshot
                .created_at
                .as_deref()
                .map(format::short_time)
                .unwrap_or_else(|| "-".to_owned()),
            snapshot.files.to_string(),
            format::human_size(snapshot.bytes),
        ]);
    }
    table
}

pub fn create(client: &Client, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let request = client.request("POST", "/v1/compute/snapshots", &[]);
    let response = match name {
        Some(name) => client.send_json(request, &json!({ "name": name }))?,
        None => client.send_json(request, &json!({}))?,
    };
    if json {
        return print::json_text(&http::read_text(response)?);
    }
    let snapshot: Snapshot = http::read_json(response)?;
    print::out(&snapshot_table(std::slice::from_ref(&snapshot)).render())
}

pub fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let response = client.call(client.request("GET", "/v1/compute/snapshots", &[]))?;
    if json {
        return print::json_text(&http::read_text(response)?);
    }
    let list: SnapshotList = http::read_json(response)?;
    let table = snapshot_table(&list.snapshots);
    if !table.is_empty() {
        print::out(&table.render())?;
    }
    Ok(())
}

pub fn restore(client: &Client, id: &str) -> anyhow::Result<()> {
    client.call(client.request("POST", &route(id, "/restore"), &[]))?;
    print::out(&format!("restored {}\n", format::quote(id)))
}

pub fn delete(client: &Client, id: &str) -> anyhow::Result<()> {
    client.call(client.request("DELETE", &route(id, ""), &[]))?;
    print::out(&format!("deleted {}\n", format::quote(id)))
}

pub fn diff(client: &Client, from: &str, to: Option<&str>, json: bool) -> anyhow::Result<()> {
    let request = client.request("GET", &route(from, "/diff"), &[("to", to)]);
    let response = client.call(request)?;
    if json {
        return print::json_text(&http::read_text(response)?);
    }
    let diff: Diff = http::read_json(response)?;
    let lines = format::diff_lines(&diff.added, &diff.removed, &diff.modified);
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    print::out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_encode_ids_and_names() {
        assert_eq!(route("s_1", ""), "/v1/compute/snapshots/s_1");
        assert_eq!(
            route("before upgrade/2", "/diff"),
            "/v1/compute/snapshots/before%20upgrade%2F2/diff"
        );
    }

    #[test]
    fn snapshots_parse_and_tabulate() {
        let list: SnapshotList = serde_json::from_str(
            r#"{"snapshots": [
                {"id": "s1", "name": null, "created_at": "2026-12-04T15:38:02Z", "files": 3, "bytes": 2048},
                {"id": "s2", "name": "before-upgrade", "created_at": "2026-12-05T09:00:00Z", "files": 10, "bytes": 5}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            snapshot_table(&list.snapshots).render(),
            "ID  NAME            CREATED (UTC)        FILES     SIZE\n\
             s1  -               2026-12-04 15:38:02      3  2.0 KiB\n\
             s2  before-upgrade  2026-12-05 09:00:00     10      5 B\n"
        );
    }

    #[test]
    fn diffs_parse_from_the_documented_shape() {
        let diff: Diff = serde_json::from_str(
            r#"{"from": "s1", "to": "live", "added": ["/n"], "removed": [], "modified": ["/m"]}"#,
        )
        .unwrap();
        assert_eq!(
            format::diff_lines(&diff.added, &diff.removed, &diff.modified),
            ["M\t/m", "A\t/n"]
        );
    }
}
