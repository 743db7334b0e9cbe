//! The four columns of the report: where each one's files go, what it is, and what must
//! be taken down after it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use tempfile::TempDir;

use super::mount::Mount;
use super::{Options, agentbox, floor, juicefs};
use crate::storage::disk;

/// Column indices, in report order: the baseline first, the subject last.
pub const EXT4: usize = 0;
pub const JUICEFS: usize = 1;
pub const FLOOR: usize = 2;
pub const AGENTBOX: usize = 3;

/// One filesystem under test.
pub struct Column {
    pub name: &'static str,
    /// The directory the workloads run in; `None` when the column could not be set up.
    pub root: Option<PathBuf>,
    /// What the column is, or why it was not measured.
    pub about: String,
    mount: Option<Mount>,
    /// A filesystem served by this process (the FUSE floor).
    session: Option<fuser::BackgroundSession>,
    scratch: Option<TempDir>,
}

impl Column {
    fn unavailable(name: &'static str, why: String) -> Column {
        Column {
            name,
            root: None,
            about: format!("not measured: {why}"),
            mount: None,
            session: None,
            scratch: None,
        }
    }

    /// Fails when the column's mount is gone or its daemon has exited.
    pub fn check(&mut self) -> Result<()> {
        if self
            .session
            .as_ref()
            .is_some_and(|session| session.guard.is_finished())
        {
            bail!("the {} filesystem is no longer served", self.name);
        }
        match &mut self.mount {
            Some(mount) => mount.check(),
            None => Ok(()),
        }
    }

    /// Unmounts and stops whatever the column started, and removes its scratch directory.
    pub fn close(&mut self) -> Result<()> {
        let mut unmounted = match self.mount.take() {
            Some(mount) => mount.unmount(),
            None => Ok(()),
        };
        if let Some(session) = self.session.take() {
            unmounted = unmounted.and(
                session
                    .umount_and_join()
                    .with_context(|| format!("unmounting the {} filesystem", self.name)),
            );
        }
        if let Some(scratch) = self.scratch.take() {
            let path = scratch.path().display().to_string();
            scratch
                .close()
                .with_context(|| format!("removing {path}"))?;
        }
        unmounted
    }
}

/// A plain directory on the disk under test.
pub fn ext4(work: &Path) -> Result<Column> {
    let root = work.join("ext4");
    fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    let filesystem = disk::filesystem_of(&root).unwrap_or_else(|| "?".to_string());
    let about = if filesystem.starts_with("ext4 ") {
        format!("a plain directory ({filesystem})")
    } else {
        format!("a plain directory, but on {filesystem}, not ext4")
    };
    Ok(Column {
        name: "ext4",
        root: Some(root),
        about,
        mount: None,
        session: None,
        scratch: None,
    })
}

/// A fresh JuiceFS volume mounted in `work`, or the reason there is none.
pub fn juicefs(options: &Options, work: &Path) -> Column {
    const NAME: &str = "JuiceFS";
    if options.no_juicefs {
        return Column::unavailable(NAME, "left out with --no-juicefs".to_string());
    }
    let version = match juicefs::version(&options.juicefs) {
        Ok(version) => version,
        Err(error) => return Column::unavailable(NAME, format!("{error:#}")),
    };
    eprintln!("JuiceFS: formatting and mounting a volume");
    match juicefs::mount(
        &options.juicefs,
        &work.join("juicefs"),
        &work.join("juicefs-mnt"),
    ) {
        Ok(mount) => Column {
            name: NAME,
            root: Some(mount.mountpoint().to_path_buf()),
            about: format!(
                "{version}: SQLite metadata and a local-directory bucket on the same disk, \
                 mounted with `juicefs mount -d`, default options (cache directory beside the \
                 volume, trash off)"
            ),
            mount: Some(mount),
            session: None,
            scratch: None,
        },
        Err(error) => Column::unavailable(NAME, format!("{error:#}")),
    }
}

/// The FUSE floor (`floor.rs`), mounted in `work` and served by this process, or the
/// reason there is none.
pub fn floor(work: &Path) -> Column {
    const NAME: &str = "FUSE floor";
    let mountpoint = work.join("floor-mnt");
    if let Err(error) = fs::create_dir(&mountpoint) {
        return Column::unavailable(NAME, format!("creating {}: {error}", mountpoint.display()));
    }
    match floor::mount(&mountpoint) {
        Ok(session) => Column {
            name: NAME,
            root: Some(mountpoint),
            about: "a FUSE filesystem that keeps everything in memory and does nothing else, \
                    served with agentbox's mount settings: the most FUSE allows here"
                .to_string(),
            mount: None,
            session: Some(session),
            scratch: None,
        },
        Err(error) => Column::unavailable(NAME, format!("{error:#}")),
    }
}

/// The agentbox mount (or the directory given with `--agentbox-dir`), or the reason there
/// is none.
pub fn agentbox(options: &Options, work: &Path) -> Column {
    const NAME: &str = "agentbox";
    if let Some(dir) = &options.agentbox_dir {
        let scratch = tempfile::Builder::new()
            .prefix("agentbox-fs-bench-")
            .tempdir_in(dir)
            .with_context(|| format!("creating a directory in {}", dir.display()));
        return match scratch {
            Ok(scratch) => {
                let filesystem =
                    disk::filesystem_of(scratch.path()).unwrap_or_else(|| "?".to_string());
                Column {
                    name: NAME,
                    root: Some(scratch.path().to_path_buf()),
                    about: format!(
                        "the directory {} ({filesystem}) given with --agentbox-dir, not an \
                         agentbox mount",
                        scratch.path().display()
                    ),
                    mount: None,
                    session: None,
                    scratch: Some(scratch),
                }
            }
            Err(error) => Column::unavailable(NAME, format!("{error:#}")),
        };
    }
    let binary = match crate::server::agentbox_binary(options.agentbox.as_deref()) {
        Ok(binary) => binary,
        Err(error) => return Column::unavailable(NAME, format!("{error}")),
    };
    eprintln!("agentbox: mounting agent default of a fresh data directory");
    match agentbox::mount(&binary, work) {
        Ok(mount) => Column {
            name: NAME,
            root: Some(mount.mountpoint().to_path_buf()),
            about: format!(
                "`{} mount` of agent default, its data directory on the same disk, default \
                 options",
                binary.display()
            ),
            mount: Some(mount),
            session: None,
            scratch: None,
        },
        Err(error) => Column::unavailable(NAME, format!("{error:#}")),
    }
}
