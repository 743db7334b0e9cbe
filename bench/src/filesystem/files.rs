//! The small-file workload, done with std::fs as a program would: create and write each
//! file, stat each, list the directory, unlink each, every phase timed on its own.
//!
//! Nothing is synced or dropped between the phases, so stat and readdir see whatever the
//! kernel and the filesystem cache after the creates, as a program that has just written
//! its files would. Between readdir and unlink (untimed) a sample of the files is read back
//! and compared, so a filesystem that loses or mangles data cannot post a good figure.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::interrupt;

/// Every how many files one is read back and compared.
const CHECK_EVERY: usize = 97;

/// Seconds each phase took for all the files.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub create: f64,
    pub stat: f64,
    pub readdir: f64,
    pub unlink: f64,
}

/// Runs the phases on `contents.len()` new files in the new directory `dir`, and removes
/// it.
pub fn round(dir: &Path, contents: &[Vec<u8>]) -> Result<Timings> {
    fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths: Vec<PathBuf> = (0..contents.len())
        .map(|i| dir.join(format!("f{i:05}.dat")))
        .collect();

    let start = Instant::now();
    for (path, content) in paths.iter().zip(contents) {
        let mut file =
            File::create(path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(content)
            .with_context(|| format!("writing {}", path.display()))?;
        drop(file);
        interrupt::check()?;
    }
    let create = start.elapsed().as_secs_f64();

    let start = Instant::now();
    for (path, content) in paths.iter().zip(contents) {
        let meta = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
        if meta.len() != content.len() as u64 {
            bail!(
                "stat {} says {} bytes, {} were written",
                path.display(),
                meta.len(),
                content.len()
            );
        }
        interrupt::check()?;
    }
    let stat = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut listed = Vec::with_capacity(paths.len());
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        listed.push(entry.file_name());
    }
    let readdir = start.elapsed().as_secs_f64();
    let names: HashSet<&OsStr> = listed.iter().map(OsString::as_os_str).collect();
    let missing = paths
        .iter()
        .filter(|path| path.file_name().is_none_or(|name| !names.contains(name)))
        .count();
    if missing > 0 || listed.len() != paths.len() {
        bail!(
            "listing {} gave {} entries for {} files ({missing} missing)",
            dir.display(),
            listed.len(),
            paths.len()
        );
    }

    for (path, content) in paths.iter().zip(contents).step_by(CHECK_EVERY) {
        let read = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if &read != content {
            bail!(
                "{} reads back {} bytes that differ from the {} written",
                path.display(),
                read.len(),
                content.len()
            );
        }
    }

    let start = Instant::now();
    for path in &paths {
        fs::remove_file(path).with_context(|| format!("unlinking {}", path.display()))?;
        interrupt::check()?;
    }
    let unlink = start.elapsed().as_secs_f64();
    fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(Timings {
        create,
        stat,
        readdir,
        unlink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_leaves_nothing_behind() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("files");
        let contents: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i; 2700]).collect();
        let timings = round(&dir, &contents).unwrap();
        assert!(timings.create > 0.0 && timings.unlink > 0.0);
        assert!(!dir.exists());
    }
}
