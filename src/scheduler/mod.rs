//! Pending receipts in time: one task holds a timer per chat, hands each chat's due receipts to the sender as
//! a batch, paces each session, and records every outcome in the store.
//!
//! Only what falls due soon is in memory. The store is read in due order, a page at a time, up to
//! [`LEAD`] ahead of now (and at most [`MAX_TIMERS`] chats' worth while a backlog drains); a receipt accepted
//! due later is left to that reading, so a million receipts due in an hour cost no memory at all, and a
//! restart reads one page, not every chat. The timer structure is per chat, not per receipt: a `BTreeSet` of
//! (due, chat), and the receipts themselves stay on disk until their chat fires. Chats that fall due
//! together are loaded in one round trip to the store. When a chat fires, every receipt of the chat whose
//! window is open goes out together, like a person opening the chat; the rest wait for their own time. Pacing counts API calls: the sender says how many calls
//! a batch takes, and a batch goes out with as many of its receipts as the session has tokens for. Sends run
//! as tasks, bounded by `max_in_flight` calls; each task writes its outcomes (done, retry later, dead) to the
//! store in one commit before reporting back, so nothing is lost if the process dies mid-way.

mod acks;
mod config;
mod delivery;
mod handle;
pub mod leases;
mod ownership;
pub mod pacing;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::DeliverySettings;
use delivery::{Delivery, deliver};
pub use handle::SchedulerHandle;
use pacing::Bucket;

use crate::activity::Activity;
use crate::domain::{ChatKey, MessageKey, SessionName};
use crate::gateway::MarkRead;
use crate::metric_names as names;
use crate::store::cluster::{Cluster, Fence, Lease, ReplicaId};
use crate::store::{DueCursor, DueQuery, Queue, Receipt, ReceiptId, StoreError};
use crate::time::{Clock, add, from_millis};

/// With several replicas, the pending chats of the sessions held are reloaded at a heartbeat at least this
/// long after the last reload, besides whenever the holdings change.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// How long a chat waits before the store is asked again after a store error.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How far ahead of now the scheduler holds timers; the store is read again when half of it has passed.
const LEAD: Duration = Duration::from_secs(10);
/// Receipts read from the store in one query.
const PAGE: usize = 4096;
/// Chats with timers past which no more are read ahead (a backlog drains this many chats at a time).
const MAX_TIMERS: usize = 50_000;
/// Due chats loaded from the store in one round trip.
const FIRE_BATCH: usize = 512;

enum Command {
    /// A receipt of this chat is due at this time.
    Wake(ChatKey, Timestamp),
    /// A send task finished and its outcomes are in the store.
    Done(Done),
    /// This account read a message (on the phone, another device, or by our own sendSeen).
    Ack(AckRequest),
    /// The sessions this replica holds now (several replicas on one store).
    Leases(Vec<Lease>),
}

struct AckRequest {
    message: MessageKey,
    /// Read: the chat up to the message. Deleted: the message alone.
    kind: AckKind,
    reply: oneshot::Sender<Result<AckResult, StoreError>>,
}

/// What an ack says about a message we received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// This account read it (and so everything before it in its chat).
    Read,
    /// Its sender deleted it for everyone: it alone is no longer to be marked.
    Deleted,
}

/// What an ack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckResult {
    /// Receipts not yet handed to the sender that will never be sent: the owner already opened the chat.
    pub cancelled: u64,
    /// Receipts sent or in flight that the ack confirms.
    pub confirmed: u64,
}

struct Done {
    ids: Vec<ReceiptId>,
    calls: usize,
    chat: ChatKey,
    /// The chat has a receipt due again at this time (a retry, or a store hiccup).
    wake_at: Option<Timestamp>,
    /// The API said 429, or refused the key: the session waits until then.
    pause_until: Option<Timestamp>,
}

pub struct Scheduler {
    delivery: Arc<Delivery>,
    tx: mpsc::UnboundedSender<Command>,
    rx: mpsc::UnboundedReceiver<Command>,
    timers: BTreeSet<(Timestamp, ChatKey)>,
    chat_due: HashMap<ChatKey, Timestamp>,
    /// Loaded receipts waiting for their session's token, per session, in due order; a chat's batch is
    /// contiguous.
    ready: HashMap<SessionName, VecDeque<Receipt>>,
    /// Sessions with ready receipts, in turn.
    turns: VecDeque<SessionName>,
    /// Chats that fell due while their session already had a full ready queue: loaded as it drains.
    backlog: HashMap<SessionName, VecDeque<ChatKey>>,
    buckets: HashMap<SessionName, Bucket>,
    /// Ids loaded from the store and not yet finished (ready or sending): never loaded twice.
    taken: HashSet<ReceiptId>,
    /// Ids handed to the sender and not yet finished.
    in_flight: HashSet<ReceiptId>,
    /// Acks waiting to be handled (they need the store, which `handle` cannot wait for).
    acks: Vec<AckRequest>,
    /// API calls in flight.
    sending: usize,
    /// When reading the store failed (a database down at start), when to try again.
    load_again_at: Option<Timestamp>,
    /// Timers are held for receipts due up to this moment (shared with the handle, which drops later wakes).
    held_until: Arc<AtomicI64>,
    /// Where the reading of the store in due order has got to; `None`: from the start.
    cursor: Option<DueCursor>,
    /// Whether every receipt due by `held_until` has been read (else the next page waits for room).
    read_all: bool,
    /// With several replicas, the sessions this one holds and under which fence; `None`: every session.
    owned: Option<HashMap<SessionName, Fence>>,
    /// The lease holdings changed: reload the pending chats of the sessions held.
    reload_owned: bool,
    /// When the held sessions' chats were last reloaded.
    last_reload: tokio::time::Instant,
    unheld: Arc<tokio::sync::Notify>,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Queue>,
        client: Arc<dyn MarkRead>,
        clock: Clock,
        settings: DeliverySettings,
    ) -> (Self, SchedulerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let unheld = Arc::new(tokio::sync::Notify::new());
        let held_until = Arc::new(AtomicI64::new(i64::MIN));
        let handle = SchedulerHandle {
            tx: tx.clone(),
            held_until: held_until.clone(),
            unheld: unheld.clone(),
        };
        let scheduler = Self {
            delivery: Arc::new(Delivery {
                store,
                client,
                clock,
                settings,
                cluster: None,
                activity: Activity::default(),
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
            in_flight: HashSet::new(),
            acks: Vec::new(),
            sending: 0,
            load_again_at: None,
            held_until,
            cursor: None,
            read_all: false,
            owned: None,
            reload_owned: false,
            last_reload: tokio::time::Instant::now(),
            unheld,
        };
        (scheduler, handle)
    }

    /// Sends only the sessions the cluster's leases give this replica (see [`leases`]); until the first
    /// heartbeat, none.
    pub fn with_cluster(mut self, cluster: Arc<dyn Cluster>, replica: ReplicaId) -> Self {
        Arc::get_mut(&mut self.delivery)
            .expect("not shared before running")
            .cluster = Some((cluster, replica));
        self.owned = Some(HashMap::new());
        self
    }

    /// Reports every send's outcome and every pause to `activity`.
    pub fn with_activity(mut self, activity: Activity) -> Self {
        Arc::get_mut(&mut self.delivery)
            .expect("not shared before running")
            .activity = activity;
        self
    }

    /// Reads the store in due order up to [`LEAD`] ahead, page by page, while there is room for timers:
    /// overdue receipts fire at once, paced like any other. Returns how many receipts it read. When the store
    /// cannot answer (a database that is down at start), the scheduler tries again every second once it runs,
    /// so the service starts anyway and catches up when the store is back.
    ///
    /// The moment timers are held up to is raised before the read: a receipt committed after it is due
    /// either by then (its wake is kept) or later (a later read finds it), so none falls between the two.
    pub async fn load(&mut self) -> Result<usize, StoreError> {
        let now = self.delivery.clock.now();
        let until = add(now, LEAD).as_millisecond();
        self.held_until.fetch_max(until, Ordering::SeqCst);
        if self.owned.as_ref().is_some_and(HashMap::is_empty) {
            // Several replicas, holding nothing yet: nothing is read. Wakes come through all the same, so work
            // for a session nobody holds brings the heartbeat forward.
            self.read_all = true;
            return Ok(0);
        }
        self.read_all = false;
        let until = from_millis(self.held_until.load(Ordering::SeqCst));
        let mut read = 0;
        while self.timers.len() < MAX_TIMERS {
            let query = DueQuery {
                after: self.cursor,
                until,
                limit: PAGE,
            };
            let page = self.delivery.store.due_heads(query).await;
            self.load_again_at = page
                .is_err()
                .then(|| add(self.delivery.clock.now(), STORE_RETRY));
            let page = page?;
            read += page.len();
            let full = page.len() == PAGE;
            for head in page {
                self.cursor = Some(head.at);
                self.set_timer(head.chat, head.at.due_at);
            }
            if !full {
                self.read_all = true;
                break;
            }
        }
        Ok(read)
    }

    /// When the store is to be read next: a second after a failed read; half the lead before the held
    /// moment once all of it is read; at once while a backlog left receipts unread and there is room for their
    /// timers (else when the timers drain).
    fn next_read(&self, now: Timestamp) -> Option<Timestamp> {
        if self.load_again_at.is_some() {
            return self.load_again_at;
        }
        if self.read_all {
            let held = from_millis(self.held_until.load(Ordering::SeqCst));
            return Some(held - jiff::SignedDuration::try_from(LEAD / 2).expect("small"));
        }
        (self.timers.len() < MAX_TIMERS / 2).then_some(now)
    }

    /// Runs until `shutdown` is cancelled and the sends in flight have finished.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let clock = self.delivery.clock;
        let mut stopping = false;
        loop {
            let now = clock.now();
            let mut next_wake = None;
            for ack in std::mem::take(&mut self.acks) {
                let result = self.apply_ack(&ack.message, ack.kind).await;
                let _ = ack.reply.send(result);
            }
            if self.reload_owned && !stopping {
                // Read the held sessions' receipts again from the start.
                self.reload_owned = false;
                self.cursor = None;
                self.read_all = false;
                self.load_again_at = None;
            }
            if !stopping && self.next_read(now).is_some_and(|at| at <= now) {
                let retrying = self.load_again_at.is_some();
                match self.load().await {
                    Ok(read) if retrying => info!(read, "pending receipts read again"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot read pending receipts; trying again"),
                }
            }
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
            let next_read = if stopping { None } else { self.next_read(now) };
            let wake_at = min_opt(min_opt(next_timer, next_wake), next_read);
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    while let Ok(cmd) = self.rx.try_recv() {
                        self.handle(cmd);
                    }
                }
                _ = tokio::time::sleep_until(clock.instant_at(wake_at.unwrap_or(now))), if wake_at.is_some() => {}
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
            Command::Ack(ack) => self.acks.push(ack),
            Command::Leases(leases) => self.apply_leases(leases),
            Command::Done(done) => {
                self.sending -= done.calls;
                for id in &done.ids {
                    self.taken.remove(id);
                    self.in_flight.remove(id);
                }
                if let Some(until) = done.pause_until {
                    let now = self.delivery.clock.now();
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

    fn set_timer(&mut self, chat: ChatKey, due: Timestamp) {
        if !self.owns(&chat.session) {
            // Another replica sends this session and hears of the receipt from the store, or nobody holds it
            // yet: the heartbeat runs early to see.
            self.unheld.notify_one();
            return;
        }
        if due.as_millisecond() > self.held_until.load(Ordering::SeqCst) {
            // Due after the held moment: the store is read for it when its time comes near.
            return;
        }
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

    async fn fire_due(&mut self, now: Timestamp) {
        let cap = self.ready_cap();
        // First the chats that waited for room, for sessions that have room again.
        let mut due = Vec::new();
        let sessions: Vec<SessionName> = self.backlog.keys().cloned().collect();
        for session in sessions {
            let room = cap / 2;
            let mut taken = self.ready.get(&session).map_or(0, VecDeque::len);
            while taken < room && due.len() < FIRE_BATCH {
                let Some(chat) = self.backlog.get_mut(&session).and_then(VecDeque::pop_front)
                else {
                    self.backlog.remove(&session);
                    break;
                };
                due.push(chat);
                // A chat's receipts are not counted before they are loaded: count at least one each.
                taken += 1;
            }
        }
        loop {
            while due.len() < FIRE_BATCH {
                let Some((at, _)) = self.timers.first() else {
                    break;
                };
                if *at > now {
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
                due.push(chat);
            }
            if due.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut due);
            let more = batch.len() == FIRE_BATCH;
            self.fire(batch, now).await;
            if !more {
                return;
            }
        }
    }

    /// Loads due chats in one round trip: in each, every receipt whose window is open joins the send batch;
    /// the rest get a new timer.
    async fn fire(&mut self, chats: Vec<ChatKey>, now: Timestamp) {
        let receipts = match self.delivery.store.chats_receipts(&chats).await {
            Ok(r) => r,
            Err(e) => {
                error!(chats = chats.len(), error = %e, "cannot load pending receipts");
                for chat in chats {
                    self.set_timer(chat, add(now, STORE_RETRY));
                }
                return;
            }
        };
        let mut by_chat: HashMap<ChatKey, Vec<Receipt>> = HashMap::with_capacity(chats.len());
        for r in receipts {
            if !self.taken.contains(&r.id) {
                by_chat.entry(r.chat_key()).or_default().push(r);
            }
        }
        for chat in chats {
            let waiting = by_chat.remove(&chat).unwrap_or_default();
            self.fire_chat(chat, waiting, now).await;
        }
    }

    /// One due chat's receipts, not yet taken, earliest due first.
    async fn fire_chat(&mut self, chat: ChatKey, waiting: Vec<Receipt>, now: Timestamp) {
        let (expired, waiting): (Vec<Receipt>, Vec<Receipt>) = waiting
            .into_iter()
            .partition(|r| r.expires && r.due_at <= now);
        if !expired.is_empty() {
            self.expire(&chat, expired, now).await;
        }
        let any_due = waiting.iter().any(|r| r.due_at <= now);
        let mut later: Option<Timestamp> = None;
        for r in waiting {
            if any_due && r.not_before <= now {
                self.taken.insert(r.id);
                let queue = self.ready.entry(r.session.clone()).or_default();
                if queue.is_empty() {
                    self.turns.push_back(r.session.clone());
                }
                queue.push_back(r);
            } else {
                // Never before its window opens, whatever its due time says.
                later = min_opt(later, Some(r.due_at.max(r.not_before)));
            }
        }
        if let Some(at) = later {
            self.set_timer(chat, at);
        }
    }

    /// Drops receipts held for a reply that never came (`on_reply` without `max_wait`, at the end of the dedup
    /// window).
    async fn expire(&mut self, chat: &ChatKey, expired: Vec<Receipt>, now: Timestamp) {
        match self
            .delivery
            .store
            .cancel(expired.iter().map(|r| r.id).collect())
            .await
        {
            Ok(n) => {
                metrics::counter!(names::RECEIPTS_CANCELLED, "reason" => "expired").increment(n);
                info!(session = %chat.session, chat = %chat.chat, receipts = n, "receipts held for a reply expired unsent");
            }
            Err(e) => {
                error!(session = %chat.session, chat = %chat.chat, error = %e, "cannot drop expired receipts");
                self.set_timer(chat.clone(), add(now, STORE_RETRY));
            }
        }
    }

    /// Starts sends while sessions have tokens and `max_in_flight` allows; returns when a token comes next.
    ///
    /// Each turn takes the session's next chat batch: its front receipt, and the receipts of the same chat
    /// behind it for as long as the batch's calls fit in the session's tokens and in `max_in_flight`.
    fn dispatch(&mut self, now: Timestamp) -> Option<Timestamp> {
        let settings = &self.delivery.settings;
        let client = &self.delivery.client;
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
            let queue = self
                .ready
                .get_mut(&session)
                .expect("a session in turn has a queue");
            let mut batch: Vec<Receipt> = Vec::new();
            let mut calls = 0;
            while let Some(next) = queue.front() {
                if batch
                    .first()
                    .is_some_and(|first: &Receipt| first.chat != next.chat)
                {
                    break;
                }
                let needed = client.calls_for(&session, batch.len() + 1);
                if needed > calls {
                    if self.sending + needed > settings.max_in_flight && !batch.is_empty() {
                        break;
                    }
                    if let Err(at) = bucket.try_take(settings.rate_per_session, settings.burst, now)
                    {
                        next_token = min_opt(next_token, Some(at));
                        break;
                    }
                    calls = needed;
                }
                batch.push(queue.pop_front().expect("just looked"));
            }
            if batch.is_empty() {
                blocked.push(session);
                continue;
            }
            let fence = self.owned.as_ref().and_then(|o| o.get(&session)).cloned();
            if queue.is_empty() {
                self.ready.remove(&session);
            } else {
                self.turns.push_back(session);
            }
            self.sending += calls;
            self.in_flight.extend(batch.iter().map(|r| r.id));
            tokio::spawn(deliver(
                self.delivery.clone(),
                batch,
                calls,
                fence,
                self.tx.clone(),
            ));
        }
        self.turns.extend(blocked);
        next_token
    }
}

fn min_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
