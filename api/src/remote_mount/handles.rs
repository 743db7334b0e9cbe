//! Open files and directories. A file handle pins the version (content hash) of the file
//! it was opened on; a directory handle holds the listing taken when it was opened, so
//! reading it in several calls sees one consistent list.
//!
//! The table also decides when the kernel may keep the pages it cached for an inode
//! across opens: only when the inode is opened on the same hash as before and no handle
//! on another version has served reads since (content addressing makes equal hashes equal
//! bytes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::content::FileRef;
use super::meta::Meta;

/// An open file.
#[derive(Debug, Clone)]
pub struct OpenFile {
    pub ino: u64,
    pub file: FileRef,
    /// Whether any bytes were served through this handle.
    pub served: bool,
}

/// One row of an open directory, `.` and `..` included.
#[derive(Debug, Clone)]
pub struct DirRow {
    pub ino: u64,
    pub name: String,
    pub meta: Meta,
}

#[derive(Debug, Default)]
pub struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<u64, OpenFile>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirRow>>>>,
    /// The version whose pages the kernel may hold for each inode; `None` when unknown.
    page_cache: Mutex<HashMap<u64, Option<blake3::Hash>>>,
}

/// Locks a table whose every change is a single insert or remove.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Handles {
    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Opens `file` as inode `ino`; returns the handle and whether the kernel may keep the
    /// pages it cached for the inode.
    pub fn open_file(&self, ino: u64, file: FileRef) -> (u64, bool) {
        let keep = {
            let mut pages = lock(&self.page_cache);
            let keep = file.hash.is_some() && pages.get(&ino) == Some(&file.hash);
            pages.insert(ino, file.hash);
            keep
        };
        let fh = self.next();
        lock(&self.files).insert(
            fh,
            OpenFile {
                ino,
                file,
                served: false,
            },
        );
        (fh, keep)
    }

    pub fn file(&self, fh: u64) -> Option<OpenFile> {
        lock(&self.files).get(&fh).cloned()
    }

    /// Points a handle that has served nothing yet at a newer version of its file.
    pub fn replace(&self, fh: u64, file: FileRef) {
        if let Some(open) = lock(&self.files).get_mut(&fh) {
            open.file = file;
        }
    }

    /// Notes that `fh` is about to serve bytes (call before replying, so an open racing
    /// with the reply already sees it).
    pub fn serving(&self, fh: u64) {
        let Some((ino, hash)) = lock(&self.files).get_mut(&fh).map(|open| {
            open.served = true;
            (open.ino, open.file.hash)
        }) else {
            return;
        };
        let mut pages = lock(&self.page_cache);
        if pages.get(&ino) != Some(&hash) {
            // The kernel's pages for this inode may now mix versions.
            pages.insert(ino, None);
        }
    }

    pub fn close_file(&self, fh: u64) {
        lock(&self.files).remove(&fh);
    }

    pub fn open_dir(&self, rows: Vec<DirRow>) -> u64 {
        let fh = self.next();
        lock(&self.dirs).insert(fh, Arc::new(rows));
        fh
    }

    pub fn dir(&self, fh: u64) -> Option<Arc<Vec<DirRow>>> {
        lock(&self.dirs).get(&fh).cloned()
    }

    pub fn close_dir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8]) -> FileRef {
        FileRef {
            path: "/f".into(),
            hash: Some(blake3::hash(content)),
            size: content.len() as u64,
        }
    }

    #[test]
    fn pages_are_kept_only_for_the_same_version() {
        let handles = Handles::default();
        let (a, keep) = handles.open_file(5, file(b"one"));
        assert!(!keep, "nothing known about the kernel's pages yet");
        handles.serving(a);
        let (b, keep) = handles.open_file(5, file(b"one"));
        assert!(keep);
        assert_ne!(a, b);
        let (_, keep) = handles.open_file(5, file(b"two"));
        assert!(!keep, "a new version drops the pages");
        // The old handle serving its version after that mixes versions in the kernel.
        handles.serving(a);
        let (_, keep) = handles.open_file(5, file(b"two"));
        assert!(!keep);
        let (_, keep) = handles.open_file(5, file(b"two"));
        assert!(keep);
    }

    #[test]
    fn handles_come_and_go() {
        let handles = Handles::default();
        let (fh, _) = handles.open_file(3, file(b"x"));
        assert!(handles.file(fh).is_some_and(|f| !f.served));
        handles.replace(fh, file(b"y"));
        assert_eq!(handles.file(fh).map(|f| f.file), Some(file(b"y")));
        handles.close_file(fh);
        assert!(handles.file(fh).is_none());
        let dir = handles.open_dir(Vec::new());
        assert!(handles.dir(dir).is_some());
        handles.close_dir(dir);
        assert!(handles.dir(dir).is_none());
    }
}
