//! A simple in-memory model of an agent's tree (paths mapped to nodes, files shared by
//! hard links through an id) and a runner that applies the same random operations to the
//! model and to a real store, comparing every result and the whole tree after each step.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fsd::{Error, FileType, FsPath, RenameMode, SetAttr, Store, StoreOptions, View, WriteOptions};
use proptest::prelude::*;

const NAMES: &[&str] = &["a", "b", "c"];

#[derive(Debug, Clone)]
pub enum Op {
    Write {
        path: Vec<String>,
        data: Data,
    },
    WriteAt {
        path: Vec<String>,
        offset: u64,
        data: Data,
    },
    Resize {
        path: Vec<String>,
        size: u64,
    },
    Mkdir {
        path: Vec<String>,
        parents: bool,
    },
    Remove {
        path: Vec<String>,
        recursive: bool,
    },
    Rename {
        from: Vec<String>,
        to: Vec<String>,
        mode: u8,
    },
    Symlink {
        target: String,
        path: Vec<String>,
    },
    Link {
        existing: Vec<String>,
        new: Vec<String>,
    },
    Chmod {
        path: Vec<String>,
        mode: u32,
    },
    Snapshot,
    Restore(usize),
    DeleteSnapshot(usize),
    Fork(usize),
}

/// File content described by length and seed, so failing cases print small.
#[derive(Debug, Clone, Copy)]
pub struct Data {
    len: usize,
    seed: u8,
}

impl Data {
    fn bytes(self) -> Vec<u8> {
        let mut state = u64::from(self.seed) + 1;
        (0..self.len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }
}

fn data() -> impl Strategy<Value = Data> {
    let len = prop_oneof![8 => 0usize..64, 2 => 1000usize..20_000, 1 => 250_000usize..700_000];
    (len, any::<u8>()).prop_map(|(len, seed)| Data { len, seed })
}

fn path() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        proptest::sample::select(NAMES).prop_map(str::to_owned),
        1..4,
    )
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (path(), data()).prop_map(|(path, data)| Op::Write { path, data }),
        3 => (path(), 0u64..800_000, data()).prop_map(|(path, offset, data)| Op::WriteAt { path, offset, data }),
        2 => (path(), 0u64..800_000).prop_map(|(path, size)| Op::Resize { path, size }),
        3 => (path(), any::<bool>()).prop_map(|(path, parents)| Op::Mkdir { path, parents }),
        3 => (path(), any::<bool>()).prop_map(|(path, recursive)| Op::Remove { path, recursive }),
        4 => (path(), path(), 0u8..3).prop_map(|(from, to, mode)| Op::Rename { from, to, mode }),
        1 => (path(), path()).prop_map(|(t, path)| Op::Symlink { target: t.join("/"), path }),
        2 => (path(), path()).prop_map(|(existing, new)| Op::Link { existing, new }),
        1 => (path(), 0u32..0o1000).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        2 => Just(Op::Snapshot),
        2 => any::<usize>().prop_map(Op::Restore),
        1 => any::<usize>().prop_map(Op::DeleteSnapshot),
        1 => any::<usize>().prop_map(Op::Fork),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir(u32),
    File(u64),
    Symlink(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    Invalid,
}

fn kind_of(error: &Error) -> Kind {
    match error {
        Error::NotFound(_) => Kind::NotFound,
        Error::AlreadyExists(_) => Kind::Exists,
        Error::NotADirectory(_) => Kind::NotDir,
        Error::IsADirectory(_) => Kind::IsDir,
        Error::DirectoryNotEmpty(_) => Kind::NotEmpty,
        Error::InvalidArgument(_) | Error::InvalidPath(_) => Kind::Invalid,
        other => panic!("unexpected store error: {other:?}"),
    }
}

type P = Vec<String>;

#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<P, Node>,
    files: HashMap<u64, (Vec<u8>, u32)>,
    next_id: u64,
}

impl Model {
    fn new() -> Model {
        let mut model = Model::default();
        model.nodes.insert(Vec::new(), Node::Dir(0o755));
        model
    }

    fn get(&self, path: &[String]) -> Option<&Node> {
        self.nodes.get(path)
    }

    fn resolve(&self, path: &[String]) -> Result<Node, Kind> {
        for i in 0..path.len() {
            if !matches!(self.get(&path[..i]), Some(Node::Dir(_))) {
                return Err(Kind::NotDir);
            }
            if self.get(&path[..=i]).is_none() {
                return Err(Kind::NotFound);
            }
        }
        Ok(self.get(path).cloned().unwrap_or(Node::Dir(0)))
    }

    fn resolve_parent(&self, path: &[String]) -> Result<(), Kind> {
        if path.is_empty() {
            return Err(Kind::Invalid);
        }
        match self.resolve(&path[..path.len() - 1])? {
            Node::Dir(_) => Ok(()),
            _ => Err(Kind::NotDir),
        }
    }

    fn ensure_dirs(&mut self, path: &[String]) -> Result<(), Kind> {
        for i in 0..path.len() {
            if !matches!(self.get(&path[..i]), Some(Node::Dir(_))) {
                return Err(Kind::NotDir);
            }
            if self.get(&path[..=i]).is_none() {
                self.nodes.insert(path[..=i].to_vec(), Node::Dir(0o755));
            }
        }
        match self.get(path) {
            Some(Node::Dir(_)) => Ok(()),
            _ => Err(Kind::NotDir),
        }
    }

    fn new_file(&mut self, content: Vec<u8>) -> Node {
        self.next_id += 1;
        self.files.insert(self.next_id, (content, 0o644));
        Node::File(self.next_id)
    }

    fn has_children(&self, path: &[String]) -> bool {
        self.subtree(path).len() > 1
    }

    /// `path` and everything beneath it.
    fn subtree(&self, path: &[String]) -> Vec<P> {
        self.nodes
            .keys()
            .filter(|k| k.starts_with(path))
            .cloned()
            .collect()
    }

    fn remove_tree(&mut self, path: &[String]) {
        for key in self.subtree(path) {
            self.nodes.remove(&key);
        }
    }

    fn move_tree(&mut self, from: &[String], to: &[String]) {
        let moved: Vec<_> = self
            .subtree(from)
            .into_iter()
            .map(|k| (k.clone(), self.nodes.remove(&k)))
            .collect();
        for (key, node) in moved {
            let mut new_key = to.to_vec();
            new_key.extend_from_slice(&key[from.len()..]);
            if let Some(node) = node {
                self.nodes.insert(new_key, node);
            }
        }
    }

    fn same_inode(&self, a: &[String], b: &[String]) -> bool {
        a == b
            || matches!((self.get(a), self.get(b)), (Some(Node::File(x)), Some(Node::File(y))) if x == y)
    }

    fn apply(&mut self, op: &Op) -> Result<(), Kind> {
        match op {
            Op::Write { path, data } => {
                self.ensure_dirs(&path[..path.len() - 1])?;
                match self.get(path).cloned() {
                    Some(Node::Dir(_)) => return Err(Kind::IsDir),
                    Some(Node::File(id)) => {
                        if let Some(file) = self.files.get_mut(&id) {
                            file.0 = data.bytes();
                        }
                    }
                    _ => {
                        let node = self.new_file(data.bytes());
                        self.nodes.insert(path.clone(), node);
                    }
                }
                Ok(())
            }
            Op::WriteAt { path, offset, data } => match self.resolve(path)? {
                Node::Dir(_) => Err(Kind::IsDir),
                Node::Symlink(_) => Err(Kind::Invalid),
                Node::File(id) => {
                    let file = &mut self.files.get_mut(&id).ok_or(Kind::NotFound)?.0;
                    let bytes = data.bytes();
                    if bytes.is_empty() {
                        // Like pwrite: writing nothing changes nothing, past the end too.
                        return Ok(());
                    }
                    let end = *offset as usize + bytes.len();
                    if file.len() < end {
                        file.resize(end, 0);
                    }
                    file[*offset as usize..end].copy_from_slice(&bytes);
                    Ok(())
                }
            },
            Op::Resize { path, size } => match self.resolve(path)? {
                Node::Dir(_) => Err(Kind::IsDir),
                Node::Symlink(_) => Ok(()),
                Node::File(id) => {
                    self.files
                        .get_mut(&id)
                        .ok_or(Kind::NotFound)?
                        .0
                        .resize(*size as usize, 0);
                    Ok(())
                }
            },
            Op::Mkdir {
                path,
                parents: true,
            } => self.ensure_dirs(path),
            Op::Mkdir {
                path,
                parents: false,
            } => {
                self.resolve_parent(path)?;
                if self.get(path).is_some() {
                    return Err(Kind::Exists);
                }
                self.nodes.insert(path.clone(), Node::Dir(0o755));
                Ok(())
            }
            Op::Remove { path, recursive } => {
                self.resolve_parent(path)?;
                match self.get(path) {
                    None => Err(Kind::NotFound),
                    Some(Node::Dir(_)) if !recursive && self.has_children(path) => {
                        Err(Kind::NotEmpty)
                    }
                    Some(_) => {
                        self.remove_tree(path);
                        Ok(())
                    }
                }
            }
            Op::Rename { from, to, mode } => self.rename(from, to, *mode),
            Op::Symlink { target, path } => {
                self.resolve_parent(path)?;
                if self.get(path).is_some() {
                    return Err(Kind::Exists);
                }
                self.nodes
                    .insert(path.clone(), Node::Symlink(target.clone()));
                Ok(())
            }
            Op::Link { existing, new } => {
                let node = self.resolve(existing)?;
                if matches!(node, Node::Dir(_)) {
                    return Err(Kind::IsDir);
                }
                if let Node::Symlink(_) = node {
                    // Hard links to symlinks are not modelled, nor asked of the store.
                    return Err(Kind::Invalid);
                }
                self.resolve_parent(new)?;
                if self.get(new).is_some() {
                    return Err(Kind::Exists);
                }
                self.nodes.insert(new.clone(), node);
                Ok(())
            }
            Op::Chmod { path, mode } => {
                match self.resolve(path)? {
                    Node::Dir(_) => {
                        self.nodes.insert(path.clone(), Node::Dir(*mode));
                    }
                    Node::File(id) => {
                        if let Some(file) = self.files.get_mut(&id) {
                            file.1 = *mode;
                        }
                    }
                    Node::Symlink(_) => {}
                }
                Ok(())
            }
            Op::Snapshot | Op::Restore(_) | Op::DeleteSnapshot(_) | Op::Fork(_) => Ok(()),
        }
    }

    fn rename(&mut self, from: &P, to: &P, mode: u8) -> Result<(), Kind> {
        self.resolve_parent(from)?;
        let source = self.get(from).cloned().ok_or(Kind::NotFound)?;
        self.resolve_parent(to)?;
        let to_parent = &to[..to.len() - 1];
        if matches!(source, Node::Dir(_)) && to_parent.starts_with(from) {
            return Err(Kind::Invalid);
        }
        let dest = self.get(to).cloned();
        match (mode, dest) {
            (2, None) => Err(Kind::NotFound),
            (2, Some(dest)) => {
                if self.same_inode(from, to) {
                    return Ok(());
                }
                if matches!(dest, Node::Dir(_)) && from[..from.len() - 1].starts_with(to) {
                    return Err(Kind::Invalid);
                }
                let parked = vec!["\0parked".to_owned()];
                self.move_tree(from, &parked);
                self.move_tree(to, from);
                self.move_tree(&parked, to);
                Ok(())
            }
            (1, Some(_)) => Err(Kind::Exists),
            (_, dest) => {
                if let Some(dest) = dest {
                    if self.same_inode(from, to) {
                        return Ok(());
                    }
                    match (matches!(source, Node::Dir(_)), matches!(dest, Node::Dir(_))) {
                        (true, false) => return Err(Kind::NotDir),
                        (false, true) => return Err(Kind::IsDir),
                        (true, true) if self.has_children(to) => return Err(Kind::NotEmpty),
                        _ => {}
                    }
                    self.remove_tree(to);
                }
                self.move_tree(from, to);
                Ok(())
            }
        }
    }

    /// Every path with a description that covers type, mode, content and link count.
    fn dump(&self) -> Vec<(String, String)> {
        let mut out = self.dump_unsorted();
        out.sort();
        out
    }

    fn dump_unsorted(&self) -> Vec<(String, String)> {
        let mut links: HashMap<u64, u32> = HashMap::new();
        for node in self.nodes.values() {
            if let Node::File(id) = node {
                *links.entry(*id).or_default() += 1;
            }
        }
        self.nodes
            .iter()
            .filter(|(k, _)| !k.is_empty())
            .map(|(key, node)| {
                let desc = match node {
                    Node::Dir(mode) => {
                        let subdirs = self
                            .nodes
                            .iter()
                            .filter(|(k, n)| {
                                k.len() == key.len() + 1
                                    && k.starts_with(key)
                                    && matches!(n, Node::Dir(_))
                            })
                            .count();
                        format!("dir {mode:o} nlink {}", 2 + subdirs)
                    }
                    Node::File(id) => {
                        let (bytes, mode) = &self.files[id];
                        format!(
                            "file {mode:o} nlink {} {}",
                            links[id],
                            blake3::hash(bytes).to_hex()
                        )
                    }
                    Node::Symlink(target) => format!("symlink {target}"),
                };
                (format!("/{}", key.join("/")), desc)
            })
            .collect()
    }
}

fn fs_path(path: &[String]) -> FsPath {
    FsPath::parse(&format!("/{}", path.join("/"))).expect("model paths are valid")
}

/// The store's tree in the model's dump format.
fn dump_store(store: &Store, agent: i64, view: &View) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![FsPath::root()];
    while let Some(dir) = stack.pop() {
        for entry in store
            .list_dir(agent, &dir, view)
            .expect("listing a directory")
        {
            let path = dir.join(&entry.name);
            let attr = &entry.attr;
            let desc = match attr.kind {
                FileType::Directory => {
                    stack.push(path.clone());
                    format!("dir {:o} nlink {}", attr.mode, attr.nlink)
                }
                FileType::File => {
                    let bytes = store
                        .read_file(agent, &path, view, 0, u64::MAX)
                        .expect("reading a file");
                    assert_eq!(bytes.len() as u64, attr.size, "size of {path}");
                    format!(
                        "file {:o} nlink {} {}",
                        attr.mode,
                        attr.nlink,
                        blake3::hash(&bytes).to_hex()
                    )
                }
                FileType::Symlink => {
                    let target = store
                        .readlink(agent, &path, view)
                        .expect("reading a symlink");
                    format!("symlink {}", String::from_utf8_lossy(&target))
                }
            };
            out.push((path.to_string(), desc));
        }
    }
    out.sort();
    out
}

fn store_apply(store: &Store, agent: i64, op: &Op) -> Result<(), Kind> {
    let result = match op {
        Op::Write { path, data } => store
            .write_file(
                agent,
                &fs_path(path),
                &mut &data.bytes()[..],
                &WriteOptions::default(),
            )
            .map(drop),
        Op::WriteAt { path, offset, data } => store
            .write_at(agent, &fs_path(path), *offset, &data.bytes())
            .map(drop),
        Op::Resize { path, size } => store
            .set_attr(
                agent,
                &fs_path(path),
                &SetAttr {
                    size: Some(*size),
                    ..Default::default()
                },
            )
            .map(drop),
        Op::Mkdir { path, parents } => store
            .mkdir(agent, &fs_path(path), *parents, 0o755)
            .map(drop),
        Op::Remove { path, recursive } => store.remove(agent, &fs_path(path), *recursive),
        Op::Rename { from, to, mode } => {
            let mode = [
                RenameMode::Replace,
                RenameMode::NoReplace,
                RenameMode::Exchange,
            ][*mode as usize];
            store.rename(agent, &fs_path(from), &fs_path(to), mode)
        }
        Op::Symlink { target, path } => store
            .symlink(agent, target.as_bytes(), &fs_path(path))
            .map(drop),
        Op::Link { existing, new } => {
            let is_symlink = store
                .stat(agent, &fs_path(existing), &View::Live)
                .is_ok_and(|a| a.kind == FileType::Symlink);
            if is_symlink {
                return Err(Kind::Invalid);
            }
            store
                .link(agent, &fs_path(existing), &fs_path(new))
                .map(drop)
        }
        Op::Chmod { path, mode } => {
            let is_symlink = store
                .stat(agent, &fs_path(path), &View::Live)
                .is_ok_and(|a| a.kind == FileType::Symlink);
            if is_symlink {
                return Ok(());
            }
            store
                .set_attr(
                    agent,
                    &fs_path(path),
                    &SetAttr {
                        mode: Some(*mode),
                        ..Default::default()
                    },
                )
                .map(drop)
        }
        Op::Snapshot | Op::Restore(_) | Op::DeleteSnapshot(_) | Op::Fork(_) => Ok(()),
    };
    result.map_err(|e| kind_of(&e))
}

/// Runs `ops` against a fresh store and the model, panicking at the first difference.
pub fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            durable: false,
            sweep_grace: Duration::ZERO,
            batch_window: Some(fsd::BATCH_WINDOW),
        },
    )
    .expect("opening the store");
    let mut agent = store.create_agent("model").expect("creating an agent").id;
    let mut model = Model::new();
    let mut snapshots: Vec<(i64, String, Model)> = Vec::new();
    let mut forks = 0;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Snapshot => {
                let snap = store.create_snapshot(agent, None).expect("snapshot");
                snapshots.push((agent, snap.id, model.clone()));
            }
            Op::Restore(i) | Op::DeleteSnapshot(i) | Op::Fork(i) => {
                let mine: Vec<usize> = (0..snapshots.len())
                    .filter(|j| snapshots[*j].0 == agent)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let index = mine[i % mine.len()];
                let (_, id, snap_model) = snapshots[index].clone();
                match op {
                    Op::Restore(_) => {
                        store.restore_snapshot(agent, &id).expect("restore");
                        model = snap_model;
                    }
                    Op::DeleteSnapshot(_) => {
                        store.delete_snapshot(agent, &id).expect("delete snapshot");
                        snapshots.remove(index);
                    }
                    _ => {
                        forks += 1;
                        agent = store
                            .fork_agent(agent, &id, &format!("fork{forks}"))
                            .expect("fork")
                            .id;
                        model = snap_model;
                    }
                }
            }
            _ => {
                let mut next = model.clone();
                let expected = next.apply(op);
                let actual = store_apply(&store, agent, op);
                assert_eq!(actual, expected, "step {step}: {op:?}");
                if expected.is_ok() {
                    model = next;
                }
            }
        }
        assert_eq!(
            dump_store(&store, agent, &View::Live),
            model.dump(),
            "tree after step {step}: {op:?}"
        );
    }
    for (owner, id, snap_model) in &snapshots {
        let view = View::Snapshot(id.clone());
        assert_eq!(
            dump_store(&store, *owner, &view),
            snap_model.dump(),
            "snapshot {id}"
        );
    }
    if let Some((owner, id, snap_model)) = snapshots.iter().rev().find(|s| s.0 == agent) {
        let diff = store
            .diff(*owner, &View::Snapshot(id.clone()), &View::Live)
            .expect("diff");
        let shown: Vec<String> = diff
            .iter()
            .map(|d| format!("{} {}", d.change.as_str(), d.path))
            .collect();
        assert_eq!(shown, model_diff(snap_model, &model), "diff against {id}");
    }
    let report = store.fsck().expect("fsck");
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
}

/// What the store's diff should say between two models, in path order.
fn model_diff(old: &Model, new: &Model) -> Vec<String> {
    let describe = |model: &Model, node: &Node| match node {
        Node::Dir(mode) => format!("dir {mode:o}"),
        Node::File(id) => {
            let (bytes, mode) = &model.files[id];
            format!("file {mode:o} {}", blake3::hash(bytes).to_hex())
        }
        Node::Symlink(target) => format!("symlink {target}"),
    };
    let mut keys: Vec<&P> = old
        .nodes
        .keys()
        .chain(new.nodes.keys())
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let path = format!("/{}", key.join("/"));
        match (old.nodes.get(key), new.nodes.get(key)) {
            (Some(_), None) => out.push(format!("removed {path}")),
            (None, Some(_)) => out.push(format!("added {path}")),
            (Some(a), Some(b)) if describe(old, a) != describe(new, b) => {
                out.push(format!("modified {path}"))
            }
            _ => {}
        }
    }
    out
}
