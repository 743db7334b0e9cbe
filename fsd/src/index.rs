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
//! Batches: in the process that holds the data directory (the server, a local mount), the
//! changes a mount makes by the thousand (entries created, removed and renamed, modes and
//! times set, a file's written content committed: `store/logged.rs`) do not commit one by
//! one. Each runs in a savepoint of one open transaction, the batch, and is acknowledged
//! once its record is in the intent log (`index/intents.rs`): a killed process loses no
//! acknowledged change, since the next open applies the log again. The batch commits a
//! short while after it opened ([`BATCH_WINDOW`]), before any other write, on
//! [`Index::sync`], and when the index closes. While it is open, reads run on the writer
//! connection, so everything in the process sees the batch's changes at once. The same
//! thread that commits batches checkpoints the write-ahead log (at most once a second while
//! commits are made, on a connection of its own), so no change waits for a checkpoint's
//! fsyncs.
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
mod intents;
mod schema;
mod snapshots;
mod tree;
mod xattrs;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::watch::{Change, Watchers};
use crate::{AgentId, Error, Result};
use intents::IntentLog;

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

/// How long a batch usually stays open at most (see [`crate::StoreOptions`]).
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// A batch with this many changes commits at once.
const BATCH_MAX: usize = 4096;

/// Where batching is on, the write-ahead log is checkpointed at most this often, by the
/// committing thread, while commits are made.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Bytes the write-ahead log file is cut back to when it starts over, where batching is on.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Applies one intent-log record to a transaction: how the store replays a batch.
pub(crate) type Replay = Box<dyn Fn(&Tx<'_>, &[u8]) -> Result<()> + Send + Sync>;

pub(crate) struct Index {
    writer: Mutex<Writer>,
    /// A batch is open on the writer connection: reads go there to see it.
    batch_open: AtomicBool,
    /// The connection that checkpoints where batching is on.
    checkpointer: Mutex<Option<Connection>>,
    /// Wakes the thread that commits batches.
    committer: Arc<Committer>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    durable: bool,
    /// Transactions committed through this index so far.
    commits: AtomicU64,
    /// How many of them are known to be on stable storage.
    synced: Mutex<u64>,
    pub watchers: Watchers,
}

struct Writer {
    conn: Connection,
    /// The intent log and how to apply its records, where this process batches.
    intents: Option<(IntentLog, Replay)>,
    batch: Option<Batch>,
}

/// The open batch.
struct Batch {
    opened: Instant,
    /// Its records, to apply again should its commit fail.
    records: Vec<Vec<u8>>,
}

/// What the committing thread waits on.
#[derive(Default)]
pub(crate) struct Committer {
    state: Mutex<CommitterState>,
    wake: Condvar,
}

struct CommitterState {
    /// How long a batch stays open.
    window: Duration,
    /// When the open batch opened, if one is open.
    batch_opened: Option<Instant>,
    /// Commits were made since the last checkpoint.
    uncheckpointed: bool,
    last_checkpoint: Instant,
    closed: bool,
}

impl Default for CommitterState {
    fn default() -> Self {
        CommitterState {
            window: Duration::ZERO,
            batch_opened: None,
            uncheckpointed: false,
            last_checkpoint: Instant::now(),
            closed: false,
        }
    }
}

/// A transaction, read-only or read-write, with the time it started.
pub(crate) struct Tx<'c> {
    pub conn: &'c Connection,
    /// Nanoseconds since the Unix epoch.
    pub now: i64,
    /// A change in the open batch, which a replay of its record must be able to redo.
    pub batched: bool,
    /// What the transaction changed in live trees, by agent, for watchers.
    changes: std::cell::RefCell<Vec<(AgentId, Change)>>,
}

impl Tx<'_> {
    fn new(conn: &Connection) -> Tx<'_> {
        Tx::at(conn, now_ns())
    }

    fn at(conn: &Connection, now: i64) -> Tx<'_> {
        Tx {
            conn,
            now,
            batched: false,
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
        let conn = open_connection(path)?;
        migrate(&conn)?;
        Ok(Index {
            writer: Mutex::new(Writer {
                conn,
                intents: None,
                batch: None,
            }),
            batch_open: AtomicBool::new(false),
            checkpointer: Mutex::new(None),
            committer: Arc::default(),
            readers: Mutex::new(Vec::new()),
            path: path.to_owned(),
            durable,
            commits: AtomicU64::new(0),
            synced: Mutex::new(0),
            watchers: Watchers::default(),
        })
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns batching on (see the module documentation): opens the intent log at `path`
    /// and applies, with `replay`, the records it holds beyond the index, those of a batch
    /// that never committed. Returns how many it applied. Only the process that holds the
    /// data directory may do this. A record that no longer applies (possible only after a
    /// power loss, when records acknowledged before the last sync can be missing before
    /// it) ends the replay: it and the records after it are dropped, with a warning.
    pub fn start_batching(&self, path: &Path, replay: Replay, window: Duration) -> Result<usize> {
        self.committer.lock().window = window;
        let mut writer = self.lock_writer();
        // Checkpoints (and their fsyncs) leave the commit: the committing thread makes them
        // on a connection of its own (`checkpoint`), so a mount's changes never wait for one.
        writer.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A second of heavy writing can grow the log to tens of MiB: cut it back when it
        // starts over.
        writer
            .conn
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let applied: i64 = writer
            .conn
            .query_row("SELECT applied FROM intent_log", [], |row| row.get(0))?;
        let (mut log, pending) = IntentLog::open(path, applied as u64)?;
        let mut replayed = 0;
        if let Some((last, _)) = pending.last() {
            let tx = writer
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (seq, record) in &pending {
                let mut savepoint = Savepoint::open(&tx)?;
                match apply_record(&tx, &replay, record) {
                    Ok(()) => {
                        savepoint.release()?;
                        replayed += 1;
                    }
                    Err(error) => {
                        drop(savepoint);
                        tracing::warn!(
                            %error,
                            log = %path.display(),
                            dropped = pending.len() - replayed,
                            "intent log record {seq} no longer applies; it and the records \
                             after it are dropped"
                        );
                        break;
                    }
                }
            }
            tx.execute("UPDATE intent_log SET applied = ?1", [*last as i64])?;
            tx.commit()?;
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
        log.clear()?;
        writer.intents = Some((log, replay));
        Ok(replayed)
    }

    /// What the thread that commits batches waits on.
    pub fn committer(&self) -> Arc<Committer> {
        self.committer.clone()
    }

    /// Commits the open batch if it is due (the committing thread's work).
    pub fn commit_due_batch(&self) {
        let mut writer = self.lock_writer();
        let due = writer
            .batch
            .as_ref()
            .is_some_and(|batch| batch.opened.elapsed() >= self.committer.lock().window);
        if due && let Err(error) = self.commit_batch(&mut writer) {
            tracing::warn!(%error, "committing a batch failed; will retry");
            self.committer.opened(Instant::now());
        }
    }

    /// Copies the write-ahead log into the database, on a connection of its own, while the
    /// writer goes on (the committing thread's work where batching is on; elsewhere SQLite
    /// checkpoints inside the commit that grows the log, as usual). SQLite starts the log
    /// over only when a write begins with every frame copied, which commits made during the
    /// copy prevent: so the frames added meanwhile (a few milliseconds' worth) are copied
    /// again with the writer held, and the next write starts the log over.
    pub fn checkpoint(&self) {
        let mut checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let checkpointed = (|| -> Result<()> {
            if checkpointer.is_none() {
                *checkpointer = Some(open_connection(&self.path)?);
            }
            let Some(conn) = checkpointer.as_ref() else {
                return Ok(());
            };
            let passive = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            passive()?;
            let mut writer = self.lock_writer();
            self.commit_batch(&mut writer)?;
            passive()?;
            Ok(())
        })();
        if let Err(error) = checkpointed {
            // The next round tries again; the log only grows meanwhile.
            tracing::warn!(%error, "checkpointing the index failed");
            self.committer.committed();
        }
    }

    /// Commits the open batch, if any. Should the commit fail, the batch stays open with
    /// every change in it (applied again from its records if SQLite rolled it back).
    fn commit_batch(&self, writer: &mut Writer) -> Result<()> {
        let Writer {
            conn,
            intents,
            batch,
        } = writer;
        let Some(open) = batch.take() else {
            return Ok(());
        };
        let Some((log, replay)) = intents.as_mut() else {
            return Err(Error::Corrupt(
                "a batch is open without an intent log".into(),
            ));
        };
        let committed = conn
            .execute(
                "UPDATE intent_log SET applied = ?1",
                [log.last_seq() as i64],
            )
            .and_then(|_| conn.execute_batch("COMMIT"));
        if let Err(error) = committed {
            if conn.is_autocommit() {
                let reopened = conn
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(Error::from)
                    .and_then(|()| {
                        open.records
                            .iter()
                            .try_for_each(|record| apply_record(conn, replay, record))
                    });
                if let Err(again) = reopened {
                    // The process can no longer show what it acknowledged; the intent log
                    // still holds it, for the next start.
                    panic!(
                        "agentbox: a batch could not be committed ({error}) nor applied again \
                         ({again}); its changes are in the intent log and the next start applies them"
                    );
                }
            }
            *batch = Some(open);
            return Err(error.into());
        }
        self.batch_open.store(false, Ordering::SeqCst);
        self.committer.closed();
        self.committer.committed();
        self.commits.fetch_add(1, Ordering::SeqCst);
        // Records left behind are at or below `applied`, skipped when the log is read.
        let _ = log.clear();
        Ok(())
    }

    /// Runs `f` in one write transaction; commits if it returns `Ok`, rolls back otherwise.
    /// With durability on, returns only once the commit is on stable storage. An open batch
    /// commits first.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let (value, commit, changes, batching) = {
            let mut writer = self.lock_writer();
            self.commit_batch(&mut writer)?;
            let batching = writer.intents.is_some();
            let tx = writer
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let handle = Tx::new(&tx);
            let value = f(&handle)?;
            let changes = handle.changes.take();
            drop(handle);
            tx.commit()?;
            (
                value,
                self.commits.fetch_add(1, Ordering::SeqCst) + 1,
                changes,
                batching,
            )
        };
        if self.durable && !sync_deferred() {
            self.sync_through(commit)?;
        }
        if batching {
            self.committer.committed();
        }
        self.announce(changes);
        Ok(value)
    }

    /// [`Index::write`] for a change a mount makes often: when its commit may be deferred
    /// ([`with_sync_deferred`]) and batching is on, it joins the open batch (its `Tx` says
    /// `batched`) and is acknowledged once `record` (from which `replay` redoes it, at the
    /// same time) is in the intent log. `f` returns `None` for a change its record could not
    /// redo: it is rolled back, nothing is logged, and `None` returned.
    pub fn write_logged<T>(
        &self,
        record: &[u8],
        f: impl FnOnce(&Tx<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut guard = self.lock_writer();
        let usable = guard
            .intents
            .as_ref()
            .is_some_and(|(log, _)| log.is_usable());
        if !sync_deferred() || !usable {
            drop(guard);
            return self.write(f);
        }
        let writer = &mut *guard;
        if writer.batch.is_none() {
            writer.conn.execute_batch("BEGIN IMMEDIATE")?;
            let opened = Instant::now();
            writer.batch = Some(Batch {
                opened,
                records: Vec::new(),
            });
            self.batch_open.store(true, Ordering::SeqCst);
            self.committer.opened(opened);
        }
        let (value, changes, full) = {
            let Writer {
                conn,
                intents,
                batch,
            } = writer;
            let now = now_ns();
            let mut savepoint = Savepoint::open(conn)?;
            let handle = Tx {
                batched: true,
                ..Tx::at(conn, now)
            };
            let Some(value) = in_writer(|| f(&handle))? else {
                return Ok(None);
            };
            let changes = handle.changes.take();
            drop(handle);
            let framed = [&now.to_le_bytes()[..], record].concat();
            let (log, _) = intents.as_mut().expect("checked above");
            log.append(&framed)?;
            savepoint.release()?;
            let batch = batch.as_mut().expect("opened above");
            batch.records.push(framed);
            (value, changes, batch.records.len() >= BATCH_MAX)
        };
        if full && let Err(error) = self.commit_batch(&mut guard) {
            // The change is in the batch and the log: acknowledged all the same.
            tracing::warn!(%error, "committing a full batch failed; will retry");
        }
        drop(guard);
        self.announce(changes);
        Ok(Some(value))
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
        self.commit_batch(&mut self.lock_writer())?;
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
    /// While a batch is open, runs on the writer connection, to see it.
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let nested = IN_WRITER.with(std::cell::Cell::get);
        debug_assert!(
            !(nested && self.batch_open.load(Ordering::SeqCst)),
            "a read nested in a batched change would not see the batch"
        );
        if self.batch_open.load(Ordering::SeqCst) && !nested {
            let writer = self.lock_writer();
            if writer.batch.is_some() {
                return in_writer(|| f(&Tx::new(&writer.conn)));
            }
        }
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

/// The savepoint of one batched (or replayed) change: rolled back unless released, so a
/// change that fails (or panics) leaves the batch as it was.
struct Savepoint<'c> {
    conn: &'c Connection,
    open: bool,
}

impl Savepoint<'_> {
    fn open(conn: &Connection) -> Result<Savepoint<'_>> {
        conn.prepare_cached("SAVEPOINT change")?.execute([])?;
        Ok(Savepoint { conn, open: true })
    }

    fn release(&mut self) -> Result<()> {
        self.conn.prepare_cached("RELEASE change")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self
                .conn
                .execute_batch("ROLLBACK TO change; RELEASE change");
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        self.committer.close();
        // On failure the intent log keeps the batch for the next start.
        let _ = self.commit_batch(&mut self.lock_writer());
    }
}

impl Committer {
    fn lock(&self) -> MutexGuard<'_, CommitterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn opened(&self, at: Instant) {
        self.lock().batch_opened = Some(at);
        self.wake.notify_all();
    }

    fn closed(&self) {
        self.lock().batch_opened = None;
    }

    /// Ends the committing thread's wait for good.
    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Notes a commit: the write-ahead log has frames to checkpoint.
    fn committed(&self) {
        let mut state = self.lock();
        if !state.uncheckpointed {
            state.uncheckpointed = true;
            self.wake.notify_all();
        }
    }

    /// Waits for the next piece of work; `None` once the index is closed.
    pub fn wait(&self) -> Option<Due> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            let batch = state
                .batch_opened
                .map(|opened| (opened + state.window, Due::Batch));
            let checkpoint = state
                .uncheckpointed
                .then(|| (state.last_checkpoint + CHECKPOINT_EVERY, Due::Checkpoint));
            let next = batch
                .into_iter()
                .chain(checkpoint)
                .min_by_key(|(at, _)| *at);
            state = match next {
                None => self.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some((at, due)) => {
                    let now = Instant::now();
                    if now >= at {
                        if due == Due::Checkpoint {
                            state.uncheckpointed = false;
                            state.last_checkpoint = now;
                        }
                        return Some(due);
                    }
                    self.wake
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// What the committing thread has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Commit the open batch.
    Batch,
    /// Checkpoint the write-ahead log.
    Checkpoint,
}

/// Applies one framed intent-log record (its time, then what the store wrote).
fn apply_record(conn: &Connection, replay: &Replay, record: &[u8]) -> Result<()> {
    let Some((now, rest)) = record.split_first_chunk::<8>() else {
        return Err(Error::Corrupt(
            "an intent log record without its time".into(),
        ));
    };
    replay(&Tx::at(conn, i64::from_le_bytes(*now)), rest)
}

thread_local! {
    /// This thread holds the writer connection (inside a batched change or a read on it):
    /// a nested read must use a reader connection.
    static IN_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn in_writer<T>(f: impl FnOnce() -> T) -> T {
    let previous = IN_WRITER.with(|flag| flag.replace(true));
    let value = f();
    IN_WRITER.with(|flag| flag.set(previous));
    value
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
    // Up to date (the usual case): no write lock, which another process's open batch may
    // hold for a moment.
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == schema::MIGRATIONS.len() as i64 {
        return Ok(());
    }
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
