//! The shared store: PostgreSQL, for several replicas on one queue. [`schema`] holds the migrations; this
//! module the queries, one per trait method, each a single statement or one transaction, so "accepted" means
//! committed exactly as with SQLite. Dedup and enqueue are one statement: of two concurrent deliveries of a
//! message, the second waits on the first's row and answers duplicate.
//!
//! The client is `tokio-postgres` with a `deadpool-postgres` pool: the ecosystem's plain async driver and its
//! plain pool, with no ORM or compile-time database between us and SQL. Connections are made on demand, so
//! the service starts while the server is down and works as soon as it is back; migrations run on the first
//! connection that succeeds. Moments are stored as milliseconds since the Unix epoch, as in SQLite.

mod batch;
mod cluster;
mod schema;
mod tls;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod, Runtime,
};
use jiff::Timestamp;
use tokio::sync::OnceCell;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::cluster::Fence;
use super::{
    Accepted, DeadReceipt, DueCursor, DueHead, DueQuery, Flush, FlushScope, Flushed, NewReceipt,
    Operator, Outcome, PendingQuery, PendingStats, Queue, Receipt, ReceiptId, StoreError,
};
use crate::domain::{ChatId, ChatKey, MessageId, MessageKey, SessionName};
use crate::settings::StoreUrl;
use crate::time::from_millis;

/// The SQL expression that wakes the replica holding a chat's session: a `NOTIFY autoseen_wake` whose payload
/// is `session TAB chat TAB due-ms`, from three SQL expressions. The only place the payload is built;
/// [`cluster::parse_wake`] is the only place it is read.
macro_rules! notify_wake {
    ($session:literal, $chat:literal, $due:literal) => {
        concat!(
            "pg_notify('autoseen_wake', ",
            $session,
            " || chr(9) || ",
            $chat,
            " || chr(9) || ",
            $due,
            "::bigint::text)"
        )
    };
}
use notify_wake;

/// The advisory lock the dedup purge takes, so one replica purges at a time.
const PURGE_LOCK: i64 = 0x6175_746f_7075_7267;

/// Connections per process. The pool hands out the connection returned last (LIFO), so a steady load keeps
/// going to the same few server processes, whose caches stay warm; in the default order (FIFO) every batch
/// went to the next of all 32, and one replica accepted 6-25% less (docs/performance.md).
const POOL_SIZE: usize = 32;
/// How long connecting, or waiting for a free connection, may take before the store counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    migrated: Arc<OnceCell<()>>,
    /// The batch writer of `accept_all`, started on first use (it needs the runtime).
    batches: Arc<OnceLock<batch::Batches>>,
    /// For the listening connection, which lives outside the pool.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

/// A driver or pool error as the store's, with every cause down the chain (the server's own message rather
/// than "db error", the certificate check rather than "error performing TLS handshake"), each said once.
fn unavailable(e: impl std::error::Error) -> StoreError {
    let mut said = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !said.contains(&text) {
            said = format!("{said}: {text}");
        }
        cause = c.source();
    }
    StoreError::Unavailable(said)
}

fn corrupt(e: impl ToString) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl PostgresStore {
    /// A store for `url`; nothing connects until the first query.
    pub fn new(url: &StoreUrl) -> anyhow::Result<Self> {
        let parts = url
            .postgres()
            .map_err(|problem| anyhow::anyhow!("store.url `{url}` {problem}"))?;
        let mut config = tokio_postgres::Config::from_str(&parts.driver)
            .map_err(|e| anyhow::anyhow!("store.url `{url}` is not a PostgreSQL URL: {e}"))?;
        let (mode, tls) = tls::connector(&parts)?;
        config.ssl_mode(mode).connect_timeout(CONNECT_TIMEOUT);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .build()?;
        Ok(Self {
            pool,
            migrated: Arc::new(OnceCell::new()),
            batches: Arc::new(OnceLock::new()),
            config,
            tls,
        })
    }

    /// A connection, with the schema migrated once per process.
    async fn client(&self) -> Result<Object, StoreError> {
        let mut client = self.pool.get().await.map_err(unavailable)?;
        self.migrated
            .get_or_try_init(|| async {
                schema::migrate(&mut client)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("cannot migrate the schema: {e}")))
            })
            .await?;
        Ok(client)
    }

    async fn query<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        row: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
        let rows = client
            .query(&statement, params)
            .await
            .map_err(unavailable)?;
        rows.iter().map(row).collect()
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
        client
            .execute(&statement, params)
            .await
            .map_err(unavailable)
    }
}

fn chat_key(session: &str, chat: &str) -> Result<ChatKey, StoreError> {
    Ok(ChatKey {
        session: SessionName::parse(session).map_err(corrupt)?,
        chat: ChatId::parse(chat).map_err(corrupt)?,
    })
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(corrupt)
}

fn phone(row: &Row) -> Result<Option<ChatId>, StoreError> {
    get::<Option<String>>(row, "chat_phone")?
        .map(|p| ChatId::parse(&p).map_err(corrupt))
        .transpose()
}

/// What every receipt row carries: its id, chat, message id and rule.
fn row_ids(row: &Row) -> Result<(ReceiptId, ChatKey, MessageId, Arc<str>), StoreError> {
    let key = chat_key(get(row, "session")?, get(row, "chat")?)?;
    let message_id = MessageId::parse(get(row, "message_id")?).map_err(corrupt)?;
    let rule = get::<String>(row, "rule")?.into();
    Ok((ReceiptId::from_row(get(row, "id")?), key, message_id, rule))
}

fn attempts(row: &Row) -> Result<u32, StoreError> {
    Ok(get::<i32>(row, "attempts")?.max(0) as u32)
}

fn receipt_from_row(row: &Row) -> Result<Receipt, StoreError> {
    let (id, key, message_id, rule) = row_ids(row)?;
    Ok(Receipt {
        id,
        session: key.session,
        chat: key.chat,
        chat_phone: phone(row)?,
        message_id,
        rule,
        due_at: from_millis(get(row, "due_at")?),
        not_before: from_millis(get(row, "not_before")?),
        read_on_reply: get(row, "read_on_reply")?,
        on_reply: get(row, "on_reply")?,
        expires: get(row, "expires")?,
        attempts: attempts(row)?,
        last_error: get(row, "last_error")?,
    })
}

fn dead_from_row(row: &Row) -> Result<DeadReceipt, StoreError> {
    let (id, key, message_id, rule) = row_ids(row)?;
    // Why it died first: that is what an operator reads a dead letter for.
    Ok(DeadReceipt {
        last_error: get(row, "last_error")?,
        attempts: attempts(row)?,
        died_at: from_millis(get(row, "died_at")?),
        id,
        message_id,
        rule,
        chat: key.chat,
        session: key.session,
    })
}

fn head_from_row(row: &Row) -> Result<DueHead, StoreError> {
    Ok(DueHead {
        chat: chat_from_row(row)?,
        at: DueCursor {
            due_at: from_millis(get(row, "due_at")?),
            id: ReceiptId::from_row(get(row, "id")?),
        },
    })
}

fn chat_from_row(row: &Row) -> Result<ChatKey, StoreError> {
    chat_key(get(row, "session")?, get(row, "chat")?)
}

#[async_trait]
impl Queue for PostgresStore {
    async fn accept(&self, r: NewReceipt) -> Result<Accepted, StoreError> {
        let mut answers = self.accept_all(vec![r]).await?;
        answers
            .pop()
            .ok_or_else(|| corrupt("a batch answered nothing"))
    }

    async fn accept_all(&self, receipts: Vec<NewReceipt>) -> Result<Vec<Accepted>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let batches = self.batches.get_or_init(|| {
            batch::Batches::start(Self {
                batches: Arc::new(OnceLock::new()),
                ..self.clone()
            })
        });
        batches.accept(receipts).await
    }

    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError> {
        self.query(
            "SELECT * FROM pending WHERE session = $1 AND chat = $2 ORDER BY due_at, id",
            &[&chat.session.as_str(), &chat.chat.as_str()],
            receipt_from_row,
        )
        .await
    }

    async fn chats_receipts(&self, chats: &[ChatKey]) -> Result<Vec<Receipt>, StoreError> {
        let sessions: Vec<&str> = chats.iter().map(|c| c.session.as_str()).collect();
        let ids: Vec<&str> = chats.iter().map(|c| c.chat.as_str()).collect();
        self.query(
            "SELECT p.* FROM unnest($1::text[], $2::text[]) AS c (session, chat)
             JOIN pending AS p ON p.session = c.session AND p.chat = c.chat
             ORDER BY p.session, p.chat, p.due_at, p.id",
            &[&sessions, &ids],
            receipt_from_row,
        )
        .await
    }

    async fn due_heads(&self, q: DueQuery) -> Result<Vec<DueHead>, StoreError> {
        let (due, id) = q.after_row();
        self.query(
            "SELECT id, session, chat, due_at FROM pending
             WHERE (due_at, id) > ($1, $2) AND due_at <= $3 ORDER BY due_at, id LIMIT $4",
            &[&due, &id, &ms(q.until), &(q.limit as i64)],
            head_from_row,
        )
        .await
    }

    async fn record(&self, outcomes: Vec<(ReceiptId, Outcome)>) -> Result<(), StoreError> {
        self.record_fenced(outcomes, None).await
    }

    async fn record_fenced(
        &self,
        outcomes: Vec<(ReceiptId, Outcome)>,
        fence: Option<(&SessionName, &Fence)>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        if let Some((session, fence)) = fence {
            // The lease row is locked until commit, so it cannot change hands under this write.
            let held = tx
                .query_opt(
                    "SELECT 1 FROM leases WHERE session = $1 AND owner = $2 AND token = $3 FOR SHARE",
                    &[&session.as_str(), &fence.replica.as_str(), &fence.token.to_row()],
                )
                .await
                .map_err(unavailable)?;
            if held.is_none() {
                return Err(StoreError::LeaseLost(session.to_string()));
            }
        }
        for (id, outcome) in outcomes {
            let id = id.to_row();
            let result = match outcome {
                Outcome::Sent { at } => {
                    tx.execute(
                        "WITH gone AS (DELETE FROM pending WHERE id = $1 RETURNING session, bare_id)
                         INSERT INTO sent (session, bare_id, sent_at) SELECT session, bare_id, $2 FROM gone
                         ON CONFLICT (session, bare_id) DO UPDATE SET sent_at = excluded.sent_at",
                        &[&id, &ms(at)],
                    )
                    .await
                }
                Outcome::Retry {
                    attempts,
                    at,
                    error,
                } => {
                    tx.execute(
                        "UPDATE pending SET attempts = $2, due_at = $3, not_before = $3, last_error = $4 WHERE id = $1",
                        &[&id, &(attempts as i32), &ms(at), &error],
                    )
                    .await
                }
                Outcome::Dead {
                    attempts,
                    error,
                    at,
                } => {
                    tx.execute(
                        "WITH gone AS (DELETE FROM pending WHERE id = $1 RETURNING *)
                         INSERT INTO dead (session, chat, chat_phone, message_id, rule, attempts, last_error, died_at, read_on_reply)
                         SELECT session, chat, chat_phone, message_id, rule, $2, $3, $4, read_on_reply FROM gone",
                        &[&id, &(attempts as i32), &error, &ms(at)],
                    )
                    .await
                }
            };
            result.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn flush_chat(&self, flush: Flush) -> Result<Flushed, StoreError> {
        let forms: Vec<&str> = flush.forms.iter().map(ChatId::as_str).collect();
        let sql = match flush.scope {
            FlushScope::Reply => concat!(
                "UPDATE pending SET due_at = LEAST(due_at, $3::bigint), not_before = LEAST(not_before, $3::bigint),
                 on_reply = false, expires = false
                 WHERE session = $1 AND (chat = ANY($2) OR chat_phone = ANY($2)) AND attempts = 0
                   AND (read_on_reply OR on_reply)
                 RETURNING session, chat, ",
                notify_wake!("session", "chat", "$3")
            ),
            FlushScope::All => concat!(
                "UPDATE pending SET due_at = LEAST(due_at, $3::bigint), not_before = LEAST(not_before, $3::bigint),
                 on_reply = false, expires = false
                 WHERE session = $1 AND (chat = ANY($2) OR chat_phone = ANY($2)) AND attempts = 0
                 RETURNING session, chat, ",
                notify_wake!("session", "chat", "$3")
            ),
        };
        let rows = self
            .query(
                sql,
                &[&flush.session.as_str(), &forms, &ms(flush.at)],
                chat_from_row,
            )
            .await?;
        let mut chats: Vec<ChatKey> = Vec::new();
        for chat in &rows {
            if !chats.contains(chat) {
                chats.push(chat.clone());
            }
        }
        Ok(Flushed {
            chats,
            receipts: rows.len() as u64,
        })
    }

    async fn receipts_through(&self, message: &MessageKey) -> Result<Vec<Receipt>, StoreError> {
        self.query(
            "SELECT p.* FROM pending AS a JOIN pending AS p ON p.session = a.session AND p.chat = a.chat
             WHERE a.session = $1 AND a.bare_id = $2 AND p.id <= a.id ORDER BY p.id",
            &[&message.session.as_str(), &message.bare.as_str()],
            receipt_from_row,
        )
        .await
    }

    async fn cancel(&self, ids: Vec<ReceiptId>) -> Result<u64, StoreError> {
        let ids: Vec<i64> = ids.into_iter().map(ReceiptId::to_row).collect();
        self.execute("DELETE FROM pending WHERE id = ANY($1)", &[&ids])
            .await
    }

    async fn confirm_sent(&self, message: &MessageKey, sending: bool) -> Result<bool, StoreError> {
        let (session, bare) = (message.session.as_str(), message.bare.as_str());
        let updated = self
            .execute(
                "UPDATE sent SET confirmed = true WHERE session = $1 AND bare_id = $2 AND NOT confirmed",
                &[&session, &bare],
            )
            .await?;
        if updated == 0 && sending {
            // Sent "at the end of time" until the send records itself, so the purge keeps it until then.
            return self
                .execute(
                    "INSERT INTO sent (session, bare_id, sent_at, confirmed) VALUES ($1, $2, $3, true)
                     ON CONFLICT DO NOTHING",
                    &[&session, &bare, &i64::MAX],
                )
                .await
                .map(|n| n > 0);
        }
        Ok(updated > 0)
    }

    /// One replica at a time: the others find the lock taken and skip this round.
    async fn purge_dedup(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let mine: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
            .await
            .map_err(unavailable)?
            .get(0);
        if !mine {
            return Ok(0);
        }
        let before = ms(before);
        let ids = tx
            .execute("DELETE FROM dedup WHERE accepted_at < $1", &[&before])
            .await
            .map_err(unavailable)?;
        let sent = tx
            .execute("DELETE FROM sent WHERE sent_at < $1", &[&before])
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ids + sent)
    }
}

#[async_trait]
impl Operator for PostgresStore {
    async fn find_pending(&self, q: PendingQuery) -> Result<Vec<Receipt>, StoreError> {
        let sql = "SELECT * FROM pending
                   WHERE ($1::text IS NULL OR session = $1) AND ($2::text IS NULL OR chat = $2 OR chat_phone = $2)
                   ORDER BY due_at, id LIMIT $3";
        let session = q.session.as_ref().map(SessionName::as_str);
        let chat = q.chat.as_ref().map(ChatId::as_str);
        self.query(sql, &[&session, &chat, &(q.limit as i64)], receipt_from_row)
            .await
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadReceipt>, StoreError> {
        let sql = "SELECT * FROM dead ORDER BY died_at DESC, id DESC LIMIT $1";
        self.query(sql, &[&(limit as i64)], dead_from_row).await
    }

    async fn replay_dead(
        &self,
        now: Timestamp,
        only: Option<ReceiptId>,
    ) -> Result<Vec<ChatKey>, StoreError> {
        let only = only.map(ReceiptId::to_row);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let rows = tx
            .query(
                concat!(
                    "WITH gone AS (DELETE FROM dead WHERE $2::bigint IS NULL OR id = $2 RETURNING *)
                     INSERT INTO pending (session, chat, chat_phone, message_id, bare_id, rule, due_at, not_before,
                                          read_on_reply, accepted_at)
                     SELECT session, chat, chat_phone, message_id, message_id, rule, $1, $1, read_on_reply, $1
                     FROM gone
                     RETURNING session, chat, ",
                    notify_wake!("session", "chat", "$1")
                ),
                &[&ms(now), &only],
            )
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        let mut chats: Vec<ChatKey> = Vec::new();
        for row in &rows {
            let chat = chat_from_row(row)?;
            if !chats.contains(&chat) {
                chats.push(chat);
            }
        }
        Ok(chats)
    }

    async fn pending_stats(&self) -> Result<Vec<PendingStats>, StoreError> {
        self.query(
            "SELECT session, COUNT(*) AS n, MIN(accepted_at) AS oldest FROM pending GROUP BY session",
            &[],
            |row| {
                Ok(PendingStats {
                    session: SessionName::parse(get(row, "session")?).map_err(corrupt)?,
                    count: get::<i64>(row, "n")?.max(0) as u64,
                    oldest_accepted_at: from_millis(get(row, "oldest")?),
                })
            },
        )
        .await
    }

    /// A connection, and a server that takes writes (not a standby in recovery, not read-only).
    async fn check_writable(&self) -> Result<(), StoreError> {
        let rows = self
            .query(
                "SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') = 'on' AS read_only",
                &[],
                |row| Ok((get::<bool>(row, "standby")?, get::<bool>(row, "read_only")?)),
            )
            .await?;
        match rows.first() {
            Some((false, false)) => Ok(()),
            _ => Err(StoreError::ReadOnly(
                "the PostgreSQL server takes no writes (a standby, or read-only)".into(),
            )),
        }
    }
}

#[cfg(test)]
pub mod tests;
#[cfg(test)]
mod tls_tests;
