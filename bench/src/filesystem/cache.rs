//! Settling the machine between measured steps: write back every dirty page (`sync`) and,
//! when allowed, drop the page cache, dentries and inodes (`echo 3 >
//! /proc/sys/vm/drop_caches`, which needs root). Reads then come from the filesystem
//! under test rather than from pages a previous step left behind, and no column pays for
//! another's writeback. Caches inside FUSE daemons are theirs and stay.

use std::fs::OpenOptions;
use std::io::Write;

use anyhow::{Context, Result};

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Syncs, and drops the kernel's caches if it can.
#[derive(Debug)]
pub struct Settler {
    /// Why caches are not dropped, when they are not.
    cannot_drop: Option<String>,
}

impl Settler {
    /// Tries once, and remembers whether dropping caches works here.
    pub fn probe() -> Settler {
        sync();
        let cannot_drop = drop_caches().err().map(|error| format!("{error:#}"));
        Settler { cannot_drop }
    }

    /// Writes back dirty pages and drops the caches (when possible).
    pub fn settle(&self) -> Result<()> {
        sync();
        if self.cannot_drop.is_none() {
            drop_caches()?;
        }
        Ok(())
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        match &self.cannot_drop {
            None => "sync, then page cache, dentries and inodes dropped (echo 3 > \
                     /proc/sys/vm/drop_caches) before every measured step; caches inside \
                     FUSE daemons stay"
                .to_string(),
            Some(why) => format!(
                "sync before every measured step; the page cache is NOT dropped ({why}), so \
                 reads may come from memory"
            ),
        }
    }

    /// True when reads after [`settle`](Self::settle) are cold in the kernel.
    pub fn drops(&self) -> bool {
        self.cannot_drop.is_none()
    }
}

fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn drop_caches() -> Result<()> {
    OpenOptions::new()
        .write(true)
        .open(DROP_CACHES)
        .and_then(|mut file| file.write_all(b"3\n"))
        .with_context(|| format!("writing {DROP_CACHES}"))
}
