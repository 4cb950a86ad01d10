//! Pending receipts in time: one task holds a timer per chat, sends each chat's batch when its earliest receipt
//! is due, paces each session, and records every outcome in the store.
//!
//! The timer structure is per chat, not per receipt: a `BTreeSet` of (due, chat), so a million pending receipts
//! across ten thousand chats cost ten thousand entries, and the receipts themselves stay on disk until their
//! chat fires. When it fires, every receipt of the chat whose window is open goes out together, like a person
//! opening the chat; the rest wait for their own time. Sends run as tasks, bounded by `max_in_flight`; each
//! task writes its outcome (done, retry later, dead) to the store before reporting back, so nothing is lost if
//! the process dies mid-way.

mod clock;
pub mod pacing;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use clock::Clock;
use pacing::{Bucket, backoff};

use crate::domain::{ChatKey, SessionName};
use crate::settings::DeliverySettings;
use crate::store::{Receipt, Store};
use crate::wasend::{SendError, SendSeen};

/// How long a chat waits before the store is asked again after a store error.
const STORE_RETRY_MS: i64 = 1_000;

enum Command {
    /// A receipt of this chat is due at this time.
    Wake(ChatKey, i64),
    /// A send task finished and its outcome is in the store.
    Done(Done),
}

struct Done {
    id: i64,
    chat: ChatKey,
    /// The chat has a receipt due again at this time (a retry, or a store hiccup).
    wake_at: Option<i64>,
    /// The API said 429: the session waits until then.
    pause_until: Option<i64>,
}

/// Tells the scheduler about newly stored receipts. Cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl SchedulerHandle {
    /// A receipt of `chat` was committed with this due time.
    pub fn wake(&self, chat: ChatKey, due_ms: i64) {
        let _ = self.tx.send(Command::Wake(chat, due_ms));
    }
}

/// Everything a send task needs, shared.
struct Delivery {
    store: Arc<dyn Store>,
    client: Arc<dyn SendSeen>,
    clock: Clock,
    settings: DeliverySettings,
}

pub struct Scheduler {
    delivery: Arc<Delivery>,
    tx: mpsc::UnboundedSender<Command>,
    rx: mpsc::UnboundedReceiver<Command>,
    timers: BTreeSet<(i64, ChatKey)>,
    chat_due: HashMap<ChatKey, i64>,
    /// Loaded receipts waiting for their session's token, per session, in due order.
    ready: HashMap<SessionName, VecDeque<Receipt>>,
    /// Sessions with ready receipts, in turn.
    turns: VecDeque<SessionName>,
    /// Chats that fell due while their session already had a full ready queue: loaded as it drains.
    backlog: HashMap<SessionName, VecDeque<ChatKey>>,
    buckets: HashMap<SessionName, Bucket>,
    /// Ids loaded from the store and not yet finished (ready or sending): never loaded twice.
    taken: HashSet<i64>,
    sending: usize,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        client: Arc<dyn SendSeen>,
        clock: Clock,
        settings: DeliverySettings,
    ) -> (Self, SchedulerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SchedulerHandle { tx: tx.clone() };
        let scheduler = Self {
            delivery: Arc::new(Delivery {
                store,
                client,
                clock,
                settings,
            }),
            tx,
            rx,
            timers: BTreeSet::new(),
            chat_due: HashMap::new(),
            ready: HashMap::new(),
            turns: VecDeque::new(),
            backlog: HashMap::new(),
            buckets: HashMap::new(),
            taken: HashSet::new(),
            sending: 0,
        };
        (scheduler, handle)
    }

    /// Loads the pending chats from the store. Overdue ones fire at once, paced like any other.
    pub async fn load(&mut self) -> Result<usize, crate::store::StoreError> {
        let heads = self.delivery.store.chat_heads().await?;
        let n = heads.len();
        for (chat, due) in heads {
            self.set_timer(chat, due);
        }
        Ok(n)
    }

    /// Runs until `shutdown` is cancelled and the sends in flight have finished.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let clock = self.delivery.clock;
        let mut stopping = false;
        loop {
            let now = clock.now_ms();
            let mut next_wake = None;
            if !stopping {
                self.fire_due(now).await;
                next_wake = self.dispatch(now);
            }
            if stopping && self.sending == 0 {
                break;
            }
            let next_timer = if stopping {
                None
            } else {
                self.timers.first().map(|t| t.0)
            };
            let wake_at = min_opt(next_timer, next_wake);
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    while let Ok(cmd) = self.rx.try_recv() {
                        self.handle(cmd);
                    }
                }
                _ = tokio::time::sleep_until(clock.instant_at(wake_at.unwrap_or(0))), if wake_at.is_some() => {}
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    info!(sending = self.sending, "scheduler stopping; pending receipts stay in the store");
                }
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Wake(chat, due) => self.set_timer(chat, due),
            Command::Done(done) => {
                self.sending -= 1;
                self.taken.remove(&done.id);
                if let Some(until) = done.pause_until {
                    let now = self.delivery.clock.now_ms();
                    let burst = self.delivery.settings.burst;
                    self.buckets
                        .entry(done.chat.session.clone())
                        .or_insert_with(|| Bucket::new(burst, now))
                        .pause(until);
                }
                if let Some(at) = done.wake_at {
                    self.set_timer(done.chat, at);
                }
            }
        }
    }

    fn set_timer(&mut self, chat: ChatKey, due: i64) {
        match self.chat_due.get(&chat) {
            Some(&current) if current <= due => {}
            Some(&current) => {
                self.timers.remove(&(current, chat.clone()));
                self.timers.insert((due, chat.clone()));
                self.chat_due.insert(chat, due);
            }
            None => {
                self.timers.insert((due, chat.clone()));
                self.chat_due.insert(chat, due);
            }
        }
    }

    /// Most receipts held in memory per session waiting for a token; more stay on disk until there is room.
    fn ready_cap(&self) -> usize {
        (self.delivery.settings.max_in_flight * 4).max(1024)
    }

    async fn fire_due(&mut self, now: i64) {
        let cap = self.ready_cap();
        // First the chats that waited for room, for sessions that have room again.
        let sessions: Vec<SessionName> = self.backlog.keys().cloned().collect();
        for session in sessions {
            while self.ready.get(&session).map_or(0, VecDeque::len) < cap / 2 {
                let Some(chat) = self.backlog.get_mut(&session).and_then(VecDeque::pop_front)
                else {
                    self.backlog.remove(&session);
                    break;
                };
                self.fire(chat, now).await;
            }
        }
        while let Some((due, _)) = self.timers.first() {
            if *due > now {
                break;
            }
            let (_, chat) = self.timers.pop_first().expect("just looked");
            self.chat_due.remove(&chat);
            let full = self
                .ready
                .get(&chat.session)
                .is_some_and(|q| q.len() >= cap);
            if full || self.backlog.contains_key(&chat.session) {
                self.backlog
                    .entry(chat.session.clone())
                    .or_default()
                    .push_back(chat);
                continue;
            }
            self.fire(chat, now).await;
        }
    }

    /// Loads a due chat: every receipt whose window is open joins the batch; the rest get a new timer.
    async fn fire(&mut self, chat: ChatKey, now: i64) {
        let receipts = match self.delivery.store.chat_receipts(&chat).await {
            Ok(r) => r,
            Err(e) => {
                error!(session = %chat.session, chat = %chat.chat, error = %e, "cannot load pending receipts");
                self.set_timer(chat, now + STORE_RETRY_MS);
                return;
            }
        };
        let waiting: Vec<Receipt> = receipts
            .into_iter()
            .filter(|r| !self.taken.contains(&r.id))
            .collect();
        let any_due = waiting.iter().any(|r| r.due_at_ms <= now);
        let mut later: Option<i64> = None;
        for r in waiting {
            if any_due && r.not_before_ms <= now {
                self.taken.insert(r.id);
                let queue = self.ready.entry(r.session.clone()).or_default();
                if queue.is_empty() {
                    self.turns.push_back(r.session.clone());
                }
                queue.push_back(r);
            } else {
                // Never before its window opens, whatever its due time says.
                later = min_opt(later, Some(r.due_at_ms.max(r.not_before_ms)));
            }
        }
        if let Some(at) = later {
            self.set_timer(chat, at);
        }
    }

    /// Starts sends while sessions have tokens and `max_in_flight` allows; returns when a token comes next.
    fn dispatch(&mut self, now: i64) -> Option<i64> {
        let settings = &self.delivery.settings;
        let mut next_token = None;
        let mut blocked = Vec::new();
        while self.sending < settings.max_in_flight {
            let Some(session) = self.turns.pop_front() else {
                break;
            };
            let bucket = self
                .buckets
                .entry(session.clone())
                .or_insert_with(|| Bucket::new(settings.burst, now));
            if let Err(at) = bucket.try_take(settings.rate_per_session, settings.burst, now) {
                next_token = min_opt(next_token, Some(at));
                blocked.push(session);
                continue;
            }
            let queue = self
                .ready
                .get_mut(&session)
                .expect("a session in turn has a queue");
            let receipt = queue.pop_front().expect("a session in turn has receipts");
            if queue.is_empty() {
                self.ready.remove(&session);
            } else {
                self.turns.push_back(session);
            }
            self.sending += 1;
            tokio::spawn(deliver(self.delivery.clone(), receipt, self.tx.clone()));
        }
        self.turns.extend(blocked);
        next_token
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sends one receipt and records the outcome: done, retry later, or dead.
async fn deliver(d: Arc<Delivery>, r: Receipt, tx: mpsc::UnboundedSender<Command>) {
    let attempt = r.attempts + 1;
    let started = StdInstant::now();
    let result = d.client.send_seen(&r.session, &r.chat, &r.message_id).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    metrics::histogram!("autoseen_send_seen_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    let now = d.clock.now_ms();
    let status = match &result {
        Ok(status) => *status,
        Err(e) => e.status(),
    };
    metrics::counter!("autoseen_send_seen_responses_total", "status" => status.unwrap_or(0).to_string()).increment(1);
    let mut pause_until = None;
    let (outcome, stored) = match result {
        Ok(_) => ("sent", d.store.complete(r.id).await.map(|_| None)),
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
            let at = now + wait.as_millis() as i64;
            if status == Some(429) {
                pause_until = Some(at);
            }
            warn!(
                session = %r.session, chat = %r.chat, message_id = %r.message_id, rule = %r.rule,
                attempt, status, duration_ms, error = %reason, retry_in_ms = at - now,
                "sendSeen failed; will retry"
            );
            (
                "retry",
                d.store
                    .retry_later(r.id, attempt, at, &reason)
                    .await
                    .map(|_| Some(at)),
            )
        }
        Err(SendError::Unauthorized { status, message }) => {
            // The key is wrong for this session: every call would fail alike. Pause the session, keep its
            // receipts (this attempt does not count), and let the other sessions go on.
            let at = now + d.settings.auth_pause.as_millis() as i64;
            pause_until = Some(at);
            error!(
                session = %r.session, status, error = %message, pause_ms = at - now,
                "Wasend refused this session's API key; the session is paused, its receipts wait"
            );
            let reason = format!("HTTP {status}: {message}");
            (
                "paused",
                d.store
                    .retry_later(r.id, r.attempts, at, &reason)
                    .await
                    .map(|_| Some(at)),
            )
        }
        Err(e) => {
            error!(
                session = %r.session, chat = %r.chat, message_id = %r.message_id, rule = %r.rule,
                attempt, status, duration_ms, error = %e,
                "sendSeen failed for good; moved to dead letters"
            );
            (
                "dead",
                d.store
                    .bury(r.id, attempt, &e.to_string(), now)
                    .await
                    .map(|_| None),
            )
        }
    };
    let session = r.session.to_string();
    let counter = match outcome {
        "sent" => "autoseen_receipts_sent_total",
        "retry" => "autoseen_receipts_retried_total",
        "paused" => "autoseen_session_paused_total",
        _ => "autoseen_receipts_dead_total",
    };
    metrics::counter!(counter, "session" => session).increment(1);
    if outcome == "sent" {
        info!(
            session = %r.session, chat = %r.chat, message_id = %r.message_id, rule = %r.rule,
            attempt, status, duration_ms, late_ms = now - r.due_at_ms.max(r.not_before_ms), "marked seen"
        );
    }
    let wake_at = match stored {
        Ok(at) => at,
        Err(e) => {
            // The outcome is not recorded: the receipt is still pending and will be tried again.
            error!(session = %r.session, message_id = %r.message_id, error = %e, outcome, "cannot record send outcome");
            Some(now + STORE_RETRY_MS)
        }
    };
    let _ = tx.send(Command::Done(Done {
        id: r.id,
        chat: r.chat_key(),
        wake_at,
        pause_until,
    }));
}

#[cfg(test)]
mod tests;
