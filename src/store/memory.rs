//! An in-memory [`Store`] for the scheduler's unit tests, which run on tokio's paused clock (where waiting on
//! the SQLite store's thread would make virtual time jump). It keeps the contract of the methods the scheduler
//! calls; the others belong to the webhook, admin and metrics paths and are never reached from these tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Accepted, DeadReceipt, NewReceipt, Receipt, Store, StoreError};
use crate::domain::{ChatKey, SessionName};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: i64,
    pending: BTreeMap<i64, Receipt>,
    dead: Vec<DeadReceipt>,
    dedup: HashMap<(String, String), i64>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn in_chat(r: &Receipt, chat: &ChatKey) -> bool {
    r.session == chat.session && r.chat == chat.chat
}

#[async_trait]
impl Store for MemoryStore {
    async fn accept(&self, n: NewReceipt) -> Result<Accepted, StoreError> {
        Ok(self.with(|s| {
            let key = (n.session.to_string(), n.message_id.to_string());
            if s.dedup.contains_key(&key) {
                return Accepted::Duplicate;
            }
            s.dedup.insert(key, n.accepted_at_ms);
            s.next_id += 1;
            let id = s.next_id;
            s.pending.insert(
                id,
                Receipt {
                    id,
                    session: n.session,
                    chat: n.chat,
                    message_id: n.message_id,
                    rule: n.rule.to_string(),
                    due_at_ms: n.due_at_ms,
                    not_before_ms: n.not_before_ms,
                    read_on_reply: n.read_on_reply,
                    attempts: 0,
                    last_error: None,
                },
            );
            Accepted::New { id }
        }))
    }

    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError> {
        Ok(self.with(|s| {
            let mut v: Vec<Receipt> = s
                .pending
                .values()
                .filter(|r| in_chat(r, chat))
                .cloned()
                .collect();
            v.sort_by_key(|r| (r.due_at_ms, r.id));
            v
        }))
    }

    async fn chat_heads(&self) -> Result<Vec<(ChatKey, i64)>, StoreError> {
        Ok(self.with(|s| {
            let mut heads: HashMap<ChatKey, i64> = HashMap::new();
            for r in s.pending.values() {
                let due = heads.entry(r.chat_key()).or_insert(r.due_at_ms);
                *due = (*due).min(r.due_at_ms);
            }
            heads.into_iter().collect()
        }))
    }

    async fn complete(&self, id: i64) -> Result<(), StoreError> {
        self.with(|s| s.pending.remove(&id));
        Ok(())
    }

    async fn retry_later(
        &self,
        id: i64,
        attempts: u32,
        at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            if let Some(r) = s.pending.get_mut(&id) {
                (r.attempts, r.due_at_ms, r.not_before_ms) = (attempts, at_ms, at_ms);
                r.last_error = Some(error.to_string());
            }
        });
        Ok(())
    }

    async fn bury(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            if let Some(r) = s.pending.remove(&id) {
                s.dead.push(DeadReceipt {
                    id,
                    session: r.session,
                    chat: r.chat,
                    message_id: r.message_id,
                    rule: r.rule,
                    attempts,
                    last_error: error.to_string(),
                    died_at_ms: now_ms,
                });
            }
        });
        Ok(())
    }

    async fn flush_chat(&self, _: &ChatKey, _: i64) -> Result<u64, StoreError> {
        unreachable!("the scheduler never flushes; the webhook does")
    }

    async fn list_pending(&self, _: usize) -> Result<Vec<Receipt>, StoreError> {
        Ok(self.with(|s| s.pending.values().cloned().collect()))
    }

    async fn list_dead(&self, _: usize) -> Result<Vec<DeadReceipt>, StoreError> {
        Ok(self.with(|s| s.dead.clone()))
    }

    async fn replay_dead(&self, _: i64) -> Result<Vec<ChatKey>, StoreError> {
        unreachable!("admin only")
    }

    async fn purge_dedup(&self, _: i64) -> Result<u64, StoreError> {
        unreachable!("app only")
    }

    async fn pending_stats(&self) -> Result<Vec<(SessionName, u64, i64)>, StoreError> {
        unreachable!("metrics only")
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
