//! Cgroups beneath the server's own: one tree per purpose (`agentbox-runs`,
//! `agentbox-browsers`), one group per confined process tree inside it. A group limits memory
//! (without swap), process count and CPU; reports CPU time, peak memory and OOM kills; and is
//! killed as a whole, so nothing started inside it outlives it.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::hierarchy::{self, CgroupVersion, OwnCgroup, SERVER_LEAF, V2_CONTROLLERS};

/// How long `kill_all` keeps trying before it reports the group as unkillable.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of one group. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory the group may use; swap is disabled for it.
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive at once (`pids.max`).
    pub max_processes: Option<u64>,
    /// CPU bandwidth in thousandths of a core: 1000 is one full core.
    pub cpu_millicores: Option<u64>,
}

/// What a group has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory_peak_bytes: u64,
    /// Whether the kernel killed a process of the group for running out of memory.
    pub oom_killed: bool,
}

/// A directory in one hierarchy and the controllers it carries.
#[derive(Debug, Clone)]
struct Dir {
    controllers: Vec<String>,
    path: PathBuf,
}

impl Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    fn child(&self, name: &str) -> Dir {
        Dir {
            controllers: self.controllers.clone(),
            path: self.path.join(name),
        }
    }
}

/// `<own cgroup>/agentbox-<purpose>` in every hierarchy used: where the groups of one purpose
/// live. Opening it again (after a restart) reuses it.
#[derive(Debug)]
pub struct CgroupTree {
    version: CgroupVersion,
    dirs: Vec<Dir>,
}

impl CgroupTree {
    /// Finds the server's own cgroup and makes (or reuses) the tree for `purpose` beneath it.
    pub fn open(purpose: &str) -> io::Result<CgroupTree> {
        check_name(purpose)?;
        let own = hierarchy::own_cgroup()?;
        if let OwnCgroup::V2 { path, is_root } = &own {
            enable_v2_controllers(path, *is_root)?;
        }
        let tree = CgroupTree::beneath(own, purpose);
        for dir in &tree.dirs {
            create_dir_if_missing(&dir.path)?;
        }
        if tree.version == CgroupVersion::V2 {
            // Its one directory: the groups beneath get the controllers too.
            write_file(
                &tree.dirs[0].path.join("cgroup.subtree_control"),
                &v2_enable_line(),
            )?;
        }
        Ok(tree)
    }

    /// The tree for `purpose` if a server made it, without making anything: for a process
    /// that only cleans up after one.
    pub fn existing(purpose: &str) -> io::Result<Option<CgroupTree>> {
        check_name(purpose)?;
        let mut tree = CgroupTree::beneath(hierarchy::own_cgroup()?, purpose);
        tree.dirs.retain(|dir| dir.path.is_dir());
        Ok((!tree.dirs.is_empty()).then_some(tree))
    }

    /// `<own>/agentbox-<purpose>` in each of `own`'s hierarchies (nothing made).
    fn beneath(own: OwnCgroup, purpose: &str) -> CgroupTree {
        let tree_name = format!("agentbox-{purpose}");
        match own {
            OwnCgroup::V1(own) => CgroupTree {
                version: CgroupVersion::V1,
                dirs: own
                    .into_iter()
                    .map(|d| Dir {
                        controllers: d.controllers,
                        path: d.path.join(&tree_name),
                    })
                    .collect(),
            },
            OwnCgroup::V2 { path, .. } => CgroupTree {
                version: CgroupVersion::V2,
                dirs: vec![Dir {
                    controllers: V2_CONTROLLERS.iter().map(|c| c.to_string()).collect(),
                    path: path.join(&tree_name),
                }],
            },
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Makes group `name` with `limits`. Fails if it exists already.
    pub fn create(&self, name: &str, limits: &Limits) -> io::Result<Cgroup> {
        check_name(name)?;
        let group = Cgroup {
            name: name.to_string(),
            version: self.version,
            dirs: Vec::new(),
            removed: false,
        };
        let mut group = group;
        for dir in &self.dirs {
            let child = dir.child(name);
            fs::create_dir(&child.path)?;
            group.dirs.push(child);
        }
        // On error the group is dropped, which removes the directories made so far.
        group.apply(limits)?;
        Ok(group)
    }

    /// Kills and removes every group in the tree: what a server that died left behind.
    /// Returns how many there were.
    pub fn remove_leftovers(&self) -> io::Result<usize> {
        let groups = self.groups()?;
        let count = groups.len();
        for group in groups {
            group.remove()?;
        }
        Ok(count)
    }

    /// Kills every process in every group of the tree, leaving the groups in place. Returns
    /// how many groups still held processes. Tries every group before reporting an error.
    pub fn kill_all_groups(&self) -> io::Result<usize> {
        let mut killed = 0;
        let mut first_error = None;
        for mut group in self.groups()? {
            // The groups stay for the next start to remove.
            group.removed = true;
            // A group removed meanwhile (by the server ending it) has nothing left to kill.
            match group.processes() {
                Ok(pids) if pids.is_empty() => continue,
                Ok(_) => killed += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    first_error.get_or_insert(error);
                    continue;
                }
            }
            match group.kill_all() {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    first_error.get_or_insert(error);
                }
                _ => {}
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(killed),
        }
    }

    /// Every group in the tree, in any of its hierarchies.
    fn groups(&self) -> io::Result<Vec<Cgroup>> {
        let mut names = BTreeSet::new();
        for dir in &self.dirs {
            for entry in fs::read_dir(&dir.path)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    names.insert(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Ok(names
            .into_iter()
            .map(|name| Cgroup {
                version: self.version,
                dirs: self
                    .dirs
                    .iter()
                    .map(|d| d.child(&name))
                    .filter(|d| d.path.is_dir())
                    .collect(),
                name,
                removed: false,
            })
            .collect())
    }

    /// Removes the tree itself, after its groups.
    pub fn remove(self) -> io::Result<()> {
        self.remove_leftovers()?;
        for dir in &self.dirs {
            remove_dir(&dir.path)?;
        }
        Ok(())
    }
}

/// One confined process tree's group. Dropping it kills what is left inside and removes it.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    version: CgroupVersion,
    dirs: Vec<Dir>,
    removed: bool,
}

impl Cgroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a child needs to join the group before exec (see `ChildSetup::cgroup`).
    pub fn joiner(&self) -> io::Result<Joiner> {
        let mut files = Vec::with_capacity(self.dirs.len());
        for dir in &self.dirs {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(dir.path.join("cgroup.procs"))?;
            files.push(OwnedFd::from(file));
        }
        Ok(Joiner { files })
    }

    /// The processes in the group now.
    pub fn processes(&self) -> io::Result<Vec<i32>> {
        let text = fs::read_to_string(self.primary().path.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Kills every process in the group and returns once none is left. Each round kills what
    /// the group lists; if processes keep appearing (forking past the kill), later rounds
    /// freeze the group first where the host can. Freezing is kept for those rounds because a
    /// server that dies between freeze and thaw leaves the group frozen until its next start
    /// removes it.
    pub fn kill_all(&self) -> io::Result<()> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        let mut pause = Duration::from_micros(200);
        for round in 0.. {
            let pids = self.processes()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cgroup {}: {} processes still alive after kill",
                        self.name,
                        pids.len()
                    ),
                ));
            }
            match self.version {
                CgroupVersion::V2 if self.primary().path.join("cgroup.kill").exists() => {
                    write_file(&self.primary().path.join("cgroup.kill"), "1")?;
                }
                _ => {
                    let frozen = round >= 3 && self.freeze(true).is_ok();
                    for pid in self.processes()? {
                        // SAFETY: kill has no memory effects; a pid that is gone gives ESRCH.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    if frozen {
                        self.freeze(false)?;
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        unreachable!("the rounds end by returning")
    }

    /// CPU time, peak memory and OOM kills so far.
    pub fn usage(&self) -> io::Result<Usage> {
        match self.version {
            CgroupVersion::V1 => {
                let cpu_ns = match self.dir_with("cpuacct") {
                    Some(dir) => read_u64(&dir.path.join("cpuacct.usage"))?,
                    None => 0,
                };
                let memory = self.memory_dir();
                Ok(Usage {
                    cpu_ns,
                    memory_peak_bytes: read_u64(&memory.path.join("memory.max_usage_in_bytes"))?,
                    oom_killed: self.oom_killed()?,
                })
            }
            CgroupVersion::V2 => {
                let dir = &self.primary().path;
                let cpu_usec =
                    keyed_value(&fs::read_to_string(dir.join("cpu.stat"))?, "usage_usec");
                let peak = dir.join("memory.peak");
                let memory_peak_bytes = if peak.exists() {
                    read_u64(&peak)?
                } else {
                    read_u64(&dir.join("memory.current"))?
                };
                Ok(Usage {
                    cpu_ns: cpu_usec.unwrap_or(0) * 1000,
                    memory_peak_bytes,
                    oom_killed: self.oom_killed()?,
                })
            }
        }
    }

    /// Whether the kernel has killed a process of the group for lack of memory. Cheap enough
    /// to poll while the group runs.
    pub fn oom_killed(&self) -> io::Result<bool> {
        let (file, key) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => ("memory.events", "oom_kill"),
        };
        let text = fs::read_to_string(self.memory_dir().path.join(file))?;
        Ok(keyed_value(&text, key).unwrap_or(0) > 0)
    }

    /// Kills what is left and removes the group.
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        self.kill_and_remove()
    }

    fn kill_and_remove(&self) -> io::Result<()> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        self.kill_all()?;
        for dir in &self.dirs {
            remove_dir(&dir.path)?;
        }
        Ok(())
    }

    fn apply(&self, limits: &Limits) -> io::Result<()> {
        let memory = self.memory_dir();
        match self.version {
            CgroupVersion::V1 => {
                if let Some(bytes) = limits.memory_bytes {
                    write_file(
                        &memory.path.join("memory.limit_in_bytes"),
                        &bytes.to_string(),
                    )?;
                    let memsw = memory.path.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write_file(&memsw, &bytes.to_string())?;
                    } else {
                        write_file(&memory.path.join("memory.swappiness"), "0")?;
                    }
                }
                if let Some(max) = limits.max_processes
                    && let Some(dir) = self.dir_with("pids")
                {
                    write_file(&dir.path.join("pids.max"), &max.to_string())?;
                }
                if let Some(millicores) = limits.cpu_millicores
                    && let Some(dir) = self.dir_with("cpu")
                {
                    write_file(&dir.path.join("cpu.cfs_period_us"), "100000")?;
                    let quota = (millicores * 100).max(1000);
                    write_file(&dir.path.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
            CgroupVersion::V2 => {
                let dir = &self.primary().path;
                if let Some(bytes) = limits.memory_bytes {
                    write_file(&dir.join("memory.max"), &bytes.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write_file(&dir.join("memory.swap.max"), "0")?;
                    }
                }
                // An OOM kill takes the whole group, not one process of it.
                write_file(&dir.join("memory.oom.group"), "1")?;
                if let Some(max) = limits.max_processes {
                    write_file(&dir.join("pids.max"), &max.to_string())?;
                }
                if let Some(millicores) = limits.cpu_millicores {
                    let quota = (millicores * 100).max(1000);
                    write_file(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
                }
            }
        }
        Ok(())
    }

    /// v1: freezes (or thaws) the group and waits until the state has settled.
    fn freeze(&self, frozen: bool) -> io::Result<()> {
        let Some(dir) = self.dir_with("freezer") else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no freezer"));
        };
        let state = dir.path.join("freezer.state");
        let wanted = if frozen { "FROZEN" } else { "THAWED" };
        write_file(&state, wanted)?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while fs::read_to_string(&state)?.trim() != wanted {
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "freezer state"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// The hierarchy membership is read from: the freezer's in v1 (the one that is frozen), the
    /// only one in v2.
    fn primary(&self) -> &Dir {
        self.dir_with("freezer")
            .unwrap_or_else(|| self.memory_dir())
    }

    fn memory_dir(&self) -> &Dir {
        self.dir_with("memory")
            .expect("a cgroup tree always has the memory controller")
    }

    fn dir_with(&self, controller: &str) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.has(controller))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = self.kill_and_remove()
        {
            eprintln!("confine: removing cgroup {}: {error}", self.name);
        }
    }
}

/// Open `cgroup.procs` files of one group, for a child to join it between fork and exec.
#[derive(Debug)]
pub struct Joiner {
    files: Vec<OwnedFd>,
}

impl Joiner {
    /// Moves the calling process into the group. Async-signal-safe (no allocation), so it may
    /// run in a `pre_exec` hook.
    pub fn join(&self) -> io::Result<()> {
        for file in &self.files {
            // SAFETY: writes one byte from a static buffer to a descriptor we own.
            let written = unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// v2: lets `own` hand the controllers to its children. A cgroup other than the root cannot
/// both hold processes and delegate controllers, so the server moves itself into a leaf
/// `agentbox-server` beside its trees first when needed.
fn enable_v2_controllers(own: &Path, is_root: bool) -> io::Result<()> {
    let control = own.join("cgroup.subtree_control");
    match write_file(&control, &v2_enable_line()) {
        Ok(()) => Ok(()),
        Err(error) if !is_root && error.raw_os_error() == Some(libc::EBUSY) => {
            let leaf = own.join(SERVER_LEAF);
            create_dir_if_missing(&leaf)?;
            write_file(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
            write_file(&control, &v2_enable_line()).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!(
                        "cgroups: cannot delegate controllers from {} (other processes share \
                         the server's cgroup; run it in a cgroup of its own): {error}",
                        own.display()
                    ),
                )
            })
        }
        Err(error) => Err(error),
    }
}

fn v2_enable_line() -> String {
    V2_CONTROLLERS
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Group and tree names are one plain path segment.
fn check_name(name: &str) -> io::Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name != "."
        && name != "..";
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid cgroup name {name:?}"),
        ))
    }
}

fn create_dir_if_missing(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// rmdir, retried briefly: a group whose last process just died can still be busy.
fn remove_dir(path: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error)
                if error.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("removing {}: {error}", path.display()),
                ));
            }
        }
    }
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
    file.write_all(value.as_bytes())
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a number: {text:?}", path.display()),
        )
    })
}

/// The value of `key` in a "key value" per line file (`cpu.stat`, `memory.events`, ...).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_plain_segments() {
        for good in ["runs", "run-42", "browser_a.b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keyed_values_are_found_by_whole_key() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(3));
        assert_eq!(keyed_value(text, "missing"), None);
    }
}
