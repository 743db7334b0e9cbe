//! The bubblewrap command line of a run, built by pure functions from a [`Layout`] (the
//! options, [`bwrap_options`]) and the runtime (the command, [`runtime_command`]), so every
//! hardening flag is visible in one place and checked by tests.
//!
//! The sandbox: the agent's view is `/`; host `/usr` read-only over it; a fresh `/proc`,
//! a minimal `/dev`, a size-capped `/tmp` and `/dev/shm`; a curated read-only `/etc`
//! (a few host files plus generated `passwd`, `group`, `hosts`); and a read-only `/run`
//! holding the run's machinery (`/run/agentbox/main.*`, the code, and `bin/bun`). No
//! `/sys`. Every namespace is new (user, pid, net unless allowed, ipc, uts, cgroup, mount),
//! nested user namespaces are disabled, no capability is kept, the code gets a new session,
//! and the seccomp filter is loaded last.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;

use crate::spec::Runtime;

/// Host files and directories under `/etc` that programs in the sandbox need: the dynamic
/// linker's cache, Debian's alternatives (`awk`, ...), TLS roots, time zone, Python's
/// site configuration, fonts and matplotlib's defaults. Missing ones are skipped.
pub const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "mime.types",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "python3",
    "python3.11",
    "matplotlibrc",
    "fonts",
    "inputrc",
    "bash.bashrc",
];

/// Where Bun is placed inside the sandbox (first on `PATH`).
pub const SANDBOX_BIN: &str = "/run/agentbox/bin";
/// The sandbox's host name.
pub const HOSTNAME: &str = "agentbox";

/// The descriptors of the data bwrap copies into the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct DataFds {
    pub seccomp: RawFd,
    pub code: RawFd,
    pub passwd: RawFd,
    pub group: RawFd,
    pub hosts: RawFd,
}

/// The descriptors of a run with network (see `network.rs`): bwrap writes the sandbox's pid
/// to `info`, holds the program until `block` has data (the link is up), and copies `resolv`
/// to `/etc/resolv.conf`.
#[derive(Debug, Clone, Copy)]
pub struct NetworkFds {
    pub info: RawFd,
    pub block: RawFd,
    pub resolv: RawFd,
}

/// Everything the command line depends on.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The agent's sandbox view on the host.
    pub root: &'a Path,
    /// The Bun binary on the host, if typescript runs are available.
    pub bun: Option<&'a Path>,
    /// For a run with network: it keeps a network namespace of its own, linked to the outside
    /// once bwrap has made it. `None`: no network at all.
    pub network: Option<NetworkFds>,
    /// Size caps of `/tmp` and `/dev/shm`.
    pub tmp_bytes: u64,
    pub shm_bytes: u64,
    /// The working directory inside the sandbox.
    pub cwd: &'a str,
    /// The complete environment of the code.
    pub env: &'a [(String, String)],
    pub fds: DataFds,
    /// Where the code file appears.
    pub code_path: &'a str,
}

/// The interpreter command line of a runtime, inside the sandbox.
pub fn runtime_command(runtime: Runtime) -> Vec<String> {
    let code = runtime.code_path().to_string();
    match runtime {
        Runtime::Python => vec!["/usr/bin/python3".into(), code],
        Runtime::Typescript => vec![format!("{SANDBOX_BIN}/bun"), "run".into(), code],
        Runtime::Bash => vec!["/bin/bash".into(), code],
    }
}

/// `--` and the runtime's command: what follows the options on bwrap's command line.
pub fn command_arguments(runtime: Runtime) -> Vec<OsString> {
    std::iter::once("--".to_string())
        .chain(runtime_command(runtime))
        .map(OsString::from)
        .collect()
}

/// The options to `bwrap`: everything before the command.
pub fn bwrap_options(layout: &Layout<'_>) -> Vec<OsString> {
    let mut args = Args::default();
    // Namespaces, privileges, session.
    args.push(["--unshare-all", "--unshare-user", "--unshare-cgroup"]);
    if let Some(network) = layout.network {
        args.push(["--info-fd"]);
        args.push([network.info.to_string()]);
        args.push(["--block-fd"]);
        args.push([network.block.to_string()]);
    }
    args.push([
        "--disable-userns",
        "--new-session",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        HOSTNAME,
    ]);
    // The filesystem: the agent's view first, the system trees over it.
    args.push(["--bind"]);
    args.path(layout.root);
    args.push(["/"]);
    args.push([
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]);
    args.push(["--perms", "1777", "--size"]);
    args.push([layout.tmp_bytes.to_string()]);
    args.push(["--tmpfs", "/tmp", "--perms", "1777", "--size"]);
    args.push([layout.shm_bytes.to_string()]);
    args.push(["--tmpfs", "/dev/shm"]);
    args.push(["--tmpfs", "/etc"]);
    for entry in ETC_ENTRIES {
        let path = format!("/etc/{entry}");
        args.push(["--ro-bind-try", &path, &path]);
    }
    if let Some(network) = layout.network {
        args.push(["--perms", "0644", "--file"]);
        args.push([network.resolv.to_string()]);
        args.push(["/etc/resolv.conf"]);
    }
    let fds = layout.fds;
    for (fd, path) in [
        (fds.passwd, "/etc/passwd"),
        (fds.group, "/etc/group"),
        (fds.hosts, "/etc/hosts"),
    ] {
        args.push(["--perms", "0644", "--file"]);
        args.push([fd.to_string()]);
        args.push([path]);
    }
    args.push([
        "--remount-ro",
        "/etc",
        "--tmpfs",
        "/run",
        "--dir",
        "/run/agentbox",
    ]);
    if let Some(bun) = layout.bun {
        args.push(["--ro-bind"]);
        args.path(bun);
        args.push([format!("{SANDBOX_BIN}/bun")]);
    }
    args.push(["--perms", "0444", "--file"]);
    args.push([fds.code.to_string()]);
    args.push([layout.code_path]);
    args.push(["--remount-ro", "/run"]);
    // The process.
    args.push(["--clearenv"]);
    for (name, value) in layout.env {
        args.push(["--setenv", name, value]);
    }
    args.push(["--chdir", layout.cwd, "--seccomp"]);
    args.push([fds.seccomp.to_string()]);
    args.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<I, S>(&mut self, items: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.0
            .extend(items.into_iter().map(|s| OsString::from(s.as_ref())));
    }

    fn path(&mut self, path: &Path) {
        self.0.push(path.as_os_str().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(env: &[(String, String)], network: bool) -> Layout<'_> {
        Layout {
            root: Path::new("/data/mounts/7"),
            bun: Some(Path::new("/opt/bun/bun.exe")),
            network: network.then_some(NetworkFds {
                info: 20,
                block: 21,
                resolv: 22,
            }),
            tmp_bytes: 1 << 20,
            shm_bytes: 1 << 19,
            cwd: "/work",
            env,
            fds: DataFds {
                seccomp: 10,
                code: 11,
                passwd: 12,
                group: 13,
                hosts: 14,
            },
            code_path: "/run/agentbox/main.py",
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_str().unwrap().to_string())
            .collect()
    }

    /// The position of the sequence `needle` in `args`.
    fn find(args: &[String], needle: &[&str]) -> Option<usize> {
        args.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn every_hardening_flag_is_there() {
        let env = vec![("PATH".to_string(), "/usr/bin".to_string())];
        let args = strings(&bwrap_options(&layout(&env, false)));
        for flag in [
            "--unshare-all",
            "--unshare-user",
            "--unshare-cgroup",
            "--disable-userns",
            "--new-session",
            "--die-with-parent",
            "--clearenv",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
        }
        assert!(find(&args, &["--cap-drop", "ALL"]).is_some());
        assert!(find(&args, &["--seccomp", "10"]).is_some());
        assert!(!args.iter().any(|a| a == "--share-net"));
        assert!(
            !args.iter().any(|a| a.starts_with("/sys")),
            "no /sys: {args:?}"
        );
        assert!(!args.iter().any(|a| a == "/etc/resolv.conf"));
    }

    #[test]
    fn the_agent_view_is_bound_first_and_system_trees_over_it() {
        let args = strings(&bwrap_options(&layout(&[], false)));
        let root = find(&args, &["--bind", "/data/mounts/7", "/"]).expect("root bind");
        let usr = find(&args, &["--ro-bind", "/usr", "/usr"]).expect("usr");
        let proc = find(&args, &["--proc", "/proc"]).expect("proc");
        let tmp = find(&args, &["--tmpfs", "/tmp"]).expect("tmp");
        let etc = find(&args, &["--tmpfs", "/etc"]).expect("etc");
        assert!(root < usr && root < proc && root < tmp && root < etc);
        assert!(find(&args, &["--size", "1048576", "--tmpfs", "/tmp"]).is_some());
        assert!(find(&args, &["--remount-ro", "/etc"]).unwrap() > etc);
        assert!(find(&args, &["--file", "11", "/run/agentbox/main.py"]).is_some());
        assert!(
            find(
                &args,
                &["--ro-bind", "/opt/bun/bun.exe", "/run/agentbox/bin/bun"]
            )
            .is_some()
        );
        assert!(find(&args, &["--chdir", "/work"]).is_some());
    }

    #[test]
    fn the_command_follows_a_separator() {
        let args = strings(&command_arguments(Runtime::Python));
        assert_eq!(args, ["--", "/usr/bin/python3", "/run/agentbox/main.py"]);
        let args = strings(&command_arguments(Runtime::Typescript));
        assert_eq!(
            args,
            [
                "--",
                "/run/agentbox/bin/bun",
                "run",
                "/run/agentbox/main.ts"
            ]
        );
        let options = strings(&bwrap_options(&layout(&[], false)));
        assert!(!options.iter().any(|a| a == "--"), "{options:?}");
    }

    #[test]
    fn environment_values_are_separate_arguments() {
        let env = vec![("X".to_string(), "a b; $(rm -rf /)".to_string())];
        let args = strings(&bwrap_options(&layout(&env, false)));
        assert!(find(&args, &["--setenv", "X", "a b; $(rm -rf /)"]).is_some());
    }

    #[test]
    fn network_keeps_a_namespace_of_its_own_and_waits_for_its_link() {
        let without = strings(&bwrap_options(&layout(&[], false)));
        assert!(!without.iter().any(|a| a.contains("resolv.conf")));
        assert!(
            !without
                .iter()
                .any(|a| a == "--block-fd" || a == "--info-fd")
        );
        let args = strings(&bwrap_options(&layout(&[], true)));
        assert!(
            !args.iter().any(|a| a == "--share-net"),
            "never the host's network"
        );
        assert!(find(&args, &["--info-fd", "20"]).is_some());
        assert!(find(&args, &["--block-fd", "21"]).is_some());
        assert!(find(&args, &["--file", "22", "/etc/resolv.conf"]).is_some());
        assert!(
            find(&args, &["/etc/resolv.conf", "/etc/resolv.conf"]).is_none(),
            "not the host's resolver"
        );
    }
}
