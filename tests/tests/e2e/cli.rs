//! The `agentbox` command line against a running server (`fs`, `snapshot`) and on its data
//! directory (`agents`, `keys`, `fsck`).

use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::support::{
    Rng, Server, agentbox, agentbox_bin, agentbox_with_stdin, blake3_hex, expect_success,
};

/// `agentbox <group> --url U --key K <rest...>`.
fn remote(server: &Server, group: &str, rest: &[&str]) -> std::process::Output {
    let mut args = vec![group, "--url", &server.url, "--key", &server.key];
    args.extend_from_slice(rest);
    agentbox(&args)
}

fn ok(server: &Server, group: &str, rest: &[&str]) -> String {
    let output = remote(server, group, rest);
    expect_success(&format!("agentbox {group} {}", rest.join(" ")), &output)
}

fn fails(server: &Server, group: &str, rest: &[&str]) -> String {
    let output = remote(server, group, rest);
    assert!(
        !output.status.success(),
        "`agentbox {group} {}` should fail\nstdout:\n{}",
        rest.join(" "),
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.trim().is_empty(), "a failure says why on stderr");
    stderr
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("expected JSON ({e}), got:\n{text}"))
}

#[test]
fn fs_commands_round_trip_through_the_server() {
    let server = Server::start();
    let client = server.client();
    let work = tempfile::tempdir().expect("a temporary directory");
    let local = work.path().join("hello.txt");
    fs::write(&local, b"hello from the cli\n").expect("write a local file");
    let local = local.to_str().expect("UTF-8 path");

    ok(&server, "fs", &["put", local, "/cli/hello.txt"]);
    assert_eq!(client.read("/cli/hello.txt"), b"hello from the cli\n");

    // get to a file and to standard output.
    let out = work.path().join("out.txt");
    let out = out.to_str().expect("UTF-8 path");
    ok(&server, "fs", &["get", "/cli/hello.txt", out]);
    assert_eq!(fs::read(out).expect("read"), b"hello from the cli\n");
    let stdout = remote(&server, "fs", &["get", "/cli/hello.txt"]);
    assert!(stdout.status.success());
    assert_eq!(stdout.stdout, b"hello from the cli\n");
    let dash = remote(&server, "fs", &["get", "/cli/hello.txt", "-"]);
    assert_eq!(dash.stdout, b"hello from the cli\n");

    // put from standard input.
    let mut args = vec!["fs", "--url", &server.url, "--key", &server.key];
    args.extend_from_slice(&["put", "-", "/cli/stdin.bin"]);
    let piped = agentbox_with_stdin(&args, Some(b"from stdin"));
    expect_success("agentbox fs put - /cli/stdin.bin", &piped);
    assert_eq!(client.read("/cli/stdin.bin"), b"from stdin");

    // ls, plain and JSON.
    let plain = ok(&server, "fs", &["ls", "/cli"]);
    assert!(
        plain.contains("hello.txt") && plain.contains("stdin.bin"),
        "{plain}"
    );
    let listed = json(&ok(&server, "fs", &["ls", "/cli", "--json"]));
    let entries = listed
        .get("entries")
        .unwrap_or(&listed)
        .as_array()
        .unwrap_or_else(|| panic!("fs ls --json: {listed}"))
        .clone();
    let names: Vec<_> = entries.iter().map(|e| e["name"].clone()).collect();
    assert_eq!(names, ["hello.txt", "stdin.bin"], "{listed}");

    // stat shows the size and the hash.
    let stat = ok(&server, "fs", &["stat", "/cli/hello.txt"]);
    assert!(
        stat.contains(&blake3_hex(b"hello from the cli\n")),
        "{stat}"
    );
    assert!(stat.contains("19"), "{stat}");

    // mkdir, mv, rm.
    ok(&server, "fs", &["mkdir", "/cli/a/b"]);
    assert_eq!(client.stat("/cli/a/b").ok()["type"], "directory");
    ok(&server, "fs", &["mv", "/cli/hello.txt", "/cli/a/moved.txt"]);
    client.stat("/cli/hello.txt").expect_error(404, "not_found");
    assert_eq!(client.read("/cli/a/moved.txt"), b"hello from the cli\n");
    fails(&server, "fs", &["rm", "/cli/a"]);
    assert_eq!(client.read("/cli/a/moved.txt"), b"hello from the cli\n");
    ok(&server, "fs", &["rm", "/cli/stdin.bin"]);
    client.stat("/cli/stdin.bin").expect_error(404, "not_found");
    ok(&server, "fs", &["rm", "-r", "/cli/a"]);
    assert!(client.list("/cli").is_empty());

    // Errors exit non-zero with a message.
    fails(&server, "fs", &["get", "/cli/missing.txt"]);
    fails(&server, "fs", &["put", "/no/such/local/file", "/cli/x"]);
    let output = agentbox(&["fs", "--url", &server.url, "--key", "abx_wrong_key", "ls"]);
    assert!(!output.status.success(), "a wrong key fails");
}

#[test]
fn fs_put_and_get_a_large_file() {
    let server = Server::start();
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut rng = Rng::new("cli large file");
    let content = rng.bytes(6 * 1024 * 1024 + 7);
    let local = work.path().join("big.bin");
    fs::write(&local, &content).expect("write");
    let back = work.path().join("back.bin");
    ok(
        &server,
        "fs",
        &["put", local.to_str().unwrap(), "/big/big.bin"],
    );
    ok(
        &server,
        "fs",
        &["get", "/big/big.bin", back.to_str().unwrap()],
    );
    assert!(fs::read(&back).expect("read") == content, "6 MB round trip");
    assert_eq!(server.client().read("/big/big.bin").len(), content.len());
}

#[test]
fn url_and_key_come_from_the_environment() {
    let server = Server::start();
    server.client().put("/env.txt", b"from env");
    let output = Command::new(agentbox_bin())
        .args(["fs", "get", "/env.txt"])
        .env("AGENTBOX_URL", &server.url)
        .env("AGENTBOX_KEY", &server.key)
        .output()
        .expect("run agentbox");
    expect_success("AGENTBOX_URL=... agentbox fs get /env.txt", &output);
    assert_eq!(output.stdout, b"from env");
}

#[test]
fn snapshot_commands_create_list_diff_restore_delete() {
    let server = Server::start();
    let client = server.client();
    client.put("/p/a.txt", b"original a");
    client.put("/p/b.txt", b"original b");

    let created = json(&ok(
        &server,
        "snapshot",
        &["create", "--name", "one", "--json"],
    ));
    let id = created["id"]
        .as_str()
        .expect("snapshot create --json has an id")
        .to_string();
    assert_eq!(created["name"], "one", "{created}");
    let plain = ok(&server, "snapshot", &["create"]);
    assert!(
        !plain.trim().is_empty(),
        "snapshot create prints the new snapshot"
    );

    let listed = json(&ok(&server, "snapshot", &["list", "--json"]));
    let list = listed
        .get("snapshots")
        .unwrap_or(&listed)
        .as_array()
        .expect("a list")
        .clone();
    assert_eq!(list.len(), 2, "{listed}");
    assert_eq!(list[0]["id"], id.as_str());
    let plain = ok(&server, "snapshot", &["list"]);
    assert!(plain.contains(&id) && plain.contains("one"), "{plain}");

    client.put("/p/a.txt", b"changed a");
    client.put("/p/c.txt", b"new c");
    client
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/p/b.txt")
        .call()
        .ok();

    let diff = json(&ok(&server, "snapshot", &["diff", "one", "--json"]));
    let field = |name: &str| -> Vec<Value> { diff[name].as_array().cloned().unwrap_or_default() };
    assert_eq!(field("added"), ["/p/c.txt"], "{diff}");
    assert_eq!(field("removed"), ["/p/b.txt"], "{diff}");
    assert!(
        field("modified").contains(&Value::from("/p/a.txt")),
        "{diff}"
    );
    let plain = ok(&server, "snapshot", &["diff", &id]);
    assert!(
        plain.contains("/p/a.txt") && plain.contains("/p/b.txt") && plain.contains("/p/c.txt"),
        "{plain}"
    );

    ok(&server, "snapshot", &["restore", "one"]);
    assert_eq!(client.read("/p/a.txt"), b"original a");
    assert_eq!(client.read("/p/b.txt"), b"original b");
    client.stat("/p/c.txt").expect_error(404, "not_found");

    ok(&server, "snapshot", &["delete", "one"]);
    assert_eq!(client.snapshots().len(), 1);
    fails(&server, "snapshot", &["restore", "one"]);
}

#[test]
fn agents_and_keys_commands_work_while_the_server_runs() {
    let server = Server::start();
    // The plain form prints the key for a person to copy.
    let output = server.admin(&["agents", "create", "plain"]);
    let stdout = expect_success("agentbox agents create plain", &output);
    assert!(stdout.contains("abx_"), "the key is printed: {stdout}");

    let key = server.create_agent_key("listed", &[]);
    let output = server.admin(&["agents", "list", "--json"]);
    let listed = expect_success("agentbox agents list --json", &output);
    for name in ["default", "plain", "listed"] {
        assert!(listed.contains(name), "agents list shows {name}: {listed}");
    }
    let output = server.admin(&["keys", "list", "listed"]);
    let keys = expect_success("agentbox keys list listed", &output);
    let id = key.split('_').nth(1).expect("a key id");
    assert!(
        keys.contains(id),
        "keys list shows the key's id {id}: {keys}"
    );
    assert!(
        !keys.contains(&key),
        "keys list never shows a whole key: {keys}"
    );

    // A duplicate agent name is refused.
    let output = server.admin(&["agents", "create", "listed"]);
    assert!(!output.status.success(), "a second agent named listed");

    // The key file of the default agent is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(server.data_dir.join("default.key"))
        .expect("default.key")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "default.key is readable by its owner only"
    );
}

#[test]
fn fsck_is_clean_after_a_workload_and_finds_a_damaged_blob() {
    let mut server = Server::start();
    let client = server.client();
    let mut rng = Rng::new("fsck workload");
    let mut first_snapshot = None;
    for i in 0..40u64 {
        let size = match i % 4 {
            0 => 0,
            1 => rng.range(1, 4096),
            2 => rng.range(4096, 100_000),
            _ => rng.range(300_000, 900_000),
        } as usize;
        client.put_raw(&format!("/w/{}/f{i}.bin", i % 5), &rng.bytes(size));
        if i % 7 == 0 {
            let id = client.snapshot(None)["id"]
                .as_str()
                .expect("id")
                .to_string();
            first_snapshot.get_or_insert(id);
        }
        if i % 9 == 0 {
            client
                .req("DELETE", "/v1/compute/fs")
                .query("path", &format!("/w/{}", i % 5))
                .query("recursive", "true")
                .call()
                .ok();
        }
    }
    let first = first_snapshot.expect("a snapshot");
    client
        .req("POST", &format!("/v1/compute/snapshots/{first}/restore"))
        .call()
        .ok();
    client.put_raw("/w/after-restore.bin", &rng.bytes(500_000));
    server.fsck_clean();

    // Damage one blob on disk (a file under blobs/): fsck must say so and exit non-zero.
    server.kill9();
    let blobs = server.data_dir.join("blobs");
    let blob = find_file(&blobs).unwrap_or_else(|| {
        panic!(
            "no blob file under {} after writing large files",
            blobs.display()
        )
    });
    let mut bytes = fs::read(&blob).expect("read a blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    fs::write(&blob, &bytes).expect("damage a blob");
    let output = server.admin(&["fsck"]);
    assert!(
        !output.status.success(),
        "fsck exits non-zero on a damaged blob ({})\nstdout:\n{}\nstderr:\n{}",
        blob.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn find_file(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    for entry in fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_file() && entry.metadata().ok()?.len() > 0 {
            return Some(path);
        }
        if kind.is_dir()
            && let Some(found) = find_file(&path)
        {
            return Some(found);
        }
    }
    None
}
