//! The group-commit engine under the SQLite store: one writer thread, one reader thread, one checkpoint
//! thread, each with its own connection to the same WAL-mode file.
//!
//! Callers send jobs over a channel and await the answer. The writer takes every job waiting at once and runs
//! all the writes in a single transaction (each under its own savepoint, so one failing write does not undo
//! the others) and commits once: many webhooks share one commit. Answers go out after the commit, so
//! "accepted" always means "on disk". WAL checkpoints, which copy the log into the database and sync it, run
//! on their own connection and thread, so they never hold up a commit; when the WAL has grown long under
//! steady writes, the writer itself checkpoints the little the checkpoint thread has not yet copied, between
//! two groups, so that SQLite starts the WAL over (no blocking `RESTART` checkpoint, which stalled commits
//! for up to a quarter of a second). The engine knows nothing of receipts:
//! the queries in the parent module are closures it runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::schema;
use crate::metric_names as names;
use crate::settings::Synchronous;
use crate::store::StoreError;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How often the checkpoint thread copies the WAL into the database. Often, so that what the writer has to
/// copy itself when the WAL starts over is little: every 500 ms, that copy held the writer 11-14 ms and was
/// the open-loop p99 (docs/performance.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL length (pages) past which the writer is asked to let the WAL start over.
const WAL_RESTART_FRAMES: i64 = 65_536;
/// The most pages the writer is left to copy when it lets the WAL start over: the checkpoint thread copies
/// back to back until no more than this was written during its last copy, so the writer's part (the copy and
/// the syncs, during which no webhook commits) stays a few milliseconds (docs/performance.md).
const WAL_RESTART_REMAINDER: i64 = 256;
/// The most back-to-back copies the checkpoint thread makes to get there; then the writer copies the rest.
const CATCH_UP_ROUNDS: usize = 16;

/// What the writer thread keeps in memory beside the database ([`super::dedup`]); it must follow what
/// commits.
pub trait WriterState: Send + 'static {
    /// Writes what the group's jobs left to it, last in the group's transaction; an error rolls the group
    /// back.
    fn before_commit(&mut self, conn: &Connection) -> Result<(), StoreError>;
    /// Says whether the group's transaction committed.
    fn after_commit(&mut self, committed: bool);
}

/// The state the jobs share with the writer, each locking it in turn on the writer thread.
impl<T: WriterState> WriterState for Arc<Mutex<T>> {
    fn before_commit(&mut self, conn: &Connection) -> Result<(), StoreError> {
        lock(self).before_commit(conn)
    }

    fn after_commit(&mut self, committed: bool) {
        lock(self).after_commit(committed);
    }
}

/// Two states, each told in turn.
impl<A: WriterState, B: WriterState> WriterState for (A, B) {
    fn before_commit(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.0.before_commit(conn)?;
        self.1.before_commit(conn)
    }

    fn after_commit(&mut self, committed: bool) {
        self.0.after_commit(committed);
        self.1.after_commit(committed);
    }
}

/// The state behind `m`; a job that panicked while holding it left nothing half done that the commit
/// hooks do not settle.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs a job; says whether it succeeded (a failed write is rolled back alone) and how to answer after commit.
type Work = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Finish) + Send>;

struct Job {
    write: bool,
    work: Work,
}

/// Handle to the engine's threads; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    writes: mpsc::UnboundedSender<Job>,
    reads: mpsc::UnboundedSender<Job>,
    /// Whether the last commit that carried writes failed (a full disk shows only when something is written).
    last_commit_failed: Arc<AtomicBool>,
}

impl Engine {
    /// Opens (creating if needed) the database and its folder, brings its schema up to date, has `load` read
    /// the writer's state from it, and starts the threads.
    pub fn open(
        options: &SqliteOptions,
        load: impl FnOnce(&Connection) -> anyhow::Result<Box<dyn WriterState>>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = &options.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the store folder {}", parent.display()))?;
        }
        let open = || {
            open_connection(options).with_context(|| {
                format!("cannot open the store at {} (store.path)", path.display())
            })
        };
        let mut conn = open()?;
        // Synced by the checkpoint thread after each copy (see [`checkpoint`]), and locked for as long as the
        // store is open.
        let db_file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the store at {} (store.path)", path.display()))?;
        lock_for_this_process(&db_file, path)?;
        schema::migrate(&mut conn).with_context(|| {
            format!("cannot update the store at {} (store.path)", path.display())
        })?;
        let mut state = load(&conn)
            .with_context(|| format!("cannot read the store at {} (store.path)", path.display()))?;
        // Each write job runs under a savepoint, which copies every page it first touches into a sub-journal.
        // Past 64 KiB (a job that deletes many rows: the record of a batch of sends, a purge chunk) SQLite
        // moves that sub-journal into a new temporary file, opened, written and closed once per commit; in
        // memory it is a copy of at most one job's pages, released with the savepoint (docs/performance.md).
        conn.pragma_update(None, "temp_store", "MEMORY")
            .with_context(|| {
                format!("cannot set up the store at {} (store.path)", path.display())
            })?;
        let checkpointer = open()?;
        let reader = open()?;
        let last_commit_failed = Arc::new(AtomicBool::new(false));
        // Reads get a connection and a thread of their own, so loading a due chat never waits for a commit.
        let (reads, read_rx) = mpsc::unbounded_channel();
        let failed = last_commit_failed.clone();
        std::thread::Builder::new()
            .name("autoseen-store-read".into())
            .spawn(move || run(reader, read_rx, &failed, None, None))
            .context("cannot start the store reader thread")?;
        let (writes, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let failed = last_commit_failed.clone();
        let wal_long = Arc::new(AtomicBool::new(false));
        let long = wal_long.clone();
        std::thread::Builder::new()
            .name("autoseen-store".into())
            .spawn(move || {
                run(conn, rx, &failed, Some(&long), Some(&mut *state));
                drop(stop);
            })
            .context("cannot start the store thread")?;
        std::thread::Builder::new()
            .name("autoseen-checkpoint".into())
            .spawn(move || checkpoint(checkpointer, &db_file, stopped, &wal_long))
            .context("cannot start the checkpoint thread")?;
        Ok(Self {
            writes,
            reads,
            last_commit_failed,
        })
    }

    /// Runs `f` on the writer (`write`, inside the next group commit) or the reader, and answers after commit.
    pub async fn call<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(e.clone()),
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            });
            (ok, finish)
        });
        let queue = if write { &self.writes } else { &self.reads };
        queue
            .send(Job { write, work })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Whether the last commit that carried writes failed.
    pub fn last_commit_failed(&self) -> bool {
        self.last_commit_failed.load(Ordering::Relaxed)
    }
}

/// How long opening the store waits for another process (or a store of this one being closed) to let go
/// of the file.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes the file for this process alone (an advisory lock, released when the file is closed, even by a
/// crash). The ids of the dedup window live in the process's memory ([`super::dedup`]), so a second process
/// on the same file would accept again what the first accepted; several replicas share PostgreSQL instead.
fn lock_for_this_process(file: &std::fs::File, path: &std::path::Path) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "the store at {} (store.path) is open in another autoseen process: one process per SQLite \
                 file (replicas share PostgreSQL, docs/replicas.md)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot lock the store at {} (store.path)",
                    path.display()
                )));
            }
        }
    }
}

/// Where the SQLite file is and how it is written.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
}

fn open_connection(options: &SqliteOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open(&options.path)?;
    conn.busy_timeout(options.busy_timeout)?;
    // One plan per statement, whatever is bound: without it, a statement with `LIMIT ?` (the scheduler's due
    // reads, the purge's sweep) is compiled again at every step with a new value, which cost the dispatch
    // about a tenth of the process (docs/performance.md).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    super::seen::register(&conn)?;
    // `rarray(?)`: the rows found in memory ([`super::rows`]) bound as one list.
    rusqlite::vtab::array::load_module(&conn)?;
    // Takes effect when the file is created. Receipts and ids are small and their index keys arrive in random
    // order, so each commit dirties many pages: small pages make the WAL written per commit small.
    conn.pragma_update(None, "page_size", 1024)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // Checkpoints are the checkpoint thread's job, never a commit's.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a restart the WAL file is cut back to this size, so disk use stays bounded too.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

/// Copies the WAL into the database every [`CHECKPOINT_EVERY`] without blocking the writer. Under steady
/// writes such a checkpoint never quite catches up (the writer appends while it copies), and SQLite starts
/// the WAL over only once everything in it is copied. Past [`WAL_RESTART_FRAMES`] it copies again at once,
/// until a copy found at most [`WAL_RESTART_REMAINDER`] new pages (or after [`CATCH_UP_ROUNDS`]), then sets
/// `wal_long`, and the writer copies the little that is left between two groups. Once more, truncating the
/// WAL, when the store thread has ended.
fn checkpoint(
    conn: Connection,
    db_file: &std::fs::File,
    stopped: std::sync::mpsc::Receiver<()>,
    wal_long: &AtomicBool,
) {
    use std::sync::mpsc::RecvTimeoutError;
    // The WAL's length at the last sync: an idle store is not synced again every tick.
    let mut synced_to = 0;
    loop {
        match stopped.recv_timeout(CHECKPOINT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {
                let mut copied_to = None;
                for round in 1..=CATCH_UP_ROUNDS {
                    let Some(frames) = copy(&conn, db_file, &mut synced_to) else {
                        break;
                    };
                    if frames <= WAL_RESTART_FRAMES {
                        break;
                    }
                    let fresh = copied_to.map_or(frames, |before| frames - before);
                    if fresh <= WAL_RESTART_REMAINDER || round == CATCH_UP_ROUNDS {
                        wal_long.store(true, Ordering::Relaxed);
                        break;
                    }
                    copied_to = Some(frames);
                }
            }
            _ => {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                return;
            }
        }
    }
}

/// One copy of the WAL into the database, without waiting for anyone, then a sync of the database unless
/// the WAL is as it was at the last one (`synced_to`). Returns the WAL's length in pages when the copy began
/// (all of it is copied when nothing blocks the copy), or `None` when the copy failed.
///
/// SQLite syncs the database only after a copy that reached the WAL's end, which under steady writes only
/// the writer's does: it then wrote out everything the copies before had left in the OS cache (a quarter of
/// a second on a full store). Syncing after each copy leaves it little. These syncs only spare the writer
/// work; SQLite syncs whatever it relies on itself.
fn copy(conn: &Connection, db_file: &std::fs::File, synced_to: &mut i64) -> Option<i64> {
    let frames = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(1)
    });
    let frames = match frames {
        Ok(frames) => frames,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
            return None;
        }
    };
    if frames > 0 && frames != *synced_to {
        match db_file.sync_data() {
            Ok(()) => *synced_to = frames,
            Err(e) => tracing::warn!(error = %e, "cannot sync the store file"),
        }
    }
    Some(frames)
}

pub fn unavailable(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ReadOnly) => StoreError::ReadOnly(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// A thread of the engine: takes every waiting job, runs reads, then commits all writes at once. The writer
/// gets `wal_long`: when set, it checkpoints after a group (see [`checkpoint`]); and its `state`, which
/// writes last in each group and hears whether the group committed.
fn run(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Job>,
    last_commit_failed: &AtomicBool,
    wal_long: Option<&AtomicBool>,
    mut state: Option<&mut dyn WriterState>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let (writes, reads): (Vec<Job>, Vec<Job>) = batch.drain(..).partition(|j| j.write);
        for job in reads {
            (job.work)(Ok(&conn)).1(Ok(()));
        }
        if writes.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let writes_in_batch = writes.len();
        let begun = conn.execute_batch("BEGIN IMMEDIATE").map_err(unavailable);
        let changes_before = conn.total_changes();
        let mut finishers = Vec::with_capacity(writes.len());
        for job in writes {
            match &begun {
                Ok(()) => {
                    let step = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
                    let _ = step("SAVEPOINT job");
                    let (ok, finish) = (job.work)(Ok(&conn));
                    // A failed job is rolled back alone; the others stay in the transaction.
                    if !ok {
                        let _ = step("ROLLBACK TO job");
                    }
                    let _ = step("RELEASE job");
                    finishers.push(finish);
                }
                Err(e) => finishers.push((job.work)(Err(e)).1),
            }
        }
        // Only a transaction that changed something writes to the WAL; an empty one (the readiness probe) took
        // the write lock and releases it.
        let wrote = conn.total_changes() > changes_before;
        let committed = begun
            .and_then(|()| state.as_mut().map_or(Ok(()), |s| s.before_commit(&conn)))
            .and_then(|()| conn.execute_batch("COMMIT").map_err(unavailable))
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            });
        if let Some(state) = state.as_mut() {
            state.after_commit(committed.is_ok());
        }
        if wrote || committed.is_err() {
            last_commit_failed.store(committed.is_err(), Ordering::Relaxed);
        }
        metrics::histogram!(names::STORE_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(names::STORE_COMMIT_WRITES).record(writes_in_batch as f64);
        for finish in finishers {
            finish(committed.clone());
        }
        if wal_long.is_some_and(|long| long.swap(false, Ordering::Relaxed)) {
            // No other writer can append meanwhile, so this copies what is left and the next write
            // transaction starts the WAL over. Answers went out first: nobody waits on it but the next group.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint by the writer failed; will try again");
            }
        }
    }
}
