//! The storage measurements, one module per report section, each next to a baseline
//! measured in the same run on the same disk.
//!
//! - [`throughput`]: raw PUT and GET of large files against `write_all` + `fsync` and a
//!   read from the page cache;
//! - [`small_files`]: 4 KiB PUTs per second, one client and several, against creating,
//!   writing and fsyncing files directly;
//! - [`snapshots`]: snapshot create and restore times over HTTP and on the store
//!   in-process;
//! - [`memory`]: the server's resident memory while it receives and sends a large file.

pub mod disk;
pub mod memory;
pub mod small_files;
pub mod snapshots;
pub mod throughput;

use std::path::PathBuf;

use crate::http::Client;
use crate::server::Server;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// How much each section does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Concurrent clients (threads) where a section uses several.
    pub threads: usize,
    /// Throughput: (file size, repetitions).
    pub throughput: Vec<(usize, usize)>,
    /// Small files: size, files written by one client, by all clients together, rounds.
    pub small_size: usize,
    pub small_sequential: usize,
    pub small_concurrent: usize,
    pub small_rounds: usize,
    /// Snapshots: tree sizes in files, size of each file, creates and restores per size.
    pub snapshot_scales: Vec<usize>,
    pub snapshot_file_size: usize,
    pub snapshot_runs: usize,
    /// Memory: the size of the upload watched.
    pub memory_upload: usize,
}

impl Plan {
    /// The figures to quote.
    pub fn full(threads: usize) -> Plan {
        Plan {
            threads,
            throughput: vec![(MIB, 20), (100 * MIB, 3)],
            small_size: 4 * KIB,
            small_sequential: 1000,
            small_concurrent: 2000,
            small_rounds: 5,
            snapshot_scales: vec![1_000, 10_000],
            snapshot_file_size: 2 * KIB,
            snapshot_runs: 7,
            memory_upload: 100 * MIB,
        }
    }

    /// A quick pass over every measurement, to check that everything works.
    pub fn quick(threads: usize) -> Plan {
        Plan {
            throughput: vec![(MIB, 5), (100 * MIB, 1)],
            small_sequential: 200,
            small_concurrent: 400,
            small_rounds: 1,
            snapshot_scales: vec![1_000],
            snapshot_runs: 3,
            ..Plan::full(threads)
        }
    }
}

/// What every section works with.
pub struct Context<'a> {
    pub server: &'a Server,
    /// A client for the agent `default`.
    pub client: Client,
    /// Where baseline files are written: the same disk as the server's data directory.
    pub baseline_dir: PathBuf,
    /// Where the in-process store is opened: the same disk again.
    pub store_dir: PathBuf,
    pub plan: Plan,
    /// Seeds the random content; different on every run.
    pub seed: u64,
}
