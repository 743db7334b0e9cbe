//! Edits inside large files: a ranged write or a size change re-chunks only the region it
//! touches and keeps every chunk before and after it.
//!
//! Because a cut point depends only on the bytes since the previous cut, chunking can
//! restart at the old cut before the edit, and stops as soon as a new cut lands on an old
//! cut past the edit; everything after is unchanged. The result is the same chunk list
//! chunking the whole new file would give.

use std::io::{self, Read};

use crate::chunker::{self, ChunkSink, Manifest, WHOLE_FILE_MAX};
use crate::{Hash, Result};

/// A change to a file's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Edit<'a> {
    /// Overwrite at `offset`, extending the file (zeros across any gap) if needed.
    Write { offset: u64, data: &'a [u8] },
    /// Cut the file to `size` or extend it with zeros.
    Resize { size: u64 },
}

impl Edit<'_> {
    fn new_size(&self, old_size: u64) -> u64 {
        match *self {
            Edit::Write { offset, data } => old_size.max(offset + data.len() as u64),
            Edit::Resize { size } => size,
        }
    }

    /// Where the new content starts to differ from the old.
    fn start(&self, old_size: u64) -> u64 {
        match *self {
            Edit::Write { offset, .. } => offset.min(old_size),
            Edit::Resize { size } => size.min(old_size),
        }
    }

    /// From here on, new bytes equal old bytes at the same offset.
    fn end(&self, old_size: u64) -> u64 {
        match *self {
            Edit::Write { offset, data } if offset + (data.len() as u64) < old_size => {
                offset + data.len() as u64
            }
            _ => self.new_size(old_size),
        }
    }
}

/// Fetches the bytes of one blob.
pub(crate) type Fetch<'a> = dyn Fn(&Hash, u64) -> Result<Vec<u8>> + 'a;

/// The chunk list of `old` after `edit`; new chunks go to `sink`.
pub(crate) fn apply(
    old: &Manifest,
    edit: Edit<'_>,
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
    edit: Edit<'a>,
    fetch: &'a Fetch<'a>,
    pos: u64,
    size: u64,
    cached: Option<(usize, Vec<u8>)>,
}

impl<'a> EditedReader<'a> {
    fn new(old: &'a Manifest, edit: Edit<'a>, fetch: &'a Fetch<'a>, pos: u64, size: u64) -> Self {
        EditedReader {
            old,
            edit,
            fetch,
            pos,
            size,
            cached: None,
        }
    }

    /// Copies old bytes at `pos` into `buf`; returns how many.
    fn old_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let index = self.old.chunk_at(self.pos).unwrap_or(0);
        let chunk = self.old.chunks[index];
        if self
            .cached
            .as_ref()
            .is_none_or(|(cached, _)| *cached != index)
        {
            let bytes = (self.fetch)(&chunk.hash, chunk.len).map_err(io::Error::other)?;
            self.cached = Some((index, bytes));
        }
        let bytes = self
            .cached
            .as_ref()
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        let from = (self.pos - chunk.offset) as usize;
        let n = buf.len().min(bytes.len().saturating_sub(from));
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        Ok(n)
    }
}

impl Read for EditedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.size - self.pos) as usize);
        let buf = &mut buf[..want];
        let n = match self.edit {
            Edit::Write { offset, data }
                if self.pos >= offset && self.pos < offset + data.len() as u64 =>
            {
                let from = (self.pos - offset) as usize;
                let n = buf.len().min(data.len() - from);
                buf[..n].copy_from_slice(&data[from..from + n]);
                n
            }
            _ => {
                // Old bytes up to the next edit boundary, zeros past the old end.
                let limit = match self.edit {
                    Edit::Write { offset, .. } if self.pos < offset => (offset - self.pos) as usize,
                    _ => usize::MAX,
                };
                let buf_len = buf.len().min(limit);
                let buf = &mut buf[..buf_len];
                let old_end = match self.edit {
                    Edit::Resize { size } => self.old.size.min(size),
                    Edit::Write { .. } => self.old.size,
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

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    fn store(data: &[u8], blobs: &mut HashMap<Hash, Vec<u8>>) -> Manifest {
        split(&mut &data[..], None, &mut |h, b| {
            blobs.insert(h, b.to_vec());
            Ok(())
        })
        .unwrap()
    }

    fn check(data: Vec<u8>, edit: Edit<'_>) {
        let mut blobs = HashMap::new();
        let old = store(&data, &mut blobs);
        let mut expected = data.clone();
        match edit {
            Edit::Write { offset, data } => {
                let end = offset as usize + data.len();
                if expected.len() < end {
                    expected.resize(end, 0);
                }
                expected[offset as usize..end].copy_from_slice(data);
            }
            Edit::Resize { size } => expected.resize(size as usize, 0),
        }
        let snapshot = blobs.clone();
        let fetch = |h: &Hash, _len: u64| Ok(snapshot[h].clone());
        let mut added = HashMap::new();
        let new = apply(&old, edit, &fetch, &mut |h, b| {
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
        check(
            big.clone(),
            Edit::Write {
                offset: 1_500_000,
                data: &patch,
            },
        );
        check(
            big.clone(),
            Edit::Write {
                offset: 0,
                data: &patch[..10],
            },
        );
        check(
            big.clone(),
            Edit::Write {
                offset: big.len() as u64 - 5,
                data: &patch,
            },
        );
        check(
            big.clone(),
            Edit::Write {
                offset: big.len() as u64 + 100_000,
                data: &patch,
            },
        );
        check(big.clone(), Edit::Resize { size: 1_000_000 });
        check(big.clone(), Edit::Resize { size: 100_000 });
        check(
            big.clone(),
            Edit::Resize {
                size: big.len() as u64 + 700_000,
            },
        );
        check(
            pseudo_random(100, 11),
            Edit::Write {
                offset: 50,
                data: &patch,
            },
        );
        check(
            pseudo_random(200_000, 12),
            Edit::Write {
                offset: 190_000,
                data: &patch,
            },
        );
        check(Vec::new(), Edit::Resize { size: 300_000 });
    }
}
