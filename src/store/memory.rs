//! An in-memory [`Store`](super::Store) for unit tests that run on tokio's paused clock, where waiting on the
//! SQLite store's threads would make virtual time jump. It implements every method of both traits, and the
//! [`contract`](super::contract) suite holds it to the same behaviour as the real backends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{
    Accepted, DeadReceipt, DueCursor, DueHead, DueQuery, Flush, FlushScope, Flushed, NewReceipt,
    Operator, Outcome, PendingQuery, PendingStats, Queue, Receipt, ReceiptId, StoreError,
};
use crate::domain::{BareMessageId, ChatId, ChatKey, MessageId, MessageKey, SessionName};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: i64,
    pending: BTreeMap<ReceiptId, (Receipt, Timestamp)>,
    /// Dead receipts, with what a replay needs back: read-on-reply and the chat's phone number.
    dead: Vec<(DeadReceipt, bool, Option<ChatId>)>,
    dedup: HashMap<(SessionName, MessageId), Timestamp>,
    /// Sent messages: when, and whether an ack confirmed them.
    sent: HashMap<(SessionName, BareMessageId), (Timestamp, bool)>,
    unwritable: bool,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes every write fail as a full disk would, until set back.
    pub fn set_unwritable(&self, unwritable: bool) {
        self.with(|s| s.unwritable = unwritable);
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        self.with(|s| {
            if s.unwritable {
                Err(StoreError::Unavailable("disk full (memory store)".into()))
            } else {
                Ok(f(s))
            }
        })
    }
}

impl State {
    /// Stores a receipt as pending with a new id, untried.
    fn push(&mut self, n: NewReceipt) -> ReceiptId {
        self.next_id += 1;
        let id = ReceiptId::from_row(self.next_id);
        let receipt = Receipt {
            id,
            session: n.session,
            chat: n.chat,
            chat_phone: n.chat_phone,
            message_id: n.message_id,
            rule: n.rule,
            due_at: n.due_at,
            not_before: n.not_before,
            read_on_reply: n.read_on_reply,
            on_reply: n.on_reply,
            expires: n.expires,
            attempts: 0,
            last_error: None,
        };
        self.pending.insert(id, (receipt, n.accepted_at));
        id
    }
}

fn in_chat(r: &Receipt, chat: &ChatKey) -> bool {
    r.session == chat.session && r.chat == chat.chat
}

#[async_trait]
impl Queue for MemoryStore {
    async fn accept(&self, n: NewReceipt) -> Result<Accepted, StoreError> {
        self.write(|s| {
            let key = (n.session.clone(), n.message_id.clone());
            if s.dedup.contains_key(&key) {
                return Accepted::Duplicate;
            }
            s.dedup.insert(key, n.accepted_at);
            let id = s.push(n);
            Accepted::New { id }
        })
    }

    async fn chat_receipts(&self, chat: &ChatKey) -> Result<Vec<Receipt>, StoreError> {
        Ok(self.with(|s| {
            let mut v: Vec<Receipt> = s
                .pending
                .values()
                .map(|(r, _)| r)
                .filter(|r| in_chat(r, chat))
                .cloned()
                .collect();
            v.sort_by_key(|r| (r.due_at, r.id));
            v
        }))
    }

    async fn due_heads(&self, q: DueQuery) -> Result<Vec<DueHead>, StoreError> {
        Ok(self.with(|s| {
            let mut heads: Vec<DueHead> = s
                .pending
                .values()
                .map(|(r, _)| DueHead {
                    chat: r.chat_key(),
                    at: DueCursor {
                        due_at: r.due_at,
                        id: r.id,
                    },
                })
                .filter(|h| q.after.is_none_or(|a| h.at > a) && h.at.due_at <= q.until)
                .collect();
            heads.sort_by_key(|h| h.at);
            heads.truncate(q.limit);
            heads
        }))
    }

    async fn record(&self, outcomes: Vec<(ReceiptId, Outcome)>) -> Result<(), StoreError> {
        self.write(|s| {
            for (id, outcome) in outcomes {
                match outcome {
                    Outcome::Sent { at } => {
                        if let Some((r, _)) = s.pending.remove(&id) {
                            let sent = s.sent.entry((r.session, r.message_id.bare())).or_default();
                            sent.0 = at;
                        }
                    }
                    Outcome::Retry {
                        attempts,
                        at,
                        error,
                    } => {
                        if let Some((r, _)) = s.pending.get_mut(&id) {
                            (r.attempts, r.due_at, r.not_before) = (attempts, at, at);
                            r.last_error = Some(error);
                        }
                    }
                    Outcome::Dead {
                        attempts,
                        error,
                        at,
                    } => {
                        if let Some((r, _)) = s.pending.remove(&id) {
                            let dead = DeadReceipt {
                                id,
                                session: r.session,
                                chat: r.chat,
                                message_id: r.message_id,
                                rule: r.rule,
                                attempts,
                                last_error: error,
                                died_at: at,
                            };
                            s.dead.push((dead, r.read_on_reply, r.chat_phone));
                        }
                    }
                }
            }
        })
    }

    async fn flush_chat(&self, flush: Flush) -> Result<Flushed, StoreError> {
        let Flush {
            session,
            forms,
            scope,
            at: now,
        } = flush;
        self.write(|s| {
            let mut flushed = Flushed::default();
            for (r, _) in s.pending.values_mut() {
                let known = forms.contains(&r.chat)
                    || r.chat_phone.as_ref().is_some_and(|p| forms.contains(p));
                let in_scope = scope == FlushScope::All || r.read_on_reply || r.on_reply;
                if r.session == session && known && in_scope && r.attempts == 0 {
                    r.due_at = r.due_at.min(now);
                    r.not_before = r.not_before.min(now);
                    (r.on_reply, r.expires) = (false, false);
                    flushed.receipts += 1;
                    if !flushed.chats.contains(&r.chat_key()) {
                        flushed.chats.push(r.chat_key());
                    }
                }
            }
            flushed
        })
    }

    async fn receipts_through(&self, message: &MessageKey) -> Result<Vec<Receipt>, StoreError> {
        Ok(self.with(|s| {
            let acked = s.pending.values().map(|(r, _)| r).find(|r| {
                r.session == message.session && r.message_id.bare_str() == message.bare.as_str()
            });
            let Some(acked) = acked.cloned() else {
                return Vec::new();
            };
            s.pending
                .range(..=acked.id)
                .map(|(_, (r, _))| r)
                .filter(|r| r.chat_key() == acked.chat_key())
                .cloned()
                .collect()
        }))
    }

    async fn cancel(&self, ids: Vec<ReceiptId>) -> Result<u64, StoreError> {
        self.write(|s| {
            ids.iter()
                .filter(|id| s.pending.remove(id).is_some())
                .count() as u64
        })
    }

    async fn confirm_sent(&self, message: &MessageKey, sending: bool) -> Result<bool, StoreError> {
        self.write(|s| {
            let key = (message.session.clone(), message.bare.clone());
            match s.sent.get_mut(&key) {
                Some((_, confirmed)) if !*confirmed => {
                    *confirmed = true;
                    true
                }
                Some(_) => false,
                None if sending => {
                    s.sent.insert(key, (Timestamp::MAX, true));
                    true
                }
                None => false,
            }
        })
    }

    async fn purge_dedup(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(|s| {
            let n = s.dedup.len() + s.sent.len();
            s.dedup.retain(|_, at| *at >= before);
            s.sent.retain(|_, (at, _)| *at >= before);
            (n - s.dedup.len() - s.sent.len()) as u64
        })
    }
}

#[async_trait]
impl Operator for MemoryStore {
    async fn find_pending(&self, q: PendingQuery) -> Result<Vec<Receipt>, StoreError> {
        Ok(self.with(|s| {
            let mut v: Vec<Receipt> = s
                .pending
                .values()
                .map(|(r, _)| r)
                .filter(|r| q.session.as_ref().is_none_or(|s| *s == r.session))
                .filter(|r| {
                    q.chat
                        .as_ref()
                        .is_none_or(|c| *c == r.chat || r.chat_phone.as_ref() == Some(c))
                })
                .cloned()
                .collect();
            v.sort_by_key(|r| (r.due_at, r.id));
            v.truncate(q.limit);
            v
        }))
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<DeadReceipt>, StoreError> {
        Ok(self.with(|s| {
            let mut v: Vec<DeadReceipt> = s.dead.iter().map(|(d, _, _)| d.clone()).collect();
            v.sort_by_key(|d| std::cmp::Reverse((d.died_at, d.id)));
            v.truncate(limit);
            v
        }))
    }

    async fn replay_dead(
        &self,
        now: Timestamp,
        only: Option<ReceiptId>,
    ) -> Result<Vec<ChatKey>, StoreError> {
        self.write(|s| {
            let mut chats = Vec::new();
            let (replayed, kept) = std::mem::take(&mut s.dead)
                .into_iter()
                .partition(|(d, _, _)| only.is_none_or(|id| d.id == id));
            s.dead = kept;
            for (d, read_on_reply, chat_phone) in replayed {
                let chat = ChatKey {
                    session: d.session.clone(),
                    chat: d.chat.clone(),
                };
                if !chats.contains(&chat) {
                    chats.push(chat);
                }
                s.push(NewReceipt {
                    session: d.session,
                    chat: d.chat,
                    chat_phone,
                    message_id: d.message_id,
                    rule: d.rule,
                    due_at: now,
                    not_before: now,
                    read_on_reply,
                    on_reply: false,
                    expires: false,
                    accepted_at: now,
                });
            }
            chats
        })
    }

    async fn pending_stats(&self) -> Result<Vec<PendingStats>, StoreError> {
        Ok(self.with(|s| {
            let mut by_session: BTreeMap<SessionName, PendingStats> = BTreeMap::new();
            for (r, accepted_at) in s.pending.values() {
                let stats = by_session
                    .entry(r.session.clone())
                    .or_insert_with(|| PendingStats {
                        session: r.session.clone(),
                        count: 0,
                        oldest_accepted_at: *accepted_at,
                    });
                stats.count += 1;
                stats.oldest_accepted_at = stats.oldest_accepted_at.min(*accepted_at);
            }
            by_session.into_values().collect()
        }))
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.write(|_| ())
    }
}

#[cfg(test)]
mod tests {
    crate::store_contract_tests!(async { Some(crate::store::memory::MemoryStore::default()) });
}
