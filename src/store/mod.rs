//! Durable state: pending receipts, dead letters, and the ids of messages already accepted.
//!
//! Two traits, split by who uses them (svix keeps producer and consumer apart the same way): [`Queue`] is what
//! the webhook and the scheduler need on the hot path (accept, load a due chat, record outcomes, flush a chat,
//! forget old ids), [`Operator`] is what operators query (pending list, dead letters, replay, stats,
//! readiness). [`Store`] is both; a backend implements both, and [`contract`] tests hold every backend to the
//! same behaviour. [`sqlite::SqliteStore`] is the default.
//!
//! A receipt is in exactly one place: pending (waiting, or being sent), or dead (gave up; replayable). A
//! receipt leaves `pending` only after its send succeeded or it was buried, so a crash at any moment leaves
//! it to be sent again: delivery is at least once.

pub mod cluster;
#[cfg(test)]
pub mod contract;
#[cfg(test)]
pub mod memory;
pub mod postgres;
mod purge;
mod readiness;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use purge::spawn_purge;
pub use readiness::Readiness;

use crate::domain::{ChatId, ChatKey, MessageId, MessageKey, SessionName};
use crate::settings::Backend;
use cluster::Fence;

/// A stored receipt's identity, given by the store when it accepts the receipt.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
pub struct ReceiptId(i64);

impl ReceiptId {
    /// The id a backend gave the row; only backends build these.
    pub(in crate::store) fn from_row(raw: i64) -> Self {
        Self(raw)
    }

    /// The id as a backend writes it down.
    pub(in crate::store) fn to_row(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ReceiptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A receipt to be stored when its message is accepted.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub session: SessionName,
    /// The chat as the message id names it: the key receipts are batched and timed by.
    pub chat: ChatId,
    /// The chat's phone number when `chat` is a LID: lookups by chat find the receipt by either.
    pub chat_phone: Option<ChatId>,
    pub message_id: MessageId,
    pub rule: Arc<str>,
    /// When it should be sent (or, with `expires`, dropped).
    pub due_at: Timestamp,
    /// The earliest it may be sent, for instance when a window opens; it may join an earlier batch from then.
    pub not_before: Timestamp,
    pub read_on_reply: bool,
    /// Held for a reply of ours (`action = "on_reply"`): a flush releases it.
    pub on_reply: bool,
    /// Dropped, not sent, when it comes due still held (an `on_reply` receipt without `max_wait`).
    pub expires: bool,
    pub accepted_at: Timestamp,
}

/// A pending receipt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub id: ReceiptId,
    pub session: SessionName,
    pub chat: ChatId,
    pub chat_phone: Option<ChatId>,
    pub message_id: MessageId,
    pub rule: Arc<str>,
    pub due_at: Timestamp,
    pub not_before: Timestamp,
    pub read_on_reply: bool,
    pub on_reply: bool,
    pub expires: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Receipt {
    pub fn chat_key(&self) -> ChatKey {
        ChatKey {
            session: self.session.clone(),
            chat: self.chat.clone(),
        }
    }
}

/// A receipt that was given up on, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadReceipt {
    pub id: ReceiptId,
    pub session: SessionName,
    pub chat: ChatId,
    pub message_id: MessageId,
    pub rule: Arc<str>,
    pub attempts: u32,
    pub last_error: String,
    pub died_at: Timestamp,
}

/// What `accept` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New {
        id: ReceiptId,
    },
    /// The message id was accepted before, within the dedup window; nothing was stored.
    Duplicate,
}

/// A pending receipt's place in due order: its due time, then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueCursor {
    pub due_at: Timestamp,
    pub id: ReceiptId,
}

/// Pending receipts in due order after `after` (from the first when `None`), due by `until`, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct DueQuery {
    pub after: Option<DueCursor>,
    pub until: Timestamp,
    pub limit: usize,
}

impl DueQuery {
    /// `after` as a backend writes it (milliseconds, row id), the smallest pair when reading from the first.
    pub(in crate::store) fn after_row(&self) -> (i64, i64) {
        self.after.map_or((i64::MIN, i64::MIN), |a| {
            (a.due_at.as_millisecond(), a.id.to_row())
        })
    }
}

/// A pending receipt as the scheduler's horizon sees it: its chat and its place in due order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueHead {
    pub chat: ChatKey,
    pub at: DueCursor,
}

/// What became of one send, to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Marked seen at `at`: forget the receipt, and remember its message for acks that confirm it.
    Sent { at: Timestamp },
    /// Try again at `at`, having made `attempts` attempts so far.
    Retry {
        attempts: u32,
        at: Timestamp,
        error: String,
    },
    /// Give up: move it to the dead letters.
    Dead {
        attempts: u32,
        error: String,
        at: Timestamp,
    },
}

/// Which receipts of a chat a flush makes due now. Only untried ones: retries keep their backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushScope {
    /// A reply of ours: the receipts whose rule reads on reply (`read_on_reply`, `on_reply`).
    Reply,
    /// The bot says it handled the chat: every receipt, closed windows included.
    All,
}

/// A chat whose receipts are due now: a reply of ours, or the bot saying it handled the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub session: SessionName,
    /// Every form the chat is known by: its id, and its phone number for a LID chat.
    pub forms: Vec<ChatId>,
    pub scope: FlushScope,
    pub at: Timestamp,
}

/// What a flush changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flushed {
    /// The chats (by their stored key) whose receipts were made due.
    pub chats: Vec<ChatKey>,
    pub receipts: u64,
}

/// Which pending receipts an operator asks for: all, or those of one session and one chat (a chat matches
/// by its id or by the phone number a LID chat was filed with), earliest due first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingQuery {
    pub session: Option<SessionName>,
    pub chat: Option<ChatId>,
    pub limit: usize,
}

/// One session's pending receipts, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStats {
    pub session: SessionName,
    pub count: u64,
    pub oldest_accepted_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("store cannot write: {0}")]
    Unavailable(String),
    /// The store takes no writes at all: a read-only file or file system, a PostgreSQL standby.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// This replica no longer holds the session it wrote for: another one took it over (a normal handover
    /// with several replicas), and sends what is left.
    #[error("session `{0}` moved to another replica; its new owner sends what is left")]
    LeaseLost(String),
    #[error("store holds a row it cannot read: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// The cause as a stable code, for answers that carry no error text (unauthenticated 503s, `/readyz`).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::ReadOnly(_) => "store_read_only",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Unavailable(_) | StoreError::LeaseLost(_) | StoreError::Closed => {
                "store_unavailable"
            }
        }
    }
}

/// The hot path: what the webhook and the scheduler need. Every method returns once its effect is committed.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Remembers the message id and stores the receipt, unless the id was accepted before.
    async fn accept(&self, receipt: NewReceipt) -> Result<Accepted, StoreError>;
    /// [`Queue::accept`] for several receipts in one transaction: all are committed or none; one answer
    /// each, in order (a message id twice in `receipts` is a duplicate the second time).
    async fn accept_all(&self, receipts: Vec<NewReceipt>) -> Result<Vec<Accepted>, StoreError> {
        let mut answers = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            answers.push(self.accept(receipt).await?);
        }
        Ok(answers)
    }
    /// Every pending receipt of one chat, earliest due first.
    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError>;
    /// Every pending receipt of these chats, each chat's earliest due first: what the scheduler loads when
    /// chats fall due, in one round trip however many fell due together.
    async fn chats_receipts(&self, chats: &[ChatKey]) -> Result<Vec<Receipt>, StoreError> {
        let mut all = Vec::new();
        for chat in chats {
            all.extend(self.chat_receipts(chat).await?);
        }
        Ok(all)
    }
    /// Pending receipts in due order as `q` asks: what the scheduler holds timers for. A chat with several
    /// such receipts comes several times.
    async fn due_heads(&self, q: DueQuery) -> Result<Vec<DueHead>, StoreError>;
    /// Records what became of sends, all in one commit. Ids no longer pending are skipped.
    async fn record(&self, outcomes: Vec<(ReceiptId, Outcome)>) -> Result<(), StoreError>;
    /// As [`Queue::record`], only while `session`'s lease is still held under `fence` (several replicas); an
    /// error otherwise, leaving the receipts to the session's new owner. A single-process store records.
    async fn record_fenced(
        &self,
        outcomes: Vec<(ReceiptId, Outcome)>,
        fence: Option<(&SessionName, &Fence)>,
    ) -> Result<(), StoreError> {
        let _ = fence;
        self.record(outcomes).await
    }
    /// Makes the untried receipts a flush names due at its moment, releasing those held for a reply.
    async fn flush_chat(&self, flush: Flush) -> Result<Flushed, StoreError>;
    /// The pending receipt of `message` and every pending receipt of its chat accepted before it, in
    /// the order accepted; empty when that message has no pending receipt.
    async fn receipts_through(&self, message: &MessageKey) -> Result<Vec<Receipt>, StoreError>;
    /// Forgets pending receipts that will never be sent; returns how many were still there.
    async fn cancel(&self, ids: Vec<ReceiptId>) -> Result<u64, StoreError>;
    /// Marks `message` as confirmed by an ack; true the first time, false when it was not sent within
    /// the dedup window or was confirmed before. With `sending` (its send has not finished yet) it is
    /// remembered as confirmed, so that the send's own record does not make it count twice.
    async fn confirm_sent(&self, message: &MessageKey, sending: bool) -> Result<bool, StoreError>;
    /// Forgets accepted and sent ids from before `before`; returns how many.
    async fn purge_dedup(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// What operators query: the admin endpoints, the metrics and the readiness probe.
#[async_trait]
pub trait Operator: Send + Sync + 'static {
    /// Up to `limit` pending receipts, earliest due first.
    async fn list_pending(&self, limit: usize) -> Result<Vec<Receipt>, StoreError> {
        self.find_pending(PendingQuery {
            limit,
            ..PendingQuery::default()
        })
        .await
    }
    /// The pending receipts `q` asks for, earliest due first.
    async fn find_pending(&self, q: PendingQuery) -> Result<Vec<Receipt>, StoreError>;
    /// Up to `limit` dead receipts, newest first.
    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadReceipt>, StoreError>;
    /// Moves every dead receipt (or only the one `only` names) back to pending, due at `now` with no
    /// attempts; returns the chats affected (none when `only` names no dead receipt).
    async fn replay_dead(
        &self,
        now: Timestamp,
        only: Option<ReceiptId>,
    ) -> Result<Vec<ChatKey>, StoreError>;
    /// Per session: how many receipts are pending, and when the oldest was accepted.
    async fn pending_stats(&self) -> Result<Vec<PendingStats>, StoreError>;
    /// Whether the store can commit now, without writing a row when all is well (see [`Readiness`]).
    async fn check_writable(&self) -> Result<(), StoreError>;
}

/// A whole backend: the queue and the operator queries over the same data.
pub trait Store: Queue + Operator {}

impl<T: Queue + Operator> Store for T {}

/// An opened store: the two traits over it and, for a shared backend, the cluster operations.
pub struct Opened {
    pub queue: Arc<dyn Queue>,
    pub operator: Arc<dyn Operator>,
    pub cluster: Option<Arc<dyn cluster::Cluster>>,
}

/// Opens the store named in the settings and starts its background upkeep (forgetting old ids), which stops
/// with `stop`. PostgreSQL connects on first use, so a server that is down does not stop the start.
pub fn open(
    settings: &crate::settings::StoreSettings,
    clock: crate::time::Clock,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Opened> {
    let opened = match settings.backend() {
        Backend::Sqlite {
            path,
            synchronous,
            busy_timeout,
        } => {
            let options = sqlite::SqliteOptions {
                path,
                synchronous,
                busy_timeout,
            };
            let store = Arc::new(sqlite::SqliteStore::open(&options)?);
            Opened {
                queue: store.clone(),
                operator: store,
                cluster: None,
            }
        }
        Backend::Postgres(url) => {
            let store = Arc::new(postgres::PostgresStore::new(&url)?);
            Opened {
                queue: store.clone(),
                operator: store.clone(),
                cluster: Some(store),
            }
        }
    };
    spawn_purge(opened.queue.clone(), settings.dedup_window, clock, stop);
    Ok(opened)
}
