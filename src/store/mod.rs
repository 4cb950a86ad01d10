//! Durable state: pending receipts, dead letters, and the ids of messages already accepted.
//!
//! One trait, [`Store`], so a shared backend can be added beside the embedded one without touching its callers;
//! [`sqlite::SqliteStore`] is the default. A receipt is in exactly one place: pending (waiting, or being sent),
//! or dead (gave up; replayable). A receipt leaves `pending` only after its send succeeded or it was buried, so
//! a crash at any moment leaves it to be sent again: delivery is at least once.

#[cfg(test)]
pub mod memory;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{ChatId, ChatKey, MessageId, SessionName};

/// A receipt to be stored when its message is accepted.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub session: SessionName,
    pub chat: ChatId,
    pub message_id: MessageId,
    pub rule: Arc<str>,
    /// When it should be sent (ms since the Unix epoch).
    pub due_at_ms: i64,
    /// The earliest it may be sent, for instance when a window opens; it may join an earlier batch from then.
    pub not_before_ms: i64,
    pub read_on_reply: bool,
    pub accepted_at_ms: i64,
}

/// A pending receipt as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub id: i64,
    pub session: SessionName,
    pub chat: ChatId,
    pub message_id: MessageId,
    pub rule: String,
    pub due_at_ms: i64,
    pub not_before_ms: i64,
    pub read_on_reply: bool,
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
#[derive(Debug, Clone, Serialize)]
pub struct DeadReceipt {
    pub id: i64,
    pub session: SessionName,
    pub chat: ChatId,
    pub message_id: MessageId,
    pub rule: String,
    pub attempts: u32,
    pub last_error: String,
    pub died_at_ms: i64,
}

/// What `accept` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New {
        id: i64,
    },
    /// The message id was accepted before, within the dedup window; nothing was stored.
    Duplicate,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store cannot write: {0}")]
    Unavailable(String),
    #[error("store holds a row it cannot read: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
}

/// Durable receipts. Every method returns once its effect is committed.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Remembers the message id and stores the receipt, unless the id was accepted before.
    async fn accept(&self, receipt: NewReceipt) -> Result<Accepted, StoreError>;
    /// Every pending receipt of one chat.
    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError>;
    /// For each chat with pending receipts, its earliest due time: what the scheduler loads at start.
    async fn chat_heads(&self) -> Result<Vec<(ChatKey, i64)>, StoreError>;
    /// The receipt was sent: forget it.
    async fn complete(&self, id: i64) -> Result<(), StoreError>;
    /// The send failed and will be tried again at `at_ms`.
    async fn retry_later(
        &self,
        id: i64,
        attempts: u32,
        at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError>;
    /// The send failed for good: move it to the dead letters.
    async fn bury(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Makes the chat's read-on-reply receipts that have not been tried yet due at `now_ms`; returns how many.
    async fn flush_chat(&self, chat: &ChatKey, now_ms: i64) -> Result<u64, StoreError>;
    /// Up to `limit` pending receipts, earliest due first.
    async fn list_pending(&self, limit: usize) -> Result<Vec<Receipt>, StoreError>;
    /// Up to `limit` dead receipts, newest first.
    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadReceipt>, StoreError>;
    /// Moves every dead receipt back to pending, due at `now_ms` with no attempts; returns the chats affected.
    async fn replay_dead(&self, now_ms: i64) -> Result<Vec<ChatKey>, StoreError>;
    /// Forgets accepted ids older than `before_ms`; returns how many.
    async fn purge_dedup(&self, before_ms: i64) -> Result<u64, StoreError>;
    /// Per session: how many receipts are pending, and when the oldest was accepted (ms).
    async fn pending_stats(&self) -> Result<Vec<(SessionName, u64, i64)>, StoreError>;
    /// Performs a small write, to prove the store can commit (readiness).
    async fn check_writable(&self) -> Result<(), StoreError>;
}
