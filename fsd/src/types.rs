//! Plain data exchanged with the store's callers: attributes, entries, snapshots, stats.

use std::fmt;

/// An agent's numeric id inside the store. Callers get it from [`crate::Store::agent`] or
/// from a key lookup; it is never taken from a request.
pub type AgentId = i64;

/// A blake3 hash: the name of a blob, and of a file's content.
///
/// A file that fits in one blob (at most [`crate::WHOLE_FILE_MAX`] bytes) has the blake3
/// hash of its bytes; a larger file has the blake3 hash of its chunk list (see
/// `docs/fsd-format.md`). Either way equal content has an equal hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(hex: &str) -> Option<Hash> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| Hash(*h.as_bytes()))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..16])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    File,
    Directory,
    Symlink,
}

impl FileType {
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Directory => "directory",
            FileType::Symlink => "symlink",
        }
    }
}

/// Attributes of one inode. Times are nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileType,
    /// Permission bits (`0o7777` at most); the file type is in `kind`.
    pub mode: u32,
    /// Bytes for files, the target's length for symlinks, 0 for directories.
    pub size: u64,
    pub nlink: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// The content hash, for files only.
    pub hash: Option<Hash>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub attr: Attr,
}

impl DirEntry {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Which version of an agent's tree an operation reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The tree as it is now.
    Live,
    /// The tree as it was when the snapshot with this id (or name) was taken.
    Snapshot(String),
}

/// How a write creates its file.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Create missing parent directories.
    pub create_parents: bool,
    /// Permission bits for a new file (default `0o644`); an existing file keeps its own.
    pub mode: Option<u32>,
    /// Refuse content longer than this with [`crate::Error::TooLarge`], changing nothing.
    pub max_size: Option<u64>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            create_parents: true,
            mode: None,
            max_size: None,
        }
    }
}

/// What a rename does when the destination exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenameMode {
    /// Replace the destination atomically (POSIX `rename`).
    #[default]
    Replace,
    /// Fail with [`crate::Error::AlreadyExists`] if the destination exists.
    NoReplace,
    /// Swap source and destination atomically; both must exist.
    Exchange,
}

/// Attribute changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub size: Option<u64>,
    pub atime_ns: Option<i64>,
    pub mtime_ns: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub id: AgentId,
    pub name: String,
    pub created_at_ns: i64,
    /// `agent/snapshot` this agent was forked from, if any.
    pub forked_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The public part of a key, safe to print and to name it by.
    pub id: String,
    pub agent: String,
    pub created_at_ns: i64,
    pub revoked_at_ns: Option<i64>,
}

/// Per-agent limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_bytes: Option<u64>,
    pub max_files: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: Option<String>,
    pub created_at_ns: i64,
    /// Files (regular files and symlinks) in the tree when the snapshot was taken.
    pub files: u64,
    /// Sum of file sizes when the snapshot was taken.
    pub logical_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Modified,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
        }
    }
}

/// One path that differs between two versions of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub path: String,
    pub change: Change,
    /// The type in the newer version (the older one for removals).
    pub kind: FileType,
}

/// Storage figures for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStats {
    /// Sum of the sizes of the live tree's files.
    pub logical_bytes: u64,
    /// Bytes of the distinct blobs the agent's live tree and snapshots reference.
    pub stored_bytes: u64,
    /// Regular files and symlinks in the live tree.
    pub files: u64,
    pub directories: u64,
    pub snapshots: u64,
    pub quota: Quota,
}

/// Compute an agent has used, in milliseconds, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComputeUsage {
    pub runs: u64,
    /// Wall-clock time of the runs.
    pub run_ms: u64,
    /// CPU time of the runs' processes.
    pub run_cpu_ms: u64,
    pub browser_sessions: u64,
    /// Time the browser sessions were open.
    pub browser_ms: u64,
}

/// Figures for the whole store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub agents: u64,
    /// Distinct blobs and their total size, inline ones included.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Blobs small enough to live inside the index.
    pub inline_blobs: u64,
    /// Blobs no longer referenced, waiting for the sweep's grace period.
    pub unreferenced_blobs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    /// Blob files on disk that no index row names (left by a crash mid-write).
    pub orphan_files_removed: u64,
}
