//! Sandboxes started ahead of their runs. A warm sandbox is a bwrap process already in a
//! cgroup of its own, running as the sandbox user, blocked reading its command line from a
//! pipe (`bwrap --args FD`); its code arrives through a second pipe. A run takes one, writes
//! both, and bwrap builds the namespaces from there. Forking, joining the cgroup (slow with
//! cgroup v1, where every join waits for an RCU grace period) and executing bwrap happen
//! off the request's path, on a few long-lived threads that keep sandboxes of each runtime
//! ready.
//!
//! Those threads are also the parent-death reference of the sandboxes they start
//! (`PR_SET_PDEATHSIG` fires when the thread that forked exits): they live as long as the
//! server.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::bwrap::{self, DataFds, NetworkFds};
use crate::datafd::{self, data_fd};
use crate::environment;
use crate::network::{self, NetworkEnds};
use crate::spec::Runtime;
use crate::supervise::{RunnerConfig, prepare_child};

/// How long a run waits for a sandbox before it is told that none can be started.
const TAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed start, so a broken host is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A bwrap process waiting for its command line.
pub struct WarmSandbox {
    pub cgroup: confine::Cgroup,
    pub child: tokio::process::Child,
    /// The descriptor numbers bwrap has its data under.
    pub fds: DataFds,
    /// Those a run with network uses, and the server's ends of them (taken by that run).
    pub network: NetworkFds,
    pub network_ends: Option<NetworkEnds>,
    args: Option<File>,
    code: Option<File>,
}

impl WarmSandbox {
    /// Gives bwrap its arguments and the run's code, closing each pipe after. Returns once
    /// the arguments are written; the code is written by a task of its own, since bwrap
    /// reads it only while it builds the sandbox.
    pub async fn start(&mut self, args: &[OsString], code: String) -> io::Result<()> {
        let mut bytes = Vec::new();
        for arg in args {
            bytes.extend_from_slice(arg.as_bytes());
            bytes.push(0);
        }
        let (Some(args_pipe), Some(code_pipe)) = (self.args.take(), self.code.take()) else {
            return Err(io::Error::other("this sandbox was started already"));
        };
        let mut args_pipe = sender(args_pipe)?;
        args_pipe.write_all(&bytes).await?;
        drop(args_pipe);
        let mut code_pipe = sender(code_pipe)?;
        tokio::spawn(async move {
            // If bwrap fails before reading it all, bwrap reports why.
            let _ = code_pipe.write_all(code.as_bytes()).await;
        });
        Ok(())
    }
}

fn sender(file: File) -> io::Result<tokio::net::unix::pipe::Sender> {
    tokio::net::unix::pipe::Sender::from_file(file)
}

struct Shared {
    ready: Mutex<State>,
    /// Wakes the preparing thread when a sandbox was taken or the pool is dropped.
    wanted: Condvar,
    /// Wakes runs waiting for a sandbox.
    available: Notify,
    stop: AtomicBool,
    target: usize,
}

#[derive(Default)]
struct State {
    /// Ready sandboxes, one queue per runtime (the command is fixed when bwrap starts).
    queues: [VecDeque<WarmSandbox>; 3],
    /// Sandboxes being started, per runtime.
    starting: [usize; 3],
    last_error: Option<String>,
    /// Numbers the cgroups of this process's sandboxes.
    next_id: u64,
}

fn queue_index(runtime: Runtime) -> usize {
    match runtime {
        Runtime::Python => 0,
        Runtime::Typescript => 1,
        Runtime::Bash => 2,
    }
}

impl State {
    /// Ready and starting sandboxes of a runtime.
    fn supply(&self, runtime: Runtime) -> usize {
        let i = queue_index(runtime);
        self.queues[i].len() + self.starting[i]
    }

    /// The runtime with the fewest sandboxes ready or starting, if below `target`.
    fn most_wanted(&self, target: usize) -> Option<Runtime> {
        Runtime::ALL
            .into_iter()
            .min_by_key(|r| self.supply(*r))
            .filter(|r| self.supply(*r) < target)
    }
}

/// Warm sandboxes, refilled by threads of their own.
pub struct WarmPool {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl WarmPool {
    /// Starts `threads` preparing threads, which keep `target` sandboxes of each runtime
    /// ready or starting. Must be called within a tokio runtime (the sandboxes' pipes
    /// belong to it).
    pub fn start(
        config: RunnerConfig,
        cgroups: Arc<confine::CgroupTree>,
        seccomp: Vec<u8>,
        target: usize,
        threads: usize,
    ) -> io::Result<WarmPool> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("runs need a tokio runtime: {e}")))?;
        let shared = Arc::new(Shared {
            ready: Mutex::new(State::default()),
            wanted: Condvar::new(),
            available: Notify::new(),
            stop: AtomicBool::new(false),
            target: target.max(1),
        });
        let seccomp = Arc::new(seccomp);
        let mut handles = Vec::new();
        for _ in 0..threads.max(1) {
            let (shared, config, cgroups, seccomp, runtime) = (
                shared.clone(),
                config.clone(),
                cgroups.clone(),
                seccomp.clone(),
                runtime.clone(),
            );
            let handle = std::thread::Builder::new()
                .name("agentbox-sandboxes".into())
                .spawn(move || {
                    let _runtime = runtime.enter();
                    fill(&shared, &config, &cgroups, &seccomp);
                })?;
            handles.push(handle);
        }
        Ok(WarmPool {
            shared,
            threads: handles,
        })
    }

    /// A warm sandbox for `runtime`, waiting for one to be ready if need be.
    pub async fn take(&self, runtime: Runtime) -> io::Result<WarmSandbox> {
        let deadline = tokio::time::Instant::now() + TAKE_TIMEOUT;
        loop {
            let notified = self.shared.available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = lock(&self.shared.ready);
                if let Some(sandbox) = state.queues[queue_index(runtime)].pop_front() {
                    self.shared.wanted.notify_one();
                    return Ok(sandbox);
                }
                if tokio::time::Instant::now() >= deadline {
                    let reason = state
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "none was ready in time".into());
                    return Err(io::Error::other(format!(
                        "no sandbox could be started: {reason}"
                    )));
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

impl Drop for WarmPool {
    /// Returns once every sandbox of the pool is killed and its cgroup removed, so none
    /// outlives the pool, not even when the process ends right after. A sandbox left
    /// waiting would otherwise read the end of its `--args` pipe once this process is gone
    /// and start without its options (and without the parent-death signal, which bwrap
    /// clears on entering its user namespace).
    fn drop(&mut self) {
        {
            // Under the lock, so that a thread between its check of `stop` and its wait
            // cannot miss the wake-up.
            let _ready = lock(&self.shared.ready);
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.wanted.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn lock(mutex: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The preparing thread: keeps `target` sandboxes ready until the pool is dropped, then
/// drops what it holds (which kills those processes and removes their cgroups).
fn fill(shared: &Shared, config: &RunnerConfig, cgroups: &confine::CgroupTree, seccomp: &[u8]) {
    loop {
        let (runtime, name) = {
            let mut state = lock(&shared.ready);
            let runtime = loop {
                if shared.stop.load(Ordering::SeqCst) {
                    state.queues.iter_mut().for_each(VecDeque::clear);
                    return;
                }
                match state.most_wanted(shared.target) {
                    Some(runtime) => break runtime,
                    None => state = shared.wanted.wait(state).unwrap_or_else(|p| p.into_inner()),
                }
            };
            state.starting[queue_index(runtime)] += 1;
            state.next_id += 1;
            (
                runtime,
                format!("run-{}-{}", std::process::id(), state.next_id),
            )
        };
        let prepared = prepare(config, cgroups, seccomp, runtime, &name);
        let mut state = lock(&shared.ready);
        state.starting[queue_index(runtime)] -= 1;
        match prepared {
            Ok(sandbox) => {
                state.queues[queue_index(runtime)].push_back(sandbox);
                state.last_error = None;
                drop(state);
                shared.available.notify_waiters();
            }
            Err(error) => {
                tracing::warn!(%error, "starting a sandbox failed");
                state.last_error = Some(error.to_string());
                drop(state);
                shared.available.notify_waiters();
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// Starts one sandbox: its cgroup, its data files, and bwrap waiting for its arguments.
fn prepare(
    config: &RunnerConfig,
    cgroups: &confine::CgroupTree,
    seccomp: &[u8],
    runtime: Runtime,
    name: &str,
) -> io::Result<WarmSandbox> {
    let limits = confine::Limits {
        memory_bytes: Some(config.memory_bytes),
        max_processes: Some(config.max_processes),
        cpu_millicores: Some(config.cpu_millicores),
    };
    let cgroup = cgroups.create(name, &limits)?;
    let joiner = cgroup.joiner()?;
    let (args_read, args_write) = datafd::pipe()?;
    let (code_read, code_write) = datafd::pipe()?;
    let (uid, gid) = (config.uid, config.gid);
    let seccomp = data_fd(c"agentbox-seccomp", seccomp)?;
    let passwd = data_fd(c"agentbox-passwd", environment::passwd(uid, gid).as_bytes())?;
    let group = data_fd(c"agentbox-group", environment::group(gid).as_bytes())?;
    let hosts = data_fd(c"agentbox-hosts", environment::hosts().as_bytes())?;
    // Made for every sandbox: whether its run asks for the network is known only later.
    let (info_read, info_write) = datafd::pipe()?;
    let (block_read, block_write) = datafd::pipe()?;
    let resolv = data_fd(c"agentbox-resolv", network::RESOLV_CONF.as_bytes())?;
    let inherited: [RawFd; 9] = [
        args_read.as_raw_fd(),
        code_read.as_raw_fd(),
        seccomp.as_raw_fd(),
        passwd.as_raw_fd(),
        group.as_raw_fd(),
        hosts.as_raw_fd(),
        info_write.as_raw_fd(),
        block_read.as_raw_fd(),
        resolv.as_raw_fd(),
    ];
    let network = NetworkFds {
        info: info_write.as_raw_fd(),
        block: block_read.as_raw_fd(),
        resolv: resolv.as_raw_fd(),
    };
    let fds = DataFds {
        seccomp: seccomp.as_raw_fd(),
        code: code_read.as_raw_fd(),
        passwd: passwd.as_raw_fd(),
        group: group.as_raw_fd(),
        hosts: hosts.as_raw_fd(),
    };
    let mut command = std::process::Command::new(&config.bwrap);
    command
        .arg("--args")
        .arg(args_read.as_raw_fd().to_string())
        .args(bwrap::command_arguments(runtime))
        .env_clear();
    // SAFETY: the hook only calls fcntl on descriptor numbers (async-signal-safe, no
    // allocation: the array is moved in whole).
    unsafe {
        command.pre_exec(move || datafd::inheritable(&inherited));
    }
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    prepare_child(config, Some(joiner), command.as_std_mut());
    let child = command.spawn()?;
    // The child has its copies; ours of the read ends and data files close here.
    drop((args_read, code_read, seccomp, passwd, group, hosts));
    drop((info_write, block_read, resolv));
    Ok(WarmSandbox {
        cgroup,
        child,
        fds,
        network,
        network_ends: Some(NetworkEnds {
            info: File::from(info_read),
            block: File::from(block_write),
        }),
        args: Some(File::from(args_write)),
        code: Some(File::from(code_write)),
    })
}
