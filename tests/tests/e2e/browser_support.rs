//! What the browser tests share: a server whose browsers (run as the sandbox user) can reach
//! their profiles and the agent's mount, pages served on loopback for the browser to open,
//! the npm CDP clients of `tests/js`, and a look at the browser processes of a session.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Client, Server, workspace_root};

/// What the download link of the test page serves.
pub const DOWNLOAD_BODY: &str = "id,value\n1,agentbox\n2,chromium\n";

/// A server ready for browser sessions: Chromium must be installed, and the data
/// directory's parent made traversable (not listable) so that the sandbox user reaches the
/// profiles and mounts inside it.
pub fn browser_server(extra_args: &[&str]) -> Server {
    let binary = Path::new("/usr/lib/chromium/chromium-headless-shell");
    assert!(
        binary.exists(),
        "{} is missing: run scripts/setup.sh to install chromium-headless-shell",
        binary.display()
    );
    crate::support::require_fuse();
    let server = Server::start_with(extra_args);
    let parent = server
        .data_dir
        .parent()
        .expect("the data directory has a parent");
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))
        .expect("make the test directory traversable");
    server
}

/// Creates a session with `body`; returns its JSON.
pub fn create_session(client: &Client, body: Value) -> Value {
    let response = client
        .req("POST", "/v1/compute/browser/sessions")
        .json(&body);
    assert_eq!(
        response.status,
        201,
        "creating a browser session: {}",
        response.text()
    );
    response.json()
}

pub fn session_route(id: &str, rest: &str) -> String {
    format!("/v1/compute/browser/sessions/{id}{rest}")
}

/// Polls `check` every 100 ms until it gives a value or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny web site on a loopback port, served for as long as the test runs: a form page at
/// `/`, a titled page at `/start`, and `/download/<name>` served as an attachment.
pub struct Pages {
    pub base: String,
}

impl Pages {
    pub fn serve() -> Pages {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || answer(stream));
            }
        });
        Pages { base }
    }
}

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>agentbox form</title></head>
<body>
  <input id="name" type="text">
  <button id="go" onclick="document.querySelector('#out').textContent = 'hello ' + document.querySelector('#name').value">go</button>
  <div id="out"></div>
  <a id="dl" href="/download/NAME">download</a>
  <script>window.add = (a, b) => a + b;</script>
</body></html>"#;

fn answer(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let (content_type, extra, body) = if let Some(name) = path.strip_prefix("/download/") {
        (
            "text/csv",
            format!("Content-Disposition: attachment; filename=\"{name}\"\r\n"),
            DOWNLOAD_BODY.to_string(),
        )
    } else if path == "/start" {
        (
            "text/html",
            String::new(),
            "<!doctype html><title>agentbox start page</title><p>started</p>".to_string(),
        )
    } else if let Some(name) = path.strip_prefix("/form/") {
        ("text/html", String::new(), FORM_PAGE.replace("NAME", name))
    } else {
        ("text/plain", String::new(), "not found".to_string())
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The directory of the npm CDP clients, installed by `scripts/setup.sh`.
pub fn js_clients() -> PathBuf {
    let dir = workspace_root().join("tests/js");
    for package in ["playwright-core", "puppeteer-core"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "{package} is not installed in {}: run scripts/setup.sh (it runs `npm ci` there)",
            dir.display()
        );
    }
    dir
}

/// Runs `tests/js/cdp_client.mjs` with `client` and returns the JSON it printed.
pub fn run_cdp_client(client: &str, env: &[(&str, &str)]) -> Value {
    let dir = js_clients();
    let output = Command::new("node")
        .current_dir(&dir)
        .arg("cdp_client.mjs")
        .arg(client)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install Node.js with scripts/setup.sh"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node cdp_client.mjs {client} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{client} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// The browser process of session `id` (found by its profile directory), if it runs.
pub fn main_browser_pid(server: &Server, id: &str) -> Option<i32> {
    let profile = format!(
        "--user-data-dir={}",
        server.data_dir.join("browsers").join(id).display()
    );
    processes().into_iter().find_map(|(pid, _, args)| {
        let ours = args.iter().any(|a| a == &profile);
        let child = args.iter().any(|a| a.starts_with("--type="));
        (ours && !child).then_some(pid)
    })
}

/// The browser process of session `id` and every process below it (zygotes, renderers and
/// utilities do not repeat the profile flag).
pub fn browser_tree(server: &Server, id: &str) -> Vec<i32> {
    let Some(main) = main_browser_pid(server, id) else {
        return Vec::new();
    };
    let all = processes();
    let mut tree = vec![main];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (pid, ppid, _) in &all {
            if *ppid == parent && !tree.contains(pid) {
                tree.push(*pid);
            }
        }
        i += 1;
    }
    tree
}

/// Which of `pids` still run (zombies count as gone).
pub fn still_running(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X")
            })
        })
        .collect()
}

/// Every process: pid, parent pid and arguments.
fn processes() -> Vec<(i32, i32, Vec<String>)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        all.push((pid, ppid, args));
    }
    all
}

/// A WebSocket handshake by hand; returns the status line of the answer.
pub fn websocket_handshake(server: &Server, route: &str, headers: &[(&str, &str)]) -> String {
    let address = server.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let mut request = format!(
        "GET {route} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the handshake");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read the answer");
    line.trim().to_string()
}

/// The agent's compute usage, once browser time has been recorded.
pub fn browser_usage(client: &Client) -> Value {
    let usage = client.usage();
    usage.get("compute").cloned().unwrap_or(json!(null))
}
