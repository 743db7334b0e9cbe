//! Snapshots over HTTP: create, list, look up, read and list as of a snapshot, diff,
//! restore and delete.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{Client, Server, Tree, parse_rfc3339_utc};

fn paths(value: &Value, field: &str) -> BTreeSet<String> {
    value[field]
        .as_array()
        .unwrap_or_else(|| panic!("diff has no {field} array: {value}"))
        .iter()
        .map(|p| p.as_str().expect("a path").to_string())
        .collect()
}

/// The diff's three lists, keeping only paths that are files in either tree: whether a
/// directory whose contents changed is listed too is left to the server.
fn file_changes(diff: &Value, old: &Tree, new: &Tree) -> [BTreeSet<String>; 3] {
    let is_dir = |p: &String| {
        old.get(p).is_some_and(|e| e["type"] == "directory")
            || new.get(p).is_some_and(|e| e["type"] == "directory")
    };
    ["added", "removed", "modified"].map(|field| {
        paths(diff, field)
            .into_iter()
            .filter(|p| !is_dir(p))
            .collect()
    })
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn seed_tree(client: &Client) {
    client.put("/s/a.txt", b"alpha");
    client.put("/s/b.txt", b"bravo");
    client.put("/s/dir/c.txt", b"charlie");
    client.put("/keep.txt", b"unchanged");
}

#[test]
fn snapshot_lifecycle_read_diff_restore_delete() {
    let server = Server::start();
    let client = server.client();
    seed_tree(&client);
    let before_tree = client.tree();

    let before = client.snapshot(Some("before"));
    assert_eq!(before["name"], "before", "{before}");
    assert_eq!(before["files"], 4, "{before}");
    assert_eq!(before["bytes"], 5 + 5 + 7 + 9, "{before}");
    assert!(
        before["created_at"]
            .as_str()
            .and_then(parse_rfc3339_utc)
            .is_some(),
        "created_at is RFC 3339: {before}"
    );
    let id = before["id"].as_str().expect("id").to_string();

    // Look-ups by id and by name give the same object.
    let by_id = client
        .req("GET", &format!("/v1/compute/snapshots/{id}"))
        .call()
        .ok();
    let by_name = client
        .req("GET", "/v1/compute/snapshots/before")
        .call()
        .ok();
    assert_eq!(by_id, before);
    assert_eq!(by_name, before);

    // Change the live tree: modify, remove, add, remove a directory, add a directory.
    client.put("/s/a.txt", b"alpha, edited");
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/s/b.txt")
        .call()
        .ok();
    client.put("/s/new.txt", b"new");
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/s/dir")
        .query("recursive", "true")
        .call()
        .ok();
    client.put("/fresh/inner/f.txt", b"fresh");
    let live_tree = client.tree();

    // Reads and listings as of the snapshot see the old tree; the live tree the new one.
    assert_eq!(client.read_at("/s/a.txt", &id), b"alpha");
    assert_eq!(client.read_at("/s/b.txt", "before"), b"bravo");
    assert_eq!(client.read_at("/s/dir/c.txt", &id), b"charlie");
    assert_eq!(client.read("/s/a.txt"), b"alpha, edited");
    let old_names: Vec<_> = client
        .list_in("/s", Some(&id))
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(old_names, ["a.txt", "b.txt", "dir"]);
    assert_eq!(client.names("/s"), ["a.txt", "new.txt"]);
    assert_eq!(
        client.tree_in(Some(&id)),
        before_tree,
        "the snapshot's whole tree"
    );
    let stat = client
        .req("GET", "/v1/compute/fs/stat")
        .query("path", "/s/b.txt")
        .query("snapshot", &id)
        .call()
        .ok();
    assert_eq!(stat["size"], 5, "{stat}");
    client
        .req("GET", "/v1/compute/fs/content")
        .query("path", "/s/new.txt")
        .query("snapshot", &id)
        .call()
        .expect_error(404, "not_found");

    // The diff to the live tree names exactly the files that changed.
    let diff = client
        .req("GET", &format!("/v1/compute/snapshots/{id}/diff"))
        .call()
        .ok();
    assert_eq!(diff["to"], "live", "{diff}");
    let [added, removed, modified] = file_changes(&diff, &before_tree, &live_tree);
    assert_eq!(added, set(&["/fresh/inner/f.txt", "/s/new.txt"]), "{diff}");
    assert_eq!(removed, set(&["/s/b.txt", "/s/dir/c.txt"]), "{diff}");
    assert_eq!(modified, set(&["/s/a.txt"]), "{diff}");
    assert!(!diff.to_string().contains("/keep.txt"), "{diff}");

    // A second snapshot of the changed tree; the diff between the two is the same.
    let after = client.snapshot(Some("after"));
    let after_id = after["id"].as_str().expect("id").to_string();
    assert_ne!(after_id, id);
    assert_eq!(after["files"], 4, "{after}");
    let between = client
        .req("GET", &format!("/v1/compute/snapshots/{id}/diff"))
        .query("to", &after_id)
        .call()
        .ok();
    assert_eq!(between["to"], after_id.as_str(), "{between}");
    assert_eq!(
        file_changes(&between, &before_tree, &live_tree),
        [added, removed, modified],
        "{between}"
    );

    // Listed oldest first.
    let listed: Vec<_> = client
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed, [id.clone(), after_id.clone()]);

    // Restore makes the live tree exactly the snapshot, and keeps later snapshots.
    let restored = client
        .req("POST", &format!("/v1/compute/snapshots/{id}/restore"))
        .call()
        .ok();
    assert_eq!(restored["restored"], true, "{restored}");
    assert_eq!(client.tree(), before_tree, "the live tree after restore");
    assert_eq!(client.read("/s/a.txt"), b"alpha");
    assert_eq!(client.read("/s/dir/c.txt"), b"charlie");
    assert_eq!(client.read_at("/s/new.txt", &after_id), b"new");
    let nothing = client
        .req("GET", &format!("/v1/compute/snapshots/{id}/diff"))
        .call()
        .ok();
    for field in ["added", "removed", "modified"] {
        assert!(paths(&nothing, field).is_empty(), "{nothing}");
    }

    // The live tree goes on from the restored state.
    client.put("/s/after-restore.txt", b"later");
    assert_eq!(client.read("/s/after-restore.txt"), b"later");

    // Delete: the snapshot is gone from every route.
    let deleted = client
        .req("DELETE", &format!("/v1/compute/snapshots/{id}"))
        .call()
        .ok();
    assert_eq!(deleted["deleted"], true, "{deleted}");
    client
        .req("GET", &format!("/v1/compute/snapshots/{id}"))
        .call()
        .expect_error(404, "not_found");
    client
        .req("GET", "/v1/compute/fs")
        .query("path", "/")
        .query("snapshot", &id)
        .call()
        .expect_error(404, "not_found");
    client
        .req("POST", &format!("/v1/compute/snapshots/{id}/restore"))
        .call()
        .expect_error(404, "not_found");
    let remaining: Vec<_> = client.snapshots().iter().map(|s| s["id"].clone()).collect();
    assert_eq!(remaining, [json!(after_id)]);
    assert_eq!(
        client.read("/s/a.txt"),
        b"alpha",
        "deleting a snapshot leaves the tree"
    );
}

#[test]
fn unnamed_snapshots_and_unique_names() {
    let server = Server::start();
    let client = server.client();
    client.put("/f.txt", b"x");
    let unnamed = client.snapshot(None);
    assert!(unnamed["name"].is_null(), "{unnamed}");
    let empty_body = client.req("POST", "/v1/compute/snapshots").json(&json!({}));
    empty_body.expect_status(201);
    assert_ne!(empty_body.json()["id"], unnamed["id"]);

    client.snapshot(Some("v1"));
    let before = client.state();
    let snapshots = client.snapshots();
    client
        .req("POST", "/v1/compute/snapshots")
        .json(&json!({"name": "v1"}))
        .expect_error(409, "already_exists");
    client
        .req("POST", "/v1/compute/snapshots")
        .json(&json!({"name": ""}))
        .expect_error(400, "invalid_request");
    assert_eq!(
        client.snapshots(),
        snapshots,
        "refused snapshots leave the list alone"
    );
    crate::support::assert_unchanged("a refused snapshot", &before, &client.state());
    assert_eq!(snapshots.len(), 3);
}

#[test]
fn restore_brings_back_a_large_tree_exactly() {
    let server = Server::start();
    let client = server.client();
    for d in 0..5 {
        for f in 0..20 {
            let content = format!("dir {d} file {f}").repeat(f + 1);
            client.put(&format!("/t/d{d}/f{f}.txt"), content.as_bytes());
        }
    }
    client.put_raw("/t/big.bin", &vec![7u8; 700_000]);
    let files_before = client.files();
    let tree_before = client.tree();
    let snap = client.snapshot(Some("full"));
    assert_eq!(snap["files"], 101, "{snap}");

    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/t")
        .query("recursive", "true")
        .call()
        .ok();
    client.put("/t/d0/f0.txt", b"replaced");
    client.put("/other.txt", b"other");
    client
        .req("POST", "/v1/compute/snapshots/full/restore")
        .call()
        .ok();
    assert_eq!(client.tree(), tree_before);
    assert_eq!(client.files(), files_before);
}
