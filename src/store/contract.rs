//! The store contract: what every backend must do, written once and run against each of them with
//! [`store_contract_tests!`](crate::store_contract_tests). A backend's test module invokes the macro with a
//! future that builds a fresh, empty store (and whatever must live as long as it, such as a temporary folder
//! or schema), implementing [`Backend`].

use std::sync::Arc;

use jiff::Timestamp;

use super::{
    Accepted, Flush, FlushScope, Flushed, NewReceipt, Outcome, PendingQuery, PendingStats, Receipt,
    ReceiptId, Store,
};
use crate::domain::{BareMessageId, ChatId, ChatKey, MessageId, MessageKey, SessionName};
use crate::time::from_millis;

/// A store under test, with whatever keeps it alive.
pub trait Backend {
    fn store(&self) -> &dyn Store;
}

impl<S: Store> Backend for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

/// Generates one `#[tokio::test]` per contract clause, each on a fresh store: `$make` is a future of
/// `Option<impl Backend>`, `None` when the backend cannot be had here (and the test is skipped).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            accepting_stores_once_and_answers_duplicate_after,
            accepting_several_at_once_answers_each_in_order,
            a_chat_loads_in_due_order_and_several_chats_in_one_call,
            due_heads_come_in_due_order_by_pages_up_to_a_moment,
            outcomes_complete_retry_or_bury_in_one_call,
            replaying_the_dead_makes_them_due_now_untried,
            one_dead_receipt_replays_alone,
            a_replayed_receipt_is_found_by_its_chat_and_a_sent_one_no_longer,
            pending_is_found_by_session_and_by_either_form_of_its_chat,
            flushing_a_chat_makes_its_untried_read_on_reply_receipts_due,
            a_lid_chat_is_found_by_its_phone_number_and_the_bot_flushes_everything_held,
            an_ack_finds_its_message_and_those_before_it_in_its_chat,
            cancelled_receipts_are_gone_and_sent_ones_are_confirmed_once,
            old_ids_are_forgotten_and_recent_ones_stay_duplicates,
            listings_are_ordered_and_limited,
            stats_count_each_session_and_its_oldest,
            a_healthy_store_is_writable);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(backend) = $make.await else { return };
                $crate::store::contract::$name($crate::store::contract::Backend::store(&backend)).await;
            }
        )*
    };
}

/// The moment `ms_after_start` milliseconds after a fixed start: fixtures read in small numbers.
pub fn t(ms_after_start: u32) -> Timestamp {
    from_millis(1_800_000_000_000 + i64::from(ms_after_start))
}

fn session(name: &str) -> SessionName {
    SessionName::parse(name).unwrap()
}

fn chat(id: &str) -> ChatId {
    ChatId::parse(id).unwrap()
}

/// The message `bare` of `session_name`, as acks name it.
pub fn key_of(session_name: &str, bare: &str) -> MessageKey {
    MessageKey {
        session: session(session_name),
        bare: BareMessageId::parse(bare).unwrap(),
    }
}

/// A flush of session `s`'s chat known as `form`.
fn flush(form: &str, scope: FlushScope, at: Timestamp) -> Flush {
    Flush {
        session: session("s"),
        forms: vec![chat(form)],
        scope,
        at,
    }
}

pub fn key(chat: &str) -> ChatKey {
    ChatKey {
        session: session("s"),
        chat: ChatId::parse(chat).unwrap(),
    }
}

/// A receipt for chat `chat` of session `s`, due at `due`.
pub fn receipt(chat: &str, id: &str, due: Timestamp) -> NewReceipt {
    NewReceipt {
        session: session("s"),
        chat: ChatId::parse(chat).unwrap(),
        chat_phone: None,
        message_id: MessageId::parse(id).unwrap(),
        rule: Arc::from("defaults"),
        due_at: due,
        not_before: t(0),
        read_on_reply: true,
        on_reply: false,
        expires: false,
        accepted_at: t(0),
    }
}

async fn accept(store: &dyn Store, r: NewReceipt) -> ReceiptId {
    match store.accept(r).await.unwrap() {
        Accepted::New { id } => id,
        Accepted::Duplicate => panic!("accepted as a duplicate"),
    }
}

/// Moves receipts to the dead letters, each at its moment (ms after the fixed start).
async fn bury(store: &dyn Store, receipts: &[(ReceiptId, u32)]) {
    let outcomes = receipts
        .iter()
        .map(|&(id, at)| {
            let dead = Outcome::Dead {
                attempts: 3,
                error: "HTTP 400".into(),
                at: t(at),
            };
            (id, dead)
        })
        .collect();
    store.record(outcomes).await.unwrap();
}

fn ids(receipts: &[Receipt]) -> Vec<&str> {
    receipts.iter().map(|r| r.message_id.as_str()).collect()
}

pub async fn accepting_stores_once_and_answers_duplicate_after(store: &dyn Store) {
    accept(store, receipt("1@c.us", "m1", t(50))).await;
    let mut other_session = receipt("1@c.us", "m1", t(50));
    other_session.session = session("other");

    assert_eq!(
        store.accept(receipt("2@c.us", "m1", t(99))).await.unwrap(),
        Accepted::Duplicate
    );
    assert!(matches!(
        store.accept(other_session).await.unwrap(),
        Accepted::New { .. }
    ));
    assert_eq!(store.list_pending(10).await.unwrap().len(), 2);
}

pub async fn accepting_several_at_once_answers_each_in_order(store: &dyn Store) {
    accept(store, receipt("1@c.us", "before", t(10))).await;
    let answers = store
        .accept_all(vec![
            receipt("1@c.us", "a", t(20)),
            receipt("2@c.us", "before", t(30)),
            receipt("2@c.us", "b", t(40)),
            receipt("3@c.us", "a", t(50)),
        ])
        .await
        .unwrap();

    let new = |a: &Accepted| matches!(a, Accepted::New { .. });
    assert_eq!(
        answers.iter().map(new).collect::<Vec<_>>(),
        [true, false, true, false],
        "{answers:?}"
    );
    let Accepted::New { id: first } = answers[0] else {
        unreachable!()
    };
    let Accepted::New { id: second } = answers[2] else {
        unreachable!()
    };
    assert!(first < second, "ids in the order accepted");
    let pending = store.list_pending(10).await.unwrap();
    let mut stored = ids(&pending);
    stored.sort_unstable();
    assert_eq!(stored, ["a", "b", "before"]);
    assert!(store.accept_all(Vec::new()).await.unwrap().is_empty());
}

pub async fn a_chat_loads_in_due_order_and_several_chats_in_one_call(store: &dyn Store) {
    accept(store, receipt("1@c.us", "late", t(50))).await;
    accept(store, receipt("1@c.us", "early", t(40))).await;
    accept(store, receipt("2@c.us", "other", t(10))).await;
    accept(store, receipt("3@c.us", "unasked", t(5))).await;

    let chat = store.chat_receipts(&key("1@c.us")).await.unwrap();
    let both = store
        .chats_receipts(&[key("2@c.us"), key("1@c.us")])
        .await
        .unwrap();
    let mut both: Vec<String> = ids(&both).into_iter().map(String::from).collect();
    both.sort();

    assert_eq!(ids(&chat), ["early", "late"]);
    assert_eq!(chat[0].attempts, 0);
    assert_eq!(chat[0].rule.as_ref(), "defaults");
    assert_eq!(both, ["early", "late", "other"]);
}

pub async fn due_heads_come_in_due_order_by_pages_up_to_a_moment(store: &dyn Store) {
    accept(store, receipt("1@c.us", "b", t(20))).await;
    accept(store, receipt("2@c.us", "a", t(10))).await;
    accept(store, receipt("1@c.us", "c", t(20))).await;
    accept(store, receipt("3@c.us", "later", t(90))).await;

    let page = |after| crate::store::DueQuery {
        after,
        until: t(50),
        limit: 2,
    };
    let first = store.due_heads(page(None)).await.unwrap();
    let rest = store.due_heads(page(Some(first[1].at))).await.unwrap();

    let chats = |heads: &[crate::store::DueHead]| -> Vec<String> {
        heads.iter().map(|h| h.chat.chat.to_string()).collect()
    };
    assert_eq!(chats(&first), ["2@c.us", "1@c.us"]);
    assert_eq!((first[0].at.due_at, first[1].at.due_at), (t(10), t(20)));
    // Same due time: the page ends between two receipts of it, and the next page takes up the other.
    assert_eq!(chats(&rest), ["1@c.us"]);
    assert_eq!(rest[0].at.due_at, t(20));
    assert!(rest[0].at.id > first[1].at.id);
    let past_the_last = store.due_heads(page(Some(rest[0].at))).await.unwrap();
    assert!(past_the_last.is_empty());
}

pub async fn outcomes_complete_retry_or_bury_in_one_call(store: &dyn Store) {
    let sent = accept(store, receipt("1@c.us", "sent", t(5))).await;
    let retried = accept(store, receipt("1@c.us", "retried", t(6))).await;
    let buried = accept(store, receipt("1@c.us", "buried", t(7))).await;

    store
        .record(vec![
            (sent, Outcome::Sent { at: t(300) }),
            (
                retried,
                Outcome::Retry {
                    attempts: 1,
                    at: t(100),
                    error: "HTTP 500".into(),
                },
            ),
            (
                buried,
                Outcome::Dead {
                    attempts: 2,
                    error: "HTTP 404: no such chat".into(),
                    at: t(200),
                },
            ),
            // Already gone: skipped, not an error.
            (sent, Outcome::Sent { at: t(300) }),
        ])
        .await
        .unwrap();

    let pending = store.list_pending(10).await.unwrap();
    assert_eq!(ids(&pending), ["retried"]);
    assert_eq!(
        (
            pending[0].attempts,
            pending[0].due_at,
            pending[0].not_before
        ),
        (1, t(100), t(100))
    );
    assert_eq!(pending[0].last_error.as_deref(), Some("HTTP 500"));
    let dead = store.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id.as_str(), "buried");
    assert_eq!(
        (
            dead[0].attempts,
            dead[0].last_error.as_str(),
            dead[0].died_at
        ),
        (2, "HTTP 404: no such chat", t(200))
    );
}

pub async fn replaying_the_dead_makes_them_due_now_untried(store: &dyn Store) {
    let a = accept(store, receipt("1@c.us", "a", t(5))).await;
    let b = accept(store, receipt("2@c.us", "b", t(5))).await;
    bury(store, &[(a, 10), (b, 20)]).await;

    let mut chats = store.replay_dead(t(300), None).await.unwrap();
    chats.sort();

    assert_eq!(chats, [key("1@c.us"), key("2@c.us")]);
    assert!(store.list_dead(10).await.unwrap().is_empty());
    let pending = store.list_pending(10).await.unwrap();
    assert_eq!(pending.len(), 2);
    for r in pending {
        assert_eq!((r.attempts, r.due_at, r.not_before), (0, t(300), t(300)));
        assert!(r.read_on_reply);
    }
    // Replaying is not accepting again: the ids stay duplicates.
    assert_eq!(
        store.accept(receipt("1@c.us", "a", t(5))).await.unwrap(),
        Accepted::Duplicate
    );
}

pub async fn a_replayed_receipt_is_found_by_its_chat_and_a_sent_one_no_longer(store: &dyn Store) {
    let a = accept(store, receipt("1@c.us", "a", t(5))).await;
    let b = accept(store, receipt("1@c.us", "b", t(6))).await;
    bury(store, &[(a, 10)]).await;
    let sent = Outcome::Sent { at: t(20) };
    store.record(vec![(b, sent)]).await.unwrap();
    assert!(
        store
            .chat_receipts(&key("1@c.us"))
            .await
            .unwrap()
            .is_empty()
    );

    store.replay_dead(t(300), None).await.unwrap();

    let chat = store.chat_receipts(&key("1@c.us")).await.unwrap();
    assert_eq!(ids(&chat), ["a"]);
    assert_eq!(chat[0].due_at, t(300));
}

pub async fn one_dead_receipt_replays_alone(store: &dyn Store) {
    let a = accept(store, receipt("1@c.us", "a", t(5))).await;
    let b = accept(store, receipt("2@c.us", "b", t(5))).await;
    bury(store, &[(a, 10), (b, 20)]).await;

    let chats = store.replay_dead(t(300), Some(b)).await.unwrap();
    let again = store.replay_dead(t(400), Some(b)).await.unwrap();

    assert_eq!(chats, [key("2@c.us")]);
    assert!(again.is_empty(), "replayed once: {again:?}");
    let dead = store.list_dead(10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), [a]);
    assert_eq!(ids(&store.list_pending(10).await.unwrap()), ["b"]);
}

pub async fn pending_is_found_by_session_and_by_either_form_of_its_chat(store: &dyn Store) {
    let mut lid = receipt("777@lid", "l", t(30));
    lid.chat_phone = Some(chat("491511234567@c.us"));
    let mut other_session = receipt("1@c.us", "o", t(10));
    other_session.session = session("t");
    for r in [receipt("1@c.us", "a", t(20)), lid, other_session] {
        accept(store, r).await;
    }
    let find = |session: Option<&str>, form: Option<&str>| PendingQuery {
        session: session.map(self::session),
        chat: form.map(self::chat),
        limit: 10,
    };

    let all = store.find_pending(find(None, None)).await.unwrap();
    let of_s = store.find_pending(find(Some("s"), None)).await.unwrap();
    let by_id = store
        .find_pending(find(None, Some("1@c.us")))
        .await
        .unwrap();
    let by_phone = store
        .find_pending(find(Some("s"), Some("491511234567@c.us")))
        .await
        .unwrap();
    let by_lid = store
        .find_pending(find(None, Some("777@lid")))
        .await
        .unwrap();
    let none = store
        .find_pending(find(Some("t"), Some("777@lid")))
        .await
        .unwrap();

    assert_eq!(ids(&all), ["o", "a", "l"]);
    assert_eq!(ids(&of_s), ["a", "l"]);
    assert_eq!(ids(&by_id), ["o", "a"]);
    assert_eq!((ids(&by_phone), ids(&by_lid)), (vec!["l"], vec!["l"]));
    assert!(none.is_empty(), "{none:?}");
}

pub async fn flushing_a_chat_makes_its_untried_read_on_reply_receipts_due(store: &dyn Store) {
    accept(store, receipt("1@c.us", "flushed", t(5_000))).await;
    let mut no_reply = receipt("1@c.us", "not-on-reply", t(5_000));
    no_reply.read_on_reply = false;
    accept(store, no_reply).await;
    let tried = accept(store, receipt("1@c.us", "tried", t(5_000))).await;
    store
        .record(vec![(
            tried,
            Outcome::Retry {
                attempts: 1,
                at: t(6_000),
                error: "HTTP 503".into(),
            },
        )])
        .await
        .unwrap();
    accept(store, receipt("2@c.us", "other-chat", t(5_000))).await;

    let flushed = store
        .flush_chat(flush("1@c.us", FlushScope::Reply, t(1_000)))
        .await
        .unwrap();

    assert_eq!(
        flushed,
        Flushed {
            chats: vec![key("1@c.us")],
            receipts: 1
        }
    );
    let due: Vec<(String, Timestamp)> = store
        .list_pending(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.message_id.to_string(), r.due_at))
        .collect();
    assert!(due.contains(&("flushed".into(), t(1_000))), "{due:?}");
    assert!(due.contains(&("not-on-reply".into(), t(5_000))), "{due:?}");
    assert!(due.contains(&("tried".into(), t(6_000))), "{due:?}");
    assert!(due.contains(&("other-chat".into(), t(5_000))), "{due:?}");
}

pub async fn old_ids_are_forgotten_and_recent_ones_stay_duplicates(store: &dyn Store) {
    let hour: u32 = 3_600_000;
    let mut recent = receipt("1@c.us", "m-recent", t(0));
    recent.accepted_at = t(100 * hour - 3 * hour);
    let mut old = receipt("1@c.us", "m-old", t(0));
    old.accepted_at = t(100 * hour - 72 * hour);
    accept(store, recent.clone()).await;
    accept(store, old.clone()).await;

    // A 48 h window, now = hour 100.
    assert_eq!(store.purge_dedup(t(52 * hour)).await.unwrap(), 1);

    assert_eq!(store.accept(recent).await.unwrap(), Accepted::Duplicate);
    assert!(matches!(
        store.accept(old).await.unwrap(),
        Accepted::New { .. }
    ));
}

pub async fn listings_are_ordered_and_limited(store: &dyn Store) {
    for (id, due) in [("c", 30), ("a", 10), ("b", 20)] {
        accept(store, receipt("1@c.us", id, t(due))).await;
    }
    let pending = store.list_pending(2).await.unwrap();
    assert_eq!(ids(&pending), ["a", "b"]);

    bury(store, &[(pending[0].id, 10), (pending[1].id, 20)]).await;
    let newest = store.list_dead(1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].message_id.as_str(), "b");
}

pub async fn stats_count_each_session_and_its_oldest(store: &dyn Store) {
    let mut first = receipt("1@c.us", "a", t(0));
    first.accepted_at = t(10);
    let mut second = receipt("2@c.us", "b", t(0));
    second.accepted_at = t(20);
    let mut elsewhere = receipt("1@c.us", "c", t(0));
    elsewhere.session = session("other");
    elsewhere.accepted_at = t(30);
    for r in [second, first, elsewhere] {
        accept(store, r).await;
    }

    let mut stats = store.pending_stats().await.unwrap();
    stats.sort_by(|a, b| a.session.cmp(&b.session));

    assert_eq!(
        stats,
        [
            PendingStats {
                session: session("other"),
                count: 1,
                oldest_accepted_at: t(30)
            },
            PendingStats {
                session: session("s"),
                count: 2,
                oldest_accepted_at: t(10)
            }
        ]
    );
}

pub async fn a_healthy_store_is_writable(store: &dyn Store) {
    assert_eq!(store.check_writable().await, Ok(()));
    accept(store, receipt("1@c.us", "a", t(0))).await;
    assert_eq!(store.check_writable().await, Ok(()));
}

pub async fn a_lid_chat_is_found_by_its_phone_number_and_the_bot_flushes_everything_held(
    store: &dyn Store,
) {
    let mut held = receipt("777@lid", "false_777@lid_HELD", t(90_000));
    (
        held.chat_phone,
        held.read_on_reply,
        held.on_reply,
        held.expires,
    ) = (Some(chat("491511234567@c.us")), true, true, true);
    held.not_before = t(90_000);
    let mut quiet = receipt("777@lid", "false_777@lid_QUIET", t(5_000));
    (quiet.chat_phone, quiet.read_on_reply) = (Some(chat("491511234567@c.us")), false);
    accept(store, held).await;
    accept(store, quiet).await;

    let by_reply = store
        .flush_chat(flush("491511234567@c.us", FlushScope::Reply, t(1_000)))
        .await
        .unwrap();
    let by_bot = store
        .flush_chat(flush("491511234567@c.us", FlushScope::All, t(2_000)))
        .await
        .unwrap();

    assert_eq!(
        (by_reply.chats, by_reply.receipts),
        (vec![key("777@lid")], 1)
    );
    assert_eq!(by_bot.receipts, 2);
    for r in store.list_pending(10).await.unwrap() {
        assert_eq!(r.chat_phone, Some(chat("491511234567@c.us")));
        assert!(r.due_at <= t(2_000) && r.not_before <= t(2_000), "{r:?}");
        assert!(!r.on_reply && !r.expires, "released: {r:?}");
    }
}

pub async fn an_ack_finds_its_message_and_those_before_it_in_its_chat(store: &dyn Store) {
    accept(store, receipt("1@c.us", "false_1@c.us_A", t(50))).await;
    accept(store, receipt("2@c.us", "false_2@c.us_B", t(50))).await;
    accept(store, receipt("1@c.us", "false_1@c.us_C", t(50))).await;
    accept(store, receipt("1@c.us", "false_1@c.us_D", t(50))).await;

    let through_c = store.receipts_through(&key_of("s", "C")).await.unwrap();
    let unknown = store.receipts_through(&key_of("s", "Z")).await.unwrap();
    let elsewhere = store.receipts_through(&key_of("other", "C")).await.unwrap();

    assert_eq!(ids(&through_c), ["false_1@c.us_A", "false_1@c.us_C"]);
    assert!(unknown.is_empty() && elsewhere.is_empty());
}

pub async fn cancelled_receipts_are_gone_and_sent_ones_are_confirmed_once(store: &dyn Store) {
    let a = accept(store, receipt("1@c.us", "false_1@c.us_A", t(50))).await;
    let b = accept(store, receipt("1@c.us", "false_1@c.us_B", t(50))).await;

    assert_eq!(store.cancel(vec![a]).await.unwrap(), 1);
    assert_eq!(store.cancel(vec![a]).await.unwrap(), 0);
    store
        .record(vec![(b, Outcome::Sent { at: t(60) })])
        .await
        .unwrap();

    assert!(store.confirm_sent(&key_of("s", "B"), false).await.unwrap());
    assert!(
        !store.confirm_sent(&key_of("s", "B"), false).await.unwrap(),
        "once"
    );
    assert!(
        !store.confirm_sent(&key_of("s", "A"), false).await.unwrap(),
        "never sent"
    );
    assert!(store.list_pending(10).await.unwrap().is_empty());
    // Confirmed while in flight, then the send records itself: still confirmed, not twice.
    let c = accept(store, receipt("1@c.us", "false_1@c.us_C", t(50))).await;
    assert!(store.confirm_sent(&key_of("s", "C"), true).await.unwrap());
    store
        .record(vec![(c, Outcome::Sent { at: t(70) })])
        .await
        .unwrap();
    assert!(!store.confirm_sent(&key_of("s", "C"), false).await.unwrap());
    // Forgotten with the dedup window.
    store.purge_dedup(t(1_000)).await.unwrap();
    let d = accept(store, receipt("1@c.us", "false_1@c.us_D", t(50))).await;
    store
        .record(vec![(d, Outcome::Sent { at: t(500) })])
        .await
        .unwrap();
    store.purge_dedup(t(1_000)).await.unwrap();
    assert!(
        !store.confirm_sent(&key_of("s", "D"), false).await.unwrap(),
        "purged"
    );
}
