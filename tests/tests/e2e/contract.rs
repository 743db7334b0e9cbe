//! The contract routes users rely on: `PUT /v1/compute/fs` with base64 content and
//! `GET /v1/compute/fs` listing a directory, with every documented field.

use serde_json::{Value, json};

use crate::support::{Server, b64, blake3_hex, now_secs, parse_rfc3339_utc};

fn entry<'a>(entries: &'a [Value], name: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name:?} in {entries:?}"))
}

#[test]
fn put_then_list_shows_the_file_with_every_field() {
    let server = Server::start();
    let client = server.client();
    let content = b"quarterly summary\n";

    let written = client.put("/reports/summary.txt", content);
    assert_eq!(written["path"], "/reports/summary.txt", "{written}");
    assert_eq!(written["size"], content.len(), "{written}");
    assert_eq!(written["hash"], blake3_hex(content), "{written}");

    let entries = client.list("/reports");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let file = &entries[0];
    assert_eq!(file["name"], "summary.txt");
    assert_eq!(file["path"], "/reports/summary.txt");
    assert_eq!(file["type"], "file");
    assert_eq!(file["size"], content.len());
    assert_eq!(file["hash"], blake3_hex(content));
    assert!(file["mode"].is_u64(), "mode is a number: {file}");
    let modified = file["modified_at"]
        .as_str()
        .unwrap_or_else(|| panic!("modified_at is a string: {file}"));
    let modified = parse_rfc3339_utc(modified)
        .unwrap_or_else(|| panic!("modified_at is not RFC 3339 in UTC: {modified}"));
    assert!(
        (modified - now_secs()).abs() < 300,
        "modified_at {modified} is far from now {}",
        now_secs()
    );
}

#[test]
fn root_listing_is_the_default_and_shows_directories_without_hash() {
    let server = Server::start();
    let client = server.client();
    assert!(client.list("/").is_empty(), "a new agent's tree is empty");
    client.put("/reports/summary.txt", b"x");

    let default = client.req("GET", "/v1/compute/fs").call().ok();
    assert_eq!(default["path"], "/", "{default}");
    let entries = default["entries"].as_array().expect("entries");
    assert_eq!(entries, &client.list("/"));
    let dir = entry(entries, "reports");
    assert_eq!(dir["path"], "/reports");
    assert_eq!(dir["type"], "directory");
    assert!(dir["hash"].is_null(), "a directory has no hash: {dir}");
    assert!(dir["modified_at"].is_string(), "{dir}");
}

#[test]
fn put_creates_every_missing_parent() {
    let server = Server::start();
    let client = server.client();
    client.put("/a/b/c/d.txt", b"deep");
    for (parent, child) in [("/", "a"), ("/a", "b"), ("/a/b", "c")] {
        let entries = client.list(parent);
        assert_eq!(entries.len(), 1, "{parent}: {entries:?}");
        assert_eq!(entries[0]["name"], child);
        assert_eq!(entries[0]["type"], "directory");
    }
    assert_eq!(client.read("/a/b/c/d.txt"), b"deep");
}

#[test]
fn overwrite_changes_hash_size_and_content() {
    let server = Server::start();
    let client = server.client();
    let first = client.put("/notes.txt", b"first version");
    let second = client.put("/notes.txt", b"second, longer version");
    assert_ne!(first["hash"], second["hash"]);
    assert_eq!(second["size"], 22);

    let entries = client.list("/");
    assert_eq!(
        entries.len(),
        1,
        "an overwrite does not add an entry: {entries:?}"
    );
    assert_eq!(entries[0]["hash"], second["hash"]);
    assert_eq!(entries[0]["size"], 22);
    assert_eq!(client.read("/notes.txt"), b"second, longer version");

    // Equal content, equal hash, wherever it lives.
    let copy = client.put("/elsewhere/copy.txt", b"second, longer version");
    assert_eq!(copy["hash"], second["hash"]);
}

#[test]
fn hash_is_blake3_of_the_content_for_small_files() {
    let server = Server::start();
    let client = server.client();
    for size in [0usize, 1, 4095, 4096, 65_537, 256 * 1024] {
        let content: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let path = format!("/sizes/{size}.bin");
        let written = client.put(&path, &content);
        assert_eq!(written["size"], size, "{written}");
        assert_eq!(
            written["hash"],
            blake3_hex(&content),
            "PUT {path}: {written}"
        );
        let listed = client.list("/sizes");
        assert_eq!(
            entry(&listed, &format!("{size}.bin"))["hash"],
            blake3_hex(&content)
        );
        assert_eq!(client.read(&path), content, "{path} reads back");
    }
}

#[test]
fn entries_are_sorted_by_name() {
    let server = Server::start();
    let client = server.client();
    for name in ["b.txt", "a.txt", "C.txt", "c", "aa.txt"] {
        client.put(&format!("/sorted/{name}"), name.as_bytes());
    }
    assert_eq!(
        client.names("/sorted"),
        ["C.txt", "a.txt", "aa.txt", "b.txt", "c"]
    );
}

#[test]
fn names_may_be_any_utf8_and_round_trip() {
    let server = Server::start();
    let client = server.client();
    let path = "/données/naïve ☃ & co?#%.txt";
    client.put(path, b"snow");
    assert_eq!(client.names("/"), ["données"]);
    let entries = client.list("/données");
    assert_eq!(entries[0]["name"], "naïve ☃ & co?#%.txt");
    assert_eq!(entries[0]["path"], path);
    assert_eq!(client.read(path), b"snow");

    // The longest name allowed, 255 bytes, is accepted.
    let long = format!("/{}", "n".repeat(255));
    client.put(&long, b"long");
    assert_eq!(client.read(&long), b"long");
}

#[test]
fn mode_is_stored_when_given() {
    let server = Server::start();
    let client = server.client();
    let resp = client
        .req("PUT", "/v1/compute/fs")
        .json(&json!({"path": "/tools/run.sh", "content": b64(b"#!/bin/sh\n"), "mode": 0o755}));
    resp.ok();
    let stat = client.stat("/tools/run.sh").ok();
    assert_eq!(stat["mode"], 0o755, "{stat}");
}

#[test]
fn listing_a_file_or_a_missing_directory_fails_cleanly() {
    let server = Server::start();
    let client = server.client();
    client.put("/file.txt", b"x");
    client
        .req("GET", "/v1/compute/fs")
        .query("path", "/file.txt")
        .call()
        .expect_error(409, "not_a_directory");
    client
        .req("GET", "/v1/compute/fs")
        .query("path", "/missing")
        .call()
        .expect_error(404, "not_found");
}

#[test]
fn the_default_limit_takes_100_mib_and_not_a_byte_more() {
    let server = Server::start();
    let client = server.client();
    let limit = 100 * 1024 * 1024;
    let mut rng = crate::support::Rng::new("100 MiB");
    let mut content = rng.bytes(limit);

    let written = client.put("/big/limit.bin", &content);
    assert_eq!(written["size"], limit, "{written}");
    let stat = client.stat("/big/limit.bin").ok();
    assert_eq!(stat["hash"], written["hash"], "{stat}");

    content.push(0);
    let before = client.state();
    client
        .req("PUT", "/v1/compute/fs")
        .json(&json!({"path": "/big/over.bin", "content": b64(&content)}))
        .expect_error(413, "too_large");
    crate::support::assert_unchanged("an upload over the limit", &before, &client.state());
    content.pop();
    assert!(
        client.read("/big/limit.bin") == content,
        "100 MiB read back"
    );
}
