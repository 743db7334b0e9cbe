//! [`Store`]: the public face of the filesystem. Path-based tree operations for the HTTP
//! API, agents and keys, snapshots, statistics, the sweep and fsck.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    AgentId, AgentInfo, AgentStats, Attr, DiffEntry, DirEntry, FileReader, FsPath, FsckReport,
    KeyInfo, Quota, RenameMode, Result, SetAttr, SnapshotInfo, StoreStats, SweepReport, View,
    WriteOptions,
};

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Flush blob files and the index to stable storage before acknowledging a write
    /// (survives power loss). Without it a write survives a killed process, not a crash of
    /// the machine.
    pub durable: bool,
    /// How long an unreferenced blob is kept before the sweep may remove it.
    pub sweep_grace: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { durable: true, sweep_grace: Duration::from_secs(3600) }
    }
}

/// A handle on one data directory. Cheap to clone; every clone shares the same index
/// connections and blob directory. Safe to use from many threads; all calls block.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {}

#[allow(unused_variables)]
impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        unimplemented!()
    }

    // ----- agents and keys -----

    /// Creates an agent with an empty tree. Names are 1-64 characters of `[A-Za-z0-9_.-]`.
    pub fn create_agent(&self, name: &str) -> Result<AgentInfo> {
        unimplemented!()
    }

    pub fn agent(&self, name: &str) -> Result<Option<AgentInfo>> {
        unimplemented!()
    }

    pub fn list_agents(&self) -> Result<Vec<AgentInfo>> {
        unimplemented!()
    }

    /// Creates `new_name` whose tree starts as `snapshot` of `source` (blobs are shared).
    pub fn fork_agent(&self, source: AgentId, snapshot: &str, new_name: &str) -> Result<AgentInfo> {
        unimplemented!()
    }

    /// Records a key for `agent`: `key_id` is its public part, `secret_hash` the blake3 of
    /// the whole key. The key itself is never stored.
    pub fn add_key(&self, agent: AgentId, key_id: &str, secret_hash: [u8; 32]) -> Result<()> {
        unimplemented!()
    }

    /// The agent owning an unrevoked key with this hash.
    pub fn agent_for_key(&self, secret_hash: [u8; 32]) -> Result<Option<AgentInfo>> {
        unimplemented!()
    }

    pub fn list_keys(&self, agent: Option<AgentId>) -> Result<Vec<KeyInfo>> {
        unimplemented!()
    }

    /// Revokes the key with this public id; false if there is none (or it was revoked).
    pub fn revoke_key(&self, key_id: &str) -> Result<bool> {
        unimplemented!()
    }

    pub fn set_quota(&self, agent: AgentId, quota: Quota) -> Result<()> {
        unimplemented!()
    }

    // ----- reading -----

    /// Attributes of the entry at `path`. Symlinks are not followed, here or anywhere.
    pub fn stat(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<Attr> {
        unimplemented!()
    }

    /// The entries of a directory, sorted by name.
    pub fn list_dir(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<Vec<DirEntry>> {
        unimplemented!()
    }

    /// Up to `len` bytes of a file from `offset` (fewer at the end of the file).
    pub fn read_file(
        &self,
        agent: AgentId,
        path: &FsPath,
        view: &View,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        unimplemented!()
    }

    /// A reader over a file's bytes as they are now; later writes do not change what it
    /// returns.
    pub fn open_file(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<FileReader> {
        unimplemented!()
    }

    pub fn readlink(&self, agent: AgentId, path: &FsPath, view: &View) -> Result<Vec<u8>> {
        unimplemented!()
    }

    // ----- writing -----

    /// Writes a whole file from `data`, creating or replacing it. Nothing changes unless
    /// every byte was stored; returns the new attributes once the write is durable.
    pub fn write_file(
        &self,
        agent: AgentId,
        path: &FsPath,
        data: &mut dyn Read,
        options: &WriteOptions,
    ) -> Result<Attr> {
        unimplemented!()
    }

    /// Writes `data` at `offset` in an existing file, extending it (with zeros across any
    /// gap) if needed. Only the chunks the range touches are stored anew.
    pub fn write_at(&self, agent: AgentId, path: &FsPath, offset: u64, data: &[u8]) -> Result<Attr> {
        unimplemented!()
    }

    /// Creates a directory; with `parents`, creates missing ancestors and accepts an
    /// existing directory.
    pub fn mkdir(&self, agent: AgentId, path: &FsPath, parents: bool, mode: u32) -> Result<Attr> {
        unimplemented!()
    }

    /// Removes a file, symlink or directory. A non-empty directory needs `recursive`.
    pub fn remove(&self, agent: AgentId, path: &FsPath, recursive: bool) -> Result<()> {
        unimplemented!()
    }

    pub fn rename(&self, agent: AgentId, from: &FsPath, to: &FsPath, mode: RenameMode) -> Result<()> {
        unimplemented!()
    }

    pub fn symlink(&self, agent: AgentId, target: &[u8], link: &FsPath) -> Result<Attr> {
        unimplemented!()
    }

    /// Makes `new` another name for the file at `existing`.
    pub fn link(&self, agent: AgentId, existing: &FsPath, new: &FsPath) -> Result<Attr> {
        unimplemented!()
    }

    /// Changes mode, size (truncate or extend with zeros) and times.
    pub fn set_attr(&self, agent: AgentId, path: &FsPath, changes: &SetAttr) -> Result<Attr> {
        unimplemented!()
    }

    // ----- snapshots -----

    /// Freezes the agent's whole tree. Costs the same for ten files or a million.
    pub fn create_snapshot(&self, agent: AgentId, name: Option<&str>) -> Result<SnapshotInfo> {
        unimplemented!()
    }

    pub fn list_snapshots(&self, agent: AgentId) -> Result<Vec<SnapshotInfo>> {
        unimplemented!()
    }

    /// Looks a snapshot up by id or name.
    pub fn snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<SnapshotInfo> {
        unimplemented!()
    }

    pub fn delete_snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<()> {
        unimplemented!()
    }

    /// Makes the live tree exactly what it was in the snapshot.
    pub fn restore_snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<()> {
        unimplemented!()
    }

    /// Paths added, removed or modified going from `from` to `to`, sorted by path.
    pub fn diff(&self, agent: AgentId, from: &View, to: &View) -> Result<Vec<DiffEntry>> {
        unimplemented!()
    }

    // ----- statistics and maintenance -----

    pub fn agent_stats(&self, agent: AgentId) -> Result<AgentStats> {
        unimplemented!()
    }

    pub fn store_stats(&self) -> Result<StoreStats> {
        unimplemented!()
    }

    /// Removes blobs unreferenced for longer than the grace period, and blob files no index
    /// row names that are older than it.
    pub fn sweep(&self) -> Result<SweepReport> {
        unimplemented!()
    }

    /// Checks every blob exists and hashes to its name, and every reference resolves.
    pub fn fsck(&self) -> Result<FsckReport> {
        unimplemented!()
    }
}
