//! The agent filesystem: every agent's persistent tree, stored as content-addressed blobs
//! (blake3) with an SQLite index of inodes, directory entries and chunk lists.
//!
//! [`Store`] is the one entry point. It owns a data directory:
//!
//! ```text
//! <data-dir>/index.db        the SQLite index (see `docs/fsd-format.md`)
//! <data-dir>/index.intents   the intent log of the mounts' batches (see [`index`])
//! <data-dir>/blobs/ab/cd...  blob files named by their blake3 hash
//! <data-dir>/tmp/ab/         blob files being written
//! ```
//!
//! Snapshots do not copy the tree: every inode and directory entry row carries the range of
//! generations in which it exists, a snapshot is a frozen generation number, and the live
//! tree is the set of rows whose range is still open. See [`index`] for the details.

pub mod blobs;
mod chunker;
mod diff;
mod error;
mod fsck;
pub mod fuse;
mod index;
pub mod mounts;
mod path;
mod reader;
mod rename;
mod splice;
mod store;
mod types;
pub mod vfs;
pub mod watch;

pub use chunker::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, INLINE_MAX, WHOLE_FILE_MAX};
pub use error::{Error, Result};
pub use fsck::FsckReport;
pub use index::BATCH_WINDOW;
pub use path::{FsPath, MAX_NAME_LEN, RESERVED_NAMES, validate_name};
pub use reader::FileReader;
pub use store::{FsUsage, NewNode, Store, StoreOptions, XattrMode};
pub use types::{
    AgentId, AgentInfo, AgentStats, Attr, Change, ComputeUsage, DiffEntry, DirEntry, FileType,
    Hash, KeyInfo, Quota, RenameMode, SetAttr, SnapshotInfo, StoreStats, SweepReport, View,
    WriteOptions,
};
