//! Many clients at once: concurrent writes to different paths all land, concurrent writes
//! to one path leave exactly one of the written versions, and reads during writes never
//! see a mix of two versions.

use std::collections::BTreeMap;
use std::thread;

use crate::support::{Rng, Server};

#[test]
fn concurrent_writers_to_different_paths_all_land() {
    let server = Server::start();
    let writers = 6;
    let files_each = 25;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let client = server.client();
            thread::spawn(move || {
                let mut written = BTreeMap::new();
                for f in 0..files_each {
                    let content = format!("writer {w} file {f} ").repeat(f * 50 + 1);
                    let path = format!("/par/w{w}/sub{}/f{f}.txt", f % 3);
                    if f % 2 == 0 {
                        client.put(&path, content.as_bytes());
                    } else {
                        client.put_raw(&path, content.as_bytes());
                    }
                    written.insert(path, content.into_bytes());
                }
                written
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    for handle in handles {
        expected.extend(handle.join().expect("a writer panicked"));
    }
    let client = server.client();
    assert_eq!(client.files(), expected);
    let usage = client.usage();
    assert_eq!(usage["storage"]["files"], writers * files_each, "{usage}");
    server.fsck_clean();
}

#[test]
fn concurrent_overwrites_of_one_path_leave_one_whole_version() {
    let server = Server::start();
    let mut rng = Rng::new("one path");
    // Large enough to be several chunks, so a torn write would show.
    let versions: Vec<Vec<u8>> = (0..4).map(|_| rng.bytes(700_000)).collect();
    // The server's hash of each version, from uploads of each to a path of its own.
    let hashes: Vec<String> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let written = server.client().put_raw(&format!("/v{i}.bin"), v);
            written["hash"].as_str().expect("hash").to_string()
        })
        .collect();
    server.client().put_raw("/same.bin", &versions[0]);

    let writers: Vec<_> = versions
        .iter()
        .cloned()
        .map(|content| {
            let client = server.client();
            thread::spawn(move || {
                for _ in 0..6 {
                    client.put_raw("/same.bin", &content);
                }
            })
        })
        .collect();
    // Meanwhile every read returns one of the versions, whole, with a matching ETag.
    let reader = server.client();
    let mut reads = 0;
    while !writers.iter().all(|w| w.is_finished()) || reads < 5 {
        let resp = reader
            .req("GET", "/v1/compute/fs/content")
            .query("path", "/same.bin")
            .call();
        resp.expect_status(200);
        let index = versions
            .iter()
            .position(|v| *v == resp.body)
            .unwrap_or_else(|| {
                panic!(
                    "a read during concurrent writes returned {} bytes matching no version",
                    resp.body.len()
                )
            });
        let etag = resp.header("etag").expect("an ETag");
        let hash = reader.stat("/same.bin").ok()["hash"].clone();
        assert!(
            hashes.iter().any(|h| hash == h.as_str()),
            "stat shows a hash of no version: {hash}"
        );
        assert_eq!(
            etag,
            format!("\"{}\"", hashes[index]),
            "the ETag is the hash of the bytes sent with it"
        );
        reads += 1;
    }
    for writer in writers {
        writer.join().expect("a writer panicked");
    }
    let last = server.client().read("/same.bin");
    assert!(
        versions.contains(&last),
        "the final content is one of the versions"
    );
    assert_eq!(server.client().list("/").len(), 5);
    server.fsck_clean();
}
