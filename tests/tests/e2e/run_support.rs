//! What the run tests share: a server with small run limits (so bombs end quickly), run
//! requests, event-stream parsing, and the check that a server is still healthy after
//! whatever a run did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Client, Resp, Server};

/// The memory limit of a run on [`run_server`].
pub const MEMORY_LIMIT: u64 = 256 << 20;
/// The `/tmp` size of a run on [`run_server`].
pub const TMP_LIMIT: u64 = 16 << 20;
/// The process limit of a run on [`run_server`].
pub const PROCESS_LIMIT: u64 = 64;

/// A server whose runs have small limits, plus `extra` flags.
pub fn run_server(extra: &[&str]) -> Server {
    let memory = MEMORY_LIMIT.to_string();
    let tmp = TMP_LIMIT.to_string();
    let processes = PROCESS_LIMIT.to_string();
    let mut args = vec![
        "--run-memory-bytes",
        &memory,
        "--run-tmp-bytes",
        &tmp,
        "--run-max-processes",
        &processes,
    ];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

impl Client {
    /// `POST /v1/compute/run` with `body`.
    pub fn run_request(&self, body: &Value) -> Resp {
        self.req("POST", "/v1/compute/run").json(body)
    }

    /// Runs `code` and requires a 200; returns the result.
    pub fn run(&self, runtime: &str, code: &str) -> Value {
        self.run_with(json!({"runtime": runtime, "code": code}))
    }

    /// Runs a request body and requires a 200; returns the result.
    pub fn run_with(&self, body: Value) -> Value {
        let resp = self.run_request(&body);
        resp.expect_status(200);
        let result = resp.json();
        for field in [
            "stdout",
            "stderr",
            "exit_code",
            "duration_ms",
            "timed_out",
            "oom_killed",
            "cpu_ms",
            "peak_memory_bytes",
            "stdout_truncated",
            "stderr_truncated",
        ] {
            assert!(
                result.get(field).is_some(),
                "the result lacks {field}: {result}"
            );
        }
        result
    }

    /// Runs bash `code` and requires exit 0; returns its stdout.
    pub fn bash_ok(&self, code: &str) -> String {
        let result = self.run("bash", code);
        assert_eq!(result["exit_code"], 0, "bash {code:?}: {result}");
        result["stdout"].as_str().unwrap().to_string()
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Splits an event stream's text into its events and its comment lines.
pub fn parse_sse(text: &str) -> (Vec<SseEvent>, Vec<String>) {
    let mut events = Vec::new();
    let mut comments = Vec::new();
    let mut event = String::from("message");
    let mut data: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(SseEvent {
                    event: event.clone(),
                    data: data.join("\n"),
                });
            }
            data.clear();
            event = "message".into();
        } else if let Some(comment) = line.strip_prefix(':') {
            comments.push(comment.trim().to_string());
        } else if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
        }
    }
    (events, comments)
}

/// Requires that the server answers `/healthz` and still makes runs.
pub fn assert_healthy(server: &Server) {
    let health = server.client_with_key(None).req("GET", "/healthz").call();
    health.expect_status(200);
    let out = server.client().bash_ok("echo still-here");
    assert_eq!(out, "still-here\n");
}

/// The directories of the run cgroup tree of a server on `data_dir` in every cgroup
/// hierarchy this process (and so the server) belongs to: `agentbox-runs-<hash of the data
/// directory>` beneath its own cgroup. Those that exist.
pub fn run_cgroup_trees(data_dir: &Path) -> Vec<PathBuf> {
    let Ok(data_dir) = std::fs::canonicalize(data_dir) else {
        return Vec::new();
    };
    let name = format!("agentbox-{}", cgroup_purpose("runs", &data_dir));
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut trees = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mounts: Vec<PathBuf> = if controllers.is_empty() {
            vec!["/sys/fs/cgroup/unified".into(), "/sys/fs/cgroup".into()]
        } else {
            controllers
                .split(',')
                .map(|c| Path::new("/sys/fs/cgroup").join(c.trim_start_matches("name=")))
                .collect()
        };
        for mount in mounts {
            let tree = mount.join(path.trim_start_matches('/')).join(&name);
            if tree.is_dir() && !trees.contains(&tree) {
                trees.push(tree);
            }
        }
    }
    trees
}

/// The cgroup tree name a server on `data_dir` (canonical) uses for `kind` ("runs",
/// "browsers"), as `docs/operations.md` documents it.
fn cgroup_purpose(kind: &str, data_dir: &Path) -> String {
    let hash = blake3::hash(data_dir.as_os_str().as_encoded_bytes()).to_hex();
    format!("{kind}-{}", &hash[..16])
}

/// Removes what a killed server left of its run and browser cgroups, so test servers leave
/// nothing behind: processes still in them are killed (frozen ones thawed), then the groups
/// and the trees are removed. Best effort.
pub fn remove_server_cgroups(data_dir: &Path) {
    let Ok(data_dir) = std::fs::canonicalize(data_dir) else {
        return;
    };
    for kind in ["runs", "browsers"] {
        let purpose = cgroup_purpose(kind, &data_dir);
        match confine::CgroupTree::open(&purpose) {
            Ok(tree) => {
                if let Err(error) = tree.remove() {
                    eprintln!("removing the {purpose} cgroups: {error}");
                }
            }
            Err(error) => eprintln!("opening the {purpose} cgroups: {error}"),
        }
    }
}

/// Waits `seconds`, for effects that a surviving process would have had.
pub fn wait_seconds(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}
