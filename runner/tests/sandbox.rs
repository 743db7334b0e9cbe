//! Runs against a plain directory laid out like an agent's sandbox view: the real bwrap,
//! the real cgroups, the real runtimes. Needs root (cgroups, the drop to the sandbox user)
//! and what `scripts/setup.sh` installs.

use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use runner::{RunSpec, Runner, RunnerConfig, Runtime, TIMEOUT_EXIT_CODE};

const UID: u32 = 61000;

/// A directory with the reserved names a sandbox view shows, owned by the sandbox user,
/// and a runner whose cgroup tree is named after the test.
fn setup(name: &str) -> (tempfile::TempDir, Runner) {
    setup_with(name, RunnerConfig::new(UID, UID))
}

fn setup_with(name: &str, config: RunnerConfig) -> (tempfile::TempDir, Runner) {
    assert!(
        Path::new("/usr/bin/bwrap").exists(),
        "bwrap is missing: run scripts/setup.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    // The sandbox user must be able to reach the root through its parents.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for name in ["usr", "etc", "proc", "dev", "tmp", "run", "sys"] {
        std::fs::create_dir(root.join(name)).unwrap();
    }
    for (name, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("sbin", "usr/sbin"),
    ] {
        symlink(target, root.join(name)).unwrap();
    }
    chown(&root, Some(UID), Some(UID)).unwrap();
    let runner = Runner::new(config, &format!("test-{name}"))
        .expect("a runner (this test needs root and cgroups)");
    (dir, runner)
}

fn spec(runtime: Runtime, code: &str) -> RunSpec {
    RunSpec::new(runtime, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_runtime_prints_and_exits() {
    let (dir, runner) = setup("runtimes");
    let root = dir.path().join("root");
    for (runtime, code) in [
        (Runtime::Bash, "echo hello; echo oops >&2; exit 3"),
        (
            Runtime::Python,
            "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nsys.exit(3)",
        ),
        (
            Runtime::Typescript,
            "const n: number = 3;\nconsole.log('hello');\nconsole.error('oops');\nprocess.exit(n);",
        ),
    ] {
        let outcome = runner.run(&root, &spec(runtime, code), None).await.unwrap();
        assert_eq!(outcome.stdout, "hello\n", "{runtime:?}: {outcome:?}");
        assert_eq!(outcome.stderr, "oops\n", "{runtime:?}: {outcome:?}");
        assert_eq!(outcome.exit_code, 3, "{runtime:?}: {outcome:?}");
        assert!(!outcome.timed_out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_runs_as_the_sandbox_user_in_the_view() {
    let (dir, runner) = setup("identity");
    let root = dir.path().join("root");
    let outcome = runner
        .run(
            &root,
            &spec(Runtime::Bash, "id -u; touch /made-here; pwd"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome.stdout, "61000\n/\n", "{outcome:?}");
    assert!(root.join("made-here").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_run_and_its_background_processes() {
    let (dir, runner) = setup("timeout");
    let root = dir.path().join("root");
    let mut s = spec(
        Runtime::Bash,
        "(sleep 30; touch /late) & echo started; sleep 60",
    );
    s.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let outcome = runner.run(&root, &s, None).await.unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.exit_code, TIMEOUT_EXIT_CODE);
    assert_eq!(outcome.stdout, "started\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!root.join("late").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn output_past_the_cap_is_cut_and_flagged() {
    let (dir, runner) = setup("cap");
    let root = dir.path().join("root");
    let outcome = runner
        .run(
            &root,
            &spec(
                Runtime::Bash,
                "head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2",
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome.stdout.len(), 1 << 20);
    assert!(outcome.stdout_truncated);
    assert_eq!(outcome.stderr, "done\n");
    assert!(!outcome.stderr_truncated);
    assert_eq!(outcome.exit_code, 0);
}

/// This host's address on its default route (no packet is sent to find it).
fn outside_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    probe
        .connect("192.0.2.255:9")
        .or_else(|_| probe.connect("8.8.8.8:53"))
        .expect("this test needs a network interface other than loopback");
    probe.local_addr().unwrap().ip()
}

/// Accepts connections on `listener` and answers each with `reply`, until the test ends.
fn answer(listener: std::net::TcpListener, reply: &'static [u8]) {
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, reply);
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_with_network_reaches_out_but_not_the_hosts_loopback() {
    let mut config = RunnerConfig::new(UID, UID);
    config.allow_network = true;
    assert!(
        config.slirp4netns.is_some(),
        "slirp4netns is missing: run scripts/setup.sh"
    );
    let (dir, runner) = setup_with("network", config);
    let root = dir.path().join("root");
    let outside = std::net::TcpListener::bind((outside_address(), 0)).unwrap();
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (outside_addr, loopback_port) = (
        outside.local_addr().unwrap(),
        loopback.local_addr().unwrap().port(),
    );
    answer(outside, b"outside");
    answer(loopback, b"loopback");
    let code = format!(
        r#"
import socket
def fetch(host, port):
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            return s.recv(100).decode()
    except OSError as e:
        return "refused" if e.errno in (111, 101, 113) else f"error {{e}}"
print(fetch("{}", {}))
print(fetch("127.0.0.1", {loopback_port}))
print(fetch("10.0.2.2", {loopback_port}))
print(open("/etc/resolv.conf").read().strip())
"#,
        outside_addr.ip(),
        outside_addr.port(),
    );
    let mut spec = spec(Runtime::Python, &code);
    spec.network = true;
    let outcome = runner.run(&root, &spec, None).await.unwrap();
    assert_eq!(outcome.exit_code, 0, "{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines,
        ["outside", "refused", "refused", "nameserver 10.0.2.3"],
        "stderr: {}",
        outcome.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_without_network_has_none() {
    let mut config = RunnerConfig::new(UID, UID);
    config.allow_network = true;
    let (dir, runner) = setup_with("no-network", config);
    let root = dir.path().join("root");
    let outside = std::net::TcpListener::bind((outside_address(), 0)).unwrap();
    let outside_addr = outside.local_addr().unwrap();
    answer(outside, b"outside");
    let code = format!(
        r#"
import socket
try:
    socket.create_connection(("{}", {}), timeout=3)
    print("connected")
except OSError as e:
    print("unreachable" if e.errno == 101 else f"error {{e}}")
"#,
        outside_addr.ip(),
        outside_addr.port(),
    );
    let outcome = runner
        .run(&root, &spec(Runtime::Python, &code), None)
        .await
        .unwrap();
    assert_eq!(outcome.stdout.trim(), "unreachable", "{}", outcome.stderr);
}
