//! Extended attributes: versioned rows per (inode, name), following the same generation
//! rule as inodes and directory entries, so snapshots carry them too.

use rusqlite::{OptionalExtension, params};

use super::{LIVE, Tree};
use crate::watch::Change;
use crate::{Error, Result};

impl Tree<'_> {
    pub fn xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tx
            .conn
            .prepare_cached(
                "SELECT value FROM xattrs WHERE agent_id = ?1 AND ino = ?2 AND name = ?3 \
                 AND gen_from <= ?4 AND +gen_to > ?4",
            )?
            .query_row(params![self.agent, ino as i64, name, self.view()], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// The names of an inode's extended attributes, sorted.
    pub fn xattr_names(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self.tx.conn.prepare_cached(
            "SELECT name FROM xattrs WHERE agent_id = ?1 AND ino = ?2 \
             AND gen_from <= ?3 AND +gen_to > ?3 ORDER BY name",
        )?;
        let names = stmt
            .query_map(params![self.agent, ino as i64, self.view()], |row| {
                row.get(0)
            })?
            .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
        Ok(names)
    }

    /// Sets (or with `value: None` removes) one attribute of a live inode.
    pub fn set_xattr(&self, ino: u64, name: &[u8], value: Option<&[u8]>) -> Result<()> {
        let conn = self.tx.conn;
        let generation = self.generation();
        let deleted = conn
            .prepare_cached(&format!(
                "DELETE FROM xattrs WHERE agent_id = ?1 AND ino = ?2 AND name = ?3 \
                 AND gen_from = ?4 AND +gen_to = {LIVE}"
            ))?
            .execute(params![self.agent, ino as i64, name, generation])?;
        if deleted == 0 {
            conn.prepare_cached(&format!(
                "UPDATE xattrs SET gen_to = ?4 WHERE agent_id = ?1 AND ino = ?2 AND name = ?3 \
                 AND +gen_to = {LIVE}"
            ))?
            .execute(params![self.agent, ino as i64, name, generation])?;
        }
        if let Some(value) = value {
            conn.prepare_cached(
                "INSERT INTO xattrs (agent_id, ino, name, gen_from, gen_to, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                self.agent, ino as i64, name, generation, LIVE, value
            ])?;
        }
        let now = self.tx.now;
        self.modify(ino, |r| r.ctime = now)?;
        self.tx.note(self.agent, Change::Inode(ino));
        Ok(())
    }

    /// Removes every attribute of an inode leaving the live tree.
    pub fn end_xattrs(&self, ino: u64) -> Result<()> {
        let conn = self.tx.conn;
        conn.prepare_cached(&format!(
            "DELETE FROM xattrs WHERE agent_id = ?1 AND ino = ?2 AND gen_from = ?3 AND +gen_to = {LIVE}"
        ))?
        .execute(params![self.agent, ino as i64, self.generation()])?;
        conn.prepare_cached(&format!(
            "UPDATE xattrs SET gen_to = ?3 WHERE agent_id = ?1 AND ino = ?2 AND +gen_to = {LIVE}"
        ))?
        .execute(params![self.agent, ino as i64, self.generation()])?;
        Ok(())
    }
}

/// Limits on attribute names and values.
pub(crate) fn check_xattr(name: &[u8], value: Option<&[u8]>) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains(&0) {
        return Err(Error::InvalidArgument(
            "an attribute name is 1-255 bytes without NUL".into(),
        ));
    }
    if value.is_some_and(|v| v.len() > 64 * 1024) {
        return Err(Error::TooLarge { limit: 64 * 1024 });
    }
    Ok(())
}
