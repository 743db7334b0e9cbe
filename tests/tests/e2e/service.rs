//! Service-wide routes: `/healthz`, `/openapi.json` checked against the routes the server
//! really answers, and the usage figures of `/v1/compute/usage`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{Rng, Server};

#[test]
fn healthz_answers_without_a_key() {
    let server = Server::start();
    let anonymous = server.client_with_key(None);
    let health = anonymous.req("GET", "/healthz").call().ok();
    assert_eq!(health["status"], "ok", "{health}");
}

/// Every route of `docs/api.md` that exists now, as (method, path template).
const DOCUMENTED: &[(&str, &str)] = &[
    ("get", "/v1/compute/fs"),
    ("put", "/v1/compute/fs"),
    ("delete", "/v1/compute/fs"),
    ("get", "/v1/compute/fs/content"),
    ("put", "/v1/compute/fs/content"),
    ("get", "/v1/compute/fs/stat"),
    ("post", "/v1/compute/fs/move"),
    ("post", "/v1/compute/fs/mkdir"),
    ("get", "/v1/compute/snapshots"),
    ("post", "/v1/compute/snapshots"),
    ("get", "/v1/compute/snapshots/{}"),
    ("delete", "/v1/compute/snapshots/{}"),
    ("post", "/v1/compute/snapshots/{}/restore"),
    ("get", "/v1/compute/snapshots/{}/diff"),
    ("get", "/v1/compute/usage"),
    ("get", "/healthz"),
];

/// `/a/{id}/b` becomes `/a/{}/b`, so templates compare whatever the parameter is called.
fn template(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn openapi_document_lists_every_route_the_server_answers() {
    let server = Server::start();
    let anonymous = server.client_with_key(None);
    let doc = anonymous.req("GET", "/openapi.json").call().ok();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1"),
        "an OpenAPI 3.1 document: {version:?}"
    );
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("the document has no paths object: {doc}"));

    let mut listed = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item object");
        for method in ["get", "put", "post", "delete", "patch", "head"] {
            if item.contains_key(method) {
                listed.insert((method.to_string(), template(path)));
            }
        }
    }
    for (method, path) in DOCUMENTED {
        assert!(
            listed.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is documented but not in /openapi.json; it lists {listed:?}"
        );
    }

    // Each route the document lists exists on the server: an existing route may refuse
    // a bare request (400), but never with "no such route" (404 without a parameter, 405).
    let client = server.client();
    for (method, path) in &listed {
        if path.contains("{}") || !path.starts_with("/v1/compute/") && path != "/healthz" {
            continue;
        }
        if !matches!(method.as_str(), "get" | "delete") {
            continue;
        }
        let resp = client.req(&method.to_uppercase(), path).call();
        assert!(
            resp.status != 404 && resp.status != 405,
            "/openapi.json lists {method} {path} but the server answers {}: {}",
            resp.status,
            resp.text()
        );
    }
    // The snapshot routes with an id answer 404 `not_found` for an unknown one, as JSON.
    for (method, path) in &listed {
        if !path.starts_with("/v1/compute/snapshots/{}") {
            continue;
        }
        let route = path.replace("{}", "no-such-snapshot");
        client
            .req(&method.to_uppercase(), &route)
            .call()
            .expect_error(404, "not_found");
    }
}

fn storage(client: &crate::support::Client) -> Value {
    let usage = client.usage();
    assert_eq!(usage["agent"], "default", "{usage}");
    usage["storage"].clone()
}

fn figure(storage: &Value, name: &str) -> u64 {
    storage[name]
        .as_u64()
        .unwrap_or_else(|| panic!("usage.storage.{name} is a number: {storage}"))
}

#[test]
fn usage_figures_follow_writes_deletes_and_snapshots() {
    let server = Server::start();
    let client = server.client();
    let start = storage(&client);
    for field in [
        "logical_bytes",
        "stored_bytes",
        "files",
        "directories",
        "snapshots",
    ] {
        assert_eq!(figure(&start, field), 0, "a new agent's {field}: {start}");
    }
    assert!(start["quota_bytes"].is_null(), "{start}");
    assert!(start["quota_files"].is_null(), "{start}");

    let mut rng = Rng::new("usage");
    let content = rng.bytes(100_000);
    client.put("/u/a.bin", &content);
    let one = storage(&client);
    assert_eq!(figure(&one, "logical_bytes"), 100_000, "{one}");
    assert_eq!(figure(&one, "files"), 1, "{one}");
    assert_eq!(figure(&one, "directories"), 1, "/u: {one}");
    assert!(figure(&one, "stored_bytes") >= 100_000, "{one}");

    // The same bytes again count twice logically and once in storage.
    client.put("/u/b.bin", &content);
    let two = storage(&client);
    assert_eq!(figure(&two, "logical_bytes"), 200_000, "{two}");
    assert_eq!(figure(&two, "files"), 2, "{two}");
    assert_eq!(
        figure(&two, "stored_bytes"),
        figure(&one, "stored_bytes"),
        "identical content is stored once: {one} then {two}"
    );

    client.put("/u/c.txt", b"0123456789");
    let three = storage(&client);
    assert_eq!(figure(&three, "logical_bytes"), 200_010, "{three}");
    assert!(figure(&three, "stored_bytes") > figure(&two, "stored_bytes"));

    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/u/a.bin")
        .call()
        .ok();
    let deleted = storage(&client);
    assert_eq!(figure(&deleted, "logical_bytes"), 100_010, "{deleted}");
    assert_eq!(figure(&deleted, "files"), 2, "{deleted}");

    client.snapshot(None);
    let snap = storage(&client);
    assert_eq!(figure(&snap, "snapshots"), 1, "{snap}");
    assert_eq!(figure(&snap, "logical_bytes"), 100_010, "{snap}");
}
