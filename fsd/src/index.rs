//! The SQLite index: the only module that speaks SQL.
//!
//! One writer connection behind a mutex (every change is one `BEGIN IMMEDIATE`
//! transaction) and a small pool of reader connections (WAL lets them read while the
//! writer writes). Several processes may open the same index (the server and the
//! administration commands); SQLite's locking and a busy timeout serialise them.
//!
//! Durability: SQLite runs with `synchronous = NORMAL` (a commit survives a killed
//! process) and, when the store is durable, every write returns only after an fsync of
//! the write-ahead log covering its commit; concurrent writers share those fsyncs.
//!
//! Versioning: every row of `inodes` and `dentries` carries `[gen_from, gen_to)`, the
//! generations in which it exists; live rows have `gen_to = LIVE`. An agent's `gen` is its
//! current generation. Taking a snapshot records that number and increments it, so rows
//! written afterwards never disturb what the snapshot sees: a row whose `gen_from` is the
//! current generation is changed in place, any older row is closed (`gen_to = gen`) and a
//! new version inserted. A view at generation `v` sees the rows with
//! `gen_from <= v < gen_to`; the live view uses `v = LIVE - 1`.

mod agents;
mod content;
mod schema;
mod snapshots;
mod tree;
mod xattrs;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::watch::{Change, Watchers};
use crate::{AgentId, Error, Result};

pub(crate) use content::NewContent;
pub(crate) use schema::LIVE;
pub(crate) use tree::{InodeRow, Tree};
pub(crate) use xattrs::check_xattr;

/// The generation the live view reads at.
pub(crate) const LIVE_VIEW: i64 = LIVE - 1;

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        Error::Index(Box::new(error))
    }
}

pub(crate) struct Index {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    durable: bool,
    /// Transactions committed through this index so far.
    commits: AtomicU64,
    /// How many of them are known to be on stable storage.
    synced: Mutex<u64>,
    pub watchers: Watchers,
}

/// A transaction, read-only or read-write, with the time it started.
pub(crate) struct Tx<'c> {
    pub conn: &'c Connection,
    /// Nanoseconds since the Unix epoch.
    pub now: i64,
    /// What the transaction changed in live trees, by agent, for watchers.
    changes: std::cell::RefCell<Vec<(AgentId, Change)>>,
}

impl Tx<'_> {
    fn new(conn: &Connection) -> Tx<'_> {
        Tx {
            conn,
            now: now_ns(),
            changes: Default::default(),
        }
    }

    /// Records a change to an agent's live tree, announced once the transaction commits.
    pub fn note(&self, agent: AgentId, change: Change) {
        self.changes.borrow_mut().push((agent, change));
    }
}

impl Index {
    pub fn open(path: &Path, durable: bool) -> Result<Index> {
        let writer = open_connection(path)?;
        migrate(&writer)?;
        Ok(Index {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path: path.to_owned(),
            durable,
            commits: AtomicU64::new(0),
            synced: Mutex::new(0),
            watchers: Watchers::default(),
        })
    }

    /// Runs `f` in one write transaction; commits if it returns `Ok`, rolls back otherwise.
    /// With durability on, returns only once the commit is on stable storage.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let (value, commit, changes) = {
            let mut conn = self
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let handle = Tx::new(&tx);
            let value = f(&handle)?;
            let changes = handle.changes.take();
            drop(handle);
            tx.commit()?;
            (
                value,
                self.commits.fetch_add(1, Ordering::SeqCst) + 1,
                changes,
            )
        };
        if self.durable && !sync_deferred() {
            self.sync_through(commit)?;
        }
        self.announce(changes);
        Ok(value)
    }

    /// Hands a committed transaction's changes to the watchers, grouped by agent.
    fn announce(&self, mut changes: Vec<(AgentId, Change)>) {
        if changes.is_empty() {
            return;
        }
        let origin = crate::watch::current_origin();
        changes.sort_by_key(|(agent, _)| *agent);
        for group in changes.chunk_by(|a, b| a.0 == b.0) {
            let agent = group[0].0;
            let list: Vec<Change> = group.iter().map(|(_, change)| change.clone()).collect();
            self.watchers.publish(agent, origin, &list);
        }
    }

    /// Makes every commit so far durable (a mount's fsync after deferred commits).
    pub fn sync(&self) -> Result<()> {
        if self.durable {
            self.sync_through(self.commits.load(Ordering::SeqCst))?;
        }
        Ok(())
    }

    /// Group commit: makes commits up to `commit` durable with one fsync of the write-ahead
    /// log, which also covers every commit made before the fsync started. Writers that
    /// queue behind one fsync usually find their commit already covered.
    fn sync_through(&self, commit: u64) -> Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= commit {
            return Ok(());
        }
        let covered = self.commits.load(Ordering::SeqCst);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let file =
            std::fs::File::open(&wal).map_err(Error::io("opening the index's write-ahead log"))?;
        file.sync_data()
            .map_err(Error::io("flushing the index's write-ahead log"))?;
        *synced = covered;
        Ok(())
    }

    /// Runs `f` in one read transaction: every query in it sees the same state.
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path)?,
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = f(&Tx::new(&tx))?;
            tx.commit()?;
            Ok(value)
        })();
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < 8 {
            readers.push(conn);
        }
        result
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // Small pages: every commit writes each page it touches to the log, and a file
    // operation touches a handful of rows in different tables. (Takes effect only when the
    // index is created.)
    conn.pragma_update(None, "page_size", 1024)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Commits do not fsync by themselves: `Index::write` flushes the write-ahead log once
    // for a group of commits when durability is on. Checkpoints still sync (NORMAL).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoint less often: pages that many small transactions rewrite (the agent's row,
    // a busy directory) reach the database file once per checkpoint, not once per commit.
    conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    // IMMEDIATE so two processes opening a new data directory do not both migrate it.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<()> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::Corrupt(format!(
                "the index has format version {version}, newer than this agentbox \
                 understands ({known}); upgrade agentbox"
            )));
        }
        for migration in schema::MIGRATIONS.iter().skip(version as usize) {
            conn.execute_batch(migration)?;
        }
        conn.pragma_update(None, "user_version", known)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

thread_local! {
    static SYNC_DEFERRED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with its commits acknowledged before they are flushed to stable storage: they
/// survive a killed process at once, a power loss after the next [`Index::sync`] (a
/// mount's fsync). Blob bytes are still flushed before the commit that names them.
pub(crate) fn with_sync_deferred<T>(f: impl FnOnce() -> T) -> T {
    let previous = SYNC_DEFERRED.with(|d| d.replace(true));
    let value = f();
    SYNC_DEFERRED.with(|d| d.set(previous));
    value
}

fn sync_deferred() -> bool {
    SYNC_DEFERRED.with(std::cell::Cell::get)
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A short random id of lowercase letters and digits.
pub(crate) fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len * 2];
    let _ = getrandom::fill(&mut bytes);
    bytes
        .iter()
        .filter(|b| **b < 252)
        .take(len)
        .map(|b| ALPHABET[(*b % 36) as usize] as char)
        .collect()
}
