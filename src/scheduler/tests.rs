//! The scheduler on tokio's paused clock, against an in-memory store and a fake sender: timing is exact and
//! the tests take no real time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::domain::{ChatId, MessageId};
use crate::settings::Rate;
use crate::store::memory::MemoryStore;
use crate::store::{Accepted, NewReceipt};

const T0: i64 = 1_800_000_000_000;

/// Records every call with its (virtual) time, answering from a per-session script, then 200.
#[derive(Default)]
struct FakeSender {
    calls: Mutex<Vec<(Duration, String, String)>>,
    script: Mutex<HashMap<String, VecDeque<SendError>>>,
    start: Mutex<Option<Instant>>,
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
impl SendSeen for FakeSender {
    async fn send_seen(
        &self,
        session: &SessionName,
        _: &ChatId,
        id: &MessageId,
    ) -> Result<Option<u16>, SendError> {
        let at = self.start.lock().unwrap().expect("started").elapsed();
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

async fn start(settings: DeliverySettings) -> Harness {
    let store = Arc::new(MemoryStore::default());
    let sender = Arc::new(FakeSender::default());
    *sender.start.lock().unwrap() = Some(Instant::now());
    let clock = Clock::starting_at(T0);
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
        let now = self.clock.now_ms();
        let receipt = NewReceipt {
            session: SessionName::parse(session).unwrap(),
            chat: ChatId::parse(chat).unwrap(),
            message_id: MessageId::parse(id).unwrap(),
            rule: "test".into(),
            due_at_ms: now + due_ms,
            not_before_ms: now + not_before_ms,
            read_on_reply: true,
            accepted_at_ms: now,
        };
        let chat = ChatKey {
            session: receipt.session.clone(),
            chat: receipt.chat.clone(),
        };
        assert!(matches!(
            self.store.accept(receipt).await.unwrap(),
            Accepted::New { .. }
        ));
        self.handle.wake(chat, now + due_ms);
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
    let h = start(DeliverySettings {
        rate_per_session: Rate::PerSecond(2.0),
        burst: 2,
        ..settings()
    })
    .await;
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
    for (i, due) in [(0, T0 - 60_000), (1, T0 + 1_000)] {
        store
            .accept(NewReceipt {
                session: SessionName::parse("s").unwrap(),
                chat: ChatId::parse(&format!("{i}@c.us")).unwrap(),
                message_id: MessageId::parse(&format!("m{i}")).unwrap(),
                rule: "test".into(),
                due_at_ms: due,
                not_before_ms: due,
                read_on_reply: true,
                accepted_at_ms: due,
            })
            .await
            .unwrap();
    }
    let sender = Arc::new(FakeSender::default());
    *sender.start.lock().unwrap() = Some(Instant::now());
    let (mut scheduler, _handle) =
        Scheduler::new(store, sender.clone(), Clock::starting_at(T0), settings());

    assert_eq!(scheduler.load().await.unwrap(), 2);
    let stop = CancellationToken::new();
    tokio::spawn(scheduler.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    assert_eq!(sender.times_of("m0"), [0]);
    assert_eq!(sender.times_of("m1"), [1_000]);
    stop.cancel();
}
