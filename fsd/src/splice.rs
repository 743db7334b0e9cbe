//! Edits inside large files: a ranged write or a size change re-chunks only the region it
//! touches and keeps every chunk before and after it.
//!
//! Because a cut point depends only on the bytes since the previous cut, chunking can
//! restart at the old cut before the edit, and stops as soon as a new cut lands on an old
//! cut past the edit; everything after is unchanged. The result is the same chunk list
//! chunking the whole new file would give.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::chunker::{self, ChunkCursor, ChunkSink, Manifest, WHOLE_FILE_MAX};
use crate::{Hash, Result};

/// Bytes written over a file: non-overlapping parts by offset, later writes winning
/// where writes overlap.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overlay<'a> {
    parts: BTreeMap<u64, &'a [u8]>,
}

impl<'a> Overlay<'a> {
    /// The result of applying `writes` in order.
    pub fn new(writes: impl IntoIterator<Item = (u64, &'a [u8])>) -> Overlay<'a> {
        let mut overlay = Overlay::default();
        for (offset, data) in writes {
            overlay.write(offset, data);
        }
        overlay
    }

    fn write(&mut self, offset: u64, data: &'a [u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Parts that overlap [offset, end): keep what sticks out on either side.
        let overlapping: Vec<(u64, &'a [u8])> = self
            .parts
            .range(..end)
            .filter(|(start, part)| **start + part.len() as u64 > offset)
            .map(|(start, part)| (*start, *part))
            .collect();
        for (start, part) in overlapping {
            self.parts.remove(&start);
            if start < offset {
                self.parts.insert(start, &part[..(offset - start) as usize]);
            }
            let part_end = start + part.len() as u64;
            if part_end > end {
                self.parts.insert(end, &part[(end - start) as usize..]);
            }
        }
        self.parts.insert(offset, data);
    }

    fn start(&self) -> Option<u64> {
        self.parts.keys().next().copied()
    }

    fn end(&self) -> Option<u64> {
        self.parts
            .iter()
            .next_back()
            .map(|(start, part)| start + part.len() as u64)
    }

    /// The part holding byte `pos`, with its start.
    fn part_at(&self, pos: u64) -> Option<(u64, &'a [u8])> {
        let (start, part) = self.parts.range(..=pos).next_back()?;
        (pos < start + part.len() as u64).then_some((*start, *part))
    }

    /// Where the next part after `pos` starts.
    fn next_start_after(&self, pos: u64) -> Option<u64> {
        self.parts.range(pos + 1..).next().map(|(start, _)| *start)
    }
}

/// A change to a file's bytes.
#[derive(Debug, Clone)]
pub(crate) enum Edit<'a> {
    /// Overwrite with these bytes, extending the file (zeros across any gap) if needed.
    Write(Overlay<'a>),
    /// Cut the file to `size` or extend it with zeros.
    Resize { size: u64 },
}

impl Edit<'_> {
    fn new_size(&self, old_size: u64) -> u64 {
        match self {
            Edit::Write(overlay) => old_size.max(overlay.end().unwrap_or(0)),
            Edit::Resize { size } => *size,
        }
    }

    /// Where the new content starts to differ from the old.
    fn start(&self, old_size: u64) -> u64 {
        match self {
            Edit::Write(overlay) => overlay.start().unwrap_or(old_size).min(old_size),
            Edit::Resize { size } => (*size).min(old_size),
        }
    }

    /// From here on, new bytes equal old bytes at the same offset.
    fn end(&self, old_size: u64) -> u64 {
        match self {
            Edit::Write(overlay) => match overlay.end() {
                Some(end) if end < old_size => end,
                _ => self.new_size(old_size),
            },
            Edit::Resize { .. } => self.new_size(old_size),
        }
    }
}

/// Fetches the bytes of one blob.
pub(crate) type Fetch<'a> = dyn Fn(&Hash, u64) -> Result<Vec<u8>> + 'a;

/// The chunk list of `old` after `edit`; new chunks go to `sink`.
pub(crate) fn apply(
    old: &Manifest,
    edit: &Edit<'_>,
    fetch: &Fetch<'_>,
    sink: &mut ChunkSink<'_>,
) -> Result<Manifest> {
    let new_size = edit.new_size(old.size);
    let old_is_whole = old.chunks.len() <= 1;
    if new_size as usize <= WHOLE_FILE_MAX || old_is_whole {
        // Small result, or a one-blob file growing past the limit: chunk everything anew.
        let mut reader = EditedReader::new(old, edit, fetch, 0, new_size);
        return chunker::split(&mut reader, None, sink);
    }
    let start = edit.start(old.size);
    let end = edit.end(old.size);
    let first = old.chunk_at(start).unwrap_or(0);
    let restart = old.chunks[first].offset;
    let mut manifest = Manifest {
        size: 0,
        chunks: old.chunks[..first].to_vec(),
    };
    manifest.size = restart;
    let reader = EditedReader::new(old, edit, fetch, restart, new_size);
    let mut resume_at = None;
    chunker::cut_stream(
        reader,
        &mut manifest,
        &mut |cut| {
            if cut < end || cut >= new_size {
                return false;
            }
            match old.chunks.binary_search_by_key(&cut, |c| c.offset) {
                Ok(index) => {
                    resume_at = Some(index);
                    true
                }
                Err(_) => false,
            }
        },
        sink,
    )?;
    if let Some(index) = resume_at {
        for chunk in &old.chunks[index..] {
            manifest.chunks.push(*chunk);
        }
        manifest.size = new_size;
    }
    Ok(manifest)
}

/// The new file's bytes from `pos` to `size`, read lazily from the old chunks and the edit.
struct EditedReader<'a> {
    old: &'a Manifest,
    edit: &'a Edit<'a>,
    fetch: &'a Fetch<'a>,
    pos: u64,
    size: u64,
    cursor: ChunkCursor,
}

impl<'a> EditedReader<'a> {
    fn new(
        old: &'a Manifest,
        edit: &'a Edit<'a>,
        fetch: &'a Fetch<'a>,
        pos: u64,
        size: u64,
    ) -> Self {
        EditedReader {
            old,
            edit,
            fetch,
            pos,
            size,
            cursor: ChunkCursor::default(),
        }
    }

    /// Copies old bytes at `pos` into `buf`; returns how many.
    fn old_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cursor.read_at(self.old, self.pos, buf, self.fetch)
    }
}

impl Read for EditedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.size - self.pos) as usize);
        let buf = &mut buf[..want];
        let overlay = match self.edit {
            Edit::Write(overlay) => overlay.part_at(self.pos),
            Edit::Resize { .. } => None,
        };
        let n = match overlay {
            Some((start, data)) => {
                let from = (self.pos - start) as usize;
                let n = buf.len().min(data.len() - from);
                buf[..n].copy_from_slice(&data[from..from + n]);
                n
            }
            None => {
                // Old bytes up to the next written part, zeros past the old end.
                let limit = match self.edit {
                    Edit::Write(overlay) => overlay
                        .next_start_after(self.pos)
                        .map_or(usize::MAX, |next| (next - self.pos) as usize),
                    Edit::Resize { .. } => usize::MAX,
                };
                let buf_len = buf.len().min(limit);
                let buf = &mut buf[..buf_len];
                let old_end = match self.edit {
                    Edit::Resize { size } => self.old.size.min(*size),
                    Edit::Write(_) => self.old.size,
                };
                if self.pos < old_end {
                    let len = buf.len().min((old_end - self.pos) as usize);
                    self.old_bytes(&mut buf[..len])?
                } else {
                    buf.fill(0);
                    buf.len()
                }
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::chunker::split;
    use crate::chunker::tests::pseudo_random;

    fn store(data: &[u8], blobs: &mut HashMap<Hash, Vec<u8>>) -> Manifest {
        split(&mut &data[..], None, &mut |h, b| {
            blobs.insert(h, b.to_vec());
            Ok(())
        })
        .unwrap()
    }

    /// Applies `writes` (or a resize) to `data` both naively and through [`apply`], and
    /// checks the content and that the chunking is what chunking the result anew gives.
    fn check(data: Vec<u8>, writes: &[(u64, &[u8])], resize: Option<u64>) {
        let mut blobs = HashMap::new();
        let old = store(&data, &mut blobs);
        let mut expected = data.clone();
        for (offset, bytes) in writes {
            let end = *offset as usize + bytes.len();
            if expected.len() < end {
                expected.resize(end, 0);
            }
            expected[*offset as usize..end].copy_from_slice(bytes);
        }
        let edit = match resize {
            Some(size) => {
                expected.resize(size as usize, 0);
                Edit::Resize { size }
            }
            None => Edit::Write(Overlay::new(writes.iter().copied())),
        };
        let snapshot = blobs.clone();
        let fetch = |h: &Hash, _len: u64| Ok(snapshot[h].clone());
        let mut added = HashMap::new();
        let new = apply(&old, &edit, &fetch, &mut |h, b| {
            added.insert(h, b.to_vec());
            Ok(())
        })
        .unwrap();
        blobs.extend(added);
        let mut rebuilt = Vec::new();
        for chunk in &new.chunks {
            assert_eq!(chunk.offset, rebuilt.len() as u64);
            rebuilt.extend_from_slice(&blobs[&chunk.hash]);
        }
        assert_eq!(rebuilt.len(), expected.len());
        assert!(rebuilt == expected, "content differs after {edit:?}");
        let mut scratch = HashMap::new();
        assert_eq!(
            new,
            store(&expected, &mut scratch),
            "chunking is not canonical after {edit:?}"
        );
    }

    #[test]
    fn writes_and_resizes_give_the_canonical_chunking() {
        let big = pseudo_random(3 * 1024 * 1024 + 17, 9);
        let patch = pseudo_random(70_000, 10);
        let end = big.len() as u64;
        check(big.clone(), &[(1_500_000, &patch)], None);
        check(big.clone(), &[(0, &patch[..10])], None);
        check(big.clone(), &[(end - 5, &patch)], None);
        check(big.clone(), &[(end + 100_000, &patch)], None);
        check(big.clone(), &[], Some(1_000_000));
        check(big.clone(), &[], Some(100_000));
        check(big.clone(), &[], Some(end + 700_000));
        check(pseudo_random(100, 11), &[(50, &patch)], None);
        check(pseudo_random(200_000, 12), &[(190_000, &patch)], None);
        check(Vec::new(), &[], Some(300_000));
    }

    #[test]
    fn many_writes_apply_in_order_in_one_pass() {
        let big = pseudo_random(2 * 1024 * 1024, 13);
        let a = pseudo_random(4096, 14);
        let b = pseudo_random(30_000, 15);
        let end = big.len() as u64;
        // Scattered, overlapping (later wins), adjacent, and past the end.
        let writes: Vec<(u64, &[u8])> = vec![
            (1_000_000, &a),
            (10, &a),
            (1_000_100, &b),
            (500_000, &a[..100]),
            (500_100, &a[..100]),
            (1_000_000, &a[..50]),
            (end + 10, &a),
        ];
        check(big.clone(), &writes, None);
        let random: Vec<(u64, &[u8])> = (0..300u64)
            .map(|i| ((i * 7919 * 4096) % end, &a[..]))
            .collect();
        check(big, &random, None);
    }

    #[test]
    fn an_overlay_keeps_the_last_write() {
        let overlay = Overlay::new([(0, &b"aaaa"[..]), (2, &b"bb"[..]), (1, &b"c"[..])]);
        let parts: Vec<(u64, &[u8])> = overlay.parts.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(parts, [(0, &b"a"[..]), (1, &b"c"[..]), (2, &b"bb"[..])]);
        assert_eq!(overlay.part_at(3), Some((2, &b"bb"[..])));
        assert_eq!(overlay.next_start_after(0), Some(1));
        assert_eq!(overlay.end(), Some(4));
    }
}
