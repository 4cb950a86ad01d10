//! The embedded store: one SQLite file in WAL mode, written by one thread and read by another.
//!
//! Callers send jobs over a channel and await the answer. The writer takes every job waiting at once and runs
//! all the writes in a single transaction (each under its own savepoint, so one failing write
//! does not undo the others) and commits once: many webhooks share one commit. Answers go out after the commit,
//! so "accepted" always means "on disk". WAL checkpoints, which copy the log into the database and sync it,
//! run on a second connection in a thread of their own, so they never hold up a commit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::{Accepted, DeadReceipt, NewReceipt, Receipt, Store, StoreError};
use crate::domain::{ChatId, ChatKey, MessageId, SessionName};
use crate::settings::{StoreSettings, Synchronous};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL length (pages) past which the checkpoint thread restarts the WAL.
const WAL_RESTART_FRAMES: i64 = 65_536;

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs a job; says whether it succeeded (a failed write is rolled back alone) and how to answer after commit.
type Work = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Finish) + Send>;

struct Job {
    write: bool,
    work: Work,
}

/// Handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writes: mpsc::UnboundedSender<Job>,
    reads: mpsc::UnboundedSender<Job>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending (
    id            INTEGER PRIMARY KEY,
    session       TEXT NOT NULL,
    chat          TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    rule          TEXT NOT NULL,
    due_at        INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    read_on_reply INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    accepted_at   INTEGER NOT NULL,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS pending_by_chat ON pending (session, chat, due_at);
DROP INDEX IF EXISTS pending_by_due;
CREATE TABLE IF NOT EXISTS dedup (
    session     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    PRIMARY KEY (session, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_by_age ON dedup (accepted_at);
CREATE TABLE IF NOT EXISTS dead (
    id          INTEGER PRIMARY KEY,
    session     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    rule        TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    died_at     INTEGER NOT NULL,
    read_on_reply INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
";

impl SqliteStore {
    /// Opens (creating if needed) the database and its folder, and starts the store thread.
    pub fn open(settings: &StoreSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = &settings.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the store folder {}", parent.display()))?;
        }
        let conn = open_connection(path, settings)
            .with_context(|| format!("cannot open the store at {} (store.path)", path.display()))?;
        let checkpointer = open_connection(path, settings)
            .with_context(|| format!("cannot open the store at {} (store.path)", path.display()))?;
        let reader = open_connection(path, settings)
            .with_context(|| format!("cannot open the store at {} (store.path)", path.display()))?;
        // Reads get a connection and a thread of their own, so loading a due chat never waits for a commit.
        let (reads, read_rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("autoseen-store-read".into())
            .spawn(move || run(reader, read_rx))
            .context("cannot start the store reader thread")?;
        let (writes, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("autoseen-store".into())
            .spawn(move || {
                run(conn, rx);
                drop(stop);
            })
            .context("cannot start the store thread")?;
        std::thread::Builder::new()
            .name("autoseen-checkpoint".into())
            .spawn(move || checkpoint(checkpointer, stopped))
            .context("cannot start the checkpoint thread")?;
        Ok(Self { writes, reads })
    }

    async fn call<T: Send + 'static>(
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
}

fn open_connection(path: &Path, settings: &StoreSettings) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(settings.busy_timeout)?;
    // Takes effect when the file is created. Receipts and ids are small and their index keys arrive in random
    // order, so each commit dirties many pages: small pages make the WAL written per commit small.
    conn.pragma_update(None, "page_size", 1024)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match settings.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // Checkpoints are the checkpoint thread's job, never a commit's.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a restart the WAL file is cut back to this size, so disk use stays bounded too.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Copies the WAL into the database every [`CHECKPOINT_EVERY`] without blocking the writer. Under steady
/// writes such a checkpoint never quite catches up, so the WAL would only grow; past [`WAL_RESTART_FRAMES`] a
/// RESTART checkpoint briefly holds the writer back so the WAL starts over. Once more, truncating the WAL,
/// when the store thread has ended.
fn checkpoint(conn: Connection, stopped: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    let run = |mode: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            row.get::<_, i64>(1)
        })
    };
    loop {
        match stopped.recv_timeout(CHECKPOINT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {
                let result = run("PASSIVE").and_then(|frames| {
                    if frames > WAL_RESTART_FRAMES {
                        run("RESTART")
                    } else {
                        Ok(frames)
                    }
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
                }
            }
            _ => {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                return;
            }
        }
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The store thread: takes every waiting job, runs reads, then commits all writes at once.
fn run(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
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
        let committed = match begun {
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                unavailable(e)
            }),
            Err(e) => Err(e),
        };
        metrics::histogram!("autoseen_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("autoseen_store_commit_writes").record(writes_in_batch as f64);
        for finish in finishers {
            finish(committed.clone());
        }
    }
}

fn receipt_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Receipt, StoreError>> {
    let ids = (
        row.get::<_, String>("session")?,
        row.get::<_, String>("chat")?,
        row.get::<_, String>("message_id")?,
    );
    Ok(
        parse_ids(&ids.0, &ids.1, &ids.2).and_then(|(session, chat, message_id)| {
            Ok(Receipt {
                id: row.get("id").map_err(corrupt)?,
                session,
                chat,
                message_id,
                rule: row.get("rule").map_err(corrupt)?,
                due_at_ms: row.get("due_at").map_err(corrupt)?,
                not_before_ms: row.get("not_before").map_err(corrupt)?,
                read_on_reply: row.get("read_on_reply").map_err(corrupt)?,
                attempts: row.get("attempts").map_err(corrupt)?,
                last_error: row.get("last_error").map_err(corrupt)?,
            })
        }),
    )
}

fn corrupt(e: impl ToString) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn parse_ids(
    session: &str,
    chat: &str,
    message_id: &str,
) -> Result<(SessionName, ChatId, MessageId), StoreError> {
    Ok((
        SessionName::parse(session).map_err(corrupt)?,
        ChatId::parse(chat).map_err(corrupt)?,
        MessageId::parse(message_id).map_err(corrupt)?,
    ))
}

fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    rows.map(|r| r.map_err(unavailable)?).collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept(&self, r: NewReceipt) -> Result<Accepted, StoreError> {
        self.call(true, move |c| {
            let fresh = c
                .prepare_cached(
                    "INSERT INTO dedup (session, message_id, accepted_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![r.session.as_str(), r.message_id.as_str(), r.accepted_at_ms]))
                .map_err(unavailable)?;
            if fresh == 0 {
                return Ok(Accepted::Duplicate);
            }
            c.prepare_cached(
                "INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply, accepted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    r.session.as_str(),
                    r.chat.as_str(),
                    r.message_id.as_str(),
                    &*r.rule,
                    r.due_at_ms,
                    r.not_before_ms,
                    r.read_on_reply,
                    r.accepted_at_ms
                ])
            })
            .map_err(unavailable)?;
            Ok(Accepted::New { id: c.last_insert_rowid() })
        })
        .await
    }

    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError> {
        let chat = chat.clone();
        self.call(false, move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT * FROM pending WHERE session = ?1 AND chat = ?2 ORDER BY due_at, id",
                )
                .map_err(unavailable)?;
            let rows = s
                .query_map(
                    params![chat.session.as_str(), chat.chat.as_str()],
                    receipt_from_row,
                )
                .map_err(unavailable)?;
            collect(rows)
        })
        .await
    }

    async fn chat_heads(&self) -> Result<Vec<(ChatKey, i64)>, StoreError> {
        self.call(false, |c| {
            let mut s = c
                .prepare("SELECT session, chat, MIN(due_at) FROM pending GROUP BY session, chat")
                .map_err(unavailable)?;
            let rows = s
                .query_map([], |row| {
                    let (session, chat): (String, String) = (row.get(0)?, row.get(1)?);
                    let due: i64 = row.get(2)?;
                    Ok((|| {
                        let key = ChatKey {
                            session: SessionName::parse(&session).map_err(corrupt)?,
                            chat: ChatId::parse(&chat).map_err(corrupt)?,
                        };
                        Ok((key, due))
                    })())
                })
                .map_err(unavailable)?;
            collect(rows)
        })
        .await
    }

    async fn complete(&self, id: i64) -> Result<(), StoreError> {
        self.call(true, move |c| {
            c.prepare_cached("DELETE FROM pending WHERE id = ?1")
                .and_then(|mut s| s.execute([id]))
                .map(drop)
                .map_err(unavailable)
        })
        .await
    }

    async fn retry_later(
        &self,
        id: i64,
        attempts: u32,
        at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.call(true, move |c| {
            c.prepare_cached(
                "UPDATE pending SET attempts = ?2, due_at = ?3, not_before = ?3, last_error = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, attempts, at_ms, error]))
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn bury(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.call(true, move |c| {
            c.execute(
                "INSERT INTO dead (session, chat, message_id, rule, attempts, last_error, died_at, read_on_reply)
                 SELECT session, chat, message_id, rule, ?2, ?3, ?4, read_on_reply FROM pending WHERE id = ?1",
                params![id, attempts, error, now_ms],
            )
            .and_then(|_| c.execute("DELETE FROM pending WHERE id = ?1", [id]))
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }

    async fn flush_chat(&self, chat: &ChatKey, now_ms: i64) -> Result<u64, StoreError> {
        let chat = chat.clone();
        self.call(true, move |c| {
            c.prepare_cached(
                "UPDATE pending SET due_at = ?3, not_before = MIN(not_before, ?3)
                 WHERE session = ?1 AND chat = ?2 AND read_on_reply = 1 AND attempts = 0 AND due_at > ?3",
            )
            .and_then(|mut s| s.execute(params![chat.session.as_str(), chat.chat.as_str(), now_ms]))
            .map(|n| n as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn list_pending(&self, limit: usize) -> Result<Vec<Receipt>, StoreError> {
        self.call(false, move |c| {
            let mut s = c
                .prepare_cached("SELECT * FROM pending ORDER BY due_at, id LIMIT ?1")
                .map_err(unavailable)?;
            let rows = s
                .query_map([limit as i64], receipt_from_row)
                .map_err(unavailable)?;
            collect(rows)
        })
        .await
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadReceipt>, StoreError> {
        self.call(false, move |c| {
            let mut s = c
                .prepare_cached("SELECT * FROM dead ORDER BY died_at DESC, id DESC LIMIT ?1")
                .map_err(unavailable)?;
            let rows = s
                .query_map([limit as i64], |row| {
                    let ids: (String, String, String) = (
                        row.get("session")?,
                        row.get("chat")?,
                        row.get("message_id")?,
                    );
                    let (id, rule, attempts, last_error, died_at_ms) = (
                        row.get("id")?,
                        row.get("rule")?,
                        row.get("attempts")?,
                        row.get("last_error")?,
                        row.get("died_at")?,
                    );
                    Ok(
                        parse_ids(&ids.0, &ids.1, &ids.2).map(|(session, chat, message_id)| {
                            DeadReceipt {
                                id,
                                session,
                                chat,
                                message_id,
                                rule,
                                attempts,
                                last_error,
                                died_at_ms,
                            }
                        }),
                    )
                })
                .map_err(unavailable)?;
            collect(rows)
        })
        .await
    }

    async fn replay_dead(&self, now_ms: i64) -> Result<Vec<ChatKey>, StoreError> {
        self.call(true, move |c| {
            let chats = {
                let mut s = c.prepare("SELECT DISTINCT session, chat FROM dead").map_err(unavailable)?;
                let rows = s
                    .query_map([], |row| {
                        let (session, chat): (String, String) = (row.get(0)?, row.get(1)?);
                        Ok((|| {
                            Ok(ChatKey {
                                session: SessionName::parse(&session).map_err(corrupt)?,
                                chat: ChatId::parse(&chat).map_err(corrupt)?,
                            })
                        })())
                    })
                    .map_err(unavailable)?;
                collect(rows)?
            };
            c.execute(
                "INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply, accepted_at)
                 SELECT session, chat, message_id, rule, ?1, ?1, read_on_reply, ?1 FROM dead",
                [now_ms],
            )
            .and_then(|_| c.execute("DELETE FROM dead", []))
            .map_err(unavailable)?;
            Ok(chats)
        })
        .await
    }

    async fn purge_dedup(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.call(true, move |c| {
            c.execute("DELETE FROM dedup WHERE accepted_at < ?1", [before_ms])
                .map(|n| n as u64)
                .map_err(unavailable)
        })
        .await
    }

    async fn pending_stats(&self) -> Result<Vec<(SessionName, u64, i64)>, StoreError> {
        self.call(false, |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT session, COUNT(*), MIN(accepted_at) FROM pending GROUP BY session",
                )
                .map_err(unavailable)?;
            let rows = s
                .query_map([], |row| {
                    let session: String = row.get(0)?;
                    let (count, oldest): (i64, i64) = (row.get(1)?, row.get(2)?);
                    Ok(SessionName::parse(&session)
                        .map(|s| (s, count as u64, oldest))
                        .map_err(corrupt))
                })
                .map_err(unavailable)?;
            collect(rows)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.call(true, |c| {
            c.execute(
                "INSERT INTO meta (k, v) VALUES ('ready_probe', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1",
                [],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .await
    }
}

/// Opens the store named in the settings.
pub fn open(settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(SqliteStore::open(settings)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> StoreSettings {
        StoreSettings {
            path: dir.join("sub/autoseen.db"),
            busy_timeout: Duration::from_millis(100),
            ..StoreSettings::default()
        }
    }

    fn receipt(chat: &str, id: &str, due: i64) -> NewReceipt {
        NewReceipt {
            session: SessionName::parse("s").unwrap(),
            chat: ChatId::parse(chat).unwrap(),
            message_id: MessageId::parse(id).unwrap(),
            rule: "defaults".into(),
            due_at_ms: due,
            not_before_ms: 0,
            read_on_reply: true,
            accepted_at_ms: 0,
        }
    }

    fn key(chat: &str) -> ChatKey {
        ChatKey {
            session: SessionName::parse("s").unwrap(),
            chat: ChatId::parse(chat).unwrap(),
        }
    }

    #[tokio::test]
    async fn accepted_receipts_survive_reopening_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(&settings(dir.path())).unwrap();
            assert!(matches!(
                store.accept(receipt("1@c.us", "m1", 50)).await.unwrap(),
                Accepted::New { .. }
            ));
            assert!(matches!(
                store.accept(receipt("1@c.us", "m2", 40)).await.unwrap(),
                Accepted::New { .. }
            ));
            assert!(matches!(
                store.accept(receipt("2@c.us", "m3", 10)).await.unwrap(),
                Accepted::New { .. }
            ));
            assert_eq!(
                store.accept(receipt("1@c.us", "m1", 99)).await.unwrap(),
                Accepted::Duplicate
            );
        }
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        let mut heads = store.chat_heads().await.unwrap();
        heads.sort_by_key(|h| h.1);
        assert_eq!(heads, vec![(key("2@c.us"), 10), (key("1@c.us"), 40)]);
        assert_eq!(
            store.accept(receipt("1@c.us", "m1", 99)).await.unwrap(),
            Accepted::Duplicate
        );
        let chat = store.chat_receipts(&key("1@c.us")).await.unwrap();
        assert_eq!(
            chat.iter()
                .map(|r| r.message_id.as_str())
                .collect::<Vec<_>>(),
            ["m2", "m1"]
        );
    }

    #[tokio::test]
    async fn complete_retry_bury_and_replay_move_receipts_between_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        let Accepted::New { id: a } = store.accept(receipt("1@c.us", "a", 5)).await.unwrap() else {
            panic!()
        };
        let Accepted::New { id: b } = store.accept(receipt("1@c.us", "b", 6)).await.unwrap() else {
            panic!()
        };
        store.complete(a).await.unwrap();
        store.retry_later(b, 1, 100, "HTTP 500").await.unwrap();
        let pending = store.list_pending(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].attempts, pending[0].due_at_ms), (1, 100));
        store
            .bury(b, 2, "HTTP 404: no such chat", 200)
            .await
            .unwrap();
        assert!(store.list_pending(10).await.unwrap().is_empty());
        let dead = store.list_dead(10).await.unwrap();
        assert_eq!(dead[0].last_error, "HTTP 404: no such chat");
        assert_eq!(store.replay_dead(300).await.unwrap(), vec![key("1@c.us")]);
        let pending = store.list_pending(10).await.unwrap();
        assert_eq!(
            (
                pending[0].message_id.as_str(),
                pending[0].attempts,
                pending[0].due_at_ms
            ),
            ("b", 0, 300)
        );
        assert!(store.list_dead(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn ids_are_forgotten_only_once_older_than_the_dedup_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        let hour = 3_600_000;
        let mut three_hours_ago = receipt("1@c.us", "m-recent", 0);
        three_hours_ago.accepted_at_ms = 100 * hour - 3 * hour;
        let mut three_days_ago = receipt("1@c.us", "m-old", 0);
        three_days_ago.accepted_at_ms = 100 * hour - 72 * hour;
        store.accept(three_hours_ago.clone()).await.unwrap();
        store.accept(three_days_ago.clone()).await.unwrap();

        // A 48 h window, now = hour 100.
        assert_eq!(store.purge_dedup(100 * hour - 48 * hour).await.unwrap(), 1);

        assert_eq!(
            store.accept(three_hours_ago).await.unwrap(),
            Accepted::Duplicate
        );
        assert!(matches!(
            store.accept(three_days_ago).await.unwrap(),
            Accepted::New { .. }
        ));
    }

    #[tokio::test]
    async fn flushing_a_chat_makes_untried_receipts_due_now() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&settings(dir.path())).unwrap();
        store.accept(receipt("1@c.us", "a", 5_000)).await.unwrap();
        store.accept(receipt("2@c.us", "b", 5_000)).await.unwrap();
        assert_eq!(store.flush_chat(&key("1@c.us"), 1_000).await.unwrap(), 1);
        let heads = store.chat_heads().await.unwrap();
        assert!(heads.contains(&(key("1@c.us"), 1_000)) && heads.contains(&(key("2@c.us"), 5_000)));
    }

    #[tokio::test]
    async fn a_locked_database_is_reported_unwritable_and_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let store = SqliteStore::open(&s).unwrap();
        let other = Connection::open(&s.path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(matches!(
            store.check_writable().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.accept(receipt("1@c.us", "a", 5)).await,
            Err(StoreError::Unavailable(_))
        ));
        other.execute_batch("COMMIT").unwrap();
        // The refused message was not remembered as accepted.
        assert!(matches!(
            store.accept(receipt("1@c.us", "a", 5)).await.unwrap(),
            Accepted::New { .. }
        ));
    }
}
