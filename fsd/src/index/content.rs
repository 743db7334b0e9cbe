//! Blob rows, content rows and chunk lists.

use rusqlite::{OptionalExtension, params};

use super::Tx;
use super::tree::hash_from;
use crate::blobs::BlobStore;
use crate::chunker::{ChunkRef, INLINE_MAX, Manifest};
use crate::{Error, Hash, Result};

/// Content ready to be indexed: its chunk list, and the bytes of chunks small enough to
/// live in the index. Larger chunks are already in the blob store.
#[derive(Debug, Default)]
pub(crate) struct NewContent {
    pub manifest: Manifest,
    pub inline: Vec<(Hash, Vec<u8>)>,
}

impl Tx<'_> {
    /// Indexes `content` (blob rows, content row, chunk list) unless already known.
    /// Returns its hash, or `None` for empty content.
    pub fn add_content(&self, content: &NewContent, blobs: &dyn BlobStore) -> Result<Option<Hash>> {
        let manifest = &content.manifest;
        if manifest.chunks.is_empty() {
            return Ok(None);
        }
        let hash = manifest.content_hash();
        let inserted = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO contents (hash, size, refs) VALUES (?1, ?2, 0)")?
            .execute(params![hash.0.to_vec(), manifest.size as i64])?;
        if inserted == 0 {
            return Ok(Some(hash));
        }
        let mut add_blob = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO blobs (hash, size, refs, unreferenced_since, data) \
             VALUES (?1, ?2, 0, unixepoch(), ?3)",
        )?;
        let mut add_chunk = self.conn.prepare_cached(
            "INSERT INTO content_chunks (content, offset, len, blob) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for chunk in &manifest.chunks {
            let inline = (chunk.len as usize) < INLINE_MAX;
            let provided = content
                .inline
                .iter()
                .find(|(h, _)| *h == chunk.hash)
                .map(|(_, b)| b);
            if inline && provided.is_none() {
                // A small chunk kept from the file's previous content: already indexed.
                if !self.has_blob(&chunk.hash)? {
                    return Err(Error::Corrupt(format!(
                        "bytes of blob {} went missing",
                        chunk.hash
                    )));
                }
            } else {
                let new_row =
                    add_blob.execute(params![chunk.hash.0.to_vec(), chunk.len as i64, provided])?;
                // A blob file found on disk before this transaction may have been swept
                // since; a new row must name a file that exists.
                if new_row == 1 && !inline && !blobs.contains(&chunk.hash)? {
                    return Err(Error::Corrupt(format!(
                        "blob {} was removed while being written; retry the write",
                        chunk.hash
                    )));
                }
            }
            add_chunk.execute(params![
                hash.0.to_vec(),
                chunk.offset as i64,
                chunk.len as i64,
                chunk.hash.0.to_vec()
            ])?;
        }
        Ok(Some(hash))
    }

    /// The chunk list of a content hash (empty for `None`).
    pub fn manifest(&self, content: Option<&Hash>) -> Result<Manifest> {
        let Some(content) = content else {
            return Ok(Manifest::default());
        };
        let size: i64 = self
            .conn
            .prepare_cached("SELECT size FROM contents WHERE hash = ?1")?
            .query_row([content.0.to_vec()], |row| row.get(0))
            .optional()?
            .ok_or_else(|| Error::Corrupt(format!("content {content} is missing")))?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT offset, len, blob FROM content_chunks WHERE content = ?1 ORDER BY offset",
        )?;
        let chunks = stmt
            .query_map([content.0.to_vec()], |row| {
                Ok(ChunkRef {
                    offset: row.get::<_, i64>(0)? as u64,
                    len: row.get::<_, i64>(1)? as u64,
                    hash: hash_from(Some(row.get(2)?))?.unwrap_or(Hash([0; 32])),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Manifest {
            size: size as u64,
            chunks,
        })
    }

    /// The bytes of a blob kept in the index, if it is one.
    pub fn inline_blob(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT data FROM blobs WHERE hash = ?1")?
            .query_row([hash.0.to_vec()], |row| row.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten())
    }

    /// Blob rows unreferenced since before `cutoff` (Unix seconds), with whether each
    /// lives in a file.
    pub fn unreferenced_blobs(&self, cutoff: i64) -> Result<Vec<(Hash, u64, bool)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, size, data IS NULL FROM blobs WHERE refs = 0 AND unreferenced_since <= ?1",
        )?;
        let rows = stmt
            .query_map([cutoff], |row| {
                Ok((
                    hash_from(Some(row.get(0)?))?.unwrap_or(Hash([0; 32])),
                    row.get::<_, i64>(1)? as u64,
                    row.get::<_, bool>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Deletes a blob row if it is still unreferenced; true if it did.
    pub fn delete_unreferenced_blob(&self, hash: &Hash) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM blobs WHERE hash = ?1 AND refs = 0")?
            .execute([hash.0.to_vec()])?
            == 1)
    }

    /// Whether the index has a row for this blob.
    pub fn has_blob(&self, hash: &Hash) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM blobs WHERE hash = ?1")?
            .query_row([hash.0.to_vec()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Every blob row: hash, size, inline bytes (if inline), reference count.
    pub fn all_blobs(
        &self,
        mut each: impl FnMut(Hash, u64, Option<Vec<u8>>, i64) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, size, data, refs FROM blobs")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let hash = hash_from(Some(row.get(0)?))?.unwrap_or(Hash([0; 32]));
            each(hash, row.get::<_, i64>(1)? as u64, row.get(2)?, row.get(3)?)?;
        }
        Ok(())
    }

    /// Runs an integrity query that returns one problem description per row.
    pub fn problems(&self, sql: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn count(&self, sql: &str) -> Result<i64> {
        Ok(self.conn.query_row(sql, [], |row| row.get(0))?)
    }
}

impl Tx<'_> {
    /// Bytes of the distinct blobs that `agent`'s live tree and snapshots reference.
    pub fn stored_bytes(&self, agent: crate::AgentId) -> Result<u64> {
        let bytes: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE hash IN (SELECT blob FROM content_chunks \
             WHERE content IN (SELECT DISTINCT content FROM inodes WHERE agent_id = ?1 AND content IS NOT NULL))",
            [agent],
            |row| row.get(0),
        )?;
        Ok(bytes as u64)
    }
}
