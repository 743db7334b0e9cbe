//! Versioned inode and directory-entry rows, and the tree operations built on them.
//!
//! Every change goes through four primitives (`insert_inode`, `modify`, `end_inode`, and
//! their directory-entry twins) which apply the generation rule described in
//! [`crate::index`] and keep the agent's usage counters in step.

use rusqlite::{OptionalExtension, Row, params};

use super::{LIVE, LIVE_VIEW, Tx};
use crate::watch::Change;
use crate::{AgentId, Error, FileType, FsPath, Hash, Result};

/// One version of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InodeRow {
    pub ino: u64,
    pub gen_from: i64,
    pub kind: FileType,
    pub mode: u32,
    pub size: u64,
    pub nlink: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub content: Option<Hash>,
    pub target: Option<Vec<u8>>,
}

impl InodeRow {
    pub fn attr(&self) -> crate::Attr {
        crate::Attr {
            ino: self.ino,
            kind: self.kind,
            mode: self.mode,
            size: self.size,
            nlink: self.nlink,
            atime_ns: self.atime,
            mtime_ns: self.mtime,
            ctime_ns: self.ctime,
            hash: match self.kind {
                FileType::File => Some(self.content.unwrap_or_else(|| Hash::of(b""))),
                _ => None,
            },
        }
    }
}

pub(crate) const ROOT_INO: u64 = 1;

const INODE_COLUMNS: &str =
    "ino, gen_from, kind, mode, size, nlink, atime, mtime, ctime, content, target";

fn kind_code(kind: FileType) -> i64 {
    match kind {
        FileType::File => 1,
        FileType::Directory => 2,
        FileType::Symlink => 3,
    }
}

fn kind_from(code: i64) -> rusqlite::Result<FileType> {
    match code {
        1 => Ok(FileType::File),
        2 => Ok(FileType::Directory),
        3 => Ok(FileType::Symlink),
        other => Err(rusqlite::Error::IntegralValueOutOfRange(2, other)),
    }
}

pub(crate) fn hash_from(bytes: Option<Vec<u8>>) -> rusqlite::Result<Option<Hash>> {
    match bytes {
        None => Ok(None),
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map(|b| Some(Hash(b)))
            .map_err(|_| {
                rusqlite::Error::InvalidColumnType(0, "hash".into(), rusqlite::types::Type::Blob)
            }),
    }
}

/// Reads an inode row whose first columns are [`INODE_COLUMNS`], starting at `at`.
pub(crate) fn inode_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<InodeRow> {
    Ok(InodeRow {
        ino: row.get::<_, i64>(at)? as u64,
        gen_from: row.get(at + 1)?,
        kind: kind_from(row.get(at + 2)?)?,
        mode: row.get::<_, i64>(at + 3)? as u32,
        size: row.get::<_, i64>(at + 4)? as u64,
        nlink: row.get::<_, i64>(at + 5)? as u32,
        atime: row.get(at + 6)?,
        mtime: row.get(at + 7)?,
        ctime: row.get(at + 8)?,
        content: hash_from(row.get(at + 9)?)?,
        target: row.get(at + 10)?,
    })
}

/// One agent's tree inside a transaction, read at `view` and written at `gen`.
pub(crate) struct Tree<'t> {
    pub tx: &'t Tx<'t>,
    pub agent: AgentId,
    /// The agent's current generation; only meaningful for the live view.
    generation: i64,
    view: i64,
    /// Inodes open in a mount: their last unlink leaves them in place, with no links,
    /// until they are closed.
    pinned: Vec<u64>,
    /// Pinned inodes this tree left without a link (see [`Tree::orphaned`]).
    orphaned: std::cell::RefCell<Vec<u64>>,
}

impl<'t> Tree<'t> {
    /// The live tree, for reading and writing.
    pub fn live(tx: &'t Tx<'t>, agent: AgentId) -> Result<Tree<'t>> {
        let generation: i64 = tx
            .conn
            .prepare_cached("SELECT gen FROM agents WHERE id = ?1")?
            .query_row([agent], |row| row.get(0))
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("agent {agent}")))?;
        Ok(Tree {
            tx,
            agent,
            generation,
            view: LIVE_VIEW,
            pinned: Vec::new(),
            orphaned: Default::default(),
        })
    }

    /// The same tree, keeping `pinned` inodes alive past their last unlink.
    pub fn with_pins(mut self, pinned: Vec<u64>) -> Tree<'t> {
        self.pinned = pinned;
        self
    }

    /// The tree as of generation `view`, read-only.
    pub fn at(tx: &'t Tx<'t>, agent: AgentId, view: i64) -> Tree<'t> {
        Tree {
            tx,
            agent,
            generation: 0,
            view,
            pinned: Vec::new(),
            orphaned: Default::default(),
        }
    }

    /// The pinned inodes whose last link this tree removed: they live on without a name
    /// until their last open handle closes.
    pub fn orphaned(&self) -> Vec<u64> {
        self.orphaned.borrow().clone()
    }

    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The generation reads see.
    pub fn view(&self) -> i64 {
        self.view
    }

    fn writable(&self) -> Result<()> {
        if self.view != LIVE_VIEW {
            return Err(Error::InvalidArgument("a snapshot is read-only".into()));
        }
        Ok(())
    }

    // ----- reading -----

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        Ok(self
            .tx
            .conn
            .prepare_cached(
                "SELECT ino FROM dentries WHERE agent_id = ?1 AND parent = ?2 AND name = ?3 \
                 AND gen_from <= ?4 AND +gen_to > ?4",
            )?
            .query_row(params![self.agent, parent as i64, name, self.view], |row| {
                row.get::<_, i64>(0)
            })
            .optional()?
            .map(|ino| ino as u64))
    }

    pub fn inode(&self, ino: u64) -> Result<Option<InodeRow>> {
        Ok(self
            .tx
            .conn
            .prepare_cached(&format!(
                "SELECT {INODE_COLUMNS} FROM inodes WHERE agent_id = ?1 AND ino = ?2 \
                 AND gen_from <= ?3 AND +gen_to > ?3"
            ))?
            .query_row(params![self.agent, ino as i64, self.view], |row| {
                inode_from_row(row, 0)
            })
            .optional()?)
    }

    /// An inode that a directory entry names; its absence means a broken index.
    pub fn get(&self, ino: u64) -> Result<InodeRow> {
        self.inode(ino)?.ok_or_else(|| {
            Error::Corrupt(format!("inode {ino} of agent {} is missing", self.agent))
        })
    }

    /// The entries of directory `dir`, sorted by name.
    pub fn children(&self, dir: u64) -> Result<Vec<(Vec<u8>, InodeRow)>> {
        let mut stmt = self.tx.conn.prepare_cached(&format!(
            "SELECT d.name, {} FROM dentries d JOIN inodes i \
               ON i.agent_id = d.agent_id AND i.ino = d.ino AND i.gen_from <= ?3 AND +i.gen_to > ?3 \
             WHERE d.agent_id = ?1 AND d.parent = ?2 AND d.gen_from <= ?3 AND +d.gen_to > ?3 \
             ORDER BY d.name",
            INODE_COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ")
        ))?;
        let rows = stmt
            .query_map(params![self.agent, dir as i64, self.view], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, inode_from_row(row, 1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn has_children(&self, dir: u64) -> Result<bool> {
        Ok(self
            .tx
            .conn
            .prepare_cached(
                "SELECT 1 FROM dentries WHERE agent_id = ?1 AND parent = ?2 \
                 AND gen_from <= ?3 AND +gen_to > ?3 LIMIT 1",
            )?
            .query_row(params![self.agent, dir as i64, self.view], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The inode at `path`. Symlinks are never followed: a path through one is
    /// [`Error::NotADirectory`].
    pub fn resolve(&self, path: &FsPath) -> Result<InodeRow> {
        let mut current = self.get(ROOT_INO)?;
        for (depth, name) in path.segments().iter().enumerate() {
            if current.kind != FileType::Directory {
                return Err(Error::NotADirectory(prefix(path, depth)));
            }
            let ino = self
                .lookup(current.ino, name)?
                .ok_or_else(|| Error::NotFound(path.to_string()))?;
            current = self.get(ino)?;
        }
        Ok(current)
    }

    /// The directory that holds `path`, and the last segment of `path`.
    pub fn resolve_parent<'p>(&self, path: &'p FsPath) -> Result<(InodeRow, &'p [u8])> {
        let (parent, name) = path.split_last().ok_or_else(|| {
            Error::InvalidArgument("the operation needs a path other than /".into())
        })?;
        let dir = self.resolve(&parent)?;
        if dir.kind != FileType::Directory {
            return Err(Error::NotADirectory(parent.to_string()));
        }
        Ok((dir, name))
    }

    /// Live parent directory of `ino` (directories have exactly one entry).
    pub fn parent_of(&self, ino: u64) -> Result<Option<u64>> {
        Ok(self
            .tx
            .conn
            .prepare_cached(&format!(
                "SELECT parent FROM dentries WHERE agent_id = ?1 AND ino = ?2 AND gen_to = {LIVE} LIMIT 1"
            ))?
            .query_row(params![self.agent, ino as i64], |row| row.get::<_, i64>(0))
            .optional()?
            .map(|p| p as u64))
    }

    // ----- primitives that change rows -----

    fn alloc_ino(&self) -> Result<u64> {
        let ino: i64 = self
            .tx
            .conn
            .prepare_cached(
                "UPDATE agents SET next_ino = next_ino + 1 WHERE id = ?1 RETURNING next_ino - 1",
            )?
            .query_row([self.agent], |row| row.get(0))?;
        Ok(ino as u64)
    }

    fn count(&self, row: &InodeRow, sign: i64) -> Result<()> {
        let (bytes, files, dirs) = usage_of(row);
        self.adjust_usage(sign * bytes, sign * files, sign * dirs)
    }

    fn adjust_usage(&self, bytes: i64, files: i64, dirs: i64) -> Result<()> {
        if bytes != 0 || files != 0 || dirs != 0 {
            self.tx
                .conn
                .prepare_cached(
                    "UPDATE agents SET used_bytes = used_bytes + ?2, used_files = used_files + ?3, \
                     used_dirs = used_dirs + ?4 WHERE id = ?1",
                )?
                .execute(params![self.agent, bytes, files, dirs])?;
        }
        Ok(())
    }

    fn insert_row(&self, row: &InodeRow) -> Result<()> {
        self.tx
            .conn
            .prepare_cached(
                "INSERT INTO inodes (agent_id, ino, gen_from, gen_to, kind, mode, size, nlink, atime, \
                 mtime, ctime, content, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                self.agent,
                row.ino as i64,
                self.generation,
                LIVE,
                kind_code(row.kind),
                row.mode as i64,
                row.size as i64,
                row.nlink as i64,
                row.atime,
                row.mtime,
                row.ctime,
                row.content.map(|h| h.0.to_vec()),
                row.target,
            ])?;
        Ok(())
    }

    /// Brings `row`, a version of an inode that has just left the live tree, back into it
    /// without a name, as an unlink leaves a file that is still open.
    pub fn revive_unnamed(&self, row: InodeRow) -> Result<()> {
        self.writable()?;
        let row = InodeRow { nlink: 0, ..row };
        self.insert_row(&row)?;
        self.count(&row, 1)
    }

    /// Adds a new inode to the live tree; `row.ino` is assigned here.
    pub fn insert_inode(&self, mut row: InodeRow) -> Result<InodeRow> {
        self.writable()?;
        row.ino = self.alloc_ino()?;
        row.gen_from = self.generation;
        self.insert_row(&row)?;
        self.count(&row, 1)?;
        Ok(row)
    }

    /// Changes the live version of inode `ino` with `change`, keeping older versions that a
    /// snapshot can see.
    pub fn modify(&self, ino: u64, change: impl FnOnce(&mut InodeRow)) -> Result<InodeRow> {
        self.writable()?;
        let old = self.get(ino)?;
        let mut new = old.clone();
        change(&mut new);
        new.ino = old.ino;
        if new == old {
            return Ok(old);
        }
        if old.gen_from == self.generation {
            self.tx
                .conn
                .prepare_cached(
                    "UPDATE inodes SET kind = ?4, mode = ?5, size = ?6, nlink = ?7, atime = ?8, \
                     mtime = ?9, ctime = ?10, content = ?11, target = ?12 \
                     WHERE agent_id = ?1 AND ino = ?2 AND gen_from = ?3",
                )?
                .execute(params![
                    self.agent,
                    ino as i64,
                    old.gen_from,
                    kind_code(new.kind),
                    new.mode as i64,
                    new.size as i64,
                    new.nlink as i64,
                    new.atime,
                    new.mtime,
                    new.ctime,
                    new.content.map(|h| h.0.to_vec()),
                    new.target,
                ])?;
        } else {
            self.close_inode(&old)?;
            new.gen_from = self.generation;
            self.insert_row(&new)?;
        }
        self.tx.note(self.agent, Change::Inode(ino));
        let (before, after) = (usage_of(&old), usage_of(&new));
        self.adjust_usage(after.0 - before.0, after.1 - before.1, after.2 - before.2)?;
        Ok(InodeRow {
            gen_from: self.generation,
            ..new
        })
    }

    fn close_inode(&self, row: &InodeRow) -> Result<()> {
        self.tx.note(self.agent, Change::Inode(row.ino));
        if row.gen_from == self.generation {
            self.tx
                .conn
                .prepare_cached(
                    "DELETE FROM inodes WHERE agent_id = ?1 AND ino = ?2 AND gen_from = ?3",
                )?
                .execute(params![self.agent, row.ino as i64, row.gen_from])?;
        } else {
            self.tx
                .conn
                .prepare_cached("UPDATE inodes SET gen_to = ?4 WHERE agent_id = ?1 AND ino = ?2 AND gen_from = ?3")?
                .execute(params![self.agent, row.ino as i64, row.gen_from, self.generation])?;
        }
        Ok(())
    }

    /// Removes inode `ino` from the live tree.
    pub fn end_inode(&self, ino: u64) -> Result<()> {
        self.writable()?;
        let row = self.get(ino)?;
        self.end_xattrs(ino)?;
        self.close_inode(&row)?;
        self.count(&row, -1)
    }

    pub fn insert_dentry(&self, parent: u64, name: &[u8], ino: u64) -> Result<()> {
        self.writable()?;
        self.tx.note(
            self.agent,
            Change::Entry {
                parent,
                name: name.to_vec(),
            },
        );
        self.tx
            .conn
            .prepare_cached(
                "INSERT INTO dentries (agent_id, parent, name, gen_from, gen_to, ino) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                self.agent,
                parent as i64,
                name,
                self.generation,
                LIVE,
                ino as i64
            ])?;
        Ok(())
    }

    pub fn end_dentry(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.writable()?;
        self.tx.note(
            self.agent,
            Change::Entry {
                parent,
                name: name.to_vec(),
            },
        );
        let conn = self.tx.conn;
        let deleted = conn
            .prepare_cached(&format!(
                "DELETE FROM dentries WHERE agent_id = ?1 AND parent = ?2 AND name = ?3 \
                 AND gen_from = ?4 AND +gen_to = {LIVE}"
            ))?
            .execute(params![self.agent, parent as i64, name, self.generation])?;
        if deleted == 0 {
            conn.prepare_cached(&format!(
                "UPDATE dentries SET gen_to = ?4 WHERE agent_id = ?1 AND parent = ?2 AND name = ?3 \
                 AND +gen_to = {LIVE}"
            ))?
            .execute(params![self.agent, parent as i64, name, self.generation])?;
        }
        Ok(())
    }

    // ----- tree operations -----

    /// Creates a new entry `name` in directory `parent` for a new inode made from `row`.
    pub fn create(&self, parent: u64, name: &[u8], row: InodeRow) -> Result<InodeRow> {
        let is_dir = row.kind == FileType::Directory;
        let row = self.insert_inode(row)?;
        self.insert_dentry(parent, name, row.ino)?;
        let now = self.tx.now;
        self.modify(parent, |p| {
            p.mtime = now;
            p.ctime = now;
            if is_dir {
                p.nlink += 1;
            }
        })?;
        Ok(row)
    }

    /// Removes entry `name` (naming `ino`) from `parent`, dropping the inode with its last link.
    pub fn unlink(&self, parent: u64, name: &[u8], ino: u64) -> Result<()> {
        let row = self.get(ino)?;
        self.end_dentry(parent, name)?;
        let now = self.tx.now;
        let is_dir = row.kind == FileType::Directory;
        if (is_dir || row.nlink <= 1) && self.pinned.contains(&ino) {
            // Open somewhere: it lives on without a name until it is closed.
            self.modify(ino, |r| {
                r.nlink = 0;
                r.ctime = now;
            })?;
            self.orphaned.borrow_mut().push(ino);
        } else if is_dir || row.nlink <= 1 {
            self.end_inode(ino)?;
        } else {
            self.modify(ino, |r| {
                r.nlink -= 1;
                r.ctime = now;
            })?;
        }
        self.modify(parent, |p| {
            p.mtime = now;
            p.ctime = now;
            if is_dir {
                p.nlink = p.nlink.saturating_sub(1);
            }
        })?;
        Ok(())
    }

    /// Removes everything beneath directory `dir` (not `dir` itself).
    pub fn clear_dir(&self, dir: u64) -> Result<()> {
        for (name, child) in self.children(dir)? {
            if child.kind == FileType::Directory {
                self.clear_dir(child.ino)?;
            }
            self.unlink(dir, &name, child.ino)?;
        }
        Ok(())
    }

    /// Makes a new empty directory row with the given mode.
    pub fn dir_row(&self, mode: u32) -> InodeRow {
        let now = self.tx.now;
        InodeRow {
            ino: 0,
            gen_from: 0,
            kind: FileType::Directory,
            mode: mode & 0o7777,
            size: 0,
            nlink: 2,
            atime: now,
            mtime: now,
            ctime: now,
            content: None,
            target: None,
        }
    }

    /// Directory `parent/name`, creating it (and, with `parents`, every missing ancestor
    /// along `path`) as needed.
    pub fn ensure_dirs(&self, path: &FsPath, mode: u32) -> Result<InodeRow> {
        let mut current = self.get(ROOT_INO)?;
        for (depth, name) in path.segments().iter().enumerate() {
            if current.kind != FileType::Directory {
                return Err(Error::NotADirectory(prefix(path, depth)));
            }
            current = match self.lookup(current.ino, name)? {
                Some(ino) => self.get(ino)?,
                None => self.create(current.ino, name, self.dir_row(mode))?,
            };
        }
        if current.kind != FileType::Directory {
            return Err(Error::NotADirectory(path.to_string()));
        }
        Ok(current)
    }

    /// True if directory `ancestor` is `ino` or one of its live ancestors.
    pub fn is_ancestor(&self, ancestor: u64, mut ino: u64) -> Result<bool> {
        loop {
            if ino == ancestor {
                return Ok(true);
            }
            match self.parent_of(ino)? {
                Some(parent) if parent != ino => ino = parent,
                _ => return Ok(false),
            }
        }
    }
}

/// What one inode adds to its agent's usage counters: bytes, files, directories.
fn usage_of(row: &InodeRow) -> (i64, i64, i64) {
    match row.kind {
        FileType::File => (row.size as i64, 1, 0),
        FileType::Symlink => (0, 1, 0),
        FileType::Directory if row.ino == ROOT_INO => (0, 0, 0),
        FileType::Directory => (0, 0, 1),
    }
}

/// The first `depth` segments of `path`, printed.
fn prefix(path: &FsPath, depth: usize) -> String {
    let mut shown = FsPath::root();
    for segment in &path.segments()[..depth] {
        shown = shown.join(segment);
    }
    shown.to_string()
}

impl Tx<'_> {
    /// Ends every live inode without links (see [`Tree::with_pins`]); returns how many.
    pub fn remove_orphans(&self) -> Result<u64> {
        let orphans: Vec<(AgentId, i64)> = {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT agent_id, ino FROM inodes WHERE gen_to = {LIVE} AND nlink = 0"
            ))?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (agent, ino) in &orphans {
            Tree::live(self, *agent)?.end_inode(*ino as u64)?;
        }
        Ok(orphans.len() as u64)
    }
}
