//! Shared machinery for the end-to-end tests: the `agentbox` binary (built once per test
//! process), a real server on a loopback port with its own data directory, an HTTP client
//! bound to one agent's key, helpers that capture an agent's whole tree so a test can
//! assert that a request changed nothing, and a running `agentbox mount` that unmounts
//! when dropped.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};

/// How long a server may take to start answering `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a mount may take to appear (and a refused mount to exit).
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to exit after a signal before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The `agentbox` binary, built with `cargo build -p api --bin agentbox` once per test
/// process. `AGENTBOX_BIN` names a prebuilt binary instead.
pub fn agentbox_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("AGENTBOX_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => build_agentbox(),
    })
}

/// The workspace's top directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives inside the workspace")
        .to_path_buf()
}

fn build_agentbox() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", "api", "--bin", "agentbox"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {cargo:?} to build agentbox ({e}); install Rust with rustup")
        });
    assert!(
        output.status.success(),
        "`cargo build -p api --bin agentbox` failed ({}); see the compiler output above",
        output.status
    );
    // Cargo names every artifact it built (or found fresh); the binary's path is the one
    // answer that holds whatever the target directory is configured to be.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "agentbox"
            && let Some(path) = message["executable"].as_str()
        {
            return PathBuf::from(path);
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join("agentbox")
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Runs `agentbox` with `args`, without a shell, and returns what it did.
pub fn agentbox(args: &[&str]) -> Output {
    agentbox_with_stdin(args, None)
}

/// Runs `agentbox` with `args`, feeding `stdin` to it when given.
pub fn agentbox_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(agentbox_bin());
    command
        .args(args)
        .env_remove("AGENTBOX_URL")
        .env_remove("AGENTBOX_KEY")
        .env_remove("AGENTBOX_DATA_DIR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(command, stdin)
}

/// Runs a prepared command, feeding it `stdin`, and waits for it.
pub fn run(mut command: Command, stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait_with_output().expect("wait for agentbox")
}

/// Panics with the command's output unless it exited 0; returns its stdout.
pub fn expect_success(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "`{what}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A running `agentbox serve` with a data directory of its own, killed when dropped.
pub struct Server {
    pub url: String,
    /// The key of the `default` agent, read from `<data-dir>/default.key`.
    pub key: String,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with the default configuration.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `agentbox serve` flags.
    pub fn start_with(extra_args: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("agentbox-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        // Runs execute as an unprivileged user who must reach the sandbox views beneath.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
            .expect("open the temporary directory to the sandbox user");
        let data_dir = dir.path().join("data");
        let mut server = Server {
            url: String::new(),
            key: String::new(),
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: PathBuf::new(),
            starts: 0,
            dir,
        };
        server.launch();
        let key_file = server.data_dir.join("default.key");
        let key = fs::read_to_string(&key_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", key_file.display()));
        server.key = key.trim().to_string();
        assert!(!server.key.is_empty(), "{} is empty", key_file.display());
        server
    }

    fn launch(&mut self) {
        for _attempt in 0..3 {
            self.starts += 1;
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            self.url = format!("http://{listen}");
            self.log = self.dir.path().join(format!("server-{}.log", self.starts));
            let log = fs::File::create(&self.log).expect("create the server log");
            let mut command = Command::new(agentbox_bin());
            command
                .arg("serve")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--listen")
                .arg(&listen)
                .args(&self.extra_args)
                .env_remove("AGENTBOX_DATA_DIR")
                .env_remove("AGENTBOX_LISTEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file"))
                .stderr(log);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", agentbox_bin().display()));
            self.child = Some(child);
            match self.wait_until_ready() {
                Ok(()) => return,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("agentbox serve exited before it was ready:\n{log}"),
            }
        }
        panic!("agentbox serve could not find a free port in three tries");
    }

    /// Waits for `/healthz` to answer 200 and, on a first start, for `default.key`.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let key_file = self.data_dir.join("default.key");
        loop {
            let child = self.child.as_mut().expect("a server process");
            if let Some(status) = child.try_wait().expect("poll the server process") {
                self.child = None;
                return Err(format!("{status}\n{}", self.log_tail()));
            }
            let key_ready = fs::read_to_string(&key_file)
                .map(|k| !k.trim().is_empty())
                .unwrap_or(false);
            if key_ready
                && let Ok(response) = probe.get(&format!("{}/healthz", self.url)).call()
                && response.status() == 200
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "agentbox serve did not answer /healthz with a key in {}/default.key within \
                 {START_TIMEOUT:?}\n{}",
                self.data_dir.display(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the current server's log (stdout and stderr).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 6000)
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM and returns how it exited (`None`: it did not stop in
    /// time and was killed).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("the server is running");
        signal(&child, "TERM");
        let exit = wait_for_exit(&mut child, STOP_TIMEOUT);
        if exit.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exit
    }

    /// Kills the server with SIGKILL and starts it again on the same data directory (on a
    /// new port: `url` changes).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client for the `default` agent.
    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(&self.key))
    }

    /// A client with the given key, or none.
    pub fn client_with_key(&self, key: Option<&str>) -> Client {
        Client::new(&self.url, key)
    }

    /// Runs an administrative `agentbox` command on this server's data directory:
    /// `--data-dir` goes right after the command's first word (`agents`, `keys`, `fsck`).
    pub fn admin(&self, args: &[&str]) -> Output {
        let data_dir = self.data_dir.to_str().expect("a UTF-8 temporary path");
        let mut full = vec![args[0], "--data-dir", data_dir];
        full.extend_from_slice(&args[1..]);
        agentbox(&full)
    }

    /// Creates an agent with `agentbox agents create NAME --json [extra]`; returns its key.
    pub fn create_agent_key(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["agents", "create", name, "--json"];
        args.extend_from_slice(extra);
        let output = self.admin(&args);
        let stdout = expect_success(&format!("agentbox {}", args.join(" ")), &output);
        let created: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("`agents create --json` printed something that is not JSON ({e}): {stdout}")
        });
        assert_eq!(created["agent"], name, "agents create --json: {created}");
        created["key"]
            .as_str()
            .unwrap_or_else(|| panic!("agents create --json has no key: {created}"))
            .to_string()
    }

    /// Creates an agent and returns a client bound to its key.
    pub fn create_agent(&self, name: &str, extra: &[&str]) -> Client {
        let key = self.create_agent_key(name, extra);
        Client::new(&self.url, Some(&key))
    }

    /// Runs `agentbox fsck` (plain and `--json`) on the data directory and requires a
    /// clean result: exit 0 and no problem reported.
    pub fn fsck_clean(&self) -> String {
        let output = self.admin(&["fsck"]);
        let stdout = expect_success("agentbox fsck", &output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let all = format!("{stdout}\n{stderr}").to_lowercase();
        for word in ["corrupt", "mismatch", "dangling"] {
            assert!(
                !all.contains(word),
                "agentbox fsck exited 0 but reported {word:?}:\n{stdout}\n{stderr}"
            );
        }
        let output = self.admin(&["fsck", "--json"]);
        let json = expect_success("agentbox fsck --json", &output);
        let report: Value = serde_json::from_str(json.trim())
            .unwrap_or_else(|e| panic!("agentbox fsck --json printed no JSON ({e}): {json}"));
        if let Some(problems) = report.get("problems") {
            assert_eq!(problems, &json!([]), "agentbox fsck --json: {report}");
        }
        if let Some(clean) = report.get("clean") {
            assert_eq!(clean, &json!(true), "agentbox fsck --json: {report}");
        }
        stdout
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        crate::run_support::remove_server_cgroups(&self.data_dir);
        // A killed server's sandbox views stay mounted (dead) until a server starts on the
        // data directory again; none will, so they are detached here.
        if let Ok(views) = fs::read_dir(self.data_dir.join("mounts")) {
            for view in views.flatten() {
                force_unmount(&view.path());
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- agentbox serve log ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `METHOD route` for messages.
    pub what: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered {} with a body that is not JSON ({e}): {}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    /// Requires a 2xx status; returns the JSON body.
    pub fn ok(&self) -> Value {
        self.expect_2xx();
        self.json()
    }

    /// Requires a 2xx status.
    pub fn expect_2xx(&self) -> &Resp {
        assert!(
            (200..300).contains(&self.status),
            "{} answered {}: {}",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    /// Requires exactly `status`.
    pub fn expect_status(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status,
            status,
            "{} answered {} instead of {status}: {}",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    /// Requires the documented error shape with this status and code.
    pub fn expect_error(&self, status: u16, code: &str) {
        self.expect_error_in(status, &[code]);
    }

    /// Requires the documented error shape with this status and one of these codes.
    pub fn expect_error_in(&self, status: u16, codes: &[&str]) {
        self.expect_status(status);
        let body = self.json();
        let error = &body["error"];
        let got = error["code"].as_str().unwrap_or_else(|| {
            panic!("{} answered {status} without error.code: {body}", self.what)
        });
        assert!(
            codes.contains(&got),
            "{} answered {status} with code {got:?}, expected one of {codes:?}: {body}",
            self.what
        );
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{} answered {status} without a message: {body}",
            self.what
        );
    }
}

/// What a request carries.
pub enum Body<'a> {
    Empty,
    Json(&'a Value),
    /// Sent as `application/json` without being checked: for malformed JSON.
    JsonText(&'a str),
    /// Sent as `application/octet-stream`.
    Raw(&'a [u8]),
}

/// An HTTP client bound to one server and (optionally) one agent's key.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: Option<String>,
    http: ureq::Agent,
}

/// A request being built.
pub struct Req<'c> {
    client: &'c Client,
    method: String,
    route: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl<'c> Req<'c> {
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends the request; a transport failure (refused, reset, timed out) is an `Err`.
    pub fn try_send(self, body: Body<'_>) -> Result<Resp, String> {
        let url = format!("{}{}", self.client.base, self.route);
        let mut request = self.client.http.request(&self.method, &url);
        for (name, value) in &self.query {
            request = request.query(name, value);
        }
        if let Some(key) = &self.client.key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        for (name, value) in &self.headers {
            request = request.set(name, value);
        }
        let what = format!("{} {}", self.method, request.url());
        let result = match body {
            Body::Empty => request.call(),
            Body::Json(value) => request.send_json(value),
            Body::JsonText(text) => request
                .set("Content-Type", "application/json")
                .send_string(text),
            Body::Raw(bytes) => request
                .set("Content-Type", "application/octet-stream")
                .send_bytes(bytes),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => return Err(format!("{what}: {transport}")),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| {
                let value = response.header(&name)?.to_string();
                Some((name, value))
            })
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("{what}: reading the body: {e}"))?;
        Ok(Resp {
            status,
            headers,
            body,
            what,
        })
    }

    pub fn send(self, body: Body<'_>) -> Resp {
        self.try_send(body).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn call(self) -> Resp {
        self.send(Body::Empty)
    }

    pub fn json(self, value: &Value) -> Resp {
        self.send(Body::Json(value))
    }
}

/// Base64 (standard alphabet, padded), as `PUT /v1/compute/fs` takes it.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The blake3 hash of `bytes` in lowercase hex.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// An agent's tree: every entry by path, as `GET /v1/compute/fs` lists it.
pub type Tree = BTreeMap<String, Value>;

impl Client {
    pub fn new(base: &str, key: Option<&str>) -> Client {
        let http = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .redirects(0)
            .build();
        Client {
            base: base.to_string(),
            key: key.map(str::to_string),
            http,
        }
    }

    pub fn req(&self, method: &str, route: &str) -> Req<'_> {
        Req {
            client: self,
            method: method.to_string(),
            route: route.to_string(),
            query: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// `PUT /v1/compute/fs` with base64 content; requires success.
    pub fn put(&self, path: &str, content: &[u8]) -> Value {
        self.req("PUT", "/v1/compute/fs")
            .json(&json!({"path": path, "content": b64(content)}))
            .ok()
    }

    /// `PUT /v1/compute/fs/content` with the raw bytes; requires success.
    pub fn put_raw(&self, path: &str, content: &[u8]) -> Value {
        self.req("PUT", "/v1/compute/fs/content")
            .query("path", path)
            .send(Body::Raw(content))
            .ok()
    }

    /// `GET /v1/compute/fs/content`; requires 200 and returns the bytes.
    pub fn read(&self, path: &str) -> Vec<u8> {
        let resp = self
            .req("GET", "/v1/compute/fs/content")
            .query("path", path)
            .call();
        resp.expect_status(200);
        resp.body
    }

    /// `GET /v1/compute/fs/content` of a snapshot; requires 200.
    pub fn read_at(&self, path: &str, snapshot: &str) -> Vec<u8> {
        let resp = self
            .req("GET", "/v1/compute/fs/content")
            .query("path", path)
            .query("snapshot", snapshot)
            .call();
        resp.expect_status(200);
        resp.body
    }

    /// `GET /v1/compute/fs?path=`; requires success and returns the entries.
    pub fn list(&self, path: &str) -> Vec<Value> {
        self.list_in(path, None)
    }

    /// Lists a directory of the live tree or of a snapshot.
    pub fn list_in(&self, path: &str, snapshot: Option<&str>) -> Vec<Value> {
        let mut req = self.req("GET", "/v1/compute/fs").query("path", path);
        if let Some(snapshot) = snapshot {
            req = req.query("snapshot", snapshot);
        }
        let body = req.call().ok();
        assert_eq!(body["path"], path, "listing of {path}: {body}");
        body["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("listing of {path} has no entries array: {body}"))
            .clone()
    }

    /// Names in a directory, in the order listed.
    pub fn names(&self, path: &str) -> Vec<String> {
        self.list(path)
            .iter()
            .map(|e| e["name"].as_str().expect("entry name").to_string())
            .collect()
    }

    /// `GET /v1/compute/fs/stat`; the raw response.
    pub fn stat(&self, path: &str) -> Resp {
        self.req("GET", "/v1/compute/fs/stat")
            .query("path", path)
            .call()
    }

    /// The whole tree, walked from `/` with listings.
    pub fn tree(&self) -> Tree {
        self.tree_in(None)
    }

    /// The whole tree of the live view or of a snapshot.
    pub fn tree_in(&self, snapshot: Option<&str>) -> Tree {
        let mut tree = Tree::new();
        let mut pending = vec!["/".to_string()];
        while let Some(dir) = pending.pop() {
            for entry in self.list_in(&dir, snapshot) {
                let path = entry["path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("entry without a path: {entry}"))
                    .to_string();
                if entry["type"] == "directory" {
                    pending.push(path.clone());
                }
                tree.insert(path, entry);
            }
        }
        tree
    }

    /// Paths and contents of every file in the tree.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.tree()
            .into_iter()
            .filter(|(_, e)| e["type"] == "file")
            .map(|(path, _)| {
                let bytes = self.read(&path);
                (path, bytes)
            })
            .collect()
    }

    /// `GET /v1/compute/usage`; requires success.
    pub fn usage(&self) -> Value {
        self.req("GET", "/v1/compute/usage").call().ok()
    }

    /// The tree and the usage figures together: what "changes nothing" compares.
    pub fn state(&self) -> (Tree, Value) {
        (self.tree(), self.usage()["storage"].clone())
    }

    /// `POST /v1/compute/snapshots`; requires 201 and returns the snapshot object.
    pub fn snapshot(&self, name: Option<&str>) -> Value {
        let resp = match name {
            Some(name) => self
                .req("POST", "/v1/compute/snapshots")
                .json(&json!({ "name": name })),
            None => self.req("POST", "/v1/compute/snapshots").call(),
        };
        resp.expect_status(201);
        let snapshot = resp.json();
        assert!(
            snapshot["id"].is_string(),
            "snapshot without an id: {snapshot}"
        );
        snapshot
    }

    /// `GET /v1/compute/snapshots`; requires success.
    pub fn snapshots(&self) -> Vec<Value> {
        let body = self.req("GET", "/v1/compute/snapshots").call().ok();
        body["snapshots"]
            .as_array()
            .unwrap_or_else(|| panic!("no snapshots array: {body}"))
            .clone()
    }
}

/// Requires that `after` equals `before`, naming the first difference.
pub fn assert_unchanged(what: &str, before: &(Tree, Value), after: &(Tree, Value)) {
    for (path, entry) in &before.0 {
        match after.0.get(path) {
            None => panic!("{what} removed {path} (was {entry})"),
            Some(now) => assert_eq!(now, entry, "{what} changed {path}"),
        }
    }
    for (path, entry) in &after.0 {
        assert!(
            before.0.contains_key(path),
            "{what} created {path}: {entry}"
        );
    }
    assert_eq!(after.1, before.1, "{what} changed the usage figures");
}

/// A small deterministic random generator (splitmix64), seeded from the operating system
/// or from `E2E_SEED` to replay a run; the seed is printed so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = match std::env::var("E2E_SEED") {
            Ok(seed) => seed.parse().expect("E2E_SEED must be a number"),
            Err(_) => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).expect("the operating system's random source");
                u64::from_le_bytes(bytes)
            }
        };
        eprintln!("{what}: random seed {seed} (set E2E_SEED={seed} to replay)");
        Rng(seed)
    }

    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp (`...Z` or `...+00:00`), or
/// `None` if it is not one.
pub fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let rest = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = rest.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

/// Fails with what to install unless `/dev/fuse` and `fusermount3` are there.
pub fn require_fuse() {
    let fusermount = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("fusermount3").is_file())
    });
    assert!(
        Path::new("/dev/fuse").exists() && fusermount,
        "mounting needs /dev/fuse and fusermount3: run scripts/setup.sh (Debian package fuse3)"
    );
}

/// Whether `path` is a mount point, according to `/proc/self/mountinfo`. The path is
/// compared as given: canonicalize it first if it may go through a symlink.
pub fn is_mounted(path: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    // The fifth field is the mount point, with space, tab, newline and backslash escaped
    // as octal.
    let wanted = path
        .to_str()
        .expect("a UTF-8 temporary path")
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Unmounts `mountpoint` by force while it is still mounted: `fusermount3 -u`, then
/// `umount -l`.
pub fn force_unmount(mountpoint: &Path) {
    for (program, flag) in [("fusermount3", "-u"), ("umount", "-l")] {
        if is_mounted(mountpoint) {
            let _ = Command::new(program).arg(flag).arg(mountpoint).status();
        }
    }
}

/// Sends `SIG{name}` (`TERM`, `INT`, ...) to a process with the shell's `kill`, which
/// every system has; returns whether `kill` succeeded.
pub fn signal(child: &Child, name: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\"",
            "sh",
            name,
            &child.id().to_string(),
        ])
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits up to `timeout` for a process to exit.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `max` bytes of a log file, as text; empty if it cannot be read.
pub fn log_tail(log: &Path, max: usize) -> String {
    let bytes = fs::read(log).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A running `agentbox mount`. Dropping it unmounts: SIGTERM to the process, SIGKILL if
/// that does not end it in time, then `fusermount3 -u` and `umount -l` while the mount is
/// still there; after a panic it prints the end of the mount's log.
pub struct Mount {
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// Starts `command` (an `agentbox mount` of `mountpoint`) with its output going to
    /// `log`, and waits up to [`MOUNT_TIMEOUT`] for the mount to appear.
    pub fn start(mut command: Command, mountpoint: &Path, log: &Path) -> Mount {
        let log_file = fs::File::create(log).expect("create the mount log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agentbox_bin().display()));
        let mut mount = Mount {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while !is_mounted(mountpoint) {
            let child = mount.child.as_mut().expect("a mount process");
            if let Some(status) = child.try_wait().expect("poll the mount process") {
                mount.child = None;
                panic!(
                    "agentbox mount exited with {status} before mounting:\n{}",
                    mount.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} was not mounted within {MOUNT_TIMEOUT:?}:\n{}",
                mountpoint.display(),
                mount.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Where `remote`, a path in the agent's tree, is under the mount.
    pub fn path(&self, remote: &str) -> PathBuf {
        self.mountpoint.join(remote.trim_start_matches('/'))
    }

    /// The whole log of the mount process (stdout and stderr).
    pub fn log(&self) -> String {
        log_tail(&self.log, usize::MAX)
    }

    /// The end of the log of the mount process.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 4000)
    }

    /// Whether the mount process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("poll the mount process").is_none())
    }

    /// Sends `SIG{name}` to the mount process and waits up to [`STOP_TIMEOUT`] for it to
    /// exit, killing it with SIGKILL if it does not. Returns how it exited: `None` if it had
    /// to be killed, or was not running. The mount point is left as the process left it.
    pub fn signal_and_wait(&mut self, name: &str) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(&child, name);
        let exit = wait_for_exit(&mut child, STOP_TIMEOUT);
        if exit.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exit
    }

    /// Kills the mount process with SIGKILL at once (sent directly, not through a shell, so
    /// it lands within microseconds) and reaps it. The mount point is left as the process
    /// left it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the mount process to exit by itself; how it exited, or
    /// `None` if it still runs (or was not running).
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let exit = wait_for_exit(self.child.as_mut()?, timeout);
        if exit.is_some() {
            self.child = None;
        }
        exit
    }

    /// Unmounts: SIGTERM (the clean way), SIGKILL if that does not end the process in
    /// time, then `fusermount3 -u` and `umount -l` while the mount is still there.
    /// Returns how the process exited, `None` if it had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let exit = self.signal_and_wait("TERM");
        force_unmount(&self.mountpoint);
        exit
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- agentbox mount log ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}
