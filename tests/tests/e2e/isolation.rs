//! Agents are isolated: a second agent sees nothing of the first one's files or snapshots
//! and cannot touch them (404, never 403). Quotas stop an agent's writes with 507 and
//! leave its tree as it was.

use serde_json::json;

use crate::support::{Body, Client, Server, assert_unchanged, b64};

#[test]
fn a_second_agent_sees_and_touches_nothing_of_the_first() {
    let server = Server::start();
    let first = server.client();
    first.put("/secret/plans.txt", b"the first agent's plans");
    first.put("/top.txt", b"top");
    let snapshot = first.snapshot(Some("first-snap"));
    let snap_id = snapshot["id"].as_str().expect("id").to_string();
    let first_state = first.state();
    let first_snapshots = first.snapshots();

    let second = server.create_agent("second", &[]);
    assert_eq!(second.usage()["agent"], "second");
    assert!(second.list("/").is_empty(), "a new agent's tree is empty");
    assert!(
        second.snapshots().is_empty(),
        "a new agent has no snapshots"
    );

    // Reads of the first agent's paths and snapshots: 404, as if they did not exist.
    let not_found = |resp: crate::support::Resp| resp.expect_error(404, "not_found");
    not_found(
        second
            .req("GET", "/v1/compute/fs/content")
            .query("path", "/secret/plans.txt")
            .call(),
    );
    not_found(
        second
            .req("GET", "/v1/compute/fs/stat")
            .query("path", "/top.txt")
            .call(),
    );
    not_found(
        second
            .req("GET", "/v1/compute/fs")
            .query("path", "/secret")
            .call(),
    );
    for id in [snap_id.as_str(), "first-snap"] {
        not_found(
            second
                .req("GET", &format!("/v1/compute/snapshots/{id}"))
                .call(),
        );
        not_found(
            second
                .req("GET", &format!("/v1/compute/snapshots/{id}/diff"))
                .call(),
        );
        not_found(
            second
                .req("GET", "/v1/compute/fs")
                .query("path", "/")
                .query("snapshot", id)
                .call(),
        );
        not_found(
            second
                .req("GET", "/v1/compute/fs/content")
                .query("path", "/top.txt")
                .query("snapshot", id)
                .call(),
        );
        // Nor can it restore or delete them.
        not_found(
            second
                .req("POST", &format!("/v1/compute/snapshots/{id}/restore"))
                .call(),
        );
        not_found(
            second
                .req("DELETE", &format!("/v1/compute/snapshots/{id}"))
                .call(),
        );
    }
    not_found(
        second
            .req("DELETE", "/v1/compute/fs")
            .query("path", "/secret")
            .query("recursive", "true")
            .call(),
    );
    not_found(
        second
            .req("POST", "/v1/compute/fs/move")
            .json(&json!({"from": "/top.txt", "to": "/stolen.txt"})),
    );

    // Writes land in the second agent's own tree, whatever the path.
    second.put("/secret/plans.txt", b"the second agent's own file");
    second.put_raw("/top.txt", b"second top");
    let own = second.snapshot(Some("first-snap"));
    assert_ne!(own["id"], snap_id.as_str(), "snapshot ids are not shared");
    second
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/top.txt")
        .call()
        .ok();
    assert_eq!(second.usage()["storage"]["files"], 1);

    // The first agent's tree and snapshots are exactly as they were.
    assert_unchanged("the second agent's requests", &first_state, &first.state());
    assert_eq!(first.snapshots(), first_snapshots);
    assert_eq!(first.read("/secret/plans.txt"), b"the first agent's plans");
    assert_eq!(first.read("/top.txt"), b"top");
    assert_eq!(first.read_at("/top.txt", &snap_id), b"top");
    assert_eq!(
        second.read("/secret/plans.txt"),
        b"the second agent's own file"
    );
}

fn put_status(client: &Client, path: &str, content: &[u8]) -> crate::support::Resp {
    client
        .req("PUT", "/v1/compute/fs")
        .json(&json!({"path": path, "content": b64(content)}))
}

#[test]
fn a_write_over_the_byte_quota_is_507_and_writes_nothing() {
    let server = Server::start();
    let agent = server.create_agent("q", &["--quota-bytes", "1000"]);
    let usage = agent.usage();
    assert_eq!(usage["storage"]["quota_bytes"], 1000, "{usage}");

    agent.put("/first.bin", &[1u8; 600]);
    agent.put("/second.bin", &[2u8; 300]);
    let before = agent.state();
    put_status(&agent, "/third.bin", &[3u8; 200]).expect_error(507, "quota_exceeded");
    agent
        .req("PUT", "/v1/compute/fs/content")
        .query("path", "/third.bin")
        .send(Body::Raw(&[3u8; 200]))
        .expect_error(507, "quota_exceeded");
    // Growing an existing file past the quota is refused too, and the old content stays.
    put_status(&agent, "/second.bin", &[4u8; 600]).expect_error(507, "quota_exceeded");
    assert_unchanged("an over-quota write", &before, &agent.state());
    assert_eq!(agent.read("/second.bin"), [2u8; 300]);

    // After a delete there is room again.
    agent
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/first.bin")
        .call()
        .ok();
    agent.put("/third.bin", &[3u8; 200]);

    // The default agent has no quota.
    let default = server.client();
    default.put("/big.bin", &[5u8; 5000]);
    assert!(default.usage()["storage"]["quota_bytes"].is_null());
}

#[test]
fn a_write_over_the_file_quota_is_507_and_writes_nothing() {
    let server = Server::start();
    let agent = server.create_agent("few", &["--quota-files", "2"]);
    assert_eq!(agent.usage()["storage"]["quota_files"], 2);
    agent.put("/one.txt", b"1");
    agent.put("/two.txt", b"2");
    let before = agent.state();
    put_status(&agent, "/three.txt", b"3").expect_error(507, "quota_exceeded");
    put_status(&agent, "/dir/three.txt", b"3").expect_error(507, "quota_exceeded");
    assert_unchanged("an over-quota write", &before, &agent.state());
    // Overwriting an existing file does not add one.
    agent.put("/two.txt", b"two again");
    assert_eq!(agent.read("/two.txt"), b"two again");
}

#[test]
fn a_fork_starts_as_the_snapshot_and_goes_its_own_way() {
    let server = Server::start();
    let source = server.client();
    source.put("/shared/report.txt", b"from the source");
    source.put_raw("/shared/big.bin", &vec![9u8; 600_000]);
    let snap = source.snapshot(Some("base"));
    source.put("/shared/report.txt", b"changed after the snapshot");
    let stored = |c: &Client| {
        c.usage()["storage"]["stored_bytes"]
            .as_u64()
            .expect("stored_bytes")
    };
    let stored_before = stored(&source);

    let output = server.admin(&[
        "agents",
        "fork",
        "default",
        "forked",
        "--snapshot",
        "base",
        "--json",
    ]);
    let stdout = crate::support::expect_success("agentbox agents fork --json", &output);
    let created: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("agents fork --json printed no JSON ({e}): {stdout}"));
    let fork = server.client_with_key(Some(created["key"].as_str().expect("a key")));

    // The fork's tree is the snapshot's, not the source's live tree.
    assert_eq!(
        fork.tree(),
        source.tree_in(Some(snap["id"].as_str().expect("id")))
    );
    assert_eq!(fork.read("/shared/report.txt"), b"from the source");
    assert!(fork.snapshots().is_empty(), "snapshots are not forked");

    // From then on each goes its own way.
    fork.put("/shared/report.txt", b"the fork's own");
    fork.put("/fork-only.txt", b"mine");
    assert_eq!(
        source.read("/shared/report.txt"),
        b"changed after the snapshot"
    );
    source.stat("/fork-only.txt").expect_error(404, "not_found");
    source
        .req("DELETE", "/v1/compute/fs")
        .query("path", "/shared")
        .query("recursive", "true")
        .call()
        .ok();
    assert_eq!(fork.read("/shared/big.bin"), vec![9u8; 600_000]);
    // Only the blob of the version written after the snapshot is no longer referenced:
    // the snapshot keeps everything it saw.
    let after_snapshot = b"changed after the snapshot".len() as u64;
    assert_eq!(stored(&source), stored_before - after_snapshot);
    server.fsck_clean();
}

#[test]
fn quotas_set_with_the_command_line_apply_at_once() {
    let server = Server::start();
    let agent = server.create_agent("later", &[]);
    agent.put("/a.bin", &[1u8; 500]);
    let output = server.admin(&["agents", "quota", "later", "--bytes", "800"]);
    crate::support::expect_success("agentbox agents quota later --bytes 800", &output);
    assert_eq!(agent.usage()["storage"]["quota_bytes"], 800);
    put_status(&agent, "/b.bin", &[2u8; 400]).expect_error(507, "quota_exceeded");
    // Omitting the flag makes it unlimited again.
    let output = server.admin(&["agents", "quota", "later"]);
    crate::support::expect_success("agentbox agents quota later", &output);
    assert!(agent.usage()["storage"]["quota_bytes"].is_null());
    agent.put("/b.bin", &[2u8; 400]);
}
