//! `agentbox mount`: one agent's tree from a data directory, mounted with FUSE for local
//! inspection, until Ctrl-C or SIGTERM (then unmounted cleanly). The mount holds the data
//! directory's lock, so it refuses to start while a server uses the directory (and a
//! server refuses to start while it is mounted).

use std::process::ExitCode;

use anyhow::{Context, bail};
use fsd::fuse::MountConfig;
use fsd::vfs::{Vfs, VfsOptions};
use fsd::{Store, StoreOptions, View};

use crate::cli::MountArgs;

pub fn run(args: MountArgs) -> anyhow::Result<ExitCode> {
    let data_dir = &args.data.data_dir;
    if !data_dir.join("index.db").exists() {
        bail!(
            "{} is not an agentbox data directory (no index.db)",
            data_dir.display()
        );
    }
    let _lock = crate::server::lock_data_dir(data_dir).context(
        "the data directory is in use; stop the server first (mounting through a running server is not available yet)",
    )?;
    if !args.mountpoint.is_dir() {
        bail!("{} is not a directory", args.mountpoint.display());
    }
    let store = Store::open(data_dir, StoreOptions::default())
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
        store,
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
        allow_other: uid == 0,
        fs_name: format!("agentbox:{}", agent.name),
    };
    let mount = fsd::fuse::mount(vfs, &args.mountpoint, &config)?;
    eprintln!(
        "mounted agent {} at {}{}; Ctrl-C unmounts",
        agent.name,
        args.mountpoint.display(),
        args.snapshot
            .as_deref()
            .map(|s| format!(" (snapshot {s}, read-only)"))
            .unwrap_or_default()
    );
    wait_for_signal()?;
    mount.unmount()?;
    eprintln!("unmounted {}", args.mountpoint.display());
    Ok(ExitCode::SUCCESS)
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    })?;
    Ok(())
}
