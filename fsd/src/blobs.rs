//! Blob storage: immutable byte strings named by their blake3 hash.
//!
//! [`BlobStore`] is the narrow interface the rest of the store uses, so blobs can later live
//! in an object store; [`LocalBlobs`] keeps them as files under `<data-dir>/blobs/`, fanned
//! out by the first two hex digits of the hash. A blob file appears under its final name
//! only once completely written, so a name always means the full content: it is written as
//! an unnamed file in its fan-out directory (`O_TMPFILE`) and linked under its name, or,
//! where the file system cannot make unnamed files, written to `tmp/` and renamed.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::SystemTime;

use crate::{Error, Hash, Result};

/// Where blob bytes live.
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `hash` (which must be its blake3 hash). Returns false if the blob
    /// was already there.
    fn put(&self, hash: &Hash, data: &[u8]) -> Result<bool>;
    fn get(&self, hash: &Hash) -> Result<Vec<u8>>;
    fn contains(&self, hash: &Hash) -> Result<bool>;
    fn remove(&self, hash: &Hash) -> Result<()>;
    /// Makes every blob stored so far durable.
    fn sync(&self) -> Result<()>;
    /// Says that `hash` will be read soon, so a store that can fetch it in the background
    /// starts now. Only a hint: does nothing by default, and failures are ignored.
    fn prefetch(&self, _hash: &Hash) {}
    /// Every stored blob with its size and modification time.
    fn list(&self) -> Result<Vec<(Hash, u64, SystemTime)>>;
    /// Removes leftovers of writes interrupted by a crash (older than a minute, so a
    /// write in progress in another process is left alone).
    fn clean_partial_writes(&self) -> Result<()>;
}

/// Blobs as files in a local directory.
#[derive(Debug)]
pub struct LocalBlobs {
    root: PathBuf,
    tmp: PathBuf,
    counter: AtomicU64,
    /// Set once the file system refused an unnamed file: blobs go through `tmp/` from then.
    no_unnamed_files: AtomicBool,
    /// Blob files to read into the page cache, for the thread that does it (started on
    /// the first [`BlobStore::prefetch`]; it ends when this is dropped).
    prefetches: OnceLock<Option<SyncSender<PathBuf>>>,
}

/// Prefetches waiting for the prefetching thread, at most; more are dropped.
const PREFETCH_QUEUE: usize = 1024;

impl LocalBlobs {
    pub fn open(root: &Path, tmp: &Path) -> Result<LocalBlobs> {
        fs::create_dir_all(root).map_err(Error::io(format!("creating {}", root.display())))?;
        fs::create_dir_all(tmp).map_err(Error::io(format!("creating {}", tmp.display())))?;
        // Files being written are fanned out like the blobs: a file system allocates a new
        // file's inode near its directory's, and one busy directory makes every creation
        // search the same crowded inode table (ext4 without a journal: several times slower).
        // The blobs' own fan-out directories are made here too, so a write never has to.
        for fan in 0..=255u8 {
            for base in [tmp, root] {
                let dir = base.join(format!("{fan:02x}"));
                fs::create_dir_all(&dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
            }
        }
        Ok(LocalBlobs {
            root: root.to_owned(),
            tmp: tmp.to_owned(),
            counter: AtomicU64::new(0),
            no_unnamed_files: AtomicBool::new(false),
            prefetches: OnceLock::new(),
        })
    }

    fn path_of(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }
}

impl BlobStore for LocalBlobs {
    fn put(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        let path = self.path_of(hash);
        if path.exists() {
            return Ok(false);
        }
        if !self.no_unnamed_files.load(Ordering::Relaxed) {
            match write_unnamed_then_link(&path, data) {
                Ok(()) => return Ok(true),
                Err(error) if unnamed_files_unsupported(&error) => {
                    self.no_unnamed_files.store(true, Ordering::Relaxed);
                }
                Err(source) => {
                    return Err(Error::Io {
                        context: format!("writing blob {hash}"),
                        source,
                    });
                }
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let hex = hash.to_hex();
        let tmp =
            self.tmp
                .join(&hex[..2])
                .join(format!("{}-{}-{n}", std::process::id(), &hex[2..18]));
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(data)?;
            start_writeback(&file);
            drop(file);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            Error::Io {
                context: format!("writing blob {hash}"),
                source,
            }
        })?;
        Ok(true)
    }

    fn get(&self, hash: &Hash) -> Result<Vec<u8>> {
        fs::read(self.path_of(hash)).map_err(Error::io(format!("reading blob {hash}")))
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        Ok(self.path_of(hash).exists())
    }

    fn remove(&self, hash: &Hash) -> Result<()> {
        match fs::remove_file(self.path_of(hash)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(Error::Io {
                context: format!("removing blob {hash}"),
                source: error,
            }),
            _ => Ok(()),
        }
    }

    fn sync(&self) -> Result<()> {
        let dir = fs::File::open(&self.root).map_err(Error::io("opening the blob directory"))?;
        // syncfs flushes every file of the blob directory's filesystem in one call, which
        // is far cheaper than an fsync per blob and covers the renames too.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
        // SAFETY: `fd` is a valid open descriptor for the duration of the call.
        let status = unsafe { libc::syncfs(fd) };
        if status != 0 {
            return Err(Error::Io {
                context: "flushing blobs to disk".into(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn prefetch(&self, hash: &Hash) {
        // Reading the next chunks of a file in the background keeps the disk busy while the
        // current one is copied out: sequential reads from a cold cache. A thread of its
        // own asks for them, so the reader does not wait for the page cache to fill.
        let sender = self.prefetches.get_or_init(|| {
            let (sender, paths) = sync_channel::<PathBuf>(PREFETCH_QUEUE);
            let started = std::thread::Builder::new()
                .name("fsd-prefetch".into())
                .spawn(move || {
                    for path in paths {
                        read_ahead(&path);
                    }
                });
            started.ok().map(|_| sender)
        });
        if let Some(sender) = sender {
            // A full queue means the disk is behind already: drop the hint.
            let _ = sender.try_send(self.path_of(hash));
        }
    }

    fn list(&self) -> Result<Vec<(Hash, u64, SystemTime)>> {
        let mut out = Vec::new();
        let context = || format!("listing {}", self.root.display());
        for fan in fs::read_dir(&self.root).map_err(Error::io(context()))? {
            let fan = fan.map_err(Error::io(context()))?;
            let prefix = fan.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !fan.path().is_dir() {
                continue;
            }
            for entry in fs::read_dir(fan.path()).map_err(Error::io(context()))? {
                let entry = entry.map_err(Error::io(context()))?;
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                let Some(hash) = Hash::from_hex(&name) else {
                    continue;
                };
                let meta = entry.metadata().map_err(Error::io(context()))?;
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((hash, meta.len(), modified));
            }
        }
        Ok(out)
    }

    fn clean_partial_writes(&self) -> Result<()> {
        let context = || format!("cleaning {}", self.tmp.display());
        let mut dirs = vec![self.tmp.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).map_err(Error::io(context()))? {
                let entry = entry.map_err(Error::io(context()))?;
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    if dir == self.tmp {
                        dirs.push(entry.path());
                    }
                    continue;
                }
                let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
                if age.is_some_and(|age| age.as_secs() >= 60) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// Asks the kernel to read the file at `path` into the page cache, without waiting for it.
fn read_ahead(path: &Path) {
    if let Ok(file) = fs::File::open(path) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: `fd` is a valid open descriptor for the duration of the call. The call is
        // advisory: its failure changes nothing about correctness.
        unsafe {
            libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
}

/// Asks the kernel to start writing a new blob to disk now, without waiting, so that the
/// flush before the index commit finds most of a large upload already written.
/// Writes `data` to an unnamed file in `path`'s directory and links it as `path`: a crash
/// leaves no file behind, and the name appears with the whole content or not at all.
fn write_unnamed_then_link(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a blob path has a directory"))?;
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
    };
    let mut file = match open() {
        // A fan-out directory removed by hand since the start.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            open()?
        }
        other => other?,
    };
    file.write_all(data)?;
    start_writeback(&file);
    let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::other("descriptor path with NUL"))?;
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("blob path with NUL"))?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        let error = io::Error::last_os_error();
        // Stored meanwhile by another writer: the same bytes, by their name.
        if error.kind() != io::ErrorKind::AlreadyExists {
            return Err(error);
        }
    }
    Ok(())
}

/// Whether `error` says the file system (or a missing `/proc`) cannot make and link unnamed
/// files, as opposed to a failure of this write.
fn unnamed_files_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
    )
}

fn start_writeback(file: &fs::File) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: `fd` is a valid open descriptor for the duration of the call. The call is
    // advisory: its failure changes nothing about correctness.
    unsafe {
        libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_both_ways(unnamed: bool) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(&dir.path().join("blobs"), &dir.path().join("tmp")).unwrap();
        blobs.no_unnamed_files.store(!unnamed, Ordering::Relaxed);
        let data = b"the same bytes, stored once".repeat(1000);
        let hash = Hash::of(&data);
        assert!(blobs.put(&hash, &data).unwrap(), "a new blob is written");
        assert!(
            !blobs.put(&hash, &data).unwrap(),
            "a stored blob is not written again"
        );
        assert_eq!(blobs.get(&hash).unwrap(), data);
        assert_eq!(
            blobs.no_unnamed_files.load(Ordering::Relaxed),
            !unnamed,
            "this file system makes unnamed files"
        );
        // Nothing is left in the temporary directories either way.
        let leftovers: usize = fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .map(|fan| fs::read_dir(fan.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(leftovers, 0);
        assert_eq!(blobs.list().unwrap().len(), 1);
    }

    #[test]
    fn a_blob_is_written_as_an_unnamed_file_then_linked() {
        stored_both_ways(true);
    }

    #[test]
    fn a_blob_is_written_through_tmp_where_unnamed_files_are_refused() {
        stored_both_ways(false);
    }
}
