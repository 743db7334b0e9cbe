//! The baselines: the same work done directly on the disk, with nothing in between.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Creates (or truncates) `path`, writes `data` with `write_all` and fsyncs it.
pub fn write_fsync(path: &Path, data: &[u8]) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("fsyncing {}", path.display()))
}

/// Reads the whole of `path` into `buf` (cleared first, its allocation reused).
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    File::open(path)
        .and_then(|mut file| file.read_to_end(buf))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(())
}

/// The filesystem holding `path` as `ext4 on /dev/vda`, from `/proc/mounts`; `None` if it
/// cannot be told.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount_point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, description)| description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_fsync(&path, b"hello").unwrap();
        let mut buf = Vec::new();
        read_into(&path, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
        assert!(filesystem_of(dir.path()).is_some());
    }
}
