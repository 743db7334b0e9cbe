//! `agentbox mount`: one agent's tree from a data directory, mounted with FUSE for local
//! inspection, until Ctrl-C or SIGTERM (then unmounted cleanly) or until it is unmounted
//! from outside (`fusermount3 -u`, `umount`), when the process ends too. The mount holds
//! the data directory's lock, so it refuses to start while a server uses the directory
//! (and a server refuses to start while it is mounted). With `--url`, the tree comes from
//! a running server instead, read-only (see `remote_mount`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use fsd::fuse::MountConfig;
use fsd::vfs::{Vfs, VfsOptions};
use fsd::{Store, StoreOptions, View};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::MountArgs;

pub fn run(args: MountArgs) -> anyhow::Result<ExitCode> {
    clear_dead_mount(&args.mountpoint)?;
    refuse_non_empty(&args.mountpoint)?;
    if let Some(url) = &args.url {
        return crate::remote_mount::run(&args, url);
    }
    let data_dir = &args.data.data_dir;
    if !data_dir.join("index.db").exists() {
        bail!(
            "{} is not an agentbox data directory (no index.db)",
            data_dir.display()
        );
    }
    let _lock = crate::server::lock_data_dir(data_dir).context(
        "the data directory is in use; stop the server first, or mount through it with --url and --key",
    )?;
    if !args.mountpoint.is_dir() {
        bail!("{} is not a directory", args.mountpoint.display());
    }
    let options = StoreOptions {
        sweep_grace: Duration::from_secs(args.sweep.sweep_grace_seconds),
        batch_window: Some(fsd::BATCH_WINDOW),
        ..StoreOptions::default()
    };
    let store = Store::open(data_dir, options)
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let agent = store
        .agent(&args.agent)?
        .with_context(|| format!("no agent named {}", args.agent))?;
    let view = match &args.snapshot {
        Some(id) => {
            store.snapshot(agent.id, id)?;
            View::Snapshot(id.clone())
        }
        None => View::Live,
    };
    let vfs = Vfs::new(
        store.clone(),
        agent.id,
        VfsOptions {
            read_only: args.read_only,
            view,
            sandbox: false,
        },
    );
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let config = MountConfig {
        uid,
        gid,
        threads: args.threads,
        busy_poll: Duration::from_micros(args.busy_poll_us),
        allow_other: uid == 0,
        fs_name: format!("agentbox:{}", agent.name),
    };
    let mut signals = Signals::install()?;
    let mount = fsd::fuse::mount(vfs, &args.mountpoint, &config)?;
    // A read-write mount holds the data directory as a server does, and sweeps as one
    // does: files written and removed through it leave blobs that nothing needs.
    if !args.read_only && args.snapshot.is_none() {
        signals.spawn_sweeper(store.clone(), args.sweep.sweep_interval_seconds);
    }
    eprintln!(
        "mounted agent {} at {}{}; Ctrl-C unmounts",
        agent.name,
        args.mountpoint.display(),
        args.snapshot
            .as_deref()
            .map(|s| format!(" (snapshot {s}, read-only)"))
            .unwrap_or_default()
    );
    let signalled = signals.wait(|| mount.is_finished())?;
    if !signalled {
        // Unmounted from outside: nothing is left to serve, and the data directory's lock
        // goes with this process.
        mount.join().context("serving the mount")?;
        // The last batch of changes, so the index alone has everything.
        store.sync().context("committing the last changes")?;
        eprintln!("{} was unmounted", args.mountpoint.display());
        return Ok(ExitCode::SUCCESS);
    }
    mount.unmount()?;
    store.sync().context("committing the last changes")?;
    eprintln!("unmounted {}", args.mountpoint.display());
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, caught from the moment this is made (before mounting, so an early
/// Ctrl-C still unmounts cleanly).
pub(crate) struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub(crate) fn install() -> anyhow::Result<Signals> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (interrupt, terminate) = {
            let _entered = runtime.enter();
            (
                signal(SignalKind::interrupt()).context("catching SIGINT")?,
                signal(SignalKind::terminate()).context("catching SIGTERM")?,
            )
        };
        Ok(Signals {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Starts the background sweep of `store`, run while [`Signals::wait`] waits.
    fn spawn_sweeper(&self, store: Store, interval_seconds: u64) {
        let _entered = self.runtime.enter();
        crate::server::spawn_sweeper(store, interval_seconds);
    }

    /// Blocks until SIGINT or SIGTERM (true) or until `ended` (checked a few times a
    /// second) says there is nothing left to wait for (false).
    pub(crate) fn wait(&mut self, ended: impl Fn() -> bool) -> anyhow::Result<bool> {
        let Signals {
            runtime,
            interrupt,
            terminate,
        } = self;
        runtime.block_on(async {
            let mut poll = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = interrupt.recv() => return Ok(true),
                    _ = terminate.recv() => return Ok(true),
                    _ = poll.tick() => if ended() { return Ok(false) },
                }
            }
        })
    }
}

/// Refuses a mount point with files in it: mounted over, they would be hidden until the
/// unmount. (A missing mount point or a file is refused where the mount point is used.)
fn refuse_non_empty(mountpoint: &std::path::Path) -> anyhow::Result<()> {
    let Ok(mut entries) = std::fs::read_dir(mountpoint) else {
        return Ok(());
    };
    if entries.next().is_some() {
        bail!(
            "{} is not empty: mount on an empty directory (what is in it would be hidden \
             while mounted)",
            mountpoint.display()
        );
    }
    Ok(())
}

/// A mount whose process was killed leaves the mount point answering "transport endpoint
/// is not connected"; detach it (`fusermount3 -u -z`, which needs no root for the user who
/// mounted it) so the new mount can take its place.
fn clear_dead_mount(mountpoint: &std::path::Path) -> anyhow::Result<()> {
    let dead = matches!(
        std::fs::metadata(mountpoint),
        Err(error) if error.raw_os_error() == Some(libc::ENOTCONN)
    );
    if dead {
        eprintln!(
            "{} is a dead mount left by a killed process; detaching it",
            mountpoint.display()
        );
        let status = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mountpoint)
            .status()
            .context("running fusermount3")?;
        if !status.success() {
            bail!(
                "could not detach the dead mount at {}",
                mountpoint.display()
            );
        }
    }
    Ok(())
}
