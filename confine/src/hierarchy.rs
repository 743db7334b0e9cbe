//! Finding where this process sits in the cgroup hierarchies: the unified (v2) hierarchy when
//! it carries the controllers, or one directory per v1 controller otherwise. Read from
//! `/proc/self/cgroup` and `/proc/self/mountinfo`.

use std::fs;
use std::io;
use std::path::PathBuf;

/// Which cgroup interface the host offers for the controllers we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The v1 controllers a group is made in. Co-mounted ones (`cpu,cpuacct`) share a directory.
pub(crate) const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "freezer"];

/// The v2 controllers enabled for the groups beneath the server's.
pub(crate) const V2_CONTROLLERS: &[&str] = &["memory", "pids", "cpu"];

/// v2: the leaf the server moves itself into when its cgroup must delegate controllers. A
/// process found there (the server, or a process it started outside any group) counts the
/// leaf's parent as its own cgroup, so the trees are found beside the leaf, not inside it.
pub(crate) const SERVER_LEAF: &str = "agentbox-server";

/// This process's own cgroup directories.
#[derive(Debug, Clone)]
pub(crate) enum OwnCgroup {
    /// The one directory in the unified hierarchy, and whether it is the hierarchy's root.
    V2 { path: PathBuf, is_root: bool },
    /// One directory per v1 controller (deduplicated: co-mounted controllers share one).
    V1(Vec<V1Dir>),
}

#[derive(Debug, Clone)]
pub(crate) struct V1Dir {
    /// The controllers mounted together at this hierarchy.
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

impl V1Dir {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// One cgroup mount from mountinfo: its root within the hierarchy, where it is mounted, and
/// for v1 the controllers it carries.
#[derive(Debug)]
struct Mount {
    root: String,
    point: PathBuf,
    version: CgroupVersion,
    controllers: Vec<String>,
}

pub(crate) fn own_cgroup() -> io::Result<OwnCgroup> {
    let cgroup = fs::read_to_string("/proc/self/cgroup")?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    locate(&cgroup, &mountinfo)
}

/// Works out this process's cgroup directories from the two files' contents.
fn locate(cgroup: &str, mountinfo: &str) -> io::Result<OwnCgroup> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount).collect();
    // (hierarchy id, controllers, path) per line of /proc/self/cgroup.
    let memberships: Vec<(&str, Vec<&str>, &str)> = cgroup
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            let controllers = controllers.split(',').filter(|c| !c.is_empty()).collect();
            Some((id, controllers, path))
        })
        .collect();

    let v1_memory = memberships
        .iter()
        .any(|(_, controllers, _)| controllers.contains(&"memory"));
    if !v1_memory {
        let (_, _, path) = memberships
            .iter()
            .find(|(id, controllers, _)| *id == "0" && controllers.is_empty())
            .ok_or_else(|| unsupported("this process is in no cgroup v2 hierarchy"))?;
        let mount = mounts
            .iter()
            .find(|m| m.version == CgroupVersion::V2)
            .ok_or_else(|| unsupported("no cgroup2 filesystem is mounted"))?;
        let available = fs::read_to_string(mount.point.join("cgroup.controllers"))?;
        for wanted in V2_CONTROLLERS {
            if !available.split_whitespace().any(|c| c == *wanted) {
                return Err(unsupported(&format!(
                    "the cgroup v2 hierarchy lacks the {wanted} controller"
                )));
            }
        }
        let dir = outside_server_leaf(join_within(mount, path)?);
        return Ok(OwnCgroup::V2 {
            is_root: dir == mount.point,
            path: dir,
        });
    }

    let mut dirs: Vec<V1Dir> = Vec::new();
    for wanted in V1_CONTROLLERS {
        if dirs.iter().any(|d| d.has(wanted)) {
            continue;
        }
        let Some((_, controllers, path)) = memberships
            .iter()
            .find(|(_, controllers, _)| controllers.contains(wanted))
        else {
            // Only memory and pids are essential; the others are used when present.
            if *wanted == "memory" || *wanted == "pids" {
                return Err(unsupported(&format!("no cgroup v1 {wanted} controller")));
            }
            continue;
        };
        let mount = mounts
            .iter()
            .find(|m| m.version == CgroupVersion::V1 && m.controllers.iter().any(|c| c == wanted))
            .ok_or_else(|| unsupported(&format!("the v1 {wanted} hierarchy is not mounted")))?;
        dirs.push(V1Dir {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            path: join_within(mount, path)?,
        });
    }
    Ok(OwnCgroup::V1(dirs))
}

/// `dir`, or its parent when `dir` is the server's leaf.
fn outside_server_leaf(mut dir: PathBuf) -> PathBuf {
    if dir.file_name().is_some_and(|name| name == SERVER_LEAF) {
        dir.pop();
    }
    dir
}

/// Parses one mountinfo line when it is a cgroup mount.
fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let root = unescape(fields.get(3)?);
    let point = PathBuf::from(unescape(fields.get(4)?));
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let _source = after.next()?;
    let options = after.next().unwrap_or("");
    let version = match fstype {
        "cgroup2" => CgroupVersion::V2,
        "cgroup" => CgroupVersion::V1,
        _ => return None,
    };
    let controllers = options
        .split(',')
        .filter(|o| {
            !matches!(*o, "rw" | "ro") && !o.contains('=') && !o.starts_with("clone_children")
        })
        .map(str::to_string)
        .collect();
    Some(Mount {
        root,
        point,
        version,
        controllers,
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &field[i + 1..i + 4];
            if let Ok(value) = u8::from_str_radix(digits, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of hierarchy path `path` under `mount`, whose own root may be a subtree
/// (in a container the mount often shows only the container's part of the hierarchy).
fn join_within(mount: &Mount, path: &str) -> io::Result<PathBuf> {
    let relative = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str()).ok_or_else(|| {
            unsupported(&format!(
                "our cgroup {path} is outside the mounted subtree {}",
                mount.root
            ))
        })?
    };
    let relative = relative.trim_start_matches('/');
    if relative.split('/').any(|segment| segment == "..") {
        return Err(unsupported("cgroup path with .."));
    }
    Ok(mount.point.join(relative))
}

fn unsupported(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("cgroups: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP_V1: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/7643
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn v1_directories_follow_each_controller() {
        let OwnCgroup::V1(dirs) = locate(CGROUP_V1, MOUNTINFO_V1).unwrap() else {
            panic!("expected v1");
        };
        let path_of = |c: &str| dirs.iter().find(|d| d.has(c)).unwrap().path.clone();
        assert_eq!(
            path_of("memory"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/7643")
        );
        assert_eq!(path_of("pids"), PathBuf::from("/sys/fs/cgroup/pids"));
        assert_eq!(path_of("cpuacct"), PathBuf::from("/sys/fs/cgroup/cpuacct"));
        assert_eq!(path_of("freezer"), PathBuf::from("/sys/fs/cgroup/freezer"));
        assert_eq!(dirs.len(), 5);
    }

    #[test]
    fn comounted_v1_controllers_share_a_directory() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
        let cgroup = "3:cpu,cpuacct:/x\n2:memory:/docker/abc/inner\n1:pids:/\n";
        let OwnCgroup::V1(dirs) = locate(cgroup, mountinfo).unwrap() else {
            panic!("expected v1");
        };
        assert_eq!(dirs.len(), 3, "{dirs:?}");
        let cpu = dirs.iter().find(|d| d.has("cpu")).unwrap();
        assert!(cpu.has("cpuacct"));
        assert_eq!(cpu.path, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/x"));
        let memory = dirs.iter().find(|d| d.has("memory")).unwrap();
        assert_eq!(memory.path, PathBuf::from("/sys/fs/cgroup/memory/inner"));
    }

    #[test]
    fn missing_essential_controller_is_an_error() {
        let cgroup = "4:memory:/\n0::/\n";
        let mountinfo = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let error = locate(cgroup, mountinfo).unwrap_err();
        assert!(error.to_string().contains("pids"), "{error}");
    }

    #[test]
    fn the_server_leaf_counts_as_its_parent() {
        let service = PathBuf::from("/sys/fs/cgroup/system.slice/agentbox.service");
        assert_eq!(outside_server_leaf(service.join(SERVER_LEAF)), service);
        assert_eq!(outside_server_leaf(service.clone()), service);
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
