//! Writing a file from its start, as a program copying or generating one does: the bytes
//! are chunked and stored as blobs while they arrive, so nothing larger than a few chunks
//! is held in memory, and committing (on flush, fsync or close) indexes the chunk list
//! without reading anything back. The new bytes replace the file's content once they
//! cover all of it; until then (or if the file was changed elsewhere meanwhile) a commit
//! applies them over the file as ordinary writes, and the appender is done.
//!
//! Past [`BACKGROUND_AFTER`] bytes the work moves off the writer's thread into a pipeline:
//! one thread cuts and hashes, another writes the blobs, each on its own core when there is
//! one.
//!
//! The chunking is the same as [`crate::chunker::split`] of the whole content: a cut point
//! depends only on the bytes since the previous cut, so the bytes after the last cut found
//! so far are kept and chunked again once more arrive. Until a file outgrows
//! [`WHOLE_FILE_MAX`] nothing is cut, and a small file is one blob as always.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::chunker::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, INLINE_MAX, Manifest, WHOLE_FILE_MAX};
use crate::index::NewContent;
use crate::store::Store;
use crate::{AgentId, Attr, Error, Hash, Result};

/// Bytes kept after the last cut before looking for more cuts: many chunks' worth, so
/// each byte is scanned about once.
const CUT_EVERY: usize = 16 * CHUNK_MAX;

/// Once a file has grown this large, its chunks are cut on a thread of their own and
/// stored on another while the writer goes on: writes through a mount wait for their reply,
/// so this overlaps the writer's next write with the cutting and hashing of the previous
/// ones, and those with the writing of the blobs before them.
const BACKGROUND_AFTER: u64 = 4 * 1024 * 1024;

/// Writes queued for the cutting thread, at most (each at most a FUSE write, 1 MiB).
const BACKGROUND_QUEUE: usize = 16;

/// Cuts (about [`CUT_EVERY`] bytes each) queued for the storing thread, at most.
const STORE_QUEUE: usize = 4;

/// Content being written from offset 0 of one file; see the module documentation.
pub(crate) struct Appender {
    store: Store,
    ino: u64,
    /// The chunking state, unless it is with the background thread.
    here: Option<Chunks>,
    worker: Option<Worker>,
    /// Bytes written so far (queued ones included).
    len: u64,
    /// The file's content when the appender last committed (or started), to notice a
    /// change made elsewhere in between.
    base: Option<Hash>,
    /// Bytes committed so far.
    committed: u64,
    /// Storing failed: the chunking state names blobs that may not exist, so it must never
    /// be committed; every later use reports the failure.
    failed: bool,
}

/// What the bytes written so far have become.
#[derive(Debug, Default)]
struct Chunks {
    /// Chunks cut for good, their blobs stored.
    cut: Manifest,
    /// The bytes after the last cut.
    tail: Vec<u8>,
    /// Blobs were stored since the last flush to stable storage.
    unsynced: bool,
    /// The blobs of `cut` not committed yet, held away from the sweep.
    held: Vec<Hash>,
}

/// The threads cutting and storing an appender's chunks.
#[derive(Debug)]
struct Worker {
    writes: SyncSender<Vec<u8>>,
    /// The chunking state once every queued write is stored, and the first failure.
    done: JoinHandle<(Chunks, Result<()>)>,
}

/// Complete chunks cut from the front of an appender's bytes, to be stored as blobs.
struct Cut {
    bytes: Vec<u8>,
    /// Each chunk's hash and where it is in `bytes`.
    chunks: Vec<(Hash, std::ops::Range<usize>)>,
}

impl Appender {
    /// Starts writing file `ino` of `store` from offset 0; `base` is its content now
    /// (`None` when empty).
    pub fn new(store: &Store, ino: u64, base: Option<Hash>) -> Appender {
        Appender {
            store: store.clone(),
            ino,
            here: Some(Chunks::default()),
            worker: None,
            len: 0,
            base,
            committed: 0,
            failed: false,
        }
    }

    /// Bytes written so far: where the next write must start to be an append.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether bytes were written since the last commit.
    pub fn has_uncommitted(&self) -> bool {
        self.len != self.committed
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if let Some(Worker { writes, done }) = self.worker.take() {
            drop(writes);
            if let Ok((chunks, _)) = done.join() {
                self.here = Some(chunks);
            }
        }
        if let Some(chunks) = &self.here {
            self.store.release_blobs(&chunks.held);
        }
    }
}

impl Store {
    /// Appends `data` to what `appender` has written, storing the chunks that are complete
    /// (on the appender's threads once the file is large).
    pub(crate) fn append(&self, appender: &mut Appender, data: &[u8]) -> Result<()> {
        let appended = self.append_bytes(appender, data);
        if appended.is_err() {
            appender.failed = true;
        }
        appended
    }

    /// The work of [`Store::append`], whose failure marks the appender failed.
    fn append_bytes(&self, appender: &mut Appender, data: &[u8]) -> Result<()> {
        if appender.failed {
            return Err(failed_before());
        }
        appender.len += data.len() as u64;
        if let Some(worker) = &appender.worker {
            if worker.writes.send(data.to_vec()).is_ok() {
                return Ok(());
            }
            // The thread stopped: it says why.
            return self.gather(appender).map(|_| ());
        }
        let chunks = appender
            .here
            .as_mut()
            .ok_or_else(|| Error::Corrupt("an appender lost its chunks".into()))?;
        if let Some(cut) = self.cut_complete(chunks, data) {
            chunks.unsynced |= self.store_cut(&cut)?;
        }
        if appender.len >= BACKGROUND_AFTER
            && let Some(chunks) = appender.here.take()
        {
            let (writes, queue) = sync_channel::<Vec<u8>>(BACKGROUND_QUEUE);
            let store = self.clone();
            let done = std::thread::Builder::new()
                .name("fsd-appender".into())
                .spawn(move || store.cut_in_background(chunks, queue))
                .map_err(Error::io("starting a thread to store a file"))?;
            appender.worker = Some(Worker { writes, done });
        }
        Ok(())
    }

    /// The cutting thread: cuts the queued writes into chunks and hands them to a storing
    /// thread of its own; once the queue is closed, waits for the storing to finish.
    fn cut_in_background(
        &self,
        mut chunks: Chunks,
        queue: Receiver<Vec<u8>>,
    ) -> (Chunks, Result<()>) {
        let (cuts, to_store) = sync_channel::<Cut>(STORE_QUEUE);
        let store = self.clone();
        let storing = std::thread::Builder::new()
            .name("fsd-blob-writer".into())
            .spawn(move || {
                let mut wrote = false;
                for cut in to_store {
                    wrote |= store.store_cut(&cut)?;
                }
                Ok(wrote)
            });
        let storing = match storing {
            Ok(thread) => thread,
            Err(error) => {
                return (
                    chunks,
                    Err(Error::io("starting a thread to store a file")(error)),
                );
            }
        };
        for data in queue {
            if let Some(cut) = self.cut_complete(&mut chunks, &data)
                && cuts.send(cut).is_err()
            {
                // The storing thread stopped: it says why once joined.
                break;
            }
        }
        drop(cuts);
        let outcome = match storing.join() {
            Ok(Ok(wrote)) => {
                chunks.unsynced |= wrote;
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Corrupt("the thread storing a file failed".into())),
        };
        (chunks, outcome)
    }

    /// Waits for the appender's thread, if any, to store everything queued, and takes the
    /// chunking state back.
    fn gather<'a>(&self, appender: &'a mut Appender) -> Result<&'a mut Chunks> {
        if let Some(Worker { writes, done }) = appender.worker.take() {
            drop(writes);
            let (chunks, outcome) = done
                .join()
                .map_err(|_| Error::Corrupt("the thread storing a file failed".into()))?;
            appender.here = Some(chunks);
            if outcome.is_err() {
                appender.failed = true;
            }
            outcome?;
        }
        if appender.failed {
            return Err(failed_before());
        }
        appender
            .here
            .as_mut()
            .ok_or_else(|| Error::Corrupt("an appender lost its chunks".into()))
    }

    /// Adds `data` to `chunks` and cuts off the chunks that are complete, if there are
    /// enough bytes to look for cuts: they are in the manifest and held from then on, and
    /// returned to be stored.
    fn cut_complete(&self, chunks: &mut Chunks, data: &[u8]) -> Option<Cut> {
        chunks.tail.extend_from_slice(data);
        let total = chunks.cut.size + chunks.tail.len() as u64;
        if total as usize <= WHOLE_FILE_MAX || chunks.tail.len() < CUT_EVERY {
            return None;
        }
        // Every chunk but the last is final: its cut does not depend on what comes next.
        let found: Vec<(usize, usize)> =
            fastcdc::v2020::FastCDC::new(&chunks.tail, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
                .map(|chunk| (chunk.offset, chunk.length))
                .collect();
        let ((last_offset, _), complete) = found.split_last()?;
        let mut cut = Vec::with_capacity(complete.len());
        for (offset, length) in complete {
            let range = *offset..offset + length;
            let hash = Hash::of(&chunks.tail[range.clone()]);
            // Held before it is looked for, so a sweep cannot take it from now on.
            self.hold_blob(hash);
            chunks.held.push(hash);
            chunks.cut.push(hash, *length as u64);
            cut.push((hash, range));
        }
        // The cut bytes leave with the chunks; the rest starts the next tail, in a buffer
        // big enough not to grow before the next cut (writes are a FUSE write, 1 MiB, at
        // most).
        let mut rest = Vec::with_capacity(CUT_EVERY + (1 << 20));
        rest.extend_from_slice(&chunks.tail[*last_offset..]);
        chunks.tail.truncate(*last_offset);
        let bytes = std::mem::replace(&mut chunks.tail, rest);
        Some(Cut { bytes, chunks: cut })
    }

    /// Stores the chunks of `cut` as blobs; says whether any was new.
    fn store_cut(&self, cut: &Cut) -> Result<bool> {
        let mut wrote = false;
        for (hash, range) in &cut.chunks {
            // Complete chunks are at least CHUNK_MIN long, so never inline.
            wrote |= self.inner.blobs.put(hash, &cut.bytes[range.clone()])?;
        }
        Ok(wrote)
    }

    /// Commits what `appender` has written as the content of its file (which it replaces):
    /// blobs first made durable, then one index transaction. Returns the file's attributes
    /// and whether the appender can go on appending: not if the file is longer than what
    /// was written or was changed elsewhere meanwhile, in which case what was written
    /// since the last commit is applied over the file as it is now (as buffered writes
    /// are) and the appender is done.
    pub(crate) fn commit_appended(
        &self,
        agent: AgentId,
        appender: &mut Appender,
    ) -> Result<(Attr, bool)> {
        let chunks = self.gather(appender)?;
        let mut content = NewContent {
            manifest: chunks.cut.clone(),
            inline: Vec::new(),
        };
        let blobs = &self.inner.blobs;
        let mut wrote = chunks.unsynced;
        if content.manifest.chunks.is_empty() && chunks.tail.len() <= WHOLE_FILE_MAX {
            store_piece(&mut content, &chunks.tail, &mut wrote, blobs.as_ref())?;
        } else {
            let tail = &chunks.tail;
            for chunk in fastcdc::v2020::FastCDC::new(tail, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX) {
                let bytes = &tail[chunk.offset..chunk.offset + chunk.length];
                store_piece(&mut content, bytes, &mut wrote, blobs.as_ref())?;
            }
        }
        if wrote && self.inner.options.durable {
            blobs.sync()?;
        }
        chunks.unsynced = false;
        let ino = appender.ino;
        let done = self.replace_content_logged(agent, ino, appender.base, &content)?;
        let Some(attr) = done else {
            // A piece at a time, as a handle's buffered writes are committed.
            let mut from = appender.committed;
            let end = appender.len();
            let mut attr = None;
            while from < end || attr.is_none() {
                let to = end.min(from + crate::vfs::WRITE_BUFFER_MAX as u64);
                let bytes = self.appended(appender, from, to)?;
                attr = Some(self.write_many_ino(agent, ino, &[(from, &bytes)])?);
                from = to;
            }
            let attr = attr.ok_or_else(|| Error::Corrupt("nothing committed".into()))?;
            return Ok((attr, false));
        };
        // Named by the index now: the sweep may see them.
        if let Some(chunks) = appender.here.as_mut() {
            self.release_blobs(&std::mem::take(&mut chunks.held));
        }
        appender.base = attr.hash.filter(|_| attr.size > 0);
        appender.committed = appender.len();
        Ok((attr, true))
    }
}

impl Store {
    /// The bytes `appender` holds in `[from, to)`: from the blobs of the chunks cut (all
    /// large enough to be blob files), then from its tail.
    fn appended(&self, appender: &mut Appender, from: u64, to: u64) -> Result<Vec<u8>> {
        let chunks = self.gather(appender)?;
        let cut = &chunks.cut;
        let mut bytes = Vec::with_capacity((to - from) as usize);
        if from < cut.size {
            let mut reader = crate::FileReader::new(self.clone(), cut.clone(), cut.content_hash());
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(from))
                .map_err(Error::io("seeking in written content"))?;
            std::io::Read::read_to_end(
                &mut std::io::Read::take(&mut reader, to.min(cut.size) - from),
                &mut bytes,
            )
            .map_err(Error::io("reading written content"))?;
        }
        let tail_from = (from.max(cut.size) - cut.size) as usize;
        let tail_to = (to.max(cut.size) - cut.size) as usize;
        if tail_from < tail_to {
            bytes.extend_from_slice(&chunks.tail[tail_from..tail_to]);
        }
        Ok(bytes)
    }
}

/// What an appender reports once storing its bytes has failed.
fn failed_before() -> Error {
    Error::Corrupt("an earlier write to this file could not be stored".into())
}

/// Stores one piece of new content: in the index when small, as a blob otherwise.
fn store_piece(
    content: &mut NewContent,
    bytes: &[u8],
    wrote: &mut bool,
    blobs: &dyn crate::blobs::BlobStore,
) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let hash = Hash::of(bytes);
    if bytes.len() < INLINE_MAX {
        content.inline.push((hash, bytes.to_vec()));
    } else {
        *wrote |= blobs.put(&hash, bytes)?;
    }
    content.manifest.push(hash, bytes.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::split;
    use crate::chunker::tests::pseudo_random;
    use crate::{FsPath, NewNode, StoreOptions, View, WriteOptions};

    fn store() -> (tempfile::TempDir, Store, AgentId) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            durable: false,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        let agent = store.create_agent("a").unwrap().id;
        (dir, store, agent)
    }

    fn new_file(store: &Store, agent: AgentId, name: &str) -> u64 {
        let node = NewNode::File { mode: 0o644 };
        store
            .create_at(agent, 1, name.as_bytes(), node)
            .unwrap()
            .0
            .ino
    }

    fn read(store: &Store, agent: AgentId, name: &str) -> Vec<u8> {
        let path = FsPath::parse(&format!("/{name}")).unwrap();
        store
            .read_file(agent, &path, &View::Live, 0, u64::MAX)
            .unwrap()
    }

    #[test]
    fn appended_content_is_chunked_as_a_whole_file_would_be() {
        let (_dir, store, agent) = store();
        let data = pseudo_random(5 * 1024 * 1024 + 4321, 21);
        for (n, piece) in [1usize, 4096, 131_072, 1_048_576, 3_000_001]
            .iter()
            .enumerate()
        {
            let name = format!("f{n}");
            let ino = new_file(&store, agent, &name);
            let mut appender = Appender::new(&store, ino, None);
            let mut expected = Vec::new();
            // Commit now and then, as flushes do, and go on appending.
            for (i, part) in data.chunks(*piece).take(4000).enumerate() {
                store.append(&mut appender, part).unwrap();
                expected.extend_from_slice(part);
                if i % 7 == 3 {
                    store.commit_appended(agent, &mut appender).unwrap();
                }
            }
            let (attr, going_on) = store.commit_appended(agent, &mut appender).unwrap();
            assert!(going_on);
            let whole = split(&mut &expected[..], None, &mut |_, _| Ok(())).unwrap();
            assert_eq!(attr.size, expected.len() as u64);
            assert_eq!(attr.hash, Some(whole.content_hash()), "pieces of {piece}");
            assert!(read(&store, agent, &name) == expected);
        }
        assert!(store.fsck().unwrap().is_clean());
    }

    #[test]
    fn a_change_made_elsewhere_meanwhile_is_kept_under_the_new_bytes() {
        let (_dir, store, agent) = store();
        let ino = new_file(&store, agent, "f");
        let mut appender = Appender::new(&store, ino, None);
        store.append(&mut appender, b"hello").unwrap();
        store.commit_appended(agent, &mut appender).unwrap();
        store.append(&mut appender, b" world").unwrap();
        let path = FsPath::parse("/f").unwrap();
        let elsewhere = b"0123456789abcdef".to_vec();
        store
            .write_file(agent, &path, &mut &elsewhere[..], &WriteOptions::default())
            .unwrap();
        let (attr, going_on) = store.commit_appended(agent, &mut appender).unwrap();
        assert!(!going_on);
        assert_eq!(read(&store, agent, "f"), b"01234 worldbcdef");
        assert_eq!(attr.size, 16);
    }

    #[test]
    fn overwriting_part_of_a_longer_file_keeps_the_rest() {
        let (_dir, store, agent) = store();
        let ino = new_file(&store, agent, "f");
        let old = pseudo_random(3 * 1024 * 1024, 22);
        let mut first = Appender::new(&store, ino, None);
        store.append(&mut first, &old).unwrap();
        let (attr, _) = store.commit_appended(agent, &mut first).unwrap();
        let new = pseudo_random(2 * 1024 * 1024 + 5, 23);
        let mut second = Appender::new(&store, ino, attr.hash);
        store.append(&mut second, &new).unwrap();
        let (attr, going_on) = store.commit_appended(agent, &mut second).unwrap();
        assert!(!going_on);
        let mut expected = new.clone();
        expected.extend_from_slice(&old[new.len()..]);
        assert_eq!(attr.size, expected.len() as u64);
        assert!(read(&store, agent, "f") == expected);

        // Covering the whole file replaces it.
        let newer = pseudo_random(3 * 1024 * 1024 + 1, 24);
        let mut third = Appender::new(&store, ino, attr.hash);
        store.append(&mut third, &newer).unwrap();
        let (_, going_on) = store.commit_appended(agent, &mut third).unwrap();
        assert!(going_on);
        assert!(read(&store, agent, "f") == newer);
    }

    #[test]
    fn a_file_whose_blobs_cannot_be_stored_is_never_committed() {
        let (dir, store, agent) = store();
        let ino = new_file(&store, agent, "f");
        let before = read(&store, agent, "f");
        // Every blob directory becomes a file: storing any blob fails from now on.
        for base in ["blobs", "tmp"] {
            for fan in 0..=255u8 {
                let fan_dir = dir.path().join(base).join(format!("{fan:02x}"));
                std::fs::remove_dir_all(&fan_dir).unwrap();
                std::fs::write(&fan_dir, b"not a directory").unwrap();
            }
        }
        let data = pseudo_random(12 * 1024 * 1024, 26);
        let mut appender = Appender::new(&store, ino, None);
        // Past the first few MiB the storing happens on other threads: a write may be
        // accepted before the failure is known (so their results are not checked), but it
        // is reported by the commit at the latest, and again by anything after it.
        for part in data.chunks(1 << 20) {
            let _ = store.append(&mut appender, part);
        }
        assert!(store.commit_appended(agent, &mut appender).is_err());
        assert!(store.commit_appended(agent, &mut appender).is_err());
        assert!(store.append(&mut appender, b"more").is_err());
        assert_eq!(read(&store, agent, "f"), before);
        drop(appender);
        assert!(store.inner.held.lock().unwrap().is_empty());
    }

    #[test]
    fn the_sweep_leaves_blobs_of_uncommitted_content_alone() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            durable: false,
            sweep_grace: std::time::Duration::ZERO,
            batch_window: None,
        };
        let store = Store::open(dir.path(), options).unwrap();
        let agent = store.create_agent("a").unwrap().id;
        let ino = new_file(&store, agent, "f");
        let data = pseudo_random(7 * 1024 * 1024, 25);
        let mut appender = Appender::new(&store, ino, None);
        for part in data.chunks(1 << 20) {
            store.append(&mut appender, part).unwrap();
        }
        assert!(!store.gather(&mut appender).unwrap().cut.chunks.is_empty());
        store.sweep().unwrap();
        store.commit_appended(agent, &mut appender).unwrap();
        assert!(read(&store, agent, "f") == data);
        drop(appender);
        assert!(store.inner.held.lock().unwrap().is_empty());
        assert!(store.fsck().unwrap().is_clean());
    }
}
