//! The scheduler on tokio's paused clock, against an in-memory store and a fake sender: timing is exact and
//! the tests take no real time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pacing::Rate;
use super::*;
use crate::domain::{ChatId, MessageId};
use crate::gateway::{SendError, SendResult};
use crate::store::memory::MemoryStore;
use crate::store::{Accepted, NewReceipt, Operator};
use crate::time::{from_millis, millis_between};

const T0_MS: i64 = 1_800_000_000_000;

fn t0() -> Timestamp {
    from_millis(T0_MS)
}

/// Records every message it is asked to mark with its (virtual) time, answering from a per-session script,
/// then 200. With `ids_per_call` above 1 it marks that many messages of a chat in one call, as WAHA does.
#[derive(Default)]
struct FakeSender {
    calls: Mutex<Vec<(Duration, String, String)>>,
    batches: Mutex<Vec<Vec<String>>>,
    script: Mutex<HashMap<String, VecDeque<SendError>>>,
    start: Mutex<Option<Instant>>,
    ids_per_call: usize,
}

impl FakeSender {
    fn fail(&self, session: &str, errors: impl IntoIterator<Item = SendError>) {
        self.script
            .lock()
            .unwrap()
            .entry(session.into())
            .or_default()
            .extend(errors);
    }

    /// (ms since start, session, message id) of every call.
    fn calls(&self) -> Vec<(u64, String, String)> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .map(|(t, s, m)| (t.as_millis() as u64, s.clone(), m.clone()))
            .collect()
    }

    fn times_of(&self, message: &str) -> Vec<u64> {
        self.calls()
            .into_iter()
            .filter(|c| c.2 == message)
            .map(|c| c.0)
            .collect()
    }
}

#[async_trait::async_trait]
impl MarkRead for FakeSender {
    fn calls_for(&self, _: &SessionName, ids: usize) -> usize {
        ids.div_ceil(self.ids_per_call.max(1))
    }

    async fn mark_read(
        &self,
        session: &SessionName,
        _: &ChatId,
        _phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        let at = self.start.lock().unwrap().expect("started").elapsed();
        self.batches
            .lock()
            .unwrap()
            .push(ids.iter().map(ToString::to_string).collect());
        ids.iter()
            .map(|id| {
                self.calls
                    .lock()
                    .unwrap()
                    .push((at, session.to_string(), id.to_string()));
                match self
                    .script
                    .lock()
                    .unwrap()
                    .get_mut(session.as_str())
                    .and_then(VecDeque::pop_front)
                {
                    Some(e) => Err(e),
                    None => Ok(Some(200)),
                }
            })
            .collect()
    }
}

struct Harness {
    store: Arc<MemoryStore>,
    sender: Arc<FakeSender>,
    clock: Clock,
    handle: SchedulerHandle,
    stop: CancellationToken,
}

fn settings() -> DeliverySettings {
    DeliverySettings {
        max_attempts: 5,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        rate_per_session: Rate::Off,
        burst: 5,
        max_in_flight: 8,
        auth_pause: Duration::from_secs(60),
    }
}

/// The test settings with pacing at `per_second` after a burst of `burst`.
fn paced(per_second: f64, burst: u32) -> DeliverySettings {
    DeliverySettings {
        rate_per_session: Rate::PerSecond(per_second),
        burst,
        ..settings()
    }
}

async fn start(settings: DeliverySettings) -> Harness {
    start_with(settings, FakeSender::default()).await
}

async fn start_with(settings: DeliverySettings, sender: FakeSender) -> Harness {
    let store = Arc::new(MemoryStore::default());
    let sender = Arc::new(sender);
    *sender.start.lock().unwrap() = Some(Instant::now());
    let clock = Clock::starting_at(t0());
    let (mut scheduler, handle) = Scheduler::new(store.clone(), sender.clone(), clock, settings);
    scheduler.load().await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(scheduler.run(stop.clone()));
    Harness {
        store,
        sender,
        clock,
        handle,
        stop,
    }
}

impl Harness {
    /// Accepts a receipt `due_ms` from now that may not go before `not_before_ms` from now.
    async fn accept(&self, session: &str, chat: &str, id: &str, due_ms: i64, not_before_ms: i64) {
        let now = self.clock.now();
        let due = from_millis(now.as_millisecond() + due_ms);
        let receipt = NewReceipt {
            session: SessionName::parse(session).unwrap(),
            chat: ChatId::parse(chat).unwrap(),
            chat_phone: None,
            message_id: MessageId::parse(id).unwrap(),
            rule: "test".into(),
            due_at: due,
            not_before: from_millis(now.as_millisecond() + not_before_ms),
            read_on_reply: true,
            on_reply: false,
            expires: false,
            accepted_at: now,
        };
        let chat = ChatKey {
            session: receipt.session.clone(),
            chat: receipt.chat.clone(),
        };
        assert!(matches!(
            self.store.accept(receipt).await.unwrap(),
            Accepted::New { .. }
        ));
        self.handle.wake(chat, due);
    }

    /// Lets virtual time pass.
    async fn after(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_receipt_goes_out_at_its_due_time_and_not_before() {
    let h = start(settings()).await;
    h.accept("s", "1@c.us", "m1", 5_000, 0).await;

    h.after(4_990).await;
    assert!(h.sender.calls().is_empty());
    h.after(20).await;

    assert_eq!(h.sender.times_of("m1"), [5_000]);
    h.after(10).await;
    assert!(h.store.list_pending(10).await.unwrap().is_empty());
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_chat_goes_out_together_when_its_earliest_receipt_is_due() {
    let h = start(settings()).await;
    h.accept("s", "1@c.us", "late", 9_000, 0).await;
    h.accept("s", "1@c.us", "early", 2_000, 0).await;
    h.accept("s", "1@c.us", "window-closed", 3_000, 6_000).await;
    h.accept("s", "2@c.us", "other-chat", 9_000, 0).await;

    h.after(2_100).await;
    let mut sent: Vec<String> = h.sender.calls().into_iter().map(|c| c.2).collect();
    sent.sort();
    assert_eq!(
        sent,
        ["early", "late"],
        "the chat's batch, without the one whose window is closed"
    );
    h.after(7_000).await;

    assert_eq!(h.sender.times_of("window-closed"), [6_000]);
    assert_eq!(h.sender.times_of("other-chat"), [9_000]);
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_session_is_paced_by_its_rate_after_the_burst() {
    let h = start(paced(2.0, 2)).await;
    for i in 0..6 {
        h.accept("paced", &format!("{i}@c.us"), &format!("m{i}"), 0, 0)
            .await;
    }
    h.accept("other", "9@c.us", "free", 0, 0).await;

    h.after(5_000).await;

    let paced: Vec<u64> = h
        .sender
        .calls()
        .into_iter()
        .filter(|c| c.1 == "paced")
        .map(|c| c.0)
        .collect();
    assert_eq!(paced, [0, 0, 500, 1_000, 1_500, 2_000]);
    assert_eq!(
        h.sender.times_of("free"),
        [0],
        "another session is not held back"
    );
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn failed_sends_are_retried_within_the_backoff_ceilings_then_buried() {
    let h = start(settings()).await;
    let boom = || SendError::Retryable {
        reason: "HTTP 500".into(),
        status: Some(500),
        retry_after: None,
    };
    h.sender.fail("s", (0..5).map(|_| boom()));
    h.accept("s", "1@c.us", "m1", 0, 0).await;

    h.after(10_000).await;

    let times = h.sender.times_of("m1");
    assert_eq!(times.len(), 5, "max_attempts calls: {times:?}");
    for (i, gap) in times.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let ceiling = 400.min(100 << i);
        assert!(
            gap <= ceiling,
            "wait {i} was {gap} ms, ceiling {ceiling} ms"
        );
    }
    let dead = h.store.list_dead(10).await.unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 5));
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_pauses_only_that_session() {
    let h = start(settings()).await;
    h.sender.fail(
        "busy",
        [SendError::Retryable {
            reason: "HTTP 429".into(),
            status: Some(429),
            retry_after: Some(Duration::from_secs(3)),
        }],
    );
    h.accept("busy", "1@c.us", "first", 0, 0).await;
    h.after(100).await;
    h.accept("busy", "2@c.us", "second", 0, 0).await;
    h.accept("calm", "3@c.us", "calm", 0, 0).await;

    h.after(5_000).await;

    assert_eq!(h.sender.times_of("first"), [0, 3_000]);
    assert_eq!(
        h.sender.times_of("second"),
        [3_000],
        "the session waited as asked"
    );
    assert_eq!(h.sender.times_of("calm"), [100]);
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_refused_key_pauses_the_session_without_using_up_attempts() {
    let h = start(settings()).await;
    h.sender.fail(
        "revoked",
        [SendError::Unauthorized {
            status: 401,
            message: "bad key".into(),
        }],
    );
    h.accept("revoked", "1@c.us", "m1", 0, 0).await;

    h.after(59_000).await;
    assert_eq!(h.sender.times_of("m1"), [0]);
    h.after(2_000).await;

    assert_eq!(
        h.sender.times_of("m1"),
        [0, 60_000],
        "tried again after auth_pause"
    );
    assert!(h.store.list_dead(10).await.unwrap().is_empty());
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn pending_receipts_are_loaded_at_start_and_overdue_ones_go_at_once() {
    let store = Arc::new(MemoryStore::default());
    for (i, due) in [(0, T0_MS - 60_000), (1, T0_MS + 1_000)] {
        let due = from_millis(due);
        store
            .accept(NewReceipt {
                session: SessionName::parse("s").unwrap(),
                chat: ChatId::parse(&format!("{i}@c.us")).unwrap(),
                chat_phone: None,
                message_id: MessageId::parse(&format!("m{i}")).unwrap(),
                rule: "test".into(),
                due_at: due,
                not_before: due,
                read_on_reply: true,
                on_reply: false,
                expires: false,
                accepted_at: due,
            })
            .await
            .unwrap();
    }
    let sender = Arc::new(FakeSender::default());
    *sender.start.lock().unwrap() = Some(Instant::now());
    let (mut scheduler, _handle) =
        Scheduler::new(store, sender.clone(), Clock::starting_at(t0()), settings());

    assert_eq!(scheduler.load().await.unwrap(), 2);
    let stop = CancellationToken::new();
    tokio::spawn(scheduler.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    assert_eq!(sender.times_of("m0"), [0]);
    assert_eq!(sender.times_of("m1"), [1_000]);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_sender_gets_a_chats_due_receipts_as_one_batch() {
    let h = start_with(
        paced(1.0, 1),
        FakeSender {
            ids_per_call: 100,
            ..FakeSender::default()
        },
    )
    .await;
    for id in ["a", "b", "c"] {
        h.accept("s", "1@g.us", id, 1_000, 0).await;
    }
    h.accept("s", "2@g.us", "other", 1_000, 0).await;

    h.after(1_100).await;
    let first = h.sender.batches.lock().unwrap().clone();
    h.after(1_000).await;

    assert_eq!(
        first,
        [vec!["a", "b", "c"]],
        "one call for the chat, one token for the call"
    );
    let other_chat = h.sender.times_of("other");
    h.stop.cancel();
    assert_eq!(
        other_chat,
        [2_000],
        "the next chat waits for the next token"
    );
}

#[tokio::test(start_paused = true)]
async fn one_message_per_call_takes_one_token_per_message() {
    let h = start(paced(1.0, 2)).await;
    for id in ["a", "b", "c"] {
        h.accept("s", "1@c.us", id, 0, 0).await;
    }

    h.after(1_500).await;

    assert_eq!(
        h.sender.batches.lock().unwrap().clone(),
        [vec!["a", "b"], vec!["c"]],
        "the burst's two tokens, then the next token"
    );
    assert_eq!(h.sender.times_of("c"), [1_000]);
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_closed_window_delays_the_call_until_it_opens() {
    let rules = crate::rules::compile(&[(
        "rules.toml".into(),
        r#"
[defaults]
delay = "0s"
windows = [{ days = "daily", hours = "09:00-10:00", tz = "UTC" }]
"#
        .into(),
    )])
    .unwrap();
    let h = start(settings()).await;
    // t0 is 08:00 UTC: the window opens in an hour.
    assert_eq!(t0().to_string(), "2027-01-15T08:00:00Z");
    let message = crate::domain::IncomingMessage {
        session: SessionName::parse("s").unwrap(),
        chat: ChatId::parse("1@c.us").unwrap(),
        id: MessageId::parse("m-window").unwrap(),
        sender: ChatId::parse("1@c.us").unwrap(),
        from_me: false,
        text: None,
        has_media: false,
        sent_at: None,
        chat_phone: None,
        sender_phone: None,
        engine: None,
        gateway: crate::domain::Gateway::Wasend,
    };
    let crate::rules::Decision::Seen { not_before, .. } = rules.decide(&message, h.clock.now())
    else {
        panic!("the defaults mark it seen");
    };
    let wait_ms = millis_between(h.clock.now(), not_before);
    h.accept("s", "1@c.us", "m-window", wait_ms, wait_ms).await;

    h.after(3_599_000).await;
    assert!(
        h.sender.calls().is_empty(),
        "nothing while the window is closed"
    );
    h.after(2_000).await;
    let sent = h.sender.times_of("m-window");
    h.stop.cancel();

    assert_eq!(sent, [3_600_000], "sent as the window opens");
}

#[tokio::test(start_paused = true)]
async fn an_ack_takes_receipts_waiting_for_a_token_out_of_the_queue_and_none_is_sent() {
    let h = start(paced(1.0, 1)).await;
    for bare in ["A", "B", "C"] {
        h.accept("s", "1@c.us", &format!("false_1@c.us_{bare}"), 0, 0)
            .await;
    }
    h.after(100).await;
    assert_eq!(h.sender.calls().len(), 1, "the burst's one token");

    let message = crate::domain::MessageKey {
        session: SessionName::parse("s").unwrap(),
        bare: crate::domain::BareMessageId::parse("C").unwrap(),
    };
    let acked = h.handle.ack(message).await.unwrap();
    h.after(5_000).await;

    assert_eq!(
        acked,
        AckResult {
            cancelled: 2,
            confirmed: 0
        }
    );
    assert_eq!(h.sender.calls().len(), 1, "nothing after the ack");
    assert!(h.store.list_pending(10).await.unwrap().is_empty());
    h.stop.cancel();
}
