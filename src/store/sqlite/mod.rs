//! The embedded store: one SQLite file in WAL mode. [`engine`] runs the threads and the group commit,
//! [`schema`] the versioned migrations; this module holds the queries, one per trait method.
//!
//! Moments are written as milliseconds since the Unix epoch; nothing outside this module sees them so.

mod backup;
mod dedup;
mod engine;
mod keyset;
mod rows;
mod schema;
mod seen;
mod writes;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, params};

pub use backup::backup;
use dedup::Seen;
pub use dedup::append as append_seen_log;
pub use engine::SqliteOptions;
use engine::{Engine, lock, unavailable};
use rows::{Row, Rows};
pub use seen::seen_key;
use writes::{Keyed, delete_pending, insert_receipt, keyed, read_ahead, record_all};

use super::{
    Accepted, DeadReceipt, DueCursor, DueHead, DueQuery, Flush, FlushScope, Flushed, NewReceipt,
    Operator, Outcome, PendingQuery, PendingStats, Queue, Receipt, ReceiptId, StoreError,
};
use crate::domain::{ChatId, ChatKey, MessageId, MessageKey, SessionName};
use crate::time::from_millis;

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    engine: Engine,
    /// The accepted ids, used by the writer thread's jobs only.
    seen: Arc<Mutex<Seen>>,
    /// The pending receipts' rows by chat and by bare id, used by the writer's jobs and the reader's.
    rows: Arc<Mutex<Rows>>,
}

/// Turns one row into a `T`: a read error, or a row that does not parse.
type FromRow<T> = fn(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>;

impl SqliteStore {
    /// Opens (creating if needed) the database and its folder, and starts the store threads.
    pub fn open(options: &SqliteOptions) -> anyhow::Result<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rows = Arc::new(Mutex::new(Rows::default()));
        let engine = Engine::open(options, |conn| {
            let loaded = Seen::load(conn)?;
            tracing::info!(ids = loaded.len(), "accepted ids of the dedup window read");
            *lock(&seen) = loaded;
            let loaded = Rows::load(conn)?;
            tracing::info!(receipts = loaded.len(), "pending receipts indexed");
            *lock(&rows) = loaded;
            Ok(Box::new((seen.clone(), rows.clone())))
        })?;
        Ok(Self { engine, seen, rows })
    }

    /// Runs a query on the reader thread.
    async fn read<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: impl rusqlite::Params + Send + 'static,
        row: FromRow<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.engine
            .call(false, move |c| query(c, sql, params, row))
            .await
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn corrupt(e: impl ToString) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn chat_key(session: &str, chat: &str) -> Result<ChatKey, StoreError> {
    Ok(ChatKey {
        session: SessionName::parse(session).map_err(corrupt)?,
        chat: ChatId::parse(chat).map_err(corrupt)?,
    })
}

/// What every receipt row carries: its id, chat, message id and rule.
type RowIds = (ReceiptId, ChatKey, MessageId, Arc<str>);

/// Reads and parses the [`RowIds`] of a receipt row.
fn row_ids(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RowIds, StoreError>> {
    let (id, session, chat, message_id, rule): (i64, String, String, String, String) = (
        row.get("id")?,
        row.get("session")?,
        row.get("chat")?,
        row.get("message_id")?,
        row.get("rule")?,
    );
    Ok(chat_key(&session, &chat).and_then(|key| {
        let message_id = MessageId::parse(&message_id).map_err(corrupt)?;
        Ok((ReceiptId::from_row(id), key, message_id, rule.into()))
    }))
}

/// The columns [`receipt_from_row`] reads, in its order: read by position, since looking each up by name
/// was half the cost of reading a receipt.
macro_rules! receipt_columns {
    () => {
        "id, session, chat, message_id, rule, due_at, not_before, read_on_reply, on_reply, expires, attempts, \
         last_error, chat_phone"
    };
}

/// A receipt from a row of [`receipt_columns`].
fn receipt_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Receipt, StoreError>> {
    let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?));
    let (id, session, chat, message_id, rule) =
        (row.get(0)?, text(1)?, text(2)?, text(3)?, text(4)?);
    let (due_at, not_before): (i64, i64) = (row.get(5)?, row.get(6)?);
    let (read_on_reply, on_reply, expires) = (row.get(7)?, row.get(8)?, row.get(9)?);
    let (attempts, last_error) = (row.get(10)?, row.get(11)?);
    let chat_phone = row.get_ref(12)?.as_str_or_null()?;
    Ok((|| {
        let key = chat_key(session, chat)?;
        Ok(Receipt {
            id: ReceiptId::from_row(id),
            session: key.session,
            chat: key.chat,
            chat_phone: chat_phone
                .map(|p| ChatId::parse(p).map_err(corrupt))
                .transpose()?,
            message_id: MessageId::parse(message_id).map_err(corrupt)?,
            rule: rule.into(),
            due_at: from_millis(due_at),
            not_before: from_millis(not_before),
            read_on_reply,
            on_reply,
            expires,
            attempts,
            last_error,
        })
    })())
}

fn dead_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<DeadReceipt, StoreError>> {
    let ids = row_ids(row)?;
    let (attempts, last_error, died_at): (u32, String, i64) = (
        row.get("attempts")?,
        row.get("last_error")?,
        row.get("died_at")?,
    );
    Ok(ids.map(|(id, key, message_id, rule)| DeadReceipt {
        id,
        session: key.session,
        chat: key.chat,
        message_id,
        rule,
        attempts,
        last_error,
        died_at: from_millis(died_at),
    }))
}

fn head_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<DueHead, StoreError>> {
    let (id, session, chat, due): (i64, String, String, i64) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    Ok(chat_key(&session, &chat).map(|chat| DueHead {
        chat,
        at: DueCursor {
            due_at: from_millis(due),
            id: ReceiptId::from_row(id),
        },
    }))
}

fn stats_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<PendingStats, StoreError>> {
    let session: String = row.get("session")?;
    let (count, oldest): (i64, i64) = (row.get("n")?, row.get("oldest")?);
    let stats = SessionName::parse(&session).map(|session| PendingStats {
        session,
        count: count as u64,
        oldest_accepted_at: from_millis(oldest),
    });
    Ok(stats.map_err(corrupt))
}

/// Runs a prepared (cached) query and turns each row into a `T` with `row`.
fn query<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Result<T, StoreError>>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = c.prepare_cached(sql).map_err(unavailable)?;
    let rows = statement.query_map(params, row).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)?).collect()
}

/// Row ids bound as one list, for `id IN rarray(?)`.
fn id_list(ids: impl IntoIterator<Item = i64>) -> rusqlite::vtab::array::Array {
    std::rc::Rc::new(ids.into_iter().map(rusqlite::types::Value::from).collect())
}

/// Most expired sent ids one purge write deletes.
const PURGE_CHUNK: usize = 2_000;
/// How many rows of the accepted ids' log one write of the purge deletes (up to 96 ids each).
const PURGE_ROWS: usize = 64;
/// After each of its writes the purge waits this many times as long as the write and its read took, so it
/// keeps at most a quarter of the two threads it uses. Unpaced, forgetting a million expired ids at start
/// (0.6 s of work) took both threads and starved the webhooks on two cores: their p99 rose to 50-130 ms while
/// no group commit took over 10 ms (docs/performance.md). Nothing waits on the purge.
const PURGE_PAUSE: u32 = 3;

/// Runs a prepared (cached) statement that returns no rows.
fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(unavailable)
}

#[async_trait]
impl Queue for SqliteStore {
    async fn accept(&self, r: NewReceipt) -> Result<Accepted, StoreError> {
        let mut answers = self.accept_all(vec![r]).await?;
        answers
            .pop()
            .ok_or_else(|| StoreError::Corrupt("one receipt, no answer".into()))
    }

    async fn accept_all(&self, receipts: Vec<NewReceipt>) -> Result<Vec<Accepted>, StoreError> {
        // One job, so one savepoint: all of them or none, in the database and in memory.
        let receipts: Vec<Keyed> = receipts.into_iter().map(keyed).collect();
        let (seen, rows) = (self.seen.clone(), self.rows.clone());
        self.engine
            .call(true, move |c| {
                let mut seen = lock(&seen);
                let mark = seen.mark();
                let answers = rows::changing(&rows, |rows| {
                    read_ahead((&seen, rows), &receipts);
                    receipts
                        .iter()
                        .map(|r| insert_receipt(c, (&mut seen, &mut *rows), r))
                        .collect::<Result<Vec<_>, _>>()
                });
                if answers.is_err() {
                    seen.undo_since(mark);
                }
                answers
            })
            .await
    }

    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError> {
        self.chats_receipts(std::slice::from_ref(chat)).await
    }

    async fn chats_receipts(&self, chats: &[ChatKey]) -> Result<Vec<Receipt>, StoreError> {
        let (chats, rows) = (chats.to_vec(), self.rows.clone());
        self.engine
            .call(false, move |c| {
                let mut all = Vec::new();
                for chat in chats {
                    let (session, name) = (chat.session.as_str(), chat.chat.as_str());
                    let ids = id_list(lock(&rows).in_chat(seen_key(session, name)));
                    all.extend(query(
                        c,
                        concat!(
                            "SELECT ",
                            receipt_columns!(),
                            " FROM pending WHERE id IN rarray(?3) AND session = ?1 AND chat = ?2
                             ORDER BY due_at, id"
                        ),
                        params![session, name, ids],
                        receipt_from_row,
                    )?);
                }
                Ok(all)
            })
            .await
    }

    async fn due_heads(&self, q: DueQuery) -> Result<Vec<DueHead>, StoreError> {
        let (due, id) = q.after_row();
        self.read(
            "SELECT id, session, chat, due_at FROM pending INDEXED BY pending_by_due
             WHERE (due_at, id) > (?1, ?2) AND due_at <= ?3 ORDER BY due_at, id LIMIT ?4",
            (due, id, ms(q.until), q.limit as i64),
            head_from_row,
        )
        .await
    }

    async fn record(&self, outcomes: Vec<(ReceiptId, Outcome)>) -> Result<(), StoreError> {
        let rows = self.rows.clone();
        self.engine
            .call(true, move |c| {
                rows::changing(&rows, |rows| record_all(c, rows, outcomes))
            })
            .await
    }

    async fn flush_chat(&self, flush: Flush) -> Result<Flushed, StoreError> {
        let (session, now) = (flush.session, flush.at);
        let forms: Vec<String> = flush.forms.iter().map(ToString::to_string).collect();
        let (first, second) = match forms.as_slice() {
            [] => return Ok(Flushed::default()),
            [one] => (one.clone(), one.clone()),
            [one, two, ..] => (one.clone(), two.clone()),
        };
        let scope = match flush.scope {
            FlushScope::Reply => "(read_on_reply = 1 OR on_reply = 1)",
            FlushScope::All => "1 = 1",
        };
        let matching = format!(
            "session = ?1 AND ((id IN rarray(?4) AND chat IN (?2, ?3))
                               OR (session = ?1 AND chat_phone IN (?2, ?3)))
             AND attempts = 0 AND {scope}"
        );
        let keys = (
            seen_key(session.as_str(), &first),
            seen_key(session.as_str(), &second),
        );
        let rows = self.rows.clone();
        self.engine
            .call(true, move |c| {
                let ids = {
                    let rows = lock(&rows);
                    let mut ids = rows.in_chat(keys.0);
                    if keys.1 != keys.0 {
                        ids.extend(rows.in_chat(keys.1));
                    }
                    id_list(ids)
                };
                let p = params![session.as_str(), first, second, ids, ms(now)];
                let chats = query(
                    c,
                    &format!("SELECT DISTINCT session, chat FROM pending WHERE {matching}"),
                    &p[..4],
                    |row| {
                        let (session, chat): (String, String) = (row.get(0)?, row.get(1)?);
                        Ok(chat_key(&session, &chat))
                    },
                )?;
                let receipts = exec(
                    c,
                    &format!(
                        "UPDATE pending SET due_at = MIN(due_at, ?5), not_before = MIN(not_before, ?5),
                         on_reply = 0, expires = 0 WHERE {matching}"
                    ),
                    p,
                )? as u64;
                Ok(Flushed { chats, receipts })
            })
            .await
    }

    async fn receipts_through(&self, message: &MessageKey) -> Result<Vec<Receipt>, StoreError> {
        let (session, bare) = (message.session.to_string(), message.bare.to_string());
        let rows = self.rows.clone();
        self.engine
            .call(false, move |c| {
                let key = seen_key(&session, &bare);
                // Taken in a statement of its own: the lock is not held while the query runs.
                let anchors = id_list(lock(&rows).with_bare(key));
                let acked = query(
                    c,
                    "SELECT id, chat_key, chat FROM pending
                     WHERE id IN rarray(?3) AND session = ?1 AND bare_id = ?2",
                    params![session, bare, anchors],
                    |r| Ok(Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get::<_, String>(2)?))),
                )?;
                let mut through = Vec::new();
                for (last, chat_key, chat) in acked {
                    let before = lock(&rows)
                        .in_chat(chat_key)
                        .into_iter()
                        .filter(|&id| id <= last);
                    through.extend(query(
                        c,
                        concat!(
                            "SELECT ",
                            receipt_columns!(),
                            " FROM pending WHERE id IN rarray(?3) AND session = ?1 AND chat = ?2"
                        ),
                        params![session, chat, id_list(before)],
                        receipt_from_row,
                    )?);
                }
                through.sort_by_key(|r| r.id.to_row());
                through.dedup_by_key(|r| r.id.to_row());
                Ok(through)
            })
            .await
    }

    async fn cancel(&self, ids: Vec<ReceiptId>) -> Result<u64, StoreError> {
        let rows = self.rows.clone();
        self.engine
            .call(true, move |c| {
                rows::changing(&rows, |rows| {
                    let mut n = 0;
                    for id in ids {
                        n += u64::from(delete_pending(c, rows, id.to_row())?);
                    }
                    Ok(n)
                })
            })
            .await
    }

    async fn confirm_sent(&self, message: &MessageKey, sending: bool) -> Result<bool, StoreError> {
        let (session, bare) = (message.session.to_string(), message.bare.to_string());
        self.engine
            .call(true, move |c| {
                let p = params![session, bare];
                let updated = exec(
                    c,
                    "UPDATE sent SET confirmed = 1 WHERE session = ?1 AND bare_id = ?2 AND confirmed = 0",
                    p,
                )?;
                if updated == 0 && sending {
                    // Sent at the epoch until the send records itself: the row is kept until then.
                    return exec(
                        c,
                        "INSERT INTO sent (session, bare_id, sent_at, confirmed) VALUES (?1, ?2, 9223372036854775807, 1)
                         ON CONFLICT DO NOTHING",
                        p,
                    )
                    .map(|n| n > 0);
                }
                Ok(updated > 0)
            })
            .await
    }

    /// Expired ids from the log ([`dedup`]), oldest first: the reader reads [`PURGE_ROWS`] rows at a time, the
    /// writer deletes them and forgets their keys, one write among the webhooks' (the writer commits them
    /// together), then the purge pauses ([`PURGE_PAUSE`]). Sent ids, which are few, go by their age index in
    /// chunks of [`PURGE_CHUNK`].
    async fn purge_dedup(&self, before: Timestamp) -> Result<u64, StoreError> {
        let before = ms(before);
        let mut forgotten = 0;
        loop {
            let started = tokio::time::Instant::now();
            let rows = self
                .engine
                .call(false, move |c| {
                    dedup::expired_rows(c, before, PURGE_ROWS).map_err(unavailable)
                })
                .await?;
            let last = rows.len() < PURGE_ROWS;
            if rows.is_empty() {
                break;
            }
            let seen = self.seen.clone();
            forgotten += self
                .engine
                .call(true, move |c| {
                    // Forgotten only once every row is deleted: a failed job is rolled back whole.
                    let mut deleted = Vec::new();
                    for (id, keys) in rows {
                        if dedup::delete_row(c, id, before).map_err(unavailable)? {
                            deleted.push(keys);
                        }
                    }
                    let mut seen = lock(&seen);
                    Ok(deleted
                        .into_iter()
                        .map(|keys| seen.forget(&keys) as u64)
                        .sum::<u64>())
                })
                .await?;
            if last {
                break;
            }
            tokio::time::sleep(started.elapsed() * PURGE_PAUSE).await;
        }
        let sent = "DELETE FROM sent WHERE (session, bare_id) IN
                        (SELECT session, bare_id FROM sent WHERE sent_at < ?1 ORDER BY sent_at LIMIT ?2)";
        loop {
            let n = self
                .engine
                .call(true, move |c| exec(c, sent, (before, PURGE_CHUNK as i64)))
                .await?;
            forgotten += n as u64;
            if n < PURGE_CHUNK {
                break;
            }
        }
        Ok(forgotten)
    }
}

#[async_trait]
impl Operator for SqliteStore {
    async fn find_pending(&self, q: PendingQuery) -> Result<Vec<Receipt>, StoreError> {
        let sql = concat!(
            "SELECT ",
            receipt_columns!(),
            " FROM pending
             WHERE (?1 IS NULL OR session = ?1) AND (?2 IS NULL OR chat = ?2 OR chat_phone = ?2)
             ORDER BY due_at, id LIMIT ?3"
        );
        let params = (
            q.session.map(|s| s.as_str().to_owned()),
            q.chat.map(|c| c.as_str().to_owned()),
            q.limit as i64,
        );
        self.read(sql, params, receipt_from_row).await
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadReceipt>, StoreError> {
        let sql = "SELECT * FROM dead ORDER BY died_at DESC, id DESC LIMIT ?1";
        self.read(sql, [limit as i64], dead_from_row).await
    }

    async fn replay_dead(
        &self,
        now: Timestamp,
        only: Option<ReceiptId>,
    ) -> Result<Vec<ChatKey>, StoreError> {
        let only = only.map(ReceiptId::to_row);
        let rows = self.rows.clone();
        self.engine
            .call(true, move |c| {
                let chats = query(
                    c,
                    "SELECT DISTINCT session, chat FROM dead WHERE ?1 IS NULL OR id = ?1",
                    [only],
                    |row| {
                        let (session, chat): (String, String) = (row.get(0)?, row.get(1)?);
                        Ok(chat_key(&session, &chat))
                    },
                )?;
                let replayed = query(
                    c,
                    "INSERT INTO pending (session, chat, message_id, rule, due_at, not_before, read_on_reply, accepted_at,
                                          chat_phone, bare_id, chat_key)
                     SELECT session, chat, message_id, rule, ?1, ?1, read_on_reply, ?1, chat_phone, NULL,
                            sha256_seen_key(session, chat) FROM dead
                     WHERE ?2 IS NULL OR id = ?2
                     RETURNING id, chat_key",
                    (ms(now), only),
                    |r| Ok(Ok((r.get(0)?, r.get(1)?))),
                )?;
                rows::changing(&rows, |rows| {
                    for (id, chat) in replayed {
                        rows.add(Row { id, chat, bare: None });
                    }
                    exec(c, "DELETE FROM dead WHERE ?1 IS NULL OR id = ?1", [only])
                })?;
                Ok(chats)
            })
            .await
    }

    async fn pending_stats(&self) -> Result<Vec<PendingStats>, StoreError> {
        let sql = "SELECT session, COUNT(*) AS n, MIN(accepted_at) AS oldest FROM pending GROUP BY session";
        self.read(sql, [], stats_from_row).await
    }

    /// Takes the write lock and releases it without writing (the group commit's `BEGIN IMMEDIATE`, then an
    /// empty commit): that finds a foreign lock or a read-only file. A full disk shows only when something is
    /// written, so after a failed commit the probe writes one small row until a write succeeds again.
    async fn check_writable(&self) -> Result<(), StoreError> {
        let retest = self.engine.last_commit_failed();
        self.engine
            .call(true, move |c| {
                if retest {
                    exec(
                        c,
                        "INSERT INTO meta (k, v) VALUES ('ready_probe', 1) ON CONFLICT (k) DO UPDATE SET v = v + 1",
                        [],
                    )?;
                }
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests;
