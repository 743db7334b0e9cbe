//! Agents, their keys, quotas and usage counters.

use rusqlite::{OptionalExtension, Row, params};

use super::Tx;
use super::tree::ROOT_INO;
use crate::{AgentId, AgentInfo, ComputeUsage, Error, KeyInfo, Quota, Result};

/// The counters an agent's writes are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub bytes: i64,
    pub files: i64,
    pub dirs: i64,
}

const AGENT_COLUMNS: &str = "id, name, created_at, forked_from";

fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<AgentInfo> {
    Ok(AgentInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at_ns: row.get(2)?,
        forked_from: row.get(3)?,
    })
}

/// Agent and snapshot names: 1-64 characters of letters, digits, `_`, `.` and `-`.
pub(crate) fn validate_label(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "{what} name {name:?} must be 1-64 characters of letters, digits, '_', '.' and '-'"
        )));
    }
    Ok(())
}

impl Tx<'_> {
    /// Creates an agent row and, unless `with_root` is false (forks copy theirs), its root.
    pub fn create_agent(
        &self,
        name: &str,
        forked_from: Option<&str>,
        with_root: bool,
    ) -> Result<AgentInfo> {
        validate_label("agent", name)?;
        if self.agent_by_name(name)?.is_some() {
            return Err(Error::AlreadyExists(format!("agent {name}")));
        }
        self.conn.execute(
            "INSERT INTO agents (name, created_at, forked_from) VALUES (?1, ?2, ?3)",
            params![name, self.now, forked_from],
        )?;
        let id = self.conn.last_insert_rowid();
        if with_root {
            self.conn.execute(
                "INSERT INTO inodes (agent_id, ino, gen_from, gen_to, kind, mode, size, nlink, atime, \
                 mtime, ctime) VALUES (?1, ?2, 1, ?3, 2, 493, 0, 2, ?4, ?4, ?4)",
                params![id, ROOT_INO as i64, super::LIVE, self.now],
            )?;
        }
        Ok(AgentInfo {
            id,
            name: name.to_owned(),
            created_at_ns: self.now,
            forked_from: forked_from.map(str::to_owned),
        })
    }

    pub fn agent_by_name(&self, name: &str) -> Result<Option<AgentInfo>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"
            ))?
            .query_row([name], agent_from_row)
            .optional()?)
    }

    pub fn agents(&self) -> Result<Vec<AgentInfo>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"))?;
        let rows = stmt
            .query_map([], agent_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn add_key(&self, agent: AgentId, key_id: &str, secret_hash: &[u8; 32]) -> Result<()> {
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM keys WHERE id = ?1")?
            .query_row([key_id], |_| Ok(()))
            .optional()?;
        if exists.is_some() {
            return Err(Error::AlreadyExists(format!("key {key_id}")));
        }
        self.conn.execute(
            "INSERT INTO keys (id, agent_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![key_id, agent, secret_hash.to_vec(), self.now],
        )?;
        Ok(())
    }

    pub fn agent_for_key(&self, secret_hash: &[u8; 32]) -> Result<Option<AgentInfo>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT a.id, a.name, a.created_at, a.forked_from FROM keys k JOIN agents a ON a.id = k.agent_id \
                 WHERE k.secret_hash = ?1 AND k.revoked_at IS NULL",
            )?
            .query_row([secret_hash.to_vec()], agent_from_row)
            .optional()?)
    }

    pub fn keys(&self, agent: Option<AgentId>) -> Result<Vec<KeyInfo>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT k.id, a.name, k.created_at, k.revoked_at FROM keys k JOIN agents a ON a.id = k.agent_id \
             WHERE ?1 IS NULL OR k.agent_id = ?1 ORDER BY a.name, k.created_at",
        )?;
        let rows = stmt
            .query_map([agent], |row| {
                Ok(KeyInfo {
                    id: row.get(0)?,
                    agent: row.get(1)?,
                    created_at_ns: row.get(2)?,
                    revoked_at_ns: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn revoke_key(&self, key_id: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![key_id, self.now],
        )? == 1)
    }

    pub fn set_quota(&self, agent: AgentId, quota: Quota) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE agents SET quota_bytes = ?2, quota_files = ?3 WHERE id = ?1",
            params![
                agent,
                quota.max_bytes.map(|b| b as i64),
                quota.max_files.map(|f| f as i64)
            ],
        )?;
        if changed == 0 {
            return Err(Error::NotFound(format!("agent {agent}")));
        }
        Ok(())
    }

    pub fn quota(&self, agent: AgentId) -> Result<Quota> {
        Ok(self
            .conn
            .prepare_cached("SELECT quota_bytes, quota_files FROM agents WHERE id = ?1")?
            .query_row([agent], |row| {
                Ok(Quota {
                    max_bytes: row.get::<_, Option<i64>>(0)?.map(|b| b as u64),
                    max_files: row.get::<_, Option<i64>>(1)?.map(|f| f as u64),
                })
            })?)
    }

    pub fn usage(&self, agent: AgentId) -> Result<Usage> {
        self.conn
            .prepare_cached("SELECT used_bytes, used_files, used_dirs FROM agents WHERE id = ?1")?
            .query_row([agent], |row| {
                Ok(Usage {
                    bytes: row.get(0)?,
                    files: row.get(1)?,
                    dirs: row.get(2)?,
                })
            })
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("agent {agent}")))
    }

    /// Adds to the agent's compute counters.
    pub fn add_compute(&self, agent: AgentId, added: ComputeUsage) -> Result<()> {
        self.usage(agent)?; // the agent must exist
        let value = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT INTO compute_usage
                     (agent_id, runs, run_ms, run_cpu_ms, browser_sessions, browser_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (agent_id) DO UPDATE SET
                     runs = runs + excluded.runs,
                     run_ms = run_ms + excluded.run_ms,
                     run_cpu_ms = run_cpu_ms + excluded.run_cpu_ms,
                     browser_sessions = browser_sessions + excluded.browser_sessions,
                     browser_ms = browser_ms + excluded.browser_ms",
            )?
            .execute(params![
                agent,
                value(added.runs),
                value(added.run_ms),
                value(added.run_cpu_ms),
                value(added.browser_sessions),
                value(added.browser_ms),
            ])?;
        Ok(())
    }

    pub fn compute_usage(&self, agent: AgentId) -> Result<ComputeUsage> {
        self.usage(agent)?; // the agent must exist
        let usage = self
            .conn
            .prepare_cached(
                "SELECT runs, run_ms, run_cpu_ms, browser_sessions, browser_ms
                 FROM compute_usage WHERE agent_id = ?1",
            )?
            .query_row([agent], |row| {
                let get = |i| row.get::<_, i64>(i).map(|n| n as u64);
                Ok(ComputeUsage {
                    runs: get(0)?,
                    run_ms: get(1)?,
                    run_cpu_ms: get(2)?,
                    browser_sessions: get(3)?,
                    browser_ms: get(4)?,
                })
            })
            .optional()?;
        Ok(usage.unwrap_or_default())
    }

    /// Fails with [`Error::QuotaExceeded`] if usage grew past `before` and beyond a quota.
    /// Changes that shrink usage always pass, so an agent over quota can clean up.
    pub fn check_quota(&self, agent: AgentId, before: Usage) -> Result<()> {
        let after = self.usage(agent)?;
        let quota = self.quota(agent)?;
        if let Some(max) = quota.max_bytes
            && after.bytes > before.bytes
            && after.bytes as u64 > max
        {
            return Err(Error::QuotaExceeded(format!(
                "the agent's files would take {} bytes; its quota is {max} bytes",
                after.bytes
            )));
        }
        let entries = |u: Usage| u.files + u.dirs;
        if let Some(max) = quota.max_files
            && entries(after) > entries(before)
            && entries(after) as u64 > max
        {
            return Err(Error::QuotaExceeded(format!(
                "the agent would have {} files and directories; its quota is {max}",
                entries(after)
            )));
        }
        Ok(())
    }

    /// Recomputes an agent's usage counters from its live rows (after restore and fork).
    pub fn recount_usage(&self, agent: AgentId) -> Result<()> {
        self.conn.execute(
            &format!(
                "UPDATE agents SET \
                   used_bytes = (SELECT COALESCE(SUM(size), 0) FROM inodes WHERE agent_id = ?1 AND gen_to = {live} AND kind = 1), \
                   used_files = (SELECT COUNT(*) FROM inodes WHERE agent_id = ?1 AND gen_to = {live} AND kind IN (1, 3)), \
                   used_dirs = (SELECT COUNT(*) FROM inodes WHERE agent_id = ?1 AND gen_to = {live} AND kind = 2 AND ino != {root}) \
                 WHERE id = ?1",
                live = super::LIVE,
                root = ROOT_INO
            ),
            [agent],
        )?;
        Ok(())
    }
}
