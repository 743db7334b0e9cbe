//! Confinement against the real kernel: groups made beneath this process's cgroup, real
//! children joined to them, limits the kernel enforces. Needs root (as the server does).

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confine::{Cgroup, CgroupTree, ChildSetup, Credentials, Limits, Rlimit};

/// A tree of its own per test, removed (with its groups) at the end.
struct Tree(Option<CgroupTree>);

impl Tree {
    fn open(test: &str) -> Tree {
        // SAFETY: geteuid cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the confinement tests create cgroups and need root"
        );
        let purpose = format!("test-{}-{test}", std::process::id());
        Tree(Some(CgroupTree::open(&purpose).expect("open cgroup tree")))
    }
}

impl std::ops::Deref for Tree {
    type Target = CgroupTree;
    fn deref(&self) -> &CgroupTree {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if let Some(tree) = self.0.take() {
            tree.remove().expect("remove test tree");
        }
    }
}

fn spawn_in(group: &Cgroup, script: &str, extra: ChildSetup) -> Child {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script).stdout(Stdio::piped());
    ChildSetup {
        cgroup: Some(group.joiner().unwrap()),
        ..extra
    }
    .apply_to(&mut command);
    command.spawn().expect("spawn /bin/sh")
}

/// Whether `pid` exists and is not a zombie waiting to be reaped.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill_all_takes_every_descendant() {
    let tree = Tree::open("kill");
    let group = tree.create("g", &Limits::default()).unwrap();
    let mut child = spawn_in(
        &group,
        "sleep 60 & sleep 60 & (sleep 60 &) ; wait",
        ChildSetup {
            new_session: true,
            ..ChildSetup::default()
        },
    );
    wait_for("four processes in the group", || {
        group.processes().unwrap().len() >= 4
    });
    let members = group.processes().unwrap();
    assert!(members.contains(&(child.id() as i32)), "{members:?}");

    group.kill_all().unwrap();
    assert!(group.processes().unwrap().is_empty());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for pid in members {
        assert!(!running(pid), "process {pid} survived kill_all");
    }
    group.remove().unwrap();
}

#[test]
fn memory_limit_ends_in_an_oom_kill_that_is_reported() {
    let tree = Tree::open("oom");
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        ..Limits::default()
    };
    let group = tree.create("g", &limits).unwrap();
    let mut child = spawn_in(
        &group,
        "exec python3 -c 'x = bytearray(512 << 20); print(len(x))'",
        ChildSetup::default(),
    );
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let usage = group.usage().unwrap();
    assert!(usage.oom_killed, "{usage:?}");
    assert!(group.oom_killed().unwrap());
    assert!(usage.memory_peak_bytes > 16 << 20, "{usage:?}");
    assert!(usage.memory_peak_bytes <= 64 << 20, "{usage:?}");
}

#[test]
fn process_limit_contains_a_fork_loop() {
    let tree = Tree::open("pids");
    let limits = Limits {
        max_processes: Some(8),
        ..Limits::default()
    };
    let group = tree.create("g", &limits).unwrap();
    // The shell gives up when a fork fails; the sleeps it started before stay.
    let mut child = spawn_in(
        &group,
        "for i in $(seq 40); do sleep 30 & done; wait",
        ChildSetup::default(),
    );
    let status = child.wait().unwrap();
    assert!(!status.success(), "the fork loop finished: {status:?}");
    let count = group.processes().unwrap().len();
    assert!((1..=8).contains(&count), "{count} processes in the group");
    group.kill_all().unwrap();
}

#[test]
fn child_runs_unprivileged_with_its_rlimits() {
    let tree = Tree::open("creds");
    let group = tree.create("g", &Limits::default()).unwrap();
    let child = spawn_in(
        &group,
        "id -u; id -g; id -G; ulimit -c; ulimit -n; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status",
        ChildSetup {
            credentials: Some(Credentials {
                uid: 61000,
                gid: 61001,
            }),
            rlimits: vec![(Rlimit::Core, 0), (Rlimit::OpenFiles, 64)],
            no_new_privileges: true,
            ..ChildSetup::default()
        },
    );
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..5],
        ["61000", "61001", "61001", "0", "64"],
        "{text}"
    );
    assert!(text.contains("CapPrm:\t0000000000000000"), "{text}");
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
}

#[test]
fn cpu_time_is_measured_and_capped() {
    let tree = Tree::open("cpu");
    let limits = Limits {
        cpu_millicores: Some(100),
        ..Limits::default()
    };
    let group = tree.create("g", &limits).unwrap();
    let started = Instant::now();
    let mut child = spawn_in(
        &group,
        "exec timeout 1 sh -c 'while :; do :; done'",
        ChildSetup::default(),
    );
    child.wait().unwrap();
    let wall = started.elapsed();
    let usage = group.usage().unwrap();
    assert!(usage.cpu_ns > 10_000_000, "{usage:?}");
    // A tenth of a core for about a second: far below the full second a free loop takes.
    assert!(
        (usage.cpu_ns as f64) < wall.as_nanos() as f64 * 0.4,
        "{usage:?} over {wall:?}"
    );
}

#[test]
fn leftovers_of_a_dead_server_are_killed_and_removed() {
    let tree = Tree::open("leftover");
    let group = tree.create("g", &Limits::default()).unwrap();
    let mut child = spawn_in(&group, "exec sleep 60", ChildSetup::default());
    wait_for("the child in its group", || {
        group.processes().unwrap().len() == 1
    });
    // As if the server died: nothing removes the group.
    std::mem::forget(group);
    assert_eq!(tree.remove_leftovers().unwrap(), 1);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(tree.remove_leftovers().unwrap(), 0);
}

#[test]
fn dropping_a_group_kills_its_processes() {
    let tree = Tree::open("drop");
    let group = tree.create("g", &Limits::default()).unwrap();
    let mut child = spawn_in(&group, "exec sleep 60", ChildSetup::default());
    wait_for("the child in its group", || {
        group.processes().unwrap().len() == 1
    });
    drop(group);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    // The name is free again.
    tree.create("g", &Limits::default())
        .unwrap()
        .remove()
        .unwrap();
}

#[test]
fn killing_every_group_leaves_the_groups_for_the_next_start() {
    let tree = Tree::open("killall");
    let busy = tree.create("busy", &Limits::default()).unwrap();
    let idle = tree.create("idle", &Limits::default()).unwrap();
    let mut child = spawn_in(&busy, "exec sleep 60", ChildSetup::default());
    wait_for("the child in its group", || {
        busy.processes().unwrap().len() == 1
    });
    std::mem::forget((busy, idle));
    let purpose = format!("test-{}-killall", std::process::id());
    let found = CgroupTree::existing(&purpose)
        .unwrap()
        .expect("the tree exists");
    assert_eq!(
        found.kill_all_groups().unwrap(),
        1,
        "one group held processes"
    );
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    // Both groups are still there for a restarted server to remove.
    assert_eq!(tree.remove_leftovers().unwrap(), 2);
    assert!(
        CgroupTree::existing("test-no-such-tree").unwrap().is_none(),
        "looking for a tree must not make it"
    );
}
