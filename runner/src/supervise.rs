//! One run from start to finish: a warm sandbox (bwrap waiting in its own cgroup as the
//! unprivileged sandbox user) given its command line and code, stdin, the output, the
//! timeout, and a teardown that kills the whole cgroup, reads its usage and removes it, so
//! no process of the run is left behind.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::bwrap::{self, DataFds, Layout};
use crate::datafd::{self, data_fd};
use crate::environment;
use crate::network;
use crate::output::{self, Captured, OutputChunk, Stream};
use crate::seccomp;
use crate::spec::{InvalidRun, RunSpec, Runtime};
use crate::warm::{WarmPool, WarmSandbox};

/// Sandboxes of each runtime kept started ahead of their runs.
const WARM_SANDBOXES: usize = 2;
/// Threads starting sandboxes (each start mostly waits on the kernel).
const PREPARING_THREADS: usize = 4;

/// The `exit_code` of a run killed at its timeout (as GNU `timeout` reports it).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// How long the output readers may take to finish once every process of the run is gone.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How runs are made on this server.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// The Bun binary (resolved through symlinks); `None` makes typescript runs unavailable.
    pub bun: Option<PathBuf>,
    /// The unprivileged user and group runs execute as (bwrap included).
    pub uid: u32,
    pub gid: u32,
    /// Per-run limits, enforced by the run's cgroup.
    pub memory_bytes: u64,
    pub max_processes: u64,
    pub cpu_millicores: u64,
    /// Size caps of the run's `/tmp` and `/dev/shm`.
    pub tmp_bytes: u64,
    /// The most bytes of stdout, and of stderr, a run's result keeps.
    pub output_bytes: usize,
    /// The largest file a run may write (`RLIMIT_FSIZE`).
    pub max_file_bytes: u64,
    /// The most files a process of the run may have open (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Whether runs may ask for the network.
    pub allow_network: bool,
    /// The slirp4netns binary that links a run's network namespace to the outside; `None`
    /// makes runs with network unavailable.
    pub slirp4netns: Option<PathBuf>,
}

impl RunnerConfig {
    /// The defaults documented in `docs/operations.md`, with Bun looked up at
    /// `/usr/local/bin/bun`.
    pub fn new(uid: u32, gid: u32) -> RunnerConfig {
        RunnerConfig {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            bun: std::fs::canonicalize("/usr/local/bin/bun").ok(),
            uid,
            gid,
            memory_bytes: 1 << 30,
            max_processes: 256,
            cpu_millicores: 1000,
            tmp_bytes: 256 << 20,
            output_bytes: 1 << 20,
            max_file_bytes: 1 << 30,
            open_files: 1024,
            allow_network: false,
            slirp4netns: Some(PathBuf::from("/usr/bin/slirp4netns")).filter(|p| p.exists()),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The program's exit status; `128 + n` if signal `n` ended it;
    /// [`TIMEOUT_EXIT_CODE`] if the timeout did.
    pub exit_code: i32,
    pub timed_out: bool,
    /// The run hit its memory limit and the kernel killed a process of it.
    pub oom_killed: bool,
    /// Wall clock from start to the end of the last process.
    pub duration: Duration,
    /// CPU time of every process of the run.
    pub cpu: Duration,
    pub peak_memory_bytes: u64,
}

/// Why a run could not be made.
#[derive(Debug)]
pub enum RunError {
    /// The request is malformed or not allowed.
    Invalid(InvalidRun),
    /// This server cannot run it (a runtime is not installed).
    Unavailable(String),
    /// Starting or supervising the sandbox failed.
    Io { context: String, source: io::Error },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Invalid(invalid) => write!(f, "{invalid}"),
            RunError::Unavailable(message) => f.write_str(message),
            RunError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for RunError {}

fn io_error(context: &str) -> impl FnOnce(io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        context: context.to_string(),
        source,
    }
}

/// Makes runs: owns the warm sandboxes and the cgroup tree they are created in.
pub struct Runner {
    config: RunnerConfig,
    warm: WarmPool,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .finish()
    }
}

impl Runner {
    /// Opens (creating it) the cgroup `agentbox-<purpose>` beneath the server's own, after
    /// killing and removing the run cgroups a crashed server left in it.
    pub fn new(config: RunnerConfig, purpose: &str) -> io::Result<Runner> {
        if config.uid == 0 || config.gid == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "runs must not execute as root: choose a non-zero sandbox uid and gid",
            ));
        }
        let cgroups = confine::CgroupTree::open(purpose)?;
        let removed = cgroups.remove_leftovers()?;
        if removed > 0 {
            tracing::info!(removed, "removed run cgroups left by an earlier server");
        }
        let warm = WarmPool::start(
            config.clone(),
            Arc::new(cgroups),
            seccomp::filter_bytes(),
            WARM_SANDBOXES,
            PREPARING_THREADS,
        )?;
        Ok(Runner { config, warm })
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs `spec` with `root` (the agent's sandbox view) as its `/`, forwarding output to
    /// `events` as it happens. Returns once every process of the run is gone.
    pub async fn run(
        &self,
        root: &Path,
        spec: &RunSpec,
        events: Option<mpsc::Sender<OutputChunk>>,
    ) -> Result<RunOutcome, RunError> {
        let begun = Instant::now();
        spec.validate(self.config.allow_network)
            .map_err(RunError::Invalid)?;
        let bun = self.config.bun.as_deref();
        if spec.runtime == Runtime::Typescript && bun.is_none() {
            return Err(RunError::Unavailable(
                "typescript runs need Bun at /usr/local/bin/bun: run scripts/setup.sh".into(),
            ));
        }
        if spec.network && self.config.slirp4netns.is_none() {
            return Err(RunError::Unavailable(
                "runs with network need slirp4netns: run scripts/setup.sh".into(),
            ));
        }
        let mut sandbox = self
            .warm
            .take(spec.runtime)
            .await
            .map_err(io_error("starting the sandbox"))?;
        let taken = Instant::now();
        let env = environment::environment(&spec.env);
        let args = bwrap::bwrap_options(&Layout {
            root,
            bun,
            network: spec.network.then_some(sandbox.network),
            tmp_bytes: self.config.tmp_bytes,
            shm_bytes: self.config.tmp_bytes / 4,
            cwd: &spec.cwd,
            env: &env,
            fds: sandbox.fds,
            code_path: spec.runtime.code_path(),
        });
        let started = Instant::now();
        sandbox
            .start(&args, spec.code.clone())
            .await
            .map_err(io_error("starting the sandbox"))?;
        // Taken whatever the run, so a run without network keeps none of them open.
        let ends = sandbox.network_ends.take();
        // Held until the run ends; its process is in the run's cgroup and dies with it.
        let _link = match self.config.slirp4netns.as_deref().filter(|_| spec.network) {
            Some(slirp4netns) => {
                let ends = ends.ok_or_else(|| RunError::Io {
                    context: "linking the run's network".into(),
                    source: io::Error::other("the sandbox has no network descriptors"),
                })?;
                let joiner = sandbox
                    .cgroup
                    .joiner()
                    .map_err(io_error("joining the run's cgroup"))?;
                Some(
                    network::connect(slirp4netns, ends, joiner)
                        .await
                        .map_err(io_error("linking the run's network"))?,
                )
            }
            None => None,
        };
        let WarmSandbox {
            cgroup, mut child, ..
        } = sandbox;

        let stdin = child.stdin.take().map(|mut pipe| {
            let bytes = spec.stdin.clone();
            tokio::spawn(async move {
                // The program may exit without reading: a broken pipe is its business.
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            })
        });
        let cap = self.config.output_bytes;
        let stdout = child
            .stdout
            .take()
            .map(|pipe| tokio::spawn(output::capture(pipe, Stream::Stdout, cap, events.clone())));
        let stderr = child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(output::capture(pipe, Stream::Stderr, cap, events)));

        let waited = tokio::time::timeout(spec.timeout, child.wait()).await;
        let timed_out = waited.is_err();
        let exited = started.elapsed();

        // Whatever is left (background processes, or everything on a timeout) dies now;
        // then the group's figures are final. Removing the group is not the client's wait.
        let ended = Instant::now();
        let (killed, usage) = tokio::task::spawn_blocking(move || {
            let killed = cgroup.kill_all();
            let usage = cgroup.usage();
            if killed.is_ok() {
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = cgroup.remove() {
                        tracing::warn!(%error, "removing a run's cgroup failed");
                    }
                });
            }
            (killed, usage)
        })
        .await
        .map_err(|e| RunError::Io {
            context: "stopping the run".into(),
            source: io::Error::other(e),
        })?;
        killed.map_err(io_error("killing the run's processes"))?;
        let status = match waited {
            Ok(status) => status,
            Err(_) => child.wait().await,
        };
        let status = status.map_err(io_error("waiting for the run"))?;
        let duration = if timed_out { started.elapsed() } else { exited };
        if let Some(task) = stdin {
            task.abort();
        }
        let stdout = drain(stdout).await;
        let stderr = drain(stderr).await;
        let usage = usage.map_err(io_error("reading the run's usage"))?;
        tracing::debug!(
            take_ms = ms(taken - begun),
            run_ms = ms(duration),
            teardown_ms = ms(ended.elapsed()),
            "run phases"
        );

        Ok(RunOutcome {
            stdout: String::from_utf8_lossy(&stdout.bytes).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.bytes).into_owned(),
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
            exit_code: if timed_out {
                TIMEOUT_EXIT_CODE
            } else {
                exit_code(status)
            },
            timed_out,
            oom_killed: usage.oom_killed,
            duration,
            cpu: Duration::from_nanos(usage.cpu_ns),
            peak_memory_bytes: usage.memory_peak_bytes,
        })
    }
}

/// `bwrap` with `args`, an empty environment, and `files` inherited.
fn bwrap_command(
    config: &RunnerConfig,
    args: Vec<OsString>,
    files: &DataFiles,
) -> std::process::Command {
    let mut command = std::process::Command::new(&config.bwrap);
    command.args(args).env_clear();
    let fds = files.raw_list();
    // SAFETY: the hook only calls fcntl on descriptor numbers (async-signal-safe, no
    // allocation: `fds` is moved in whole).
    unsafe {
        command.pre_exec(move || datafd::inheritable(&fds));
    }
    command
}

/// Prepares the bwrap process before exec: the run's cgroup (if any), a session of its own,
/// no core dumps, open files and file sizes limited, the sandbox user without privileges,
/// killed if the server dies.
pub(crate) fn prepare_child(
    config: &RunnerConfig,
    cgroup: Option<confine::Joiner>,
    command: &mut std::process::Command,
) {
    use confine::Rlimit;
    confine::ChildSetup {
        cgroup,
        new_session: true,
        rlimits: vec![
            (Rlimit::Core, 0),
            (Rlimit::OpenFiles, config.open_files),
            (Rlimit::FileSize, config.max_file_bytes),
        ],
        credentials: Some(confine::Credentials {
            uid: config.uid,
            gid: config.gid,
        }),
        no_new_privileges: true,
        parent_death_signal: Some(libc::SIGKILL),
    }
    .apply_to(command);
}

/// A run's bwrap arguments and the data files they name.
struct Invocation {
    args: Vec<OsString>,
    files: DataFiles,
}

impl Invocation {
    fn new(
        config: &RunnerConfig,
        seccomp: &[u8],
        root: &Path,
        spec: &RunSpec,
    ) -> io::Result<Invocation> {
        if spec.network {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a bare sandbox has no network",
            ));
        }
        let (uid, gid) = (config.uid, config.gid);
        let files = DataFiles {
            seccomp: data_fd(c"agentbox-seccomp", seccomp)?,
            code: data_fd(c"agentbox-code", spec.code.as_bytes())?,
            passwd: data_fd(c"agentbox-passwd", environment::passwd(uid, gid).as_bytes())?,
            group: data_fd(c"agentbox-group", environment::group(gid).as_bytes())?,
            hosts: data_fd(c"agentbox-hosts", environment::hosts().as_bytes())?,
        };
        let env = environment::environment(&spec.env);
        let args = bwrap::bwrap_options(&Layout {
            root,
            bun: config.bun.as_deref(),
            network: None,
            tmp_bytes: config.tmp_bytes,
            shm_bytes: config.tmp_bytes / 4,
            cwd: &spec.cwd,
            env: &env,
            fds: files.raw(),
            code_path: spec.runtime.code_path(),
        });
        let mut args = args;
        args.extend(bwrap::command_arguments(spec.runtime));
        Ok(Invocation { args, files })
    }
}

/// The bwrap process of a run exactly as [`Runner::run`] starts it (the same arguments,
/// user, session and privileges) but without its cgroup, timeout or output handling: the
/// baseline the run benchmark compares runs with. One per process: bwrap consumes the data
/// files it is given.
pub struct BareSandbox {
    command: std::process::Command,
    _files: DataFiles,
}

impl BareSandbox {
    pub fn new(config: &RunnerConfig, root: &Path, spec: &RunSpec) -> io::Result<BareSandbox> {
        let Invocation { args, files } =
            Invocation::new(config, &seccomp::filter_bytes(), root, spec)?;
        let mut command = bwrap_command(config, args, &files);
        prepare_child(config, None, &mut command);
        Ok(BareSandbox {
            command,
            _files: files,
        })
    }

    /// The command, to run once (its output is the caller's to direct).
    pub fn command(&mut self) -> &mut std::process::Command {
        &mut self.command
    }
}

struct DataFiles {
    seccomp: OwnedFd,
    code: OwnedFd,
    passwd: OwnedFd,
    group: OwnedFd,
    hosts: OwnedFd,
}

impl DataFiles {
    fn raw(&self) -> DataFds {
        let [seccomp, code, passwd, group, hosts] = self.raw_list();
        DataFds {
            seccomp,
            code,
            passwd,
            group,
            hosts,
        }
    }

    fn raw_list(&self) -> [i32; 5] {
        let list = datafd::raw(&[
            &self.seccomp,
            &self.code,
            &self.passwd,
            &self.group,
            &self.hosts,
        ]);
        [list[0], list[1], list[2], list[3], list[4]]
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// The captured stream, once its reader finishes (it does once the run's processes are
/// gone; a reader still going after [`OUTPUT_DRAIN_TIMEOUT`] is abandoned).
async fn drain(task: Option<tokio::task::JoinHandle<io::Result<Captured>>>) -> Captured {
    let Some(task) = task else {
        return Captured::default();
    };
    let abort = task.abort_handle();
    match tokio::time::timeout(OUTPUT_DRAIN_TIMEOUT, task).await {
        Ok(Ok(Ok(captured))) => captured,
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "reading a run's output failed");
            Captured::default()
        }
        Ok(Err(_)) | Err(_) => {
            abort.abort();
            tracing::warn!("a run's output did not end after its processes were gone");
            Captured::default()
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
