//! Splitting file content into blobs, and the content hash of a file.
//!
//! A file of at most [`WHOLE_FILE_MAX`] bytes is one blob. A larger file is cut with
//! FastCDC (content-defined chunking, 2020 variant) into chunks of [`CHUNK_MIN`] to
//! [`CHUNK_MAX`] bytes, [`CHUNK_AVG`] on average, so an edit in the middle of a large file
//! changes only the chunks around it. Cut points depend only on the bytes since the
//! previous cut, which makes the chunking of a given content unique: re-chunking from any
//! earlier cut point gives the same result as chunking the whole file again.
//!
//! Blobs smaller than [`INLINE_MAX`] bytes live inside the index instead of in a file.

use std::io::{self, Read};

use crate::{Error, Hash, Result};

pub const CHUNK_MIN: usize = 16 * 1024;
pub const CHUNK_AVG: usize = 64 * 1024;
pub const CHUNK_MAX: usize = 256 * 1024;
/// Files up to this size are stored as a single blob.
pub const WHOLE_FILE_MAX: usize = CHUNK_MAX;
/// Blobs shorter than this are kept in the index.
pub const INLINE_MAX: usize = CHUNK_MIN;

/// One chunk of a file: `len` bytes at `offset`, stored as the blob `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub offset: u64,
    pub len: u64,
    pub hash: Hash,
}

/// A file's content: its chunks in order, covering `[0, size)` without gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

impl Manifest {
    /// The content hash: the blob's hash for a one-chunk file, otherwise the blake3 of
    /// `"agentbox-chunks-v1\n"` followed by each chunk's length (u64 little-endian) and hash.
    pub fn content_hash(&self) -> Hash {
        match self.chunks.as_slice() {
            [] => Hash::of(b""),
            [only] => only.hash,
            chunks => {
                let mut hasher = blake3::Hasher::new();
                hasher.update(b"agentbox-chunks-v1\n");
                for chunk in chunks {
                    hasher.update(&chunk.len.to_le_bytes());
                    hasher.update(&chunk.hash.0);
                }
                Hash(*hasher.finalize().as_bytes())
            }
        }
    }

    /// Index of the chunk holding byte `offset` (the last chunk for `offset == size`).
    pub fn chunk_at(&self, offset: u64) -> Option<usize> {
        if self.chunks.is_empty() {
            return None;
        }
        let index = self.chunks.partition_point(|chunk| chunk.offset <= offset);
        Some(index.saturating_sub(1))
    }

    pub(crate) fn push(&mut self, hash: Hash, len: u64) {
        self.chunks.push(ChunkRef {
            offset: self.size,
            len,
            hash,
        });
        self.size += len;
    }
}

/// Reads a file's bytes at any offset through its chunk list, keeping the last chunk it
/// fetched (reads are mostly sequential).
#[derive(Debug, Default)]
pub(crate) struct ChunkCursor {
    cached: Option<(usize, Vec<u8>)>,
}

impl ChunkCursor {
    /// Copies bytes of `manifest` from `pos` (which must be below its size) into `buf`, up
    /// to the end of the chunk holding `pos`; returns how many.
    pub fn read_at(
        &mut self,
        manifest: &Manifest,
        pos: u64,
        buf: &mut [u8],
        fetch: &dyn Fn(&Hash, u64) -> Result<Vec<u8>>,
    ) -> io::Result<usize> {
        let index = manifest.chunk_at(pos).unwrap_or(0);
        let chunk = manifest.chunks[index];
        let bytes = match &self.cached {
            Some((cached, bytes)) if *cached == index => bytes,
            _ => {
                let bytes = fetch(&chunk.hash, chunk.len).map_err(io::Error::other)?;
                if bytes.len() as u64 != chunk.len {
                    let error = Error::Corrupt(format!("blob {} has the wrong size", chunk.hash));
                    return Err(io::Error::other(error));
                }
                &self.cached.insert((index, bytes)).1
            }
        };
        let from = (pos - chunk.offset) as usize;
        let n = buf.len().min(bytes.len().saturating_sub(from));
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        Ok(n)
    }
}

/// Receives each new chunk's bytes; stores them somewhere durable.
pub(crate) type ChunkSink<'a> = dyn FnMut(Hash, &[u8]) -> Result<()> + 'a;

/// Splits everything `reader` yields into chunks, handing each to `sink`. Fails with
/// [`Error::TooLarge`] as soon as more than `max_size` bytes arrive.
pub(crate) fn split(
    reader: &mut dyn Read,
    max_size: Option<u64>,
    sink: &mut ChunkSink<'_>,
) -> Result<Manifest> {
    let limit = max_size.unwrap_or(u64::MAX);
    let mut limited = LimitedReader {
        inner: reader,
        remaining: limit,
        limit,
    };
    let mut head = Vec::with_capacity(WHOLE_FILE_MAX.min(64 * 1024));
    (&mut limited)
        .take(WHOLE_FILE_MAX as u64 + 1)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    let mut manifest = Manifest::default();
    if head.len() <= WHOLE_FILE_MAX {
        if !head.is_empty() {
            let hash = Hash::of(&head);
            sink(hash, &head)?;
            manifest.push(hash, head.len() as u64);
        }
        return Ok(manifest);
    }
    let stream = io::Cursor::new(head).chain(limited);
    cut_stream(stream, &mut manifest, &mut |_| false, sink)?;
    Ok(manifest)
}

/// Chunks `stream`, appending to `manifest`, until the stream ends or `stop(end_offset)`
/// says the chunk just emitted ended at a point where the rest is already known.
pub(crate) fn cut_stream(
    stream: impl Read,
    manifest: &mut Manifest,
    stop: &mut dyn FnMut(u64) -> bool,
    sink: &mut ChunkSink<'_>,
) -> Result<()> {
    let chunker = fastcdc::v2020::StreamCDC::new(stream, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
    for chunk in chunker {
        let chunk = chunk.map_err(|error| read_error(io::Error::from(error)))?;
        let hash = Hash::of(&chunk.data);
        sink(hash, &chunk.data)?;
        manifest.push(hash, chunk.data.len() as u64);
        if stop(manifest.size) {
            break;
        }
    }
    Ok(())
}

/// A reader that fails once more than `limit` bytes have been read through it.
struct LimitedReader<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
    limit: u64,
}

impl Read for LimitedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            return Err(io::Error::other(TooLargeMarker(self.limit)));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLargeMarker(u64);

impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content is larger than {} bytes", self.0)
    }
}

impl std::error::Error for TooLargeMarker {}

fn read_error(error: io::Error) -> Error {
    if let Some(marker) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<TooLargeMarker>())
    {
        return Error::TooLarge { limit: marker.0 };
    }
    Error::Io {
        context: "reading the content to store".into(),
        source: error,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reproducible incompressible bytes for tests.
    pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    fn chunk(data: &[u8]) -> Manifest {
        split(&mut &data[..], None, &mut |_, _| Ok(())).unwrap()
    }

    #[test]
    fn small_files_are_one_blob_named_by_their_bytes() {
        let data = pseudo_random(WHOLE_FILE_MAX, 1);
        let manifest = chunk(&data);
        assert_eq!(manifest.chunks.len(), 1);
        assert_eq!(manifest.content_hash(), Hash::of(&data));
        assert_eq!(chunk(b"").chunks.len(), 0);
        assert_eq!(chunk(b"").content_hash(), Hash::of(b""));
    }

    #[test]
    fn large_files_are_cut_within_bounds_and_cover_everything() {
        let data = pseudo_random(5 * 1024 * 1024, 2);
        let manifest = chunk(&data);
        assert_eq!(manifest.size, data.len() as u64);
        let mut offset = 0;
        for (i, c) in manifest.chunks.iter().enumerate() {
            assert_eq!(c.offset, offset);
            assert!(c.len as usize <= CHUNK_MAX);
            if i + 1 < manifest.chunks.len() {
                assert!(c.len as usize >= CHUNK_MIN);
            }
            offset += c.len;
        }
        assert_eq!(offset, data.len() as u64);
    }

    #[test]
    fn one_byte_changed_in_the_middle_changes_few_chunks() {
        let mut data = pseudo_random(8 * 1024 * 1024, 3);
        let before = chunk(&data);
        data[4 * 1024 * 1024] ^= 0xff;
        let after = chunk(&data);
        let old: std::collections::HashSet<_> = before.chunks.iter().map(|c| c.hash).collect();
        let new = after
            .chunks
            .iter()
            .filter(|c| !old.contains(&c.hash))
            .count();
        assert!((1..=2).contains(&new), "{new} new chunks");
        assert_ne!(before.content_hash(), after.content_hash());
    }

    #[test]
    fn max_size_is_enforced() {
        let data = pseudo_random(1000, 4);
        let result = split(&mut &data[..], Some(999), &mut |_, _| Ok(()));
        assert!(matches!(result, Err(Error::TooLarge { limit: 999 })));
        assert!(split(&mut &data[..], Some(1000), &mut |_, _| Ok(())).is_ok());
        let big = pseudo_random(WHOLE_FILE_MAX * 3, 5);
        let result = split(
            &mut &big[..],
            Some(WHOLE_FILE_MAX as u64 * 2),
            &mut |_, _| Ok(()),
        );
        assert!(matches!(result, Err(Error::TooLarge { .. })));
    }
}
