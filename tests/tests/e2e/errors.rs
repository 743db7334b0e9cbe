//! Bad input: every kind of bad request in `docs/api.md` gets its documented status and
//! `error.code`, and changes nothing (the whole tree and the usage figures are compared
//! before and after each request).

use serde_json::{Value, json};

use crate::support::{Body, Client, Resp, Server, assert_unchanged, b64};

/// A tree to be left alone: files, a nested directory, a snapshot.
fn seed(client: &Client) {
    client.put("/base/file.txt", b"base file");
    client.put("/base/dir/inner.txt", b"inner");
    client.put("/file.bin", &[1, 2, 3]);
    client.snapshot(Some("seeded"));
}

/// A request that sends itself.
type Send<'a> = Box<dyn Fn() -> Resp + 'a>;

/// What is being checked, the request, the status and the codes allowed.
type Case<'a> = (&'static str, Send<'a>, u16, &'static [&'static str]);

/// Sends each request, requires its status and code, and requires that nothing changed.
fn check_all(client: &Client, cases: Vec<Case<'_>>) {
    let before = client.state();
    let snapshots = client.snapshots();
    for (what, send, status, codes) in cases {
        let resp = send();
        assert!(
            resp.status == status,
            "{what}: {} answered {} instead of {status}: {}",
            resp.what,
            resp.status,
            resp.text()
        );
        resp.expect_error_in(status, codes);
        assert_unchanged(what, &before, &client.state());
        assert_eq!(
            client.snapshots(),
            snapshots,
            "{what} changed the snapshots"
        );
    }
}

fn put_json<'c>(client: &'c Client, body: Value) -> Send<'c> {
    Box::new(move || client.req("PUT", "/v1/compute/fs").json(&body))
}

fn put_text<'c>(client: &'c Client, text: &'static str) -> Send<'c> {
    Box::new(move || {
        client
            .req("PUT", "/v1/compute/fs")
            .send(Body::JsonText(text))
    })
}

fn post_text<'c>(client: &'c Client, route: &'static str, text: &'static str) -> Send<'c> {
    Box::new(move || client.req("POST", route).send(Body::JsonText(text)))
}

fn get_path<'c>(client: &'c Client, route: &'static str, path: String) -> Send<'c> {
    Box::new(move || client.req("GET", route).query("path", &path).call())
}

#[test]
fn malformed_json_and_missing_fields_are_invalid_json() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let hi = b64(b"hi");
    let invalid_json: &[&str] = &["invalid_json"];
    check_all(
        client,
        vec![
            (
                "truncated JSON",
                put_text(client, r#"{"path": "/x.txt", "content": "#),
                400,
                invalid_json,
            ),
            (
                "not JSON at all",
                put_text(client, "path=/x.txt"),
                400,
                invalid_json,
            ),
            ("an array", put_text(client, "[]"), 400, invalid_json),
            ("an empty body", put_text(client, ""), 400, invalid_json),
            (
                "no path",
                put_json(client, json!({"content": hi})),
                400,
                invalid_json,
            ),
            (
                "no content",
                put_json(client, json!({"path": "/x.txt"})),
                400,
                invalid_json,
            ),
            (
                "a numeric path",
                put_json(client, json!({"path": 5, "content": hi})),
                400,
                invalid_json,
            ),
            (
                "content as a number",
                put_json(client, json!({"path": "/x.txt", "content": 12})),
                400,
                invalid_json,
            ),
            (
                "a negative mode",
                put_json(client, json!({"path": "/x.txt", "content": hi, "mode": -1})),
                400,
                invalid_json,
            ),
            (
                "move without to",
                post_text(client, "/v1/compute/fs/move", r#"{"from": "/file.bin"}"#),
                400,
                invalid_json,
            ),
            (
                "move with broken JSON",
                post_text(
                    client,
                    "/v1/compute/fs/move",
                    r#"{"from": "/file.bin", "to": "#,
                ),
                400,
                invalid_json,
            ),
            (
                "mkdir without path",
                post_text(client, "/v1/compute/fs/mkdir", "{}"),
                400,
                invalid_json,
            ),
            (
                "snapshot with a numeric name",
                post_text(client, "/v1/compute/snapshots", r#"{"name": 5}"#),
                400,
                invalid_json,
            ),
            (
                "snapshot with broken JSON",
                post_text(client, "/v1/compute/snapshots", "{name"),
                400,
                invalid_json,
            ),
        ],
    );
}

#[test]
fn invalid_base64_is_refused() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let code: &[&str] = &["invalid_base64"];
    check_all(
        client,
        vec![
            (
                "punctuation",
                put_json(client, json!({"path": "/x.txt", "content": "@@@@"})),
                400,
                code,
            ),
            (
                "garbage after padding",
                put_json(client, json!({"path": "/x.txt", "content": "aGk=aGk=!"})),
                400,
                code,
            ),
            // An invalid overwrite leaves the existing file as it was.
            (
                "over an existing file",
                put_json(client, json!({"path": "/base/file.txt", "content": "%%%"})),
                400,
                code,
            ),
        ],
    );
}

/// Paths that name nothing exactly.
fn bad_paths() -> Vec<String> {
    vec![
        "relative.txt".into(),
        "".into(),
        "base/file.txt".into(),
        "/base/../file.bin".into(),
        "/..".into(),
        "/base/..".into(),
        "/./file.bin".into(),
        "/base/./file.txt".into(),
        "/base//file.txt".into(),
        "//".into(),
        "/nul\0byte".into(),
        format!("/{}", "n".repeat(256)),
        format!("/base/{}/x.txt", "é".repeat(128)),
    ]
}

#[test]
fn bad_paths_are_invalid_path_on_every_route() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let code: &[&str] = &["invalid_path"];
    let mut cases: Vec<Case<'_>> = Vec::new();
    for path in bad_paths() {
        let hi = b64(b"hi");
        cases.push((
            "PUT /fs",
            put_json(client, json!({"path": path, "content": hi})),
            400,
            code,
        ));
        let raw_path = path.clone();
        let raw: Send<'_> = Box::new(move || {
            client
                .req("PUT", "/v1/compute/fs/content")
                .query("path", &raw_path)
                .send(Body::Raw(b"hi"))
        });
        cases.push(("PUT /fs/content", raw, 400, code));
        cases.push((
            "GET /fs",
            get_path(client, "/v1/compute/fs", path.clone()),
            400,
            code,
        ));
        cases.push((
            "GET /fs/content",
            get_path(client, "/v1/compute/fs/content", path.clone()),
            400,
            code,
        ));
        cases.push((
            "GET /fs/stat",
            get_path(client, "/v1/compute/fs/stat", path.clone()),
            400,
            code,
        ));
        let delete_path = path.clone();
        let delete: Send<'_> = Box::new(move || {
            client
                .req("DELETE", "/v1/compute/fs")
                .query("path", &delete_path)
                .query("recursive", "true")
                .call()
        });
        cases.push(("DELETE /fs", delete, 400, code));
        let mkdir_body = json!({"path": path, "parents": true});
        let mkdir: Send<'_> =
            Box::new(move || client.req("POST", "/v1/compute/fs/mkdir").json(&mkdir_body));
        cases.push(("mkdir", mkdir, 400, code));
        let move_to = json!({"from": "/file.bin", "to": path});
        let mv_to: Send<'_> =
            Box::new(move || client.req("POST", "/v1/compute/fs/move").json(&move_to));
        cases.push(("move to a bad path", mv_to, 400, code));
        let move_from = json!({"from": path, "to": "/moved.bin"});
        let mv_from: Send<'_> =
            Box::new(move || client.req("POST", "/v1/compute/fs/move").json(&move_from));
        cases.push(("move from a bad path", mv_from, 400, code));
    }
    check_all(client, cases);
}

#[test]
fn deleting_the_root_is_refused() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let codes: &[&str] = &["invalid_path", "invalid_request"];
    let plain: Send<'_> = Box::new(|| {
        client
            .req("DELETE", "/v1/compute/fs")
            .query("path", "/")
            .call()
    });
    let recursive: Send<'_> = Box::new(|| {
        client
            .req("DELETE", "/v1/compute/fs")
            .query("path", "/")
            .query("recursive", "true")
            .call()
    });
    check_all(
        client,
        vec![
            ("DELETE /", plain, 400, codes),
            ("DELETE / recursively", recursive, 400, codes),
        ],
    );
}

#[test]
fn file_versus_directory_conflicts_are_409() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let hi = b64(b"hi");
    let is_dir: &[&str] = &["is_a_directory"];
    let not_dir: &[&str] = &["not_a_directory"];
    let not_empty: &[&str] = &["directory_not_empty"];
    let raw_onto_dir: Send<'_> = Box::new(|| {
        client
            .req("PUT", "/v1/compute/fs/content")
            .query("path", "/base/dir")
            .send(Body::Raw(b"hi"))
    });
    let raw_under_file: Send<'_> = Box::new(|| {
        client
            .req("PUT", "/v1/compute/fs/content")
            .query("path", "/file.bin/child")
            .send(Body::Raw(b"hi"))
    });
    let delete_non_empty: Send<'_> = Box::new(|| {
        client
            .req("DELETE", "/v1/compute/fs")
            .query("path", "/base")
            .call()
    });
    let mkdir_under_file: Send<'_> = Box::new(|| {
        client
            .req("POST", "/v1/compute/fs/mkdir")
            .json(&json!({"path": "/file.bin/sub", "parents": true}))
    });
    let move_file_onto_dir: Send<'_> = Box::new(|| {
        client
            .req("POST", "/v1/compute/fs/move")
            .json(&json!({"from": "/file.bin", "to": "/base/dir"}))
    });
    let move_dir_onto_file: Send<'_> = Box::new(|| {
        client
            .req("POST", "/v1/compute/fs/move")
            .json(&json!({"from": "/base/dir", "to": "/file.bin"}))
    });
    let move_under_file: Send<'_> = Box::new(|| {
        client
            .req("POST", "/v1/compute/fs/move")
            .json(&json!({"from": "/base/file.txt", "to": "/file.bin/x"}))
    });
    check_all(
        client,
        vec![
            (
                "PUT onto a directory",
                put_json(client, json!({"path": "/base/dir", "content": hi})),
                409,
                is_dir,
            ),
            (
                "PUT under a file",
                put_json(
                    client,
                    json!({"path": "/file.bin/child.txt", "content": hi}),
                ),
                409,
                not_dir,
            ),
            (
                "PUT deep under a file",
                put_json(
                    client,
                    json!({"path": "/base/file.txt/a/b.txt", "content": hi}),
                ),
                409,
                not_dir,
            ),
            ("raw PUT onto a directory", raw_onto_dir, 409, is_dir),
            ("raw PUT under a file", raw_under_file, 409, not_dir),
            (
                "reading a directory's content",
                get_path(client, "/v1/compute/fs/content", "/base/dir".into()),
                409,
                is_dir,
            ),
            (
                "listing a file",
                get_path(client, "/v1/compute/fs", "/file.bin".into()),
                409,
                not_dir,
            ),
            (
                "listing under a file",
                get_path(client, "/v1/compute/fs", "/file.bin/x".into()),
                409,
                not_dir,
            ),
            (
                "deleting a non-empty directory",
                delete_non_empty,
                409,
                not_empty,
            ),
            ("mkdir under a file", mkdir_under_file, 409, not_dir),
            (
                "moving a file onto a directory",
                move_file_onto_dir,
                409,
                is_dir,
            ),
            (
                "moving a directory onto a file",
                move_dir_onto_file,
                409,
                not_dir,
            ),
            ("moving under a file", move_under_file, 409, not_dir),
        ],
    );
}

#[test]
fn missing_entries_and_routes_are_404() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let code: &[&str] = &["not_found"];
    let delete_missing: Send<'_> = Box::new(|| {
        client
            .req("DELETE", "/v1/compute/fs")
            .query("path", "/missing")
            .call()
    });
    let move_missing: Send<'_> = Box::new(|| {
        client
            .req("POST", "/v1/compute/fs/move")
            .json(&json!({"from": "/missing", "to": "/x"}))
    });
    let unknown_route: Send<'_> =
        Box::new(|| client.req("GET", "/v1/compute/no-such-route").call());
    check_all(
        client,
        vec![
            (
                "reading a missing file",
                get_path(client, "/v1/compute/fs/content", "/missing.txt".into()),
                404,
                code,
            ),
            (
                "stat of a missing file",
                get_path(client, "/v1/compute/fs/stat", "/base/missing".into()),
                404,
                code,
            ),
            (
                "listing a missing directory",
                get_path(client, "/v1/compute/fs", "/missing".into()),
                404,
                code,
            ),
            ("deleting a missing file", delete_missing, 404, code),
            ("moving a missing file", move_missing, 404, code),
            ("an unknown route", unknown_route, 404, code),
        ],
    );
}

#[test]
fn unknown_snapshots_are_404() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let code: &[&str] = &["not_found"];
    let route = |method: &'static str, route: &'static str| -> Send<'_> {
        Box::new(move || client.req(method, route).call())
    };
    let list_in: Send<'_> = Box::new(|| {
        client
            .req("GET", "/v1/compute/fs")
            .query("path", "/")
            .query("snapshot", "nope")
            .call()
    });
    let read_in: Send<'_> = Box::new(|| {
        client
            .req("GET", "/v1/compute/fs/content")
            .query("path", "/file.bin")
            .query("snapshot", "nope")
            .call()
    });
    let diff_to: Send<'_> = Box::new(|| {
        client
            .req("GET", "/v1/compute/snapshots/seeded/diff")
            .query("to", "nope")
            .call()
    });
    check_all(
        client,
        vec![
            ("get", route("GET", "/v1/compute/snapshots/nope"), 404, code),
            (
                "delete",
                route("DELETE", "/v1/compute/snapshots/nope"),
                404,
                code,
            ),
            (
                "restore",
                route("POST", "/v1/compute/snapshots/nope/restore"),
                404,
                code,
            ),
            (
                "diff from",
                route("GET", "/v1/compute/snapshots/nope/diff"),
                404,
                code,
            ),
            ("diff to", diff_to, 404, code),
            ("list in", list_in, 404, code),
            ("read in", read_in, 404, code),
        ],
    );
}

#[test]
fn bad_ranges_and_moves_are_invalid_request() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let range = |range: &'static str| -> Send<'_> {
        Box::new(move || {
            client
                .req("GET", "/v1/compute/fs/content")
                .query("path", "/base/file.txt")
                .header("Range", range)
                .call()
        })
    };
    let into_itself: Send<'_> = Box::new(|| {
        client
            .req("POST", "/v1/compute/fs/move")
            .json(&json!({"from": "/base", "to": "/base/dir/base"}))
    });
    check_all(
        client,
        vec![
            (
                "a range that is not bytes",
                range("lines=1-2"),
                400,
                &["invalid_request"],
            ),
            (
                "a range with letters",
                range("bytes=a-b"),
                400,
                &["invalid_request"],
            ),
            (
                "a range ending before it starts",
                range("bytes=5-2"),
                400,
                &["invalid_request"],
            ),
            (
                "a range past the end",
                range("bytes=100-200"),
                416,
                &["range_not_satisfiable"],
            ),
            (
                "moving a directory into itself",
                into_itself,
                400,
                &["invalid_request"],
            ),
        ],
    );
}

#[test]
fn missing_garbage_and_unknown_keys_are_401() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let anonymous = server.client_with_key(None);
    let garbage = server.client_with_key(Some("garbage"));
    let unknown = server.client_with_key(Some(&format!("abx_aaaaaaaa_{}", "b".repeat(40))));
    let tampered = {
        let mut key = server.key.clone();
        let last = key.pop().expect("a key");
        key.push(if last == 'a' { 'b' } else { 'a' });
        server.client_with_key(Some(&key))
    };
    let code: &[&str] = &["unauthorized"];
    let mut cases: Vec<Case<'_>> = Vec::new();
    for (who, c) in [
        ("no key", &anonymous),
        ("a garbage key", &garbage),
        ("an unknown key", &unknown),
        ("a tampered key", &tampered),
    ] {
        cases.push((who, get_path(c, "/v1/compute/fs", "/".into()), 401, code));
        cases.push((
            who,
            put_json(c, json!({"path": "/base/file.txt", "content": b64(b"x")})),
            401,
            code,
        ));
        let delete: Send<'_> = Box::new(move || {
            c.req("DELETE", "/v1/compute/fs")
                .query("path", "/base")
                .query("recursive", "true")
                .call()
        });
        cases.push((who, delete, 401, code));
        let snapshot: Send<'_> = Box::new(move || c.req("POST", "/v1/compute/snapshots").call());
        cases.push((who, snapshot, 401, code));
        let restore: Send<'_> =
            Box::new(move || c.req("POST", "/v1/compute/snapshots/seeded/restore").call());
        cases.push((who, restore, 401, code));
        let usage: Send<'_> = Box::new(move || c.req("GET", "/v1/compute/usage").call());
        cases.push((who, usage, 401, code));
    }
    // A scheme other than Bearer.
    let basic: Send<'_> = Box::new(|| {
        anonymous
            .req("GET", "/v1/compute/fs")
            .header("Authorization", &format!("Basic {}", server.key))
            .call()
    });
    cases.push(("Basic instead of Bearer", basic, 401, code));
    check_all(client, cases);
}

#[test]
fn a_revoked_key_is_401_at_once() {
    let server = Server::start();
    let key = server.create_agent_key("revocable", &[]);
    let agent = server.client_with_key(Some(&key));
    agent.put("/mine.txt", b"mine");

    // Keys are `abx_<id>_<secret>`; the id names the key for revocation.
    let id = key.split('_').nth(1).expect("a key id");
    let output = server.admin(&["keys", "revoke", id]);
    crate::support::expect_success(&format!("agentbox keys revoke {id}"), &output);

    agent
        .req("GET", "/v1/compute/fs")
        .call()
        .expect_error(401, "unauthorized");
    agent
        .req("PUT", "/v1/compute/fs")
        .json(&json!({"path": "/after.txt", "content": b64(b"x")}))
        .expect_error(401, "unauthorized");

    // A new key for the same agent still sees the agent's files, and nothing more.
    let output = server.admin(&["keys", "create", "revocable", "--json"]);
    let stdout = crate::support::expect_success("agentbox keys create --json", &output);
    let created: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("keys create --json printed no JSON ({e}): {stdout}"));
    let new_key = created["key"].as_str().expect("key");
    let again = server.client_with_key(Some(new_key));
    assert_eq!(again.names("/"), ["mine.txt"]);
}

#[test]
fn oversized_uploads_are_413_and_write_nothing() {
    let server = Server::start_with(&["--max-file-bytes", "1000"]);
    let client = &server.client();
    seed(client);
    let code: &[&str] = &["too_large"];
    let big = vec![b'x'; 1001];
    let raw_big = big.clone();
    let raw: Send<'_> = Box::new(move || {
        client
            .req("PUT", "/v1/compute/fs/content")
            .query("path", "/big.bin")
            .send(Body::Raw(&raw_big))
    });
    let raw_over_existing = big.clone();
    let raw_over: Send<'_> = Box::new(move || {
        client
            .req("PUT", "/v1/compute/fs/content")
            .query("path", "/base/file.txt")
            .send(Body::Raw(&raw_over_existing))
    });
    // Far over the limit, and more than the sockets hold: this client reads the answer only
    // after sending it all, so it sees the 413 only because the server, having answered,
    // reads the rest of the body (a few MiB at least, however small the limit).
    let very_big = vec![0u8; 4 * 1024 * 1024];
    let raw_huge: Send<'_> = Box::new(move || {
        client
            .req("PUT", "/v1/compute/fs/content")
            .query("path", "/huge.bin")
            .send(Body::Raw(&very_big))
    });
    check_all(
        client,
        vec![
            (
                "base64 over the limit",
                put_json(client, json!({"path": "/big.bin", "content": b64(&big)})),
                413,
                code,
            ),
            (
                "base64 over an existing file",
                put_json(
                    client,
                    json!({"path": "/base/file.txt", "content": b64(&big)}),
                ),
                413,
                code,
            ),
            ("raw over the limit", raw, 413, code),
            ("raw over an existing file", raw_over, 413, code),
            ("raw far over the limit", raw_huge, 413, code),
        ],
    );
    // Exactly the limit is fine.
    client.put("/limit.bin", &big[..1000]);
    client.put_raw("/limit-raw.bin", &big[..1000]);
    assert_eq!(client.read("/limit.bin").len(), 1000);
}

#[test]
fn writes_under_reserved_system_names_are_refused() {
    let server = Server::start();
    let client = &server.client();
    seed(client);
    let codes: &[&str] = &["reserved_path"];
    let mut cases: Vec<Case<'_>> = Vec::new();
    for path in [
        "/etc/passwd",
        "/tmp/x",
        "/usr/bin/python3",
        "/proc/1/status",
        "/dev/null",
    ] {
        cases.push((
            "PUT /fs under a reserved name",
            put_json(client, json!({"path": path, "content": b64(b"x")})),
            400,
            codes,
        ));
        cases.push((
            "raw PUT under a reserved name",
            Box::new(move || {
                client
                    .req("PUT", "/v1/compute/fs/content")
                    .query("path", path)
                    .send(Body::Raw(b"x"))
            }),
            400,
            codes,
        ));
    }
    cases.push((
        "mkdir of a reserved name",
        Box::new(|| {
            client
                .req("POST", "/v1/compute/fs/mkdir")
                .json(&json!({"path": "/run"}))
        }),
        400,
        codes,
    ));
    cases.push((
        "move onto a reserved name",
        Box::new(|| {
            client
                .req("POST", "/v1/compute/fs/move")
                .json(&json!({"from": "/file.bin", "to": "/bin"}))
        }),
        400,
        codes,
    ));
    check_all(client, cases);
    // The same names deeper in the tree are ordinary.
    client.put("/base/etc/passwd", b"not a system file");
}
