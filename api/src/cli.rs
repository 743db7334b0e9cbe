//! The command line: every flag with an environment fallback, so `--help` is the reference.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "agentbox",
    version,
    about = "A self-hosted compute API for AI agents"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Manage agents in a data directory (works while a server is running).
    Agents(AgentsArgs),
    /// Manage API keys in a data directory.
    Keys(KeysArgs),
    /// Check a data directory: every blob exists and hashes to its name, every reference
    /// resolves. Exits non-zero if anything is wrong.
    Fsck(FsckArgs),
    /// Remove blobs that nothing has referenced for longer than the grace period.
    Gc(GcArgs),
    /// Work with an agent's files on a server.
    Fs(FsArgs),
    /// Snapshot, restore and compare an agent's tree on a server.
    Snapshot(SnapshotArgs),
    /// Mount an agent's tree (or one of its snapshots) with FUSE to look at what it did.
    Mount(MountArgs),
    /// Run a program (a file, or `-` for standard input) in a sandbox on a server and print
    /// its output; exits with the program's exit code.
    Run(RunArgs),
    /// Started by `serve` itself: waits for the server to end, then kills every process left
    /// in its cgroup trees.
    #[command(hide = true)]
    WatchCgroups(WatchCgroupsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WatchCgroupsArgs {
    /// A cgroup tree of the server (`confine` purpose), one per flag.
    #[arg(long = "purpose", required = true)]
    pub purposes: Vec<String>,
}

/// Where the data lives; shared by every command that opens a data directory.
#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// The data directory (index, blobs, keys).
    #[arg(
        long,
        global = true,
        env = "AGENTBOX_DATA_DIR",
        default_value = "./agentbox-data"
    )]
    pub data_dir: PathBuf,
}

/// How the process holding a data directory (the server, or a read-write mount) removes
/// blobs nothing references any more.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Seconds an unreferenced blob is kept before the background sweep removes it.
    #[arg(long, env = "AGENTBOX_SWEEP_GRACE_SECONDS", default_value_t = 3600)]
    pub sweep_grace_seconds: u64,
    /// Seconds between background sweeps (0 disables them).
    #[arg(long, env = "AGENTBOX_SWEEP_INTERVAL_SECONDS", default_value_t = 600)]
    pub sweep_interval_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AGENTBOX_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Largest file accepted by an upload, in bytes (base64 or raw).
    #[arg(long, env = "AGENTBOX_MAX_FILE_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_file_bytes: u64,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Where agents' sandbox views are mounted (default `<data-dir>/mounts`).
    #[arg(long, env = "AGENTBOX_MOUNT_DIR")]
    pub mount_dir: Option<PathBuf>,
    /// Seconds an unused sandbox view stays mounted.
    #[arg(long, env = "AGENTBOX_MOUNT_IDLE_SECONDS", default_value_t = 300)]
    pub mount_idle_seconds: u64,
    /// Acknowledge writes once they survive a killed process rather than a power loss
    /// (skips fsync; faster, less safe).
    #[arg(long, env = "AGENTBOX_NO_FSYNC")]
    pub no_fsync: bool,
    /// The unprivileged user code runs and browsers execute as, and that sandbox views show
    /// as the owner of the agent's files (never 0).
    #[arg(long, env = "AGENTBOX_SANDBOX_UID", default_value_t = 61000)]
    pub sandbox_uid: u32,
    /// The group of the sandbox user (never 0).
    #[arg(long, env = "AGENTBOX_SANDBOX_GID", default_value_t = 61000)]
    pub sandbox_gid: u32,
    /// Which Chromium browser sessions run.
    #[arg(
        long,
        env = "AGENTBOX_BROWSER",
        value_enum,
        default_value = "headless-shell"
    )]
    pub browser: BrowserFlavor,
    /// The Chromium executable [default: /usr/lib/chromium/chromium-headless-shell or
    /// /usr/lib/chromium/chromium].
    #[arg(long, env = "AGENTBOX_BROWSER_BINARY")]
    pub browser_binary: Option<PathBuf>,
    /// Seconds without activity after which a browser session ends, unless it asks otherwise.
    #[arg(long, env = "AGENTBOX_BROWSER_IDLE_SECONDS", default_value_t = 3600)]
    pub browser_idle_seconds: u64,
    /// The longest idle timeout a session may ask for, in seconds.
    #[arg(
        long,
        env = "AGENTBOX_BROWSER_MAX_IDLE_SECONDS",
        default_value_t = 86400
    )]
    pub browser_max_idle_seconds: u64,
    /// Browser sessions running at once, across agents.
    #[arg(long, env = "AGENTBOX_BROWSER_MAX_SESSIONS", default_value_t = 32)]
    pub browser_max_sessions: usize,
    /// Memory limit of one browser's processes, in bytes.
    #[arg(long, env = "AGENTBOX_BROWSER_MEMORY_BYTES", default_value_t = 1 << 30)]
    pub browser_memory_bytes: u64,
    /// Browsers kept launched ahead of time, so that a new session (default viewport) starts
    /// at once (0: launch each on demand).
    #[arg(long, env = "AGENTBOX_BROWSER_WARM", default_value_t = 1)]
    pub browser_warm: usize,
    /// CPU limit of one browser's processes, in thousandths of a core (0: no limit).
    #[arg(long, env = "AGENTBOX_BROWSER_CPU_MILLICORES", default_value_t = 1000)]
    pub browser_cpu_millicores: u64,
    #[command(flatten)]
    pub runs: ServeRunArgs,
}

/// How `agentbox serve` makes code runs.
#[derive(Debug, Clone, Args)]
pub struct ServeRunArgs {
    /// Runs going at once on the server; more get 429.
    #[arg(long, env = "AGENTBOX_MAX_RUNS", default_value_t = 16)]
    pub max_runs: usize,
    /// Runs going at once for one agent; more get 429.
    #[arg(long, env = "AGENTBOX_MAX_RUNS_PER_AGENT", default_value_t = 8)]
    pub max_runs_per_agent: usize,
    /// Memory limit of one run, in bytes (swap excluded; beyond it the run is killed).
    #[arg(long, env = "AGENTBOX_RUN_MEMORY_BYTES", default_value_t = 1 << 30)]
    pub run_memory_bytes: u64,
    /// Processes and threads one run may have at once.
    #[arg(long, env = "AGENTBOX_RUN_MAX_PROCESSES", default_value_t = 256)]
    pub run_max_processes: u64,
    /// CPU one run may use, in thousandths of a core.
    #[arg(long, env = "AGENTBOX_RUN_CPU_MILLICORES", default_value_t = 1000)]
    pub run_cpu_millicores: u64,
    /// Size of a run's `/tmp`, in bytes (its `/dev/shm` gets a quarter of it).
    #[arg(long, env = "AGENTBOX_RUN_TMP_BYTES", default_value_t = 256 << 20)]
    pub run_tmp_bytes: u64,
    /// Bytes of stdout, and of stderr, a run's result keeps; the rest is dropped and flagged.
    #[arg(long, env = "AGENTBOX_RUN_OUTPUT_BYTES", default_value_t = 1 << 20)]
    pub run_output_bytes: usize,
    /// Let runs that ask for it (`"network": true`) reach the network.
    #[arg(long, env = "AGENTBOX_ALLOW_RUN_NETWORK")]
    pub allow_run_network: bool,
}

/// The Chromium build browser sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrowserFlavor {
    /// `chromium-headless-shell`: starts faster, half the memory.
    HeadlessShell,
    /// Full `chromium` in headless mode.
    Chromium,
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(subcommand)]
    pub command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Create an agent and print its first key.
    Create {
        name: String,
        /// Print `{"agent": ..., "key": ...}`.
        #[arg(long)]
        json: bool,
        /// Storage quota in bytes.
        #[arg(long)]
        quota_bytes: Option<u64>,
        /// Quota on the number of files.
        #[arg(long)]
        quota_files: Option<u64>,
    },
    /// List agents.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create NEW whose tree starts as a snapshot of SRC, and print its key.
    Fork {
        source: String,
        new: String,
        #[arg(long)]
        snapshot: String,
        #[arg(long)]
        json: bool,
    },
    /// Set an agent's quotas (omit a flag to make it unlimited).
    Quota {
        name: String,
        #[arg(long)]
        bytes: Option<u64>,
        #[arg(long)]
        files: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create another key for an agent and print it.
    Create {
        agent: String,
        #[arg(long)]
        json: bool,
    },
    /// List keys (their public ids only), optionally of one agent.
    List {
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, given the key itself or its public id.
    Revoke { key: String },
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Keep blobs unreferenced for less than this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub grace_seconds: u64,
}

/// How the client reaches a server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "AGENTBOX_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The agent's API key.
    #[arg(long, global = true, env = "AGENTBOX_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct FsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: FsCommand,
}

#[derive(Debug, Subcommand)]
pub enum FsCommand {
    /// List a directory.
    Ls {
        #[arg(default_value = "/")]
        path: String,
        /// Read the directory as of this snapshot.
        #[arg(long)]
        snapshot: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Upload a local file (`-` for standard input) to a path in the agent's tree.
    ///
    /// A REMOTE ending in `/` names a directory: the file keeps its local name there.
    Put {
        local: PathBuf,
        remote: String,
        /// Print the server's JSON (`{"path", "size", "hash"}`).
        #[arg(long)]
        json: bool,
    },
    /// Download a file to a local path (`-` or nothing for standard output).
    Get {
        remote: String,
        local: Option<PathBuf>,
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Remove a file or directory.
    Rm {
        path: String,
        /// Remove a directory and everything in it.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Move or rename.
    Mv {
        from: String,
        to: String,
        /// Fail instead of replacing an existing TO.
        #[arg(short = 'n', long)]
        no_clobber: bool,
    },
    /// Show one entry's attributes.
    Stat {
        path: String,
        #[arg(long)]
        snapshot: Option<String>,
        /// Print the server's JSON entry.
        #[arg(long)]
        json: bool,
    },
    /// Create a directory and its parents.
    Mkdir { path: String },
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot the agent's whole tree.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List snapshots.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make the tree exactly what it was in a snapshot.
    Restore { id: String },
    /// Delete a snapshot.
    Delete { id: String },
    /// Paths added, removed and modified from FROM to TO (the live tree if omitted).
    Diff {
        from: String,
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An existing, empty directory to mount on.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Mount from the server at this URL (read-only) instead of from a data directory.
    #[arg(long, env = "AGENTBOX_URL", conflicts_with = "agent")]
    pub url: Option<String>,
    /// The agent's API key, for a mount from a server.
    #[arg(long, env = "AGENTBOX_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Where a mount from a server keeps file contents
    /// [default: $XDG_CACHE_HOME/agentbox or ~/.cache/agentbox].
    #[arg(long, env = "AGENTBOX_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of file contents kept in the cache directory (0: memory only).
    #[arg(long, env = "AGENTBOX_CACHE_BYTES", default_value_t = 1 << 30)]
    pub cache_bytes: u64,
    /// The agent whose tree to mount (from a data directory).
    #[arg(long, default_value = "default")]
    pub agent: String,
    /// Mount this snapshot (id or name), read-only.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Refuse every change through the mount.
    #[arg(long)]
    pub read_only: bool,
    /// Threads serving filesystem requests.
    #[arg(long, default_value_t = fsd::fuse::DEFAULT_THREADS)]
    pub threads: usize,
    /// Most microseconds a serving thread with nothing to do watches for the next request
    /// before it sleeps (0: never; the window adapts below this to how far apart requests
    /// come). Spares programs that make many small calls the cost of waking a sleeping
    /// thread on each, for a little CPU time.
    #[arg(long, default_value_t = fsd::fuse::DEFAULT_BUSY_POLL.as_micros() as u64)]
    pub busy_poll_us: u64,
    /// The background sweep of a read-write mount of a data directory, as the server's.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The program: a file, or `-` for standard input.
    pub file: PathBuf,
    /// python, typescript or bash [default: from the file's extension].
    #[arg(long)]
    pub runtime: Option<String>,
    /// Seconds before the run is killed (at most 300).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The working directory inside the sandbox.
    #[arg(long)]
    pub cwd: Option<String>,
    /// An environment variable for the program, NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A local file fed to the program's standard input.
    #[arg(long)]
    pub stdin: Option<PathBuf>,
    /// Ask for network access (the server must allow it).
    #[arg(long)]
    pub network: bool,
    /// Print the server's JSON result instead of the program's output.
    #[arg(long)]
    pub json: bool,
}
