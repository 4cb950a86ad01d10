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

/// A message whose receipt is to be stored, with what to answer once it is.
struct ToStore {
    message: IncomingMessage,
    receipt: NewReceipt,
    outcome: Outcome,
    now: Timestamp,
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
        let mut outcomes = self.take_all(vec![event], rules).await?;
        Ok(outcomes.pop().expect("one outcome per event"))
    }

    /// [`Receipts::take`] for the events of one body, in order, with one answer each. Every run of
    /// messages to store is committed in one transaction; an event of another kind (our own message, an
    /// ack, a deletion) ends a run and is carried out after it, so the body's order holds. A store failure
    /// fails the whole call; what was committed before it answers `duplicate` when the sender retries.
    pub async fn take_all(
        &self,
        events: Vec<Event>,
        rules: &Rules,
    ) -> Result<Vec<Outcome>, StoreError> {
        let now = self.clock.now();
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(events.len());
        let mut run: Vec<(usize, ToStore)> = Vec::new();
        for event in events {
            let plan = self.plan(&event, rules, now);
            let at = outcomes.len();
            outcomes.push(None);
            match (plan, event) {
                (plan, Event::Message(m)) if plan != Plan::FlushReplies => {
                    match self.prepare(m, plan, now) {
                        Ok(to_store) => run.push((at, to_store)),
                        Err(answer) => outcomes[at] = Some(answer),
                    }
                }
                // Nothing to carry out: no reason to end the run.
                (Plan::Ignore { reason, rule }, _) => {
                    outcomes[at] = Some(Outcome::Ignored { reason, rule });
                }
                (plan, event) => {
                    self.store_run(std::mem::take(&mut run), &mut outcomes)
                        .await?;
                    outcomes[at] = Some(self.carry_out(plan, event, now).await?);
                }
            }
        }
        self.store_run(run, &mut outcomes).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every event answered"))
            .collect())
    }

    /// A plan that stores no receipt, carried out: a flush for our own message, an ack, a deletion, or
    /// nothing.
    async fn carry_out(
        &self,
        plan: Plan,
        event: Event,
        now: Timestamp,
    ) -> Result<Outcome, StoreError> {
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
            (Plan::Ignore { reason, rule }, _) => Ok(Outcome::Ignored { reason, rule }),
            (plan, _) => unreachable!("{plan:?} is carried out as a message's receipt"),
        }
    }

    /// A message's decision, counted and, when it stores nothing, answered now; otherwise its receipt and
    /// the answer once stored.
    fn prepare(&self, m: IncomingMessage, plan: Plan, now: Timestamp) -> Result<ToStore, Outcome> {
        if m.lid_without_phone() {
            metrics::counter!(names::LID_WITHOUT_PHONE).increment(1);
        }
        let rule = plan.rule().map(|r| r.to_string()).unwrap_or_default();
        metrics::counter!(names::DECISIONS, "rule" => rule, "decision" => plan.decision())
            .increment(1);
        match receipt_of(&m, plan, now) {
            Ok((receipt, outcome)) => Ok(ToStore {
                message: m,
                receipt,
                outcome,
                now,
            }),
            Err(ignored) => {
                if let Outcome::Ignored { reason, rule } = &ignored {
                    self.feed(&m, now, What::Ignored, rule.clone(), Some(reason.code()));
                }
                Err(ignored)
            }
        }
    }

    /// Stores a run of receipts in one transaction, then answers each: duplicates as such, new ones with
    /// the scheduler woken and another replica told.
    async fn store_run(
        &self,
        run: Vec<(usize, ToStore)>,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), StoreError> {
        if run.is_empty() {
            return Ok(());
        }
        let receipts = run.iter().map(|(_, s)| s.receipt.clone()).collect();
        let accepted = self.queue.accept_all(receipts).await?;
        for ((at, s), accepted) in run.into_iter().zip(accepted) {
            outcomes[at] = Some(self.stored(s, accepted));
        }
        Ok(())
    }

    /// What a stored receipt answers; a new one wakes the scheduler and tells the session's holder.
    fn stored(&self, s: ToStore, accepted: Accepted) -> Outcome {
        let ToStore {
            message: m,
            receipt,
            outcome,
            now,
        } = s;
        let rule = Some(receipt.rule.clone());
        match accepted {
            Accepted::Duplicate => {
                self.feed(&m, now, What::Duplicate, rule, None);
                Outcome::Duplicate
            }
            Accepted::New { .. } => {
                let what = match outcome {
                    Outcome::Held { .. } => What::OnReply,
                    _ => What::Scheduled,
                };
                self.feed(&m, now, what, rule, None);
                let chat = ChatKey {
                    session: m.session,
                    chat: m.chat,
                };
                self.announce(&chat, receipt.due_at);
                self.scheduler.wake(chat, receipt.due_at);
                outcome
            }
        }
    }

    /// Records what became of a message for the console's live feed, when someone watches it.
    fn feed(
        &self,
        m: &IncomingMessage,
        at: Timestamp,
        what: What,
        rule: Option<Arc<str>>,
        detail: Option<&str>,
    ) {
        if self.activity.watched() {
            self.activity.record(Happening {
                at,
                session: m.session.clone(),
                chat: Some(m.chat.clone()),
                message_id: Some(m.id.clone()),
                what,
                rule,
                detail: detail.map(str::to_owned),
            });
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
