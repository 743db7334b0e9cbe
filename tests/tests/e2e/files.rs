//! The file routes beyond the contract: raw upload and download, HTTP ranges and ETags,
//! stat, mkdir, delete and move.

use serde_json::json;

use crate::support::{Body, Rng, Server, blake3_hex};

#[test]
fn raw_upload_and_download_round_trip_a_few_megabytes() {
    let server = Server::start();
    let client = server.client();
    let mut rng = Rng::new("raw round trip");
    let content = rng.bytes(3 * 1024 * 1024 + 12_345);

    let written = client.put_raw("/data/blob.bin", &content);
    assert_eq!(written["path"], "/data/blob.bin", "{written}");
    assert_eq!(written["size"], content.len(), "{written}");
    let hash = written["hash"].as_str().expect("hash").to_string();
    assert_eq!(hash.len(), 64, "{written}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{written}");

    let resp = client
        .req("GET", "/v1/compute/fs/content")
        .query("path", "/data/blob.bin")
        .call();
    resp.expect_status(200);
    assert!(
        resp.body == content,
        "downloaded bytes differ from the upload"
    );
    assert_eq!(resp.header("etag"), Some(format!("\"{hash}\"").as_str()));
    assert_eq!(resp.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );

    // The listing, stat and a base64 upload of the same bytes agree on the hash.
    let stat = client.stat("/data/blob.bin").ok();
    assert_eq!(stat["hash"], hash.as_str(), "{stat}");
    assert_eq!(stat["size"], content.len());
    assert_eq!(client.list("/data")[0]["hash"], hash.as_str());
    let again = client.put("/data/copy.bin", &content);
    assert_eq!(again["hash"], hash.as_str(), "equal content, equal hash");
    assert_eq!(client.read("/data/copy.bin"), content);

    // A raw upload of a small file is hashed like a base64 one.
    let small = client.put_raw("/data/small.txt", b"small raw");
    assert_eq!(small["hash"], blake3_hex(b"small raw"));
    let empty = client.put_raw("/data/empty", b"");
    assert_eq!(empty["size"], 0);
    assert_eq!(client.read("/data/empty"), b"");
}

fn range(client: &crate::support::Client, path: &str, range: &str) -> crate::support::Resp {
    client
        .req("GET", "/v1/compute/fs/content")
        .query("path", path)
        .header("Range", range)
        .call()
}

#[test]
fn range_requests_return_exactly_the_requested_bytes() {
    let server = Server::start();
    let client = server.client();
    let small: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    client.put("/r/small.bin", &small);

    let resp = range(&client, "/r/small.bin", "bytes=0-9");
    resp.expect_status(206);
    assert_eq!(resp.body, &small[0..10]);
    assert_eq!(resp.header("content-range"), Some("bytes 0-9/1000"));

    let resp = range(&client, "/r/small.bin", "bytes=990-");
    resp.expect_status(206);
    assert_eq!(resp.body, &small[990..]);
    assert_eq!(resp.header("content-range"), Some("bytes 990-999/1000"));

    let resp = range(&client, "/r/small.bin", "bytes=-5");
    resp.expect_status(206);
    assert_eq!(resp.body, &small[995..]);
    assert_eq!(resp.header("content-range"), Some("bytes 995-999/1000"));

    let resp = range(&client, "/r/small.bin", "bytes=995-5000");
    resp.expect_status(206);
    assert_eq!(resp.body, &small[995..], "an end past the file is clamped");
    assert_eq!(resp.header("content-range"), Some("bytes 995-999/1000"));

    range(&client, "/r/small.bin", "bytes=1000-").expect_error(416, "range_not_satisfiable");
    range(&client, "/r/small.bin", "bytes=5000-6000").expect_error(416, "range_not_satisfiable");
    range(&client, "/r/small.bin", "bytes=abc").expect_error(400, "invalid_request");

    // Ranges across chunk boundaries of a large file.
    let mut rng = Rng::new("ranges");
    let big = rng.bytes(2 * 1024 * 1024);
    client.put_raw("/r/big.bin", &big);
    for (start, end) in [(0usize, 0usize), (100_000, 1_300_000), (262_143, 262_144)] {
        let resp = range(&client, "/r/big.bin", &format!("bytes={start}-{end}"));
        resp.expect_status(206);
        assert!(
            resp.body == big[start..=end],
            "bytes {start}-{end} of the large file"
        );
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes {start}-{end}/{}", big.len()).as_str())
        );
    }
    let resp = range(&client, "/r/big.bin", "bytes=-70000");
    resp.expect_status(206);
    assert!(
        resp.body == big[big.len() - 70_000..],
        "the last 70000 bytes"
    );
}

#[test]
fn if_none_match_with_the_current_etag_is_304() {
    let server = Server::start();
    let client = server.client();
    let written = client.put("/etag.txt", b"version one");
    let etag = format!("\"{}\"", written["hash"].as_str().expect("hash"));

    let resp = client
        .req("GET", "/v1/compute/fs/content")
        .query("path", "/etag.txt")
        .header("If-None-Match", &etag)
        .call();
    resp.expect_status(304);
    assert!(resp.body.is_empty(), "a 304 has no body");

    let other = client
        .req("GET", "/v1/compute/fs/content")
        .query("path", "/etag.txt")
        .header("If-None-Match", "\"0000\"")
        .call();
    other.expect_status(200);
    assert_eq!(other.body, b"version one");

    client.put("/etag.txt", b"version two");
    let stale = client
        .req("GET", "/v1/compute/fs/content")
        .query("path", "/etag.txt")
        .header("If-None-Match", &etag)
        .call();
    stale.expect_status(200);
    assert_eq!(stale.body, b"version two");
    assert_ne!(stale.header("etag"), Some(etag.as_str()));
}

#[test]
fn stat_describes_files_directories_and_the_root() {
    let server = Server::start();
    let client = server.client();
    client.put("/docs/readme.md", b"# hi\n");

    let file = client.stat("/docs/readme.md").ok();
    assert_eq!(file["name"], "readme.md");
    assert_eq!(file["path"], "/docs/readme.md");
    assert_eq!(file["type"], "file");
    assert_eq!(file["size"], 5);
    assert_eq!(file["hash"], blake3_hex(b"# hi\n"));
    assert!(
        file["mode"].is_u64() && file["modified_at"].is_string(),
        "{file}"
    );
    assert_eq!(
        &file,
        &client.list("/docs")[0],
        "stat and the listing describe an entry alike"
    );

    let dir = client.stat("/docs").ok();
    assert_eq!(dir["type"], "directory");
    assert_eq!(dir["path"], "/docs");
    let root = client.stat("/").ok();
    assert_eq!(root["type"], "directory");
    assert_eq!(root["path"], "/");

    client
        .stat("/docs/missing.md")
        .expect_error(404, "not_found");
}

#[test]
fn mkdir_creates_directories_with_and_without_parents() {
    let server = Server::start();
    let client = server.client();
    let made = client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/x/y/z", "parents": true}))
        .ok();
    assert_eq!(made["path"], "/x/y/z", "{made}");
    assert_eq!(made["type"], "directory", "{made}");
    assert!(client.list("/x/y/z").is_empty());
    assert_eq!(client.stat("/x/y").ok()["type"], "directory");

    // Like `mkdir -p`, an existing directory is fine with parents.
    client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/x/y/z", "parents": true}))
        .expect_2xx();
    // Without parents, the parent must exist and the directory must not.
    client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/x/y/w"}))
        .expect_2xx();
    let before = client.state();
    client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/nope/child"}))
        .expect_error(404, "not_found");
    client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/x/y/w"}))
        .expect_error(409, "already_exists");
    crate::support::assert_unchanged("a refused mkdir", &before, &client.state());
}

#[test]
fn delete_removes_files_and_directories_only_when_asked() {
    let server = Server::start();
    let client = server.client();
    client.put("/d/one.txt", b"1");
    client.put("/d/sub/two.txt", b"2");
    client.put("/lonely.txt", b"l");
    client
        .req("POST", "/v1/compute/fs/mkdir")
        .json(&json!({"path": "/empty"}))
        .expect_2xx();

    let gone = client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/lonely.txt")
        .call()
        .ok();
    assert_eq!(gone["path"], "/lonely.txt", "{gone}");
    assert_eq!(gone["deleted"], true, "{gone}");
    client.stat("/lonely.txt").expect_error(404, "not_found");

    let before = client.state();
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/d")
        .call()
        .expect_error(409, "directory_not_empty");
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/d")
        .query("recursive", "false")
        .call()
        .expect_error(409, "directory_not_empty");
    crate::support::assert_unchanged("a refused delete", &before, &client.state());

    // An empty directory goes without `recursive`.
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/empty")
        .call()
        .ok();
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/d")
        .query("recursive", "true")
        .call()
        .ok();
    assert!(client.tree().is_empty(), "{:?}", client.tree());
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/d")
        .call()
        .expect_error(404, "not_found");
    assert_eq!(client.usage()["storage"]["files"], 0);
}

fn mv(client: &crate::support::Client, body: serde_json::Value) -> crate::support::Resp {
    client.req("POST", "/v1/compute/fs/move").json(&body)
}

#[test]
fn move_renames_files_and_directories() {
    let server = Server::start();
    let client = server.client();
    client.put("/m/a.txt", b"alpha");
    client.put("/m/b.txt", b"bravo");
    client.put("/tree/x/1.txt", b"one");
    client.put("/tree/x/2.txt", b"two");

    let moved = mv(&client, json!({"from": "/m/a.txt", "to": "/m/renamed.txt"})).ok();
    assert_eq!(moved["path"], "/m/renamed.txt", "{moved}");
    assert_eq!(moved["type"], "file");
    assert_eq!(moved["hash"], blake3_hex(b"alpha"));
    client.stat("/m/a.txt").expect_error(404, "not_found");
    assert_eq!(client.read("/m/renamed.txt"), b"alpha");

    // Without `overwrite: false`, an existing destination is replaced.
    mv(&client, json!({"from": "/m/renamed.txt", "to": "/m/b.txt"})).ok();
    assert_eq!(client.read("/m/b.txt"), b"alpha");
    assert_eq!(client.names("/m"), ["b.txt"]);

    // With `overwrite: false` it is refused and nothing moves.
    client.put("/m/c.txt", b"charlie");
    let before = client.state();
    mv(
        &client,
        json!({"from": "/m/c.txt", "to": "/m/b.txt", "overwrite": false}),
    )
    .expect_error(409, "already_exists");
    crate::support::assert_unchanged("a refused move", &before, &client.state());
    mv(
        &client,
        json!({"from": "/m/c.txt", "to": "/m/d.txt", "overwrite": false}),
    )
    .ok();
    assert_eq!(client.read("/m/d.txt"), b"charlie");

    // A directory moves with everything in it.
    let moved = mv(&client, json!({"from": "/tree/x", "to": "/moved"})).ok();
    assert_eq!(moved["type"], "directory", "{moved}");
    assert_eq!(client.names("/moved"), ["1.txt", "2.txt"]);
    assert_eq!(client.read("/moved/2.txt"), b"two");
    assert!(client.list("/tree").is_empty());

    // Moving a directory into itself is a bad request.
    let before = client.state();
    mv(&client, json!({"from": "/moved", "to": "/moved/inside"}))
        .expect_error(400, "invalid_request");
    mv(&client, json!({"from": "/missing", "to": "/elsewhere"})).expect_error(404, "not_found");
    crate::support::assert_unchanged("a refused move", &before, &client.state());
}

#[test]
fn raw_upload_takes_a_mode() {
    let server = Server::start();
    let client = server.client();
    client
        .req("PUT", "/v1/compute/fs/content")
        .query("path", "/run.sh")
        .query("mode", "493")
        .send(Body::Raw(b"#!/bin/sh\n"))
        .ok();
    assert_eq!(client.stat("/run.sh").ok()["mode"], 493);
}
