//! Sending: a send task marks one chat's batch through the gateway, settles each receipt's answer (sent,
//! retry later, paused, dead) and records every outcome in one commit before reporting back to the timer loop.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::pacing::backoff;
use super::{Command, DeliverySettings, Done, STORE_RETRY, min_opt};
use crate::activity::{Activity, Happening, What};
use crate::domain::MessageId;
use crate::gateway::{MarkRead, SendError, SendResult};
use crate::metric_names as names;
use crate::store::cluster::{Cluster, Fence, ReplicaId};
use crate::store::{Outcome, Queue, Receipt, StoreError};
use crate::time::{Clock, add, millis_between};

/// What became of one receipt's send; each names the counter it adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivered {
    Sent,
    Retry,
    /// The API refused the session's key; the receipt waits out the pause without using an attempt.
    Paused,
    Dead,
}

impl Delivered {
    /// What the console's activity feed calls it.
    fn what(self) -> What {
        match self {
            Delivered::Sent => What::Sent,
            Delivered::Retry => What::Retry,
            Delivered::Paused => What::Paused,
            Delivered::Dead => What::Dead,
        }
    }

    fn counter(self) -> &'static str {
        match self {
            Delivered::Sent => names::RECEIPTS_SENT,
            Delivered::Retry => names::RECEIPTS_RETRIED,
            Delivered::Paused => names::SESSION_PAUSED,
            Delivered::Dead => names::RECEIPTS_DEAD,
        }
    }
}

/// Everything a send task needs, shared.
pub(super) struct Delivery {
    pub(super) store: Arc<dyn Queue>,
    pub(super) client: Arc<dyn MarkRead>,
    pub(super) clock: Clock,
    pub(super) settings: DeliverySettings,
    /// With several replicas: the shared store, where pauses are kept for the next owner.
    pub(super) cluster: Option<(Arc<dyn Cluster>, ReplicaId)>,
    /// What this replica sent, for the console.
    pub(super) activity: Activity,
}

/// Sends one chat's batch and records every receipt's outcome in one commit: done, retry later, or dead.
pub(super) async fn deliver(
    d: Arc<Delivery>,
    mut batch: Vec<Receipt>,
    calls: usize,
    fence: Option<Fence>,
    tx: mpsc::UnboundedSender<Command>,
) {
    // In the order they were accepted, as `MarkRead` promises (a gateway that reads a chat up to one id
    // takes the last).
    batch.sort_by_key(|r| r.id);
    let first = &batch[0];
    let (session, chat) = (first.session.clone(), first.chat_key());
    let ids: Vec<MessageId> = batch.iter().map(|r| r.message_id.clone()).collect();
    let started = StdInstant::now();
    let phone = first.chat_phone.clone();
    let results = d
        .client
        .mark_read(&session, &chat.chat, phone.as_ref(), &ids)
        .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let now = d.clock.now();
    let mut pause_until = None;
    let mut wake_at = None;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut delivered = Vec::with_capacity(batch.len());
    for (r, result) in batch.iter().zip(results) {
        let status = match &result {
            Ok(status) => *status,
            Err(e) => e.status(),
        };
        metrics::counter!(names::SEND_SEEN_RESPONSES, "status" => status.unwrap_or(0).to_string())
            .increment(1);
        let (kind, outcome, pause) = settle(&d, r, result, now, duration_ms);
        if let Outcome::Retry { at, .. } = &outcome {
            wake_at = min_opt(wake_at, Some(*at));
        }
        pause_until = pause_until.max(pause);
        let detail = match &outcome {
            Outcome::Retry { error, .. } | Outcome::Dead { error, .. } => Some(error.clone()),
            Outcome::Sent { .. } => None,
        };
        delivered.push((r, kind, status, detail));
        outcomes.push((r.id, outcome));
    }
    metrics::histogram!(names::SEND_SEEN_DURATION).record(started.elapsed().as_secs_f64());
    let stored = d
        .store
        .record_fenced(outcomes, fence.as_ref().map(|f| (&session, f)))
        .await;
    if let (Some(until), Some((cluster, _))) = (pause_until, &d.cluster) {
        // The next owner of the session honours the pause too.
        if let Err(e) = cluster.pause(&session, until).await {
            warn!(session = %session, error = %e, "cannot share the session's pause with other replicas");
        }
    }
    if let Some(until) = pause_until {
        d.activity.pause(&session, now, until);
    }
    report(&d, delivered, now, duration_ms);
    match stored {
        Ok(()) => {}
        // A handover: the new owner finds the receipts pending and sends what is left.
        Err(e @ StoreError::LeaseLost(_)) => {
            info!(session = %session, chat = %chat.chat, reason = %e, "send outcomes left to the session's new owner");
        }
        Err(e) => {
            // The outcomes are not recorded: the receipts are still pending and will be tried again.
            error!(session = %session, chat = %chat.chat, error = %e, "cannot record send outcomes");
            wake_at = Some(add(now, STORE_RETRY));
        }
    }
    let _ = tx.send(Command::Done(Done {
        ids: batch.iter().map(|r| r.id).collect(),
        calls,
        chat,
        wake_at,
        pause_until,
    }));
}

/// Counts, feeds and logs each receipt's outcome.
fn report(
    d: &Delivery,
    delivered: Vec<(&Receipt, Delivered, Option<u16>, Option<String>)>,
    now: Timestamp,
    duration_ms: u64,
) {
    for (r, kind, status, detail) in delivered {
        metrics::counter!(kind.counter(), "session" => crate::telemetry::session_label(&r.session))
            .increment(1);
        d.activity.record(Happening {
            at: now,
            session: r.session.clone(),
            chat: Some(r.chat.clone()),
            message_id: Some(r.message_id.clone()),
            what: kind.what(),
            rule: Some(r.rule.clone()),
            detail,
        });
        if kind == Delivered::Sent {
            info!(
                session = %r.session, chat = %r.chat, message_id = %r.message_id, rule = %r.rule,
                attempt = r.attempts + 1, status, duration_ms,
                late_ms = millis_between(r.due_at.max(r.not_before), now), "marked seen"
            );
        }
    }
}

/// What one receipt's answer means: how it counts, what the store records, and whether the session pauses.
fn settle(
    d: &Delivery,
    r: &Receipt,
    result: SendResult,
    now: Timestamp,
    duration_ms: u64,
) -> (Delivered, Outcome, Option<Timestamp>) {
    let attempt = r.attempts + 1;
    match result {
        Ok(_) => (Delivered::Sent, Outcome::Sent { at: now }, None),
        Err(SendError::Retryable {
            reason,
            retry_after,
            status,
        }) if attempt < d.settings.max_attempts => {
            let wait = retry_after.unwrap_or_else(|| {
                backoff(
                    attempt,
                    d.settings.backoff_initial,
                    d.settings.backoff_max,
                    &mut rand::rng(),
                )
            });
            let at = add(now, wait);
            warn!(
                session = %r.session, chat = %r.chat, message_id = %r.message_id, rule = %r.rule,
                attempt, status, duration_ms, error = %reason, retry_in_ms = wait.as_millis() as u64,
                "sendSeen failed; will retry"
            );
            let pause = (status == Some(429)).then_some(at);
            let outcome = Outcome::Retry {
                attempts: attempt,
                at,
                error: reason,
            };
            (Delivered::Retry, outcome, pause)
        }
        Err(SendError::Unauthorized { status, message }) => {
            // The key is wrong for this session: every call would fail alike. Pause the session, keep its
            // receipts (this attempt does not count), and let the other sessions go on.
            let at = add(now, d.settings.auth_pause);
            error!(
                session = %r.session, status, error = %message,
                pause_ms = d.settings.auth_pause.as_millis() as u64,
                "the gateway refused this session's API key (or does not know its instance); the session is paused, its receipts wait"
            );
            let outcome = Outcome::Retry {
                attempts: r.attempts,
                at,
                error: format!("HTTP {status}: {message}"),
            };
            (Delivered::Paused, outcome, Some(at))
        }
        Err(e) => {
            error!(
                session = %r.session, chat = %r.chat, message_id = %r.message_id, rule = %r.rule,
                attempt, status = e.status(), duration_ms, error = %e,
                "sendSeen failed for good; moved to dead letters"
            );
            let outcome = Outcome::Dead {
                attempts: attempt,
                error: e.to_string(),
                at: now,
            };
            (Delivered::Dead, outcome, None)
        }
    }
}
