//! `POST /v1/compute/run`: the contract for each runtime (output, exit codes, stderr,
//! timeouts), bad requests, persistence through the agent's tree, isolation between
//! agents, streaming, metering, concurrency limits and `agentbox run`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::run_support::{parse_sse, run_cgroup_trees, run_server};
use crate::support::{Body, Server, agentbox_with_stdin, assert_unchanged, expect_success};

#[test]
fn each_runtime_prints_exits_and_reports() {
    let server = run_server(&[]);
    let client = server.client();
    for (runtime, code) in [
        ("bash", "echo out; echo err >&2; exit 7"),
        (
            "python",
            "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(7)\n",
        ),
        (
            "typescript",
            "const code: number = 7;\nconsole.log('out');\nconsole.error('err');\nprocess.exit(code);\n",
        ),
    ] {
        let result = client.run(runtime, code);
        assert_eq!(result["stdout"], "out\n", "{runtime}: {result}");
        assert_eq!(result["stderr"], "err\n", "{runtime}: {result}");
        assert_eq!(result["exit_code"], 7, "{runtime}: {result}");
        assert_eq!(result["timed_out"], false);
        assert!(result["duration_ms"].as_u64().unwrap() < 20_000);
    }
}

#[test]
fn language_is_an_alias_of_runtime_and_stderr_is_not_failure() {
    let server = run_server(&[]);
    let result = server.client().run_with(json!({
        "language": "python",
        "code": "import sys\nsys.stderr.write('a warning\\n')\nprint(6 * 7)",
    }));
    assert_eq!(result["stdout"], "42\n");
    assert_eq!(result["stderr"], "a warning\n");
    assert_eq!(result["exit_code"], 0);
}

#[test]
fn an_explicit_timeout_kills_the_whole_run() {
    let server = run_server(&[]);
    let started = Instant::now();
    let result = server.client().run_with(json!({
        "runtime": "bash",
        "code": "echo before; sleep 60 & sleep 60; echo after",
        "timeout": 1,
    }));
    assert_eq!(result["timed_out"], true, "{result}");
    assert_ne!(result["exit_code"], 0);
    assert_eq!(result["stdout"], "before\n");
    let duration = result["duration_ms"].as_u64().unwrap();
    assert!((1000..5000).contains(&duration), "{result}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_default_timeout_is_thirty_seconds() {
    let server = run_server(&[]);
    let started = Instant::now();
    let result = server.client().run("bash", "sleep 45; echo finished");
    assert_eq!(result["timed_out"], true, "{result}");
    assert_ne!(result["exit_code"], 0);
    assert_eq!(result["stdout"], "");
    let duration = result["duration_ms"].as_u64().unwrap();
    assert!((30_000..35_000).contains(&duration), "{result}");
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[test]
fn timeouts_above_300_seconds_are_refused_and_300_is_accepted() {
    let server = run_server(&[]);
    let client = server.client();
    let resp = client.run_request(&json!({"runtime": "bash", "code": "true", "timeout": 301}));
    resp.expect_error(400, "invalid_request");
    assert!(resp.text().contains("300"), "{}", resp.text());
    let result = client.run_with(json!({"runtime": "bash", "code": "echo ok", "timeout": 300}));
    assert_eq!(result["stdout"], "ok\n");
}

#[test]
fn bad_requests_get_clear_400s_and_change_nothing() {
    let server = run_server(&[]);
    let client = server.client();
    client.put("/keep.txt", b"kept");
    let before = client.state();
    let bodies = [
        (
            json!({"runtime": "ruby", "code": "puts 1"}),
            "invalid_request",
        ),
        (json!({"runtime": "bash"}), "invalid_json"),
        (json!({"code": "echo 1"}), "invalid_json"),
        (json!({"runtime": "bash", "code": 5}), "invalid_json"),
        (
            json!({"runtime": "bash", "code": "x", "timeout": -1}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "timeout": 0}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "timeout": "10"}),
            "invalid_json",
        ),
        (
            json!({"runtime": "bash", "code": "x", "unknown": 1}),
            "invalid_json",
        ),
        (
            json!({"runtime": "bash", "code": "x", "env": {"1BAD": "x"}}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "env": {"A": "a\u{0}b"}}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "cwd": "relative"}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "cwd": "/a/../b"}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "cwd": "/missing"}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "x", "cwd": "/keep.txt"}),
            "invalid_request",
        ),
        (
            json!({"runtime": "bash", "code": "rm /keep.txt", "network": true}),
            "network_not_allowed",
        ),
    ];
    for (body, code) in bodies {
        let resp = client.run_request(&body);
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        resp.expect_error(400, code);
    }
    let resp = client
        .req("POST", "/v1/compute/run")
        .send(Body::JsonText("{\"runtime\": \"bash\", \"code\": "));
    resp.expect_error(400, "invalid_json");
    assert_unchanged("bad run requests", &before, &client.state());
    // Without a key nothing runs.
    server
        .client_with_key(None)
        .run_request(&json!({"runtime": "bash", "code": "touch /x"}))
        .expect_error(401, "unauthorized");
}

#[test]
fn files_persist_between_the_api_and_runs() {
    let server = run_server(&[]);
    let client = server.client();
    client.put("/reports/summary.txt", b"quarterly numbers\n");
    let out =
        client.bash_ok("cat /reports/summary.txt; ls -ln /reports/summary.txt | awk '{print $3}'");
    assert_eq!(out, "quarterly numbers\n61000\n");
    let result = client.run(
        "python",
        "import os\nos.makedirs('/out/deep', exist_ok=True)\nopen('/out/deep/result.txt','w').write('from python')\n",
    );
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(client.read("/out/deep/result.txt"), b"from python");
    let out = client.bash_ok("cat /out/deep/result.txt");
    assert_eq!(out, "from python");
    let result = client.run(
        "typescript",
        "await Bun.write('/out/ts.json', JSON.stringify({ok: true}));",
    );
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(client.read("/out/ts.json"), br#"{"ok":true}"#);
    // The run's /tmp is fresh: nothing of a previous run is left in it.
    client.bash_ok("echo scratch > /tmp/scratch");
    assert_eq!(client.bash_ok("ls -A /tmp | wc -l"), "0\n");
}

#[test]
fn two_agents_never_see_each_others_files() {
    let server = run_server(&[]);
    let first = server.client();
    let second = server.create_agent("second", &[]);
    first.put("/private/first.txt", b"first's secret");
    second.bash_ok("echo second > /mine.txt");
    let out = second.bash_ok(
        "ls -A / | grep -v -x -E 'bin|dev|etc|lib|lib64|proc|run|sbin|sys|tmp|usr'; \
         test -e /private/first.txt && echo LEAK || true",
    );
    assert_eq!(out, "mine.txt\n");
    let out = first.bash_ok("test -e /mine.txt && echo LEAK || echo clean");
    assert_eq!(out, "clean\n");
    second
        .req("GET", "/v1/compute/fs/content")
        .query("path", "/private/first.txt")
        .call()
        .expect_error(404, "not_found");
}

#[test]
fn cwd_env_and_stdin_reach_the_program() {
    let server = run_server(&[]);
    let client = server.client();
    client.put("/project/data.txt", b"x");
    let result = client.run_with(json!({
        "runtime": "bash",
        "code": "pwd; ls; echo \"$GREETING\"; cat; echo; echo \"$HOME $PATH\"",
        "cwd": "/project",
        "env": {"GREETING": "hello; $(touch /pwned)"},
        "stdin": "from stdin",
    }));
    assert_eq!(result["exit_code"], 0, "{result}");
    let out = result["stdout"].as_str().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/project");
    assert_eq!(lines[1], "data.txt");
    assert_eq!(lines[2], "hello; $(touch /pwned)");
    assert_eq!(lines[3], "from stdin");
    assert!(lines[4].starts_with("/tmp /run/agentbox/bin:"), "{out}");
    assert!(
        client
            .req("GET", "/v1/compute/fs/stat")
            .query("path", "/pwned")
            .call()
            .status
            == 404
    );
}

#[test]
fn the_runtimes_have_their_libraries_and_tools() {
    let server = run_server(&[]);
    let client = server.client();
    let result = client.run(
        "python",
        "import numpy, pandas, matplotlib, requests, PIL, bs4\n\
         import matplotlib.pyplot as plt\n\
         plt.plot([1, 2, 3]); plt.savefig('/plot.png')\n\
         print(pandas.DataFrame({'a': [1, 2]})['a'].sum())",
    );
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(result["stdout"], "3\n");
    assert!(client.read("/plot.png").starts_with(b"\x89PNG"));
    let out = client.bash_ok(
        "echo '{\"a\": 2}' | jq .a; echo abc | sed s/b/B/ | awk '{print $1}' | grep aBc; \
         python3 -c 'print(1)'; bun -e 'console.log(2)'; ls /usr/bin/env >/dev/null && echo env",
    );
    assert_eq!(out, "2\naBc\n1\n2\nenv\n");
}

#[test]
fn streaming_sends_output_as_it_happens_then_the_result() {
    let server = run_server(&[]);
    let client = server.client();
    let resp = client
        .req("POST", "/v1/compute/run")
        .header("Accept", "text/event-stream")
        .json(&json!({
            "runtime": "python",
            "code": "import sys, time\nprint('one')\nsys.stderr.write('two\\n')\ntime.sleep(6)\nprint('three')",
        }));
    resp.expect_status(200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/event-stream"),
        "{:?}",
        resp.headers
    );
    let (events, comments) = parse_sse(&resp.text());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.last(), Some(&"result"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "result").count(), 1);
    let text = |stream: &str| -> String {
        events
            .iter()
            .filter(|e| e.event == stream)
            .map(|e| {
                serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(text("stdout"), "one\nthree\n");
    assert_eq!(text("stderr"), "two\n");
    assert!(
        comments.iter().any(|c| c == "heartbeat"),
        "no heartbeat: {comments:?}"
    );
    let result: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(result["stdout"], "one\nthree\n");
    assert_eq!(result["exit_code"], 0);
}

#[test]
fn runs_are_metered_in_the_agents_usage() {
    let server = run_server(&[]);
    let client = server.client();
    let before = client.usage()["compute"].clone();
    assert_eq!(before["runs"], 0, "{before}");
    client.run("python", "sum(i*i for i in range(3_000_000))");
    client.run("bash", "sleep 0.3");
    let after = client.usage()["compute"].clone();
    assert_eq!(after["runs"], 2, "{after}");
    assert!(after["run_ms"].as_u64().unwrap() >= 300, "{after}");
    assert!(after["run_cpu_ms"].as_u64().unwrap() > 0, "{after}");
    // Another agent's runs are not counted here.
    server.create_agent("other", &[]).run("bash", "true");
    assert_eq!(client.usage()["compute"]["runs"], 2);
}

#[test]
fn past_the_concurrency_limit_runs_get_429_with_retry_after() {
    let server = run_server(&["--max-runs-per-agent", "1", "--max-runs", "2"]);
    let client = server.client();
    let slow = {
        let client = client.clone();
        std::thread::spawn(move || client.run("bash", "sleep 3; echo slow"))
    };
    std::thread::sleep(Duration::from_millis(1000));
    let resp = client.run_request(&json!({"runtime": "bash", "code": "echo fast"}));
    resp.expect_error(429, "too_many_runs");
    assert_eq!(resp.header("retry-after"), Some("1"));
    // Another agent still has room on the server; a third run overall does not.
    let other = server.create_agent("other", &[]);
    let other_slow = {
        let other = other.clone();
        std::thread::spawn(move || other.run("bash", "sleep 2; echo other"))
    };
    std::thread::sleep(Duration::from_millis(500));
    let third = server.create_agent("third", &[]);
    third
        .run_request(&json!({"runtime": "bash", "code": "true"}))
        .expect_error(429, "too_many_runs");
    assert_eq!(slow.join().unwrap()["stdout"], "slow\n");
    assert_eq!(other_slow.join().unwrap()["stdout"], "other\n");
    assert_eq!(client.bash_ok("echo fast"), "fast\n");
}

#[test]
fn the_cli_runs_files_and_standard_input() {
    let server = run_server(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello.py");
    std::fs::write(
        &script,
        "import sys\nprint('hi from a file')\nsys.exit(3)\n",
    )
    .unwrap();
    let base = ["--url", server.url.as_str(), "--key", server.key.as_str()];
    let script_arg = script.to_str().unwrap();
    let mut args = vec!["run", script_arg];
    args.extend_from_slice(&base);
    let output = agentbox_with_stdin(&args, None);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi from a file\n");
    let mut args = vec!["run", "-", "--runtime", "bash", "--env", "WHO=cli"];
    args.extend_from_slice(&base);
    let output = agentbox_with_stdin(&args, Some(b"echo \"hello $WHO\"; echo oops >&2"));
    expect_success("agentbox run - --runtime bash", &output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello cli\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "oops\n");
    let mut args = vec!["run", "-", "--runtime", "typescript", "--json"];
    args.extend_from_slice(&base);
    let output = agentbox_with_stdin(&args, Some(b"console.log(1 + 1)"));
    let stdout = expect_success("agentbox run --json", &output);
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["stdout"], "2\n");
    // No runtime and no extension to tell it by: a clear error, nothing sent.
    let mut args = vec!["run", "-"];
    args.extend_from_slice(&base);
    let output = agentbox_with_stdin(&args, Some(b"echo 1"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--runtime"));
}

#[test]
fn a_run_allowed_the_network_cannot_reach_the_servers_loopback() {
    let server = run_server(&["--allow-run-network"]);
    let port = server
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .expect("the server's port");
    let code = format!(
        r#"
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("reached the server")
except OSError as e:
    print("refused" if e.errno == 111 else f"error {{e}}")
print(open("/etc/resolv.conf").read().strip())
"#
    );
    let out = server
        .client()
        .run_with(json!({"runtime": "python", "code": code, "network": true}));
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(out["stdout"], "refused\nnameserver 10.0.2.3\n", "{out}");
}

#[test]
fn a_server_stopped_in_good_order_leaves_no_sandbox_and_no_cgroup() {
    let mut server = run_server(&[]);
    let out = server.client().run("bash", "echo done");
    assert_eq!(out["stdout"], "done\n");
    let trees = run_cgroup_trees(&server.data_dir);
    assert!(!trees.is_empty(), "the server made no run cgroup tree");
    // Sandboxes started ahead of the next runs are waiting in the tree now.
    let waiting: Vec<String> = trees
        .iter()
        .flat_map(|tree| processes_in(tree, &run_groups(tree)))
        .collect();
    let exit = server.terminate().expect("the server stops on SIGTERM");
    assert!(exit.success(), "agentbox serve exited with {exit}");
    // A zombie (empty command line) is dead already; its reaping is up to its new parent.
    let alive: Vec<&String> = waiting
        .iter()
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()))
        .collect();
    assert!(alive.is_empty(), "sandboxes outlived the server: {alive:?}");
    let left: Vec<_> = trees.iter().filter(|tree| tree.exists()).collect();
    assert!(left.is_empty(), "cgroup trees left behind: {left:?}");
}

#[test]
fn run_cgroups_left_by_a_crash_are_removed_at_start() {
    let mut server = run_server(&[]);
    let client = server.client();
    let slow = {
        let client = client.clone();
        std::thread::spawn(move || {
            client.run_request(&json!({"runtime": "bash", "code": "sleep 30"}))
        })
    };
    let tree = run_cgroup_tree(&server);
    // The run's cgroup and those of the sandboxes started ahead of runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running_sleep(&tree) {
        assert!(
            Instant::now() < deadline,
            "the run did not start under {}",
            tree.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = run_groups(&tree);
    // A process in a run's cgroup that is not the server's child, like one bwrap starts
    // before arming its own parent-death signal: the server's watchman kills it by cgroup.
    let mut stray = KilledOnDrop(
        std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("starting sleep"),
    );
    for hierarchy in run_cgroup_trees(&server.data_dir) {
        let group = hierarchy.join(&before[0]);
        if group.is_dir() {
            std::fs::write(group.join("cgroup.procs"), stray.0.id().to_string())
                .expect("moving a process into a run cgroup");
        }
    }
    server.kill9();
    let _ = slow.join();
    let left = run_groups(&tree);
    assert!(!left.is_empty(), "the crash left no run cgroup to clean up");
    // Every sandbox (running or waiting for a run) died with the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = processes_in(&tree, &left);
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes outlived the server: {}",
            describe_processes(&alive)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Dead by now (the loop above saw its group empty): this only reaps it.
    let status = stray.0.wait().expect("waiting for the stray process");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the stray process was not killed: {status:?}"
    );
    server.restart();
    let after = run_groups(&tree);
    for group in before.iter().chain(&left) {
        assert!(
            !after.contains(group),
            "{group} survived the restart: {after:?}"
        );
    }
    assert_eq!(server.client().bash_ok("echo up"), "up\n");
}

/// The memory-controller directory of a server's run cgroups.
fn run_cgroup_tree(server: &Server) -> std::path::PathBuf {
    run_cgroup_trees(&server.data_dir)
        .into_iter()
        .find(|tree| tree.starts_with("/sys/fs/cgroup/memory"))
        .expect("this test needs the cgroup v1 memory controller and a server with runs")
}

/// Whether a process of the tree's groups runs `sleep 30`.
fn running_sleep(tree: &std::path::Path) -> bool {
    processes_in(tree, &run_groups(tree)).iter().any(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x0030\x00")
    })
}

/// The processes listed in `groups` of `tree`.
fn processes_in(tree: &std::path::Path, groups: &[String]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|group| {
            std::fs::read_to_string(tree.join(group).join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A child process killed if the test fails before it dies.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each process's command line and the status lines that tell why it is still alive.
fn describe_processes(pids: &[String]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let wanted = ["State", "PPid", "Uid", "SigBlk", "SigIgn", "NSpid"];
            let status: Vec<&str> = status
                .lines()
                .filter(|line| wanted.iter().any(|w| line.starts_with(&format!("{w}:"))))
                .collect();
            format!("{pid} [{cmdline}] {}", status.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn run_groups(tree: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tree)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
