//! Snapshots: creating one records a generation; restore, fork and deletion move rows
//! between generations with set-based statements, never by walking the tree.

use rusqlite::{OptionalExtension, Row, params};

use super::{LIVE, Tx};
use crate::watch::Change;
use crate::{AgentId, Error, Result, SnapshotInfo};

/// A snapshot and the generation it froze.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotRow {
    pub info: SnapshotInfo,
    pub generation: i64,
}

const COLUMNS: &str = "id, name, created_at, files, bytes, gen";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SnapshotRow> {
    Ok(SnapshotRow {
        info: SnapshotInfo {
            id: row.get(0)?,
            name: row.get(1)?,
            created_at_ns: row.get(2)?,
            files: row.get::<_, i64>(3)? as u64,
            logical_bytes: row.get::<_, i64>(4)? as u64,
        },
        generation: row.get(5)?,
    })
}

impl Tx<'_> {
    pub fn create_snapshot(&self, agent: AgentId, name: Option<&str>) -> Result<SnapshotRow> {
        if let Some(name) = name {
            super::agents::validate_label("snapshot", name)?;
            if name.starts_with("snap_") {
                return Err(Error::InvalidArgument(
                    "snapshot names may not start with 'snap_'".into(),
                ));
            }
            if self.snapshot(agent, name)?.is_some() {
                return Err(Error::AlreadyExists(format!("snapshot {name}")));
            }
        }
        let usage = self.usage(agent)?;
        let generation: i64 = self
            .conn
            .prepare_cached("UPDATE agents SET gen = gen + 1 WHERE id = ?1 RETURNING gen - 1")?
            .query_row([agent], |row| row.get(0))?;
        let id = format!("snap_{}", super::random_id(12));
        self.conn
            .prepare_cached(
                "INSERT INTO snapshots (id, agent_id, name, gen, created_at, files, bytes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                agent,
                name,
                generation,
                self.now,
                usage.files,
                usage.bytes
            ])?;
        self.snapshot(agent, &id)?
            .ok_or_else(|| Error::Corrupt("a new snapshot vanished".into()))
    }

    /// A snapshot of `agent` by id or name.
    pub fn snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<Option<SnapshotRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM snapshots WHERE agent_id = ?1 AND (id = ?2 OR name = ?2) \
                 ORDER BY id = ?2 DESC LIMIT 1"
            ))?
            .query_row(params![agent, id_or_name], from_row)
            .optional()?)
    }

    pub fn require_snapshot(&self, agent: AgentId, id_or_name: &str) -> Result<SnapshotRow> {
        self.snapshot(agent, id_or_name)?
            .ok_or_else(|| Error::NoSuchSnapshot(id_or_name.to_owned()))
    }

    pub fn snapshots(&self, agent: AgentId) -> Result<Vec<SnapshotRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE agent_id = ?1 ORDER BY gen"
        ))?;
        let rows = stmt
            .query_map([agent], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Deletes a snapshot and every row version no other snapshot or the live tree sees.
    pub fn delete_snapshot(&self, agent: AgentId, snapshot: &SnapshotRow) -> Result<()> {
        self.conn
            .execute("DELETE FROM snapshots WHERE id = ?1", [&snapshot.info.id])?;
        for table in ["inodes", "dentries", "xattrs"] {
            self.conn.execute(
                &format!(
                    "DELETE FROM {table} WHERE agent_id = ?1 AND gen_to > ?2 AND gen_to < {LIVE} AND gen_from <= ?2 \
                     AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.agent_id = ?1 \
                       AND s.gen >= {table}.gen_from AND s.gen < {table}.gen_to)"
                ),
                params![agent, snapshot.generation],
            )?;
        }
        Ok(())
    }

    /// Makes the live rows of `agent` exactly those `snapshot` sees.
    pub fn restore_snapshot(
        &self,
        agent: AgentId,
        current_gen: i64,
        snapshot: &SnapshotRow,
    ) -> Result<()> {
        let s = snapshot.generation;
        for (table, columns, key) in [
            (
                "inodes",
                "agent_id, ino, gen_from, gen_to, kind, mode, size, nlink, atime, mtime, ctime, content, target",
                "ino, NULL",
            ),
            (
                "dentries",
                "agent_id, parent, name, gen_from, gen_to, ino",
                "parent, name",
            ),
            (
                "xattrs",
                "agent_id, ino, name, gen_from, gen_to, value",
                "ino, NULL",
            ),
        ] {
            let copied = columns.replace("gen_from, gen_to", &format!("?2, {LIVE}"));
            let statements = [
                // Rows live now but born after the snapshot leave the live tree: dropped
                // if no snapshot can see them, closed otherwise.
                format!(
                    "DELETE FROM {table} WHERE agent_id = ?1 AND gen_to = {LIVE} AND gen_from = ?2 \
                     AND gen_from > ?3 RETURNING {key}"
                ),
                format!(
                    "UPDATE {table} SET gen_to = ?2 WHERE agent_id = ?1 AND gen_to = {LIVE} \
                     AND gen_from > ?3 RETURNING {key}"
                ),
                // Rows the snapshot sees that left the live tree come back: reopened if
                // they were closed in this generation, copied as a new version otherwise.
                format!(
                    "UPDATE {table} SET gen_to = {LIVE} WHERE agent_id = ?1 AND gen_to = ?2 \
                     AND gen_from <= ?3 AND gen_to > ?3 RETURNING {key}"
                ),
                format!(
                    "INSERT INTO {table} ({columns}) SELECT {copied} FROM {table} \
                     WHERE agent_id = ?1 AND gen_from <= ?3 AND gen_to > ?3 AND gen_to < {LIVE} \
                     RETURNING {key}"
                ),
            ];
            for sql in statements {
                let mut stmt = self.conn.prepare(&sql)?;
                let mut rows = stmt.query(params![agent, current_gen, s])?;
                while let Some(row) = rows.next()? {
                    let first = row.get::<_, i64>(0)? as u64;
                    let change = match row.get::<_, Option<Vec<u8>>>(1)? {
                        Some(name) => Change::Entry {
                            parent: first,
                            name,
                        },
                        None => Change::Inode(first),
                    };
                    self.note(agent, change);
                }
            }
        }
        self.recount_usage(agent)
    }

    /// Copies the rows `snapshot` of `source` sees into `target` as its live tree.
    pub fn copy_tree(
        &self,
        source: AgentId,
        snapshot: &SnapshotRow,
        target: AgentId,
    ) -> Result<()> {
        for (table, columns) in [
            (
                "inodes",
                "agent_id, ino, gen_from, gen_to, kind, mode, size, nlink, atime, mtime, ctime, content, target",
            ),
            ("dentries", "agent_id, parent, name, gen_from, gen_to, ino"),
            ("xattrs", "agent_id, ino, name, gen_from, gen_to, value"),
        ] {
            let copied = columns
                .replacen("agent_id", "?3", 1)
                .replace("gen_from, gen_to", &format!("1, {LIVE}"));
            self.conn.execute(
                &format!(
                    "INSERT INTO {table} ({columns}) SELECT {copied} FROM {table} \
                     WHERE agent_id = ?1 AND gen_from <= ?2 AND gen_to > ?2"
                ),
                params![source, snapshot.generation, target],
            )?;
        }
        self.conn.execute(
            "UPDATE agents SET next_ino = (SELECT next_ino FROM agents WHERE id = ?1) WHERE id = ?2",
            params![source, target],
        )?;
        self.recount_usage(target)
    }
}
