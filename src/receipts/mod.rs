//! The application layer: the one place where an authenticated event becomes effects. [`plan`] decides what an
//! event should become (pure: the event, the rules, now); [`Receipts`] carries a plan out: commits to the
//! store, wakes the scheduler, tells another replica that holds the session, counts it and records it for the
//! console. Flushing a chat (a reply of ours, the bot endpoint, the console's "send now"), replaying dead
//! receipts and acks are its operations too. HTTP handlers, the console and `explain` are thin adapters over
//! it; waking the scheduler after a write happens here and nowhere else.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

pub use plan::{Ignored, Plan, WhenUnreleased, plan};

use crate::activity::{Activity, Happening, What};
use crate::domain::Event;
use crate::domain::{ChatId, ChatKey, IncomingMessage, MessageKey, SessionName};
use crate::metric_names as names;
use crate::rules::Rules;
use crate::scheduler::leases::Holdings;
use crate::scheduler::{AckResult, SchedulerHandle};
use crate::store::cluster::Cluster;
use crate::store::{
    Accepted, Flush, FlushScope, NewReceipt, Operator, Queue, ReceiptId, StoreError,
};
use crate::time::{Clock, add, millis_between};

/// What became of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A receipt is stored, due at `due_at`: `due_in_ms` after the moment it was decided.
    Scheduled {
        rule: Arc<str>,
        due_at: Timestamp,
        due_in_ms: i64,
    },
    /// Kept for a reply of ours; sent anyway after `max_wait` when the rule has one.
    Held {
        rule: Arc<str>,
        max_wait: Option<Duration>,
    },
    /// This message id was accepted before; nothing changed.
    Duplicate,
    /// Receipts an ack cancelled and confirmed.
    Ack(AckResult),
    /// A message its sender deleted: whether its receipt was cancelled (0 when none waited).
    Deleted { cancelled: u64 },
    Ignored {
        reason: Ignored,
        rule: Option<Arc<str>>,
    },
}

/// Who asked for a flush or a replay, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Bot,
    Console,
    Admin,
}

impl By {
    fn as_str(self) -> &'static str {
        match self {
            By::Bot => "the bot",
            By::Console => "the console",
            By::Admin => "the admin endpoint",
        }
    }
}

/// Carries plans out. Cheap to share behind an `Arc`.
pub struct Receipts {
    queue: Arc<dyn Queue>,
    operator: Arc<dyn Operator>,
    scheduler: SchedulerHandle,
    /// With several replicas: how to tell the holder of a session about work accepted here.
    cluster: Option<Arc<dyn Cluster>>,
    holdings: Holdings,
    activity: Activity,
    clock: Clock,
    /// How long a held message without `max_wait` waits at most (`store.dedup_window`).
    dedup_window: Duration,
}

impl Receipts {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: Arc<dyn Queue>,
        operator: Arc<dyn Operator>,
        scheduler: SchedulerHandle,
        cluster: Option<Arc<dyn Cluster>>,
        holdings: Holdings,
        activity: Activity,
        clock: Clock,
        dedup_window: Duration,
    ) -> Self {
        Self {
            queue,
            operator,
            scheduler,
            cluster,
            holdings,
            activity,
            clock,
            dedup_window,
        }
    }

    /// The plan for `event` now, as [`Receipts::take`] would carry it out.
    pub fn plan(&self, event: &Event, rules: &Rules, now: Timestamp) -> Plan {
        plan(event, rules, self.dedup_window, now)
    }

    /// Plans what `event` should become under `rules`, now, and carries it out.
    pub async fn take(&self, event: Event, rules: &Rules) -> Result<Outcome, StoreError> {
        let now = self.clock.now();
        let plan = self.plan(&event, rules, now);
        match (plan, event) {
            (Plan::FlushReplies, Event::Message(m)) => {
                let flush = Flush {
                    session: m.session.clone(),
                    forms: m.chat_forms(),
                    scope: FlushScope::Reply,
                    at: now,
                };
                self.flush_and_wake(flush).await?;
                Ok(Outcome::Ignored {
                    reason: Ignored::FromMe,
                    rule: None,
                })
            }
            (Plan::Ack, Event::Ack(a)) => {
                let key = MessageKey {
                    session: a.session,
                    bare: a.bare,
                };
                self.ack(key, a.chat).await.map(Outcome::Ack)
            }
            (Plan::Forget, Event::Deleted(d)) => {
                let key = MessageKey {
                    session: d.session,
                    bare: d.bare,
                };
                let result = self.scheduler.deleted(key).await?;
                Ok(Outcome::Deleted {
                    cancelled: result.cancelled,
                })
            }
            (plan, Event::Message(m)) => self.message(m, plan, now).await,
            (Plan::Ignore { reason, rule }, _) => Ok(Outcome::Ignored { reason, rule }),
            (plan, _) => unreachable!("{plan:?} is planned for messages only"),
        }
    }

    /// A message's decision carried out: a receipt stored (unless a duplicate) and the scheduler woken.
    async fn message(
        &self,
        m: IncomingMessage,
        plan: Plan,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
        if m.lid_without_phone() {
            metrics::counter!(names::LID_WITHOUT_PHONE).increment(1);
        }
        let rule = plan.rule().map(|r| r.to_string()).unwrap_or_default();
        metrics::counter!(names::DECISIONS, "rule" => rule, "decision" => plan.decision())
            .increment(1);
        let feed = |what: What, rule: Option<Arc<str>>, detail: Option<&str>| {
            if self.activity.watched() {
                self.activity.record(Happening {
                    at: now,
                    session: m.session.clone(),
                    chat: Some(m.chat.clone()),
                    message_id: Some(m.id.clone()),
                    what,
                    rule,
                    detail: detail.map(str::to_owned),
                });
            }
        };
        let (receipt, outcome) = match receipt_of(&m, plan, now) {
            Ok(planned) => planned,
            Err(ignored) => {
                if let Outcome::Ignored { reason, rule } = &ignored {
                    feed(What::Ignored, rule.clone(), Some(reason.code()));
                }
                return Ok(ignored);
            }
        };
        let chat = ChatKey {
            session: m.session.clone(),
            chat: m.chat.clone(),
        };
        let (due, rule) = (receipt.due_at, receipt.rule.clone());
        match self.queue.accept(receipt).await? {
            Accepted::Duplicate => {
                feed(What::Duplicate, Some(rule), None);
                Ok(Outcome::Duplicate)
            }
            Accepted::New { .. } => {
                let what = match outcome {
                    Outcome::Held { .. } => What::OnReply,
                    _ => What::Scheduled,
                };
                feed(what, Some(rule), None);
                self.announce(&chat, due);
                self.scheduler.wake(chat, due);
                Ok(outcome)
            }
        }
    }

    /// Another replica sends this session: tell it now rather than at its next heartbeat.
    fn announce(&self, chat: &ChatKey, due: Timestamp) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if self.holdings.holds(&chat.session) {
            return;
        }
        let (cluster, chat) = (cluster.clone(), chat.clone());
        tokio::spawn(async move {
            if let Err(e) = cluster.announce(&chat, due).await {
                // The holder finds it at its next reading of the store; it is only later.
                tracing::warn!(session = %chat.session, error = %e, "cannot tell the replica holding the session about a new receipt");
            }
        });
    }

    /// An ack READ or PLAYED of a message we received: its chat's waiting receipts up to it are cancelled, a
    /// sent one is confirmed.
    async fn ack(&self, message: MessageKey, chat: ChatId) -> Result<AckResult, StoreError> {
        let result = self.scheduler.ack(message.clone()).await?;
        let happening = |what| Happening {
            at: self.clock.now(),
            session: message.session.clone(),
            chat: Some(chat.clone()),
            message_id: None,
            what,
            rule: None,
            detail: Some(format!("ack of {}", message.bare)),
        };
        for _ in 0..result.confirmed {
            self.activity.record(happening(What::Confirmed));
        }
        if result.cancelled > 0 && self.activity.watched() {
            self.activity.record(happening(What::Cancelled));
        }
        Ok(result)
    }

    /// Makes every pending receipt of `chat` due now, held ones and closed windows included (the bot
    /// endpoint, and "send now" in the console); answers how many.
    pub async fn flush(
        &self,
        session: SessionName,
        chat: ChatId,
        by: By,
    ) -> Result<u64, StoreError> {
        let flush = Flush {
            session: session.clone(),
            forms: vec![chat],
            scope: FlushScope::All,
            at: self.clock.now(),
        };
        let receipts = self.flush_and_wake(flush).await?;
        tracing::info!(session = %session, receipts, by = by.as_str(), "chat made due now");
        Ok(receipts)
    }

    async fn flush_and_wake(&self, flush: Flush) -> Result<u64, StoreError> {
        let at = flush.at;
        let flushed = self.queue.flush_chat(flush).await?;
        for chat in flushed.chats {
            self.scheduler.wake(chat, at);
        }
        Ok(flushed.receipts)
    }

    /// Moves dead receipts (the one `only` names, or all) back to pending, due now; answers how many chats.
    pub async fn replay(&self, only: Option<ReceiptId>, by: By) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let chats = self.operator.replay_dead(now, only).await?;
        let n = chats.len();
        for chat in chats {
            self.scheduler.wake(chat, now);
        }
        tracing::info!(chats = n, by = by.as_str(), "dead receipts replayed");
        Ok(n)
    }
}

/// The receipt a message's plan stores, and what the webhook answers once it is stored; or, for a plan that
/// stores nothing, what it answers at once.
fn receipt_of(
    m: &IncomingMessage,
    plan: Plan,
    now: Timestamp,
) -> Result<(NewReceipt, Outcome), Outcome> {
    Ok(match plan {
        Plan::Schedule {
            rule,
            not_before,
            delay,
            read_on_reply,
        } => {
            let due_at = add(not_before, delay.sample(&mut rand::rng()));
            let receipt = NewReceipt {
                read_on_reply,
                ..new_receipt(m, rule.clone(), due_at, not_before, now)
            };
            let due_in_ms = millis_between(now, due_at);
            (
                receipt,
                Outcome::Scheduled {
                    rule,
                    due_at,
                    due_in_ms,
                },
            )
        }
        Plan::Hold { rule, until, then } => {
            // Its not-before is `until` too, so no earlier batch of the chat takes it along.
            let receipt = NewReceipt {
                read_on_reply: true,
                on_reply: true,
                expires: then == WhenUnreleased::Drop,
                ..new_receipt(m, rule.clone(), until, until, now)
            };
            let max_wait = match then {
                WhenUnreleased::SendAnyway(wait) => Some(wait),
                WhenUnreleased::Drop => None,
            };
            (receipt, Outcome::Held { rule, max_wait })
        }
        Plan::Ignore { reason, rule } => return Err(Outcome::Ignored { reason, rule }),
        plan @ (Plan::FlushReplies | Plan::Ack | Plan::Forget) => {
            unreachable!("{plan:?} is carried out before a message's decision")
        }
    })
}

/// The receipt of `m` under `rule`, due at `due_at`, not before `not_before`, neither read on reply nor held.
fn new_receipt(
    m: &IncomingMessage,
    rule: Arc<str>,
    due_at: Timestamp,
    not_before: Timestamp,
    now: Timestamp,
) -> NewReceipt {
    NewReceipt {
        session: m.session.clone(),
        chat: m.chat.clone(),
        chat_phone: m.chat_phone.clone(),
        message_id: m.id.clone(),
        rule,
        due_at,
        not_before,
        read_on_reply: false,
        on_reply: false,
        expires: false,
        accepted_at: now,
    }
}
