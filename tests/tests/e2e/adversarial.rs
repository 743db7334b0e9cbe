//! Hostile code in runs: each case tries to break out of its sandbox, starve the host or
//! leak what it must not see, and asserts both that it was contained and that the server
//! is still healthy afterwards.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::run_support::{MEMORY_LIMIT, TMP_LIMIT, assert_healthy, run_server, wait_seconds};
use crate::support::{Client, Server};

const EPERM: i64 = 1;
const ENOSYS: i64 = 38;

/// A server and its default agent's client.
fn setup() -> (Server, Client) {
    let server = run_server(&[]);
    let client = server.client();
    (server, client)
}

/// The errno a system call sets inside a run (0 if it succeeded), made from python with
/// the given number and integer arguments.
fn syscall_errno(client: &Client, nr: i64, args: &[i64]) -> i64 {
    let args: Vec<String> = args.iter().map(|a| format!("ctypes.c_long({a})")).collect();
    let code = format!(
        "import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.syscall(ctypes.c_long({nr}){sep}{args})\n\
         print(ctypes.get_errno() if r == -1 else 0)\n",
        sep = if args.is_empty() { "" } else { ", " },
        args = args.join(", ")
    );
    let result = client.run("python", &code);
    assert_eq!(result["exit_code"], 0, "{result}");
    result["stdout"].as_str().unwrap().trim().parse().unwrap()
}

/// Runs bash `code` and returns the whole result.
fn bash(client: &Client, code: &str) -> Value {
    client.run("bash", code)
}

fn stdout(result: &Value) -> &str {
    result["stdout"].as_str().unwrap()
}

// --- Host files ---------------------------------------------------------------------------

#[test]
fn etc_shadow_is_not_there() {
    let (server, c) = setup();
    let out = c.bash_ok("cat /etc/shadow 2>&1; ls /etc");
    assert!(out.contains("No such file"), "{out}");
    assert!(!out.contains("root:"), "{out}");
    assert_healthy(&server);
}

#[test]
fn roots_home_is_not_there() {
    let (server, c) = setup();
    let result = bash(&c, "ls -la /root 2>&1; cat /root/.bash_history 2>&1");
    assert!(stdout(&result).contains("No such file"), "{result}");
    assert_healthy(&server);
}

#[test]
fn the_data_directory_is_not_reachable() {
    let (server, c) = setup();
    let data = server.data_dir.to_str().unwrap().to_string();
    let result = c.run_with(json!({
        "runtime": "bash",
        "code": "ls \"$D\" 2>&1; ls \"$D/index.db\" 2>&1; find / -xdev -name 'index.db*' 2>/dev/null | head",
        "env": {"D": data},
    }));
    let out = stdout(&result);
    assert!(out.contains("No such file"), "{out}");
    assert!(!out.contains("index.db\n"), "{out}");
    assert_healthy(&server);
}

#[test]
fn another_agents_tree_is_not_reachable() {
    let (server, c) = setup();
    c.put("/secret-of-first/marker-7f3a.txt", b"first agent only");
    let second = server.create_agent("second", &[]);
    let out = second.bash_ok(
        "find / -name 'marker-7f3a*' 2>/dev/null; grep -r 'first agent onl[y]' / \
         --exclude-dir=proc --exclude-dir=usr -l 2>/dev/null; echo searched",
    );
    assert_eq!(out, "searched\n");
    assert_healthy(&server);
}

#[test]
fn the_environment_is_only_the_documented_one() {
    let (server, c) = setup();
    let out = c.bash_ok("env | cut -d= -f1 | sort");
    let allowed = [
        "HOME",
        "HOSTNAME",
        "LANG",
        "LOGNAME",
        "MPLBACKEND",
        "OLDPWD",
        "PATH",
        "PWD",
        "PYTHONUNBUFFERED",
        "SHLVL",
        "TMPDIR",
        "USER",
        "_",
    ];
    for name in out.lines() {
        assert!(
            allowed.contains(&name),
            "unexpected variable {name} in:\n{out}"
        );
    }
    assert_healthy(&server);
}

#[test]
fn proc_shows_only_the_runs_own_processes() {
    let (server, c) = setup();
    let pid = server.pid().unwrap();
    let out = c.bash_ok(&format!(
        "ls /proc | grep -c '^[0-9]*$'; test -e /proc/{pid} && echo visible || echo hidden"
    ));
    let mut lines = out.lines();
    let count: u32 = lines.next().unwrap().parse().unwrap();
    assert!(count < 10, "{count} processes visible: {out}");
    assert_eq!(lines.next(), Some("hidden"));
    assert_healthy(&server);
}

#[test]
fn pid_1_is_the_sandbox_init_not_the_hosts() {
    let (server, c) = setup();
    let out = c.bash_ok(
        "tr '\\0' ' ' </proc/1/cmdline; echo; tr '\\0' '\\n' </proc/1/environ 2>&1 | cut -d= -f1",
    );
    assert!(out.starts_with("bwrap") || out.contains("bwrap "), "{out}");
    assert!(!out.contains("AGENTBOX"), "{out}");
    assert!(!out.contains("CARGO"), "{out}");
    assert_healthy(&server);
}

#[test]
fn mountinfo_does_not_reveal_host_paths() {
    let (server, c) = setup();
    let out = c.bash_ok("cat /proc/self/mountinfo");
    let data = server.data_dir.to_str().unwrap();
    assert!(!out.contains(data), "{out}");
    assert!(!out.contains("/mounts/"), "{out}");
    assert_healthy(&server);
}

// --- Namespaces, mounts, privileges -------------------------------------------------------

#[test]
fn mount_is_refused() {
    let (server, c) = setup();
    let result = bash(
        &c,
        "mkdir -p /mnt; mount -t tmpfs none /mnt 2>&1; echo status=$?",
    );
    assert!(!stdout(&result).contains("status=0"), "{result}");
    assert_eq!(syscall_errno(&c, 165, &[0, 0, 0, 0, 0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn unshare_is_refused() {
    let (server, c) = setup();
    let result = bash(&c, "unshare --user --map-root-user id 2>&1; echo status=$?");
    assert!(stdout(&result).contains("status=1"), "{result}");
    // CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET each.
    for flag in [0x1000_0000, 0x0002_0000, 0x4000_0000] {
        assert_eq!(syscall_errno(&c, 272, &[flag]), EPERM, "unshare({flag:#x})");
    }
    assert_healthy(&server);
}

#[test]
fn setns_is_refused() {
    let (server, c) = setup();
    let result = c.run(
        "python",
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         fd = os.open('/proc/1/ns/mnt', os.O_RDONLY)\n\
         print(libc.setns(fd, 0), ctypes.get_errno())",
    );
    assert_eq!(stdout(&result), "-1 1\n", "{result}");
    assert_healthy(&server);
}

#[test]
fn clone_with_namespace_flags_is_refused() {
    let (server, c) = setup();
    // clone(CLONE_NEWUSER | SIGCHLD, ...) and clone(CLONE_NEWPID | SIGCHLD, ...).
    assert_eq!(
        syscall_errno(&c, 56, &[0x1000_0000 | 17, 0, 0, 0, 0]),
        EPERM
    );
    assert_eq!(
        syscall_errno(&c, 56, &[0x2000_0000 | 17, 0, 0, 0, 0]),
        EPERM
    );
    assert_healthy(&server);
}

#[test]
fn clone3_is_unavailable_so_flags_stay_checkable() {
    let (server, c) = setup();
    assert_eq!(syscall_errno(&c, 435, &[0, 0]), ENOSYS);
    // Ordinary process creation still works (through clone).
    assert_eq!(
        c.bash_ok("(echo child) | cat; sh -c 'echo grandchild'"),
        "child\ngrandchild\n"
    );
    assert_healthy(&server);
}

#[test]
fn ptrace_is_refused() {
    let (server, c) = setup();
    // PTRACE_TRACEME, and PTRACE_ATTACH to the sandbox's pid 1.
    assert_eq!(syscall_errno(&c, 101, &[0, 0, 0, 0]), EPERM);
    assert_eq!(syscall_errno(&c, 101, &[16, 1, 0, 0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn process_vm_readv_is_refused() {
    let (server, c) = setup();
    assert_eq!(syscall_errno(&c, 310, &[1, 0, 0, 0, 0, 0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn bpf_is_refused() {
    let (server, c) = setup();
    assert_eq!(syscall_errno(&c, 321, &[0, 0, 0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn keyctl_is_refused() {
    let (server, c) = setup();
    assert_eq!(syscall_errno(&c, 250, &[0, 0, 0, 0, 0]), EPERM);
    assert_eq!(syscall_errno(&c, 248, &[0, 0, 0, 0, 0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn perf_event_open_is_refused() {
    let (server, c) = setup();
    assert_eq!(syscall_errno(&c, 298, &[0, 0, -1, -1, 0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn userfaultfd_is_refused() {
    let (server, c) = setup();
    assert_eq!(syscall_errno(&c, 323, &[0]), EPERM);
    assert_healthy(&server);
}

#[test]
fn kernel_modules_kexec_and_reboot_are_refused() {
    let (server, c) = setup();
    for (nr, args) in [
        (175, vec![0, 0, 0]),
        (313, vec![0, 0, 0]),
        (176, vec![0, 0]),
        (246, vec![0, 0, 0, 0]),
        (169, vec![0xfee1dead, 672274793, 0x4321fedc, 0]),
    ] {
        assert_eq!(syscall_errno(&c, nr, &args), EPERM, "system call {nr}");
    }
    assert_healthy(&server);
}

#[test]
fn x32_system_calls_are_refused() {
    let (server, c) = setup();
    // getpid (39) with the x32 bit.
    assert_eq!(syscall_errno(&c, 0x4000_0000 | 39, &[]), EPERM);
    assert_healthy(&server);
}

/// Runs an ioctl on standard input (a pipe, so without the filter the kernel would answer
/// ENOTTY) and returns its errno.
fn ioctl_errno(c: &Client, request: u64) -> i64 {
    let result = c.run(
        "python",
        &format!(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             ch = ctypes.c_char(b'x')\n\
             r = libc.ioctl(0, ctypes.c_ulong({request}), ctypes.byref(ch))\n\
             print(ctypes.get_errno() if r == -1 else 0)"
        ),
    );
    result["stdout"].as_str().unwrap().trim().parse().unwrap()
}

#[test]
fn tiocsti_is_refused() {
    let (server, c) = setup();
    assert_eq!(ioctl_errno(&c, 0x5412), EPERM);
    assert_healthy(&server);
}

#[test]
fn tiocsti_with_high_bits_set_is_refused() {
    let (server, c) = setup();
    // The kernel looks at the low 32 bits only; so does the filter.
    assert_eq!(ioctl_errno(&c, 0x1_0000_5412), EPERM);
    assert_healthy(&server);
}

#[test]
fn tioclinux_is_refused() {
    let (server, c) = setup();
    assert_eq!(ioctl_errno(&c, 0x541c), EPERM);
    // Other ioctls are not: on a pipe, TCGETS says ENOTTY (25).
    assert_eq!(ioctl_errno(&c, 0x5401), 25);
    assert_healthy(&server);
}

#[test]
fn setuid_binaries_gain_nothing() {
    let (server, c) = setup();
    let out = c.bash_ok(
        "grep NoNewPrivs /proc/self/status; su -c id root </dev/null >/dev/null 2>&1; echo su=$?; \
         ls -l /usr/bin/mount | cut -c1-10; /usr/bin/mount -t proc proc /tmp 2>/dev/null; echo mount=$?; id -u",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().last(), Some("1"), "{out}");
    assert_ne!(lines[1], "su=0", "{out}");
    assert_ne!(lines[3], "mount=0", "{out}");
    assert_eq!(lines[4], "61000", "{out}");
    assert_healthy(&server);
}

#[test]
fn no_capabilities_are_held() {
    let (server, c) = setup();
    let out = c.bash_ok("grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status");
    for line in out.lines() {
        assert!(line.ends_with("0000000000000000"), "{out}");
    }
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_healthy(&server);
}

#[test]
fn the_code_runs_as_the_unprivileged_sandbox_user() {
    let (server, c) = setup();
    let out = c.bash_ok("id -u; id -g; wc -l < /proc/self/uid_map");
    assert_eq!(out, "61000\n61000\n1\n");
    // Seen from the host, every process of a run (bwrap included) is the sandbox user.
    let slow = {
        let c = c.clone();
        std::thread::spawn(move || c.run("bash", "sleep 3 & sleep 3"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while seen.len() < 3 && Instant::now() < deadline {
        seen = run_processes(&server);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.len() >= 3, "found only {seen:?}");
    for (pid, uids) in &seen {
        assert!(
            uids.split_whitespace().all(|u| u == "61000"),
            "process {pid} has uids {uids}"
        );
    }
    slow.join().unwrap();
    assert_healthy(&server);
}

/// The processes of `server`'s runs on the host, with their `Uid:` line.
fn run_processes(server: &Server) -> Vec<(u32, String)> {
    let data_dir = std::fs::canonicalize(&server.data_dir).unwrap();
    let hash = blake3::hash(data_dir.as_os_str().as_encoded_bytes()).to_hex();
    let group = format!("agentbox-runs-{}", &hash[..16]);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if !cgroup.contains(&group) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(uids) = status.lines().find_map(|l| l.strip_prefix("Uid:")) {
            found.push((pid, uids.trim().to_string()));
        }
    }
    found
}

#[test]
fn the_seccomp_filter_is_on() {
    let (server, c) = setup();
    let out = c.bash_ok("grep -E '^Seccomp:' /proc/self/status");
    assert_eq!(out.split_whitespace().last(), Some("2"), "{out}");
    assert_healthy(&server);
}

#[test]
fn hostname_is_the_sandboxs_and_cannot_be_changed() {
    let (server, c) = setup();
    let out = c.bash_ok("hostname; hostname evil 2>/dev/null; echo $?; hostname");
    assert_eq!(out, "agentbox\n1\nagentbox\n");
    assert_healthy(&server);
}

#[test]
fn the_cgroup_namespace_hides_the_hosts_hierarchy() {
    let (server, c) = setup();
    let out = c.bash_ok("cat /proc/self/cgroup");
    for line in out.lines() {
        assert!(line.ends_with(":/"), "{out}");
    }
    assert_healthy(&server);
}

// --- Signals and host processes -----------------------------------------------------------

#[test]
fn killing_everything_visible_spares_the_host() {
    let (server, c) = setup();
    let result = bash(&c, "kill -9 -1; sleep 1; echo survived");
    // Everything the run could see was its own; it ended, nothing else did.
    assert_eq!(result["timed_out"], false, "{result}");
    assert_healthy(&server);
}

#[test]
fn host_processes_cannot_be_signalled() {
    let (server, c) = setup();
    let server_pid = server.pid().unwrap();
    let own_pid = std::process::id();
    let out = c.bash_ok(&format!(
        "kill -9 {server_pid} 2>&1; echo $?; kill -TERM {own_pid} 2>&1; echo $?"
    ));
    assert!(out.contains("No such process"), "{out}");
    assert_healthy(&server);
}

// --- Resources ----------------------------------------------------------------------------

#[test]
fn a_fork_bomb_is_contained() {
    let (server, c) = setup();
    let started = Instant::now();
    let result = c.run_with(json!({
        "runtime": "bash",
        "code": "bomb() { bomb | bomb & }; bomb; sleep 3; echo done",
        "timeout": 10,
    }));
    assert!(started.elapsed() < Duration::from_secs(30), "{result}");
    assert_healthy(&server);
}

#[test]
fn a_memory_bomb_is_killed_and_reported() {
    let (server, c) = setup();
    let result = c.run(
        "python",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n",
    );
    assert_eq!(result["oom_killed"], true, "{result}");
    assert_ne!(result["exit_code"], 0);
    let peak = result["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak <= MEMORY_LIMIT + (8 << 20), "peak {peak}");
    assert_healthy(&server);
}

#[test]
fn rlimits_are_a_second_line() {
    let (server, c) = setup();
    // No core dumps, 1024 open files, files up to 1 GiB (in 1024-byte blocks).
    assert_eq!(
        c.bash_ok("ulimit -c; ulimit -n; ulimit -f"),
        "0\n1024\n1048576\n"
    );
    let result = bash(&c, "ulimit -n 100000 2>&1; echo $?");
    assert!(!stdout(&result).ends_with("\n0\n"), "{result}");
    assert_healthy(&server);
}

#[test]
fn a_cpu_hog_gets_one_core_at_most() {
    let (server, c) = setup();
    let result = c.run_with(json!({
        "runtime": "bash",
        "code": "spin() { while :; do :; done; }; spin & spin & spin & sleep 3",
        "timeout": 20,
    }));
    let cpu = result["cpu_ms"].as_u64().unwrap() as f64;
    let wall = result["duration_ms"].as_u64().unwrap() as f64;
    assert!(cpu <= wall * 1.15, "{cpu} ms of CPU in {wall} ms: {result}");
    assert_healthy(&server);
}

#[test]
fn filling_tmp_stops_at_its_size() {
    let (server, c) = setup();
    let out = c.bash_ok(
        "head -c 100000000 /dev/zero > /tmp/fill 2>/dev/null; echo $?; stat -c %s /tmp/fill; \
         df -B1 --output=size /tmp | tail -1",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "0", "{out}");
    let written: u64 = lines[1].parse().unwrap();
    assert!(written <= TMP_LIMIT, "{out}");
    assert_eq!(lines[2].trim().parse::<u64>().unwrap(), TMP_LIMIT, "{out}");
    assert_healthy(&server);
}

#[test]
fn the_agents_quota_stops_a_disk_fill() {
    let server = run_server(&[]);
    let c = server.create_agent("small", &["--quota-bytes", "1000000"]);
    let result = c.run("bash", "head -c 5000000 /dev/urandom > /big; echo $?");
    assert_ne!(stdout(&result), "0\n", "{result}");
    let usage = c.usage();
    assert!(
        usage["storage"]["logical_bytes"].as_u64().unwrap() <= 1_000_000,
        "{usage}"
    );
    assert_healthy(&server);
}

#[test]
fn an_output_flood_is_cut_at_the_cap() {
    let (server, c) = setup();
    let started = Instant::now();
    let result = c.run_with(json!({"runtime": "bash", "code": "yes flood | head -c 50000000; echo end >&2", "timeout": 60}));
    assert_eq!(result["stdout_truncated"], true);
    assert_eq!(stdout(&result).len(), 1 << 20);
    assert_eq!(result["stderr"], "end\n");
    assert_eq!(result["exit_code"], 0);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_healthy(&server);
}

#[test]
fn both_streams_flooding_at_once_do_not_deadlock() {
    let (server, c) = setup();
    let result = c.run_with(json!({
        "runtime": "python",
        "code": "import sys\nfor i in range(200000):\n    sys.stdout.write('o' * 50 + '\\n')\n    sys.stderr.write('e' * 50 + '\\n')\nprint('end')",
        "timeout": 60,
    }));
    assert_eq!(
        result["timed_out"],
        false,
        "{}",
        result["stderr"].as_str().unwrap().len()
    );
    assert_eq!(result["exit_code"], 0);
    assert_eq!(result["stdout_truncated"], true);
    assert_eq!(result["stderr_truncated"], true);
    assert_healthy(&server);
}

#[test]
fn a_background_process_dies_with_its_run() {
    let (server, c) = setup();
    let started = Instant::now();
    let result = bash(
        &c,
        "(sleep 2; echo late > /late.txt) & disown; nohup sleep 100 >/dev/null 2>&1 & echo main-done",
    );
    assert_eq!(stdout(&result), "main-done\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run waited for its children"
    );
    wait_seconds(4);
    c.req("GET", "/v1/compute/fs/stat")
        .query("path", "/late.txt")
        .call()
        .expect_error(404, "not_found");
    assert_healthy(&server);
}

#[test]
fn a_detached_process_does_not_outlive_the_timeout() {
    let (server, c) = setup();
    let result = c.run_with(json!({
        "runtime": "bash",
        "code": "setsid sh -c 'sleep 3; echo escaped > /escaped.txt' </dev/null >/dev/null 2>&1 & sleep 100",
        "timeout": 1,
    }));
    assert_eq!(result["timed_out"], true);
    wait_seconds(5);
    c.req("GET", "/v1/compute/fs/stat")
        .query("path", "/escaped.txt")
        .call()
        .expect_error(404, "not_found");
    assert_healthy(&server);
}

// --- Network ------------------------------------------------------------------------------

#[test]
fn network_egress_is_cut() {
    let (server, c) = setup();
    let result = c.run(
        "python",
        "import socket\nfor addr in [('1.1.1.1', 53), ('8.8.8.8', 443)]:\n    s = socket.socket()\n    s.settimeout(2)\n    try:\n        s.connect(addr)\n        print('connected')\n    except OSError as e:\n        print('refused', e.errno)\n",
    );
    assert!(!stdout(&result).contains("connected"), "{result}");
    let out = c.bash_ok(
        "ip -o link 2>/dev/null | wc -l; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
    );
    assert!(out.lines().any(|l| l == "lo"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("eth") || l.starts_with("en")),
        "{out}"
    );
    assert_healthy(&server);
}

#[test]
fn the_servers_own_port_is_unreachable_on_loopback() {
    let (server, c) = setup();
    let port = server.url.rsplit(':').next().unwrap();
    let out = c.bash_ok(&format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} 2>/dev/null && echo open || echo closed"
    ));
    assert_eq!(out, "closed\n");
    assert_healthy(&server);
}

#[test]
fn names_do_not_resolve() {
    let (server, c) = setup();
    let result = bash(
        &c,
        "getent hosts example.com; echo $?; cat /etc/resolv.conf 2>&1 | head -1",
    );
    let out = stdout(&result);
    assert!(out.starts_with('2') || out.starts_with("2\n"), "{out}");
    assert!(out.contains("No such file"), "{out}");
    assert_healthy(&server);
}

// --- The filesystem layout ----------------------------------------------------------------

#[test]
fn sys_is_empty() {
    let (server, c) = setup();
    let out = c.bash_ok("ls -A /sys | wc -l; cat /sys/kernel/hostname 2>&1 | head -c 40");
    assert!(out.starts_with("0\n"), "{out}");
    assert!(out.contains("No such file"), "{out}");
    assert_healthy(&server);
}

#[test]
fn dev_is_minimal() {
    let (server, c) = setup();
    let out = c.bash_ok("ls /dev | tr '\\n' ' '");
    for device in ["sda", "vda", "mem", "kmsg", "fuse", "kvm", "port", "nvme0"] {
        assert!(
            !out.split(' ').any(|d| d == device),
            "/dev has {device}: {out}"
        );
    }
    for device in ["null", "zero", "urandom"] {
        assert!(
            out.split(' ').any(|d| d == device),
            "/dev lacks {device}: {out}"
        );
    }
    assert_healthy(&server);
}

#[test]
fn usr_etc_and_run_are_read_only() {
    let (server, c) = setup();
    let out = c.bash_ok(
        "touch /usr/x 2>/dev/null; echo $?; echo x >> /etc/passwd 2>/dev/null; echo $?; \
         echo 'echo pwned' > /run/agentbox/main.sh 2>/dev/null; echo $?; rm -f /usr/bin/bash 2>/dev/null; echo $?",
    );
    assert!(out.lines().all(|l| l != "0"), "{out}");
    assert_healthy(&server);
}

#[test]
fn symlinks_to_host_paths_are_not_followed_by_the_api() {
    let (server, c) = setup();
    let data = server.data_dir.to_str().unwrap().to_string();
    let result = c.run_with(json!({
        "runtime": "bash",
        "code": "ln -s /etc/passwd /passwd-link; ln -s /root /root-link; ln -s \"$D\" /data-link; \
                 mkdir -p /d; ln -s /etc /d/etc-link; echo made",
        "env": {"D": data},
    }));
    assert_eq!(stdout(&result), "made\n", "{result}");
    // Reads through the links are refused; nothing of the host comes back.
    for path in [
        "/passwd-link",
        "/data-link/index.db",
        "/root-link/.bashrc",
        "/d/etc-link/hostname",
    ] {
        let resp = c
            .req("GET", "/v1/compute/fs/content")
            .query("path", path)
            .call();
        assert!(
            resp.status >= 400,
            "GET {path}: {} {}",
            resp.status,
            resp.text()
        );
        assert!(!resp.text().contains("root:x:0:0"), "{}", resp.text());
    }
    let resp = c
        .req("GET", "/v1/compute/fs")
        .query("path", "/root-link")
        .call();
    assert!(resp.status >= 400, "{}", resp.text());
    // Writes through them land nowhere on the host.
    let resp = c
        .req("PUT", "/v1/compute/fs")
        .json(&json!({"path": "/root-link/planted", "content": "eA=="}));
    assert!(resp.status >= 400, "{}", resp.text());
    assert!(!std::path::Path::new("/root/planted").exists());
    let entry = c
        .req("GET", "/v1/compute/fs/stat")
        .query("path", "/passwd-link")
        .call()
        .ok();
    assert_eq!(entry["type"], "symlink");
    assert_eq!(entry["target"], "/etc/passwd");
    assert_healthy(&server);
}

// --- Sizes --------------------------------------------------------------------------------

#[test]
fn huge_arguments_inside_a_run_are_contained() {
    let (server, c) = setup();
    let result = bash(
        &c,
        "big=$(head -c 3000000 /dev/zero | tr '\\0' a); /bin/true \"$big\"; echo status=$?",
    );
    assert!(stdout(&result).contains("status=126"), "{result}");
    assert_healthy(&server);
}

#[test]
fn a_huge_environment_is_refused_before_anything_runs() {
    let (server, c) = setup();
    let resp = c.run_request(&json!({
        "runtime": "bash",
        "code": "touch /ran",
        "env": {"BIG": "x".repeat(200_000)},
    }));
    resp.expect_error(400, "invalid_request");
    let many: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("V{i}"), json!("1"))).collect();
    c.run_request(&json!({"runtime": "bash", "code": "touch /ran", "env": many}))
        .expect_error(400, "invalid_request");
    c.req("GET", "/v1/compute/fs/stat")
        .query("path", "/ran")
        .call()
        .expect_error(404, "not_found");
    assert_healthy(&server);
}

#[test]
fn huge_code_is_refused_with_413() {
    let (server, c) = setup();
    let code = format!("# {}\necho ran > /ran", "x".repeat(3 << 20));
    let resp = c.run_request(&json!({"runtime": "bash", "code": code}));
    resp.expect_error(413, "too_large");
    c.req("GET", "/v1/compute/fs/stat")
        .query("path", "/ran")
        .call()
        .expect_error(404, "not_found");
    assert_healthy(&server);
}
