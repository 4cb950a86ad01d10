//! Real WAHA traffic, black-box: every engine's shapes (from the project's own fixtures in
//! `tests/events/waha/`), LID chats and their phone numbers, acks that cancel or confirm, WAHA-native batch
//! sending, receipts held for a reply, and the bot endpoint.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Rules that name the fixtures' phone numbers, so a match shows which form of a chat was matched.
fn rules() -> String {
    fixture_file("rules.toml")
}

/// autoseen in this process with these rules and settings.
/// Each engine's direct message fixture, and the chat its id names.
const DIRECT: [(&str, &str); 3] = [
    ("webjs-direct", "491511110001@c.us"),
    ("noweb-direct", "491511110002@c.us"),
    ("gows-direct", "491511110003@c.us"),
];

/// Each engine's own-message fixture, and the chat its id names (wherever the engine puts it otherwise).
const OWN: [(&str, &str); 3] = [
    ("webjs-own-message", "491511110009@c.us"),
    ("noweb-own-message", "491511110010@c.us"),
    ("gows-own-message", "491511110011@c.us"),
];

async fn app_with(fake: &FakeWasend, rules: &str, settings: &[(&str, &str)]) -> TestApp {
    let options = settings
        .iter()
        .fold(Options::default().rules(rules), |o, (key, value)| {
            o.set(key, value)
        });
    TestApp::spawn(fake, options).await
}

async fn pending(app: &TestApp) -> Vec<Value> {
    let (_, v) = app.admin(Method::GET, "/admin/pending").await;
    v["pending"].as_array().cloned().unwrap_or_default()
}

async fn pending_ids(app: &TestApp) -> Vec<String> {
    pending(app)
        .await
        .iter()
        .map(|r| r["message_id"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_until_nothing_pending(app: &TestApp) {
    eventually(WAIT, "nothing pending", async || {
        pending(app).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_engine_files_a_direct_message_under_the_chat_its_id_names() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;

    for (name, chat) in DIRECT {
        let (status, answer) = app.send(&fixture(name)).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("scheduled")),
            "{name}: {answer}"
        );
        assert!(
            pending(&app).await.iter().any(|r| r["chat"] == chat),
            "{name} filed under {chat}"
        );
    }
    // The channel's `from` disagrees with its id: the id wins, and its chat type is `channel`.
    let (_, channel) = app.send(&fixture("noweb-channel")).await;
    assert_eq!(channel["rule"], "channels", "{channel}");
}

#[tokio::test]
async fn phone_rules_match_lid_chats_and_lid_group_senders_through_their_phone_numbers() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;
    // NOWEB gives `remoteJidAlt` / `participantAlt`; GOWS `SenderAlt` (with a device suffix), and in groups
    // names the sender only in the id's fourth part.
    let cases = [
        ("noweb-lid-direct-with-phone", "vip-by-phone"),
        ("gows-lid-direct-with-phone", "vip-by-phone"),
        ("noweb-group-lid-participant", "vip-sender-by-phone"),
        ("gows-group-lid-sender-in-id-only", "vip-sender-by-phone"),
    ];

    for (name, rule) in cases {
        let (_, answer) = app.send(&fixture(name)).await;
        assert_eq!(answer["rule"], rule, "{name}: {answer}");
    }
}

#[tokio::test]
async fn a_lid_without_its_phone_number_is_scheduled_by_the_other_rules() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;

    let (status, answer) = app.send(&fixture("webjs-lid-direct-without-phone")).await;

    assert_eq!(status, 200);
    assert_eq!(
        (&answer["status"], &answer["rule"]),
        (&json!("scheduled"), &json!("defaults"))
    );
    let filed = pending(&app).await;
    assert_eq!(filed[0]["chat"], "120000000000006@lid");
    assert_eq!(filed[0]["chat_phone"], Value::Null);
}

#[tokio::test]
async fn our_own_message_on_any_engine_is_ignored_and_marks_its_chat_read() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;

    for (own, chat) in OWN {
        let incoming = format!("m-waiting-in-{chat}");
        let (_, waiting) = app.send(&message("default", chat, &incoming)).await;
        assert_eq!(waiting["status"], "scheduled");

        let (_, answer) = app.send(&fixture(own)).await;

        assert_eq!(
            (&answer["status"], &answer["reason"]),
            (&json!("ignored"), &json!("from_me")),
            "{own}"
        );
        eventually(WAIT, &format!("{own} to flush {chat}"), async || {
            fake.ids().contains(&incoming).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_status_without_from_is_decided_by_a_status_rule_not_refused() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;

    let (status, answer) = app.send(&fixture("status-without-from")).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["status"], &answer["rule"]),
        (&json!("ignored"), &json!("no-status"))
    );
}

#[tokio::test]
async fn an_ack_read_or_played_cancels_the_waiting_receipt_on_every_engine_and_nothing_is_sent() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;
    let cases = [
        (
            "ack-webjs-read",
            "491511110014@c.us",
            "false_491511110014@c.us_3EB0C0FFEE14",
        ),
        (
            "ack-noweb-read",
            "491511110015@c.us",
            "false_491511110015@c.us_A2B2C3D4E5F60718293A4B5C6D7E8F96",
        ),
        (
            "ack-gows-played",
            "491511110016@c.us",
            "false_491511110016@c.us_3A0F9C8B7D6E5F44",
        ),
        (
            "ack-group-read",
            "120363000000000017@g.us",
            "false_120363000000000017@g.us_B2B2C3D4E5F60718293A4B5C6D7E8F97_120000000000017@lid",
        ),
    ];
    for (_, chat, id) in cases {
        let (_, accepted) = app.send(&message("default", chat, id)).await;
        assert_eq!(accepted["status"], "scheduled");
    }

    for (ack, _, _) in cases {
        let (status, answer) = app.send(&fixture(ack)).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer,
            json!({"status": "ack", "cancelled": 1, "confirmed": 0}),
            "{ack}"
        );
    }

    assert!(pending(&app).await.is_empty());
    assert!(
        fake.calls().is_empty(),
        "nothing is sent for a chat read elsewhere"
    );
}

#[tokio::test]
async fn an_ack_cancels_its_message_and_those_before_it_but_not_later_ones() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;
    let chat = "491511110014@c.us";
    for bare in ["EARLIER0001", "3EB0C0FFEE14", "LATER000001"] {
        app.send(&waha_message(chat, bare, "hi")).await;
    }
    app.send(&waha_message("491511110099@c.us", "OTHERCHAT01", "hi"))
        .await;

    let (_, answer) = app.send(&fixture("ack-webjs-read")).await;

    assert_eq!(
        answer,
        json!({"status": "ack", "cancelled": 2, "confirmed": 0})
    );
    let mut left = pending_ids(&app).await;
    left.sort();
    assert_eq!(
        left,
        [
            "false_491511110014@c.us_LATER000001",
            "false_491511110099@c.us_OTHERCHAT01"
        ]
    );
}

#[tokio::test]
async fn an_ack_after_our_send_confirms_it_once() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    app.send(&message(
        "default",
        "491511110015@c.us",
        "false_491511110015@c.us_A2B2C3D4E5F60718293A4B5C6D7E8F96",
    ))
    .await;
    fake.wait_for_calls(1, WAIT).await;
    wait_until_nothing_pending(&app).await;

    let (_, first) = app.send(&fixture("ack-noweb-read")).await;
    let (_, echo) = app.send(&fixture("ack-noweb-read")).await;

    assert_eq!(
        first,
        json!({"status": "ack", "cancelled": 0, "confirmed": 1})
    );
    assert_eq!(
        echo,
        json!({"status": "ack", "cancelled": 0, "confirmed": 0}),
        "counted once"
    );
}

#[tokio::test]
async fn acks_of_our_own_messages_and_below_read_change_nothing() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;
    app.send(&message(
        "default",
        "491511110019@c.us",
        "false_491511110019@c.us_3A0F9C8B7D6E5F45",
    ))
    .await;

    let (_, own) = app.send(&fixture("ack-of-own-message")).await;
    let (_, device) = app.send(&fixture("ack-device")).await;

    assert_eq!(
        (&own["status"], &own["reason"]),
        (&json!("ignored"), &json!("ack_of_own_message"))
    );
    assert_eq!(
        (&device["status"], &device["reason"]),
        (&json!("ignored"), &json!("ack_not_read"))
    );
    assert_eq!(
        pending(&app).await.len(),
        1,
        "the delivered message still waits"
    );
}

#[tokio::test]
async fn reactions_votes_presence_and_edits_are_ignored_events() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[]).await;

    for (name, event) in [
        ("reaction", "message.reaction"),
        ("poll-vote", "poll.vote"),
        ("presence", "presence.update"),
        ("edited", "message.edited"),
    ] {
        let (status, answer) = app.send(&fixture(name)).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(answer["status"], "ignored", "{name}");
        assert_eq!(
            answer["reason"],
            format!("event `{event}` is not a message"),
            "{name}"
        );
    }
    assert!(pending(&app).await.is_empty());
}

#[tokio::test]
async fn a_message_its_sender_deleted_before_its_receipt_went_out_is_never_marked() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, "[defaults]\ndelay = \"1h\"\n", &[]).await;
    let chat = "491511110023@c.us";
    for bare in ["3EB0C0FFEE22", "3EB0C0FFEE23", "3EB0C0FFEE24"] {
        let (_, answer) = app.send(&waha_message(chat, bare, "hi")).await;
        assert_eq!(answer["status"], "scheduled", "{answer}");
    }

    // The fixture revokes 3EB0C0FFEE23: its receipt alone is cancelled; the others are still unread.
    let (status, answer) = app.send(&fixture("revoked")).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"status": "deleted", "cancelled": 1}));
    let ids = pending_ids(&app).await;
    assert_eq!(
        ids,
        [
            format!("false_{chat}_3EB0C0FFEE22"),
            format!("false_{chat}_3EB0C0FFEE24")
        ]
    );
    // A second delivery of the same revocation finds nothing left to cancel.
    let (_, answer) = app.send(&fixture("revoked")).await;
    assert_eq!(answer, json!({"status": "deleted", "cancelled": 0}));
    assert_eq!(pending_ids(&app).await.len(), 2);
}

/// An app sending in WAHA's shape to the fake API's root.
async fn waha_app(fake: &FakeWasend, delay: &str) -> TestApp {
    let rules = format!("[defaults]\ndelay = \"{delay}\"\n");
    TestApp::spawn(
        fake,
        Options::default()
            .rules(&rules)
            .set("wasend.flavor", "waha"),
    )
    .await
}

#[tokio::test]
async fn under_waha_a_groups_messages_due_together_go_out_in_one_call_with_the_key_header() {
    let fake = FakeWasend::start().await;
    let app = waha_app(&fake, "2s").await;
    let group = "120363000000000030@g.us";
    let ids: Vec<String> = (1..=3)
        .map(|i| format!("false_{group}_3EB0000{i}_491511110030@c.us"))
        .collect();
    for id in &ids {
        let body = event(
            "message",
            "default",
            json!({"id": id, "from": group, "participant": "491511110030@c.us", "fromMe": false, "body": "hi"}),
        );
        assert_eq!(app.send(&body).await.1["status"], "scheduled");
    }

    wait_until_nothing_pending(&app).await;

    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, "/api/sendSeen");
    assert_eq!(calls[0].api_key.as_deref(), Some(API_KEY));
    assert_eq!(calls[0].authorization, None);
    assert_eq!(
        calls[0].body,
        json!({"session": "default", "chatId": group, "messageIds": ids, "participant": "491511110030@c.us"})
    );
}

#[tokio::test]
async fn under_waha_150_messages_of_a_chat_take_two_calls() {
    let fake = FakeWasend::start().await;
    let app = waha_app(&fake, "3s").await;
    let chat = "491511110031@c.us";
    for i in 0..150 {
        app.send(&waha_message(chat, &format!("M{i:04}"), "hi"))
            .await;
    }

    wait_until_nothing_pending(&app).await;

    let sizes: Vec<usize> = fake.calls().iter().map(|c| c.message_ids().len()).collect();
    assert_eq!(sizes, [100, 50]);
    let mut all: Vec<String> = fake.calls().iter().flat_map(|c| c.message_ids()).collect();
    all.dedup();
    assert_eq!(all.len(), 150, "each message once");
}

/// Rules that hold receipts for a reply, with and without `max_wait`.
fn hold_rules() -> String {
    fixture_file("hold-rules.toml")
}

#[tokio::test]
async fn on_reply_holds_a_receipt_past_the_chats_other_sends_until_our_reply() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &hold_rules(), &[]).await;
    let chat = "491511110040@c.us";

    let (_, held) = app.send(&waha_message(chat, "HELD0001", "hold this")).await;
    app.send(&waha_message(chat, "QUICK0001", "quick one"))
        .await;
    fake.wait_for_calls(1, WAIT).await;
    // Once the quick one's send is recorded, only the held one waits.
    let still_held = eventually(WAIT, "one receipt left pending", async || {
        let ids = pending_ids(&app).await;
        (ids.len() == 1).then_some(ids)
    })
    .await;
    app.send(&reply_of_ours(
        "default",
        chat,
        "true_491511110040@c.us_REPLY0001",
    ))
    .await;
    let calls = fake.wait_for_calls(2, WAIT).await;

    assert_eq!(
        held,
        json!({"status": "on_reply", "rule": "hold-for-reply", "max_wait_ms": null})
    );
    assert_eq!(
        calls[0].message_id(),
        "false_491511110040@c.us_QUICK0001",
        "the timer batch left it"
    );
    assert_eq!(still_held, ["false_491511110040@c.us_HELD0001"]);
    assert_eq!(
        calls[1].message_id(),
        "false_491511110040@c.us_HELD0001",
        "our reply released it"
    );
}

#[tokio::test]
async fn max_wait_sends_a_held_receipt_without_a_reply() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &hold_rules(), &[]).await;
    let posted = Instant::now();

    let (_, held) = app
        .send(&waha_message("491511110041@c.us", "BRIEF0001", "hi"))
        .await;
    let calls = fake.wait_for_calls(1, WAIT).await;

    assert_eq!(held["max_wait_ms"], 1000);
    assert!(
        calls[0].at - posted >= Duration::from_secs(1),
        "sent after max_wait, not before"
    );
}

#[tokio::test]
async fn a_held_receipt_without_max_wait_is_dropped_unsent_when_the_dedup_window_ends() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &hold_rules(), &[("store.dedup_window", "1s")]).await;

    app.send(&waha_message("491511110042@c.us", "FORGOT0001", "hi"))
        .await;
    assert_eq!(pending(&app).await.len(), 1);
    wait_until_nothing_pending(&app).await;

    assert!(fake.calls().is_empty(), "expired, never sent");
}

#[tokio::test]
async fn the_bot_flushes_a_chat_named_by_a_percent_encoded_phone_number() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, &rules(), &[("bot.token", "bot-secret-7-0123456")]).await;
    for id in ["m-bot-1", "m-bot-2"] {
        app.send(&message("default", "491511110050@c.us", id)).await;
    }
    let read = |token: &'static str| {
        app.http
            .post(app.url("/chats/default/%2B49%20151%201110050/read"))
            .bearer_auth(token)
            .send()
    };

    let wrong = read("not-it").await.unwrap();
    let right = read("bot-secret-7-0123456").await.unwrap();

    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
    assert_eq!(
        right.json::<Value>().await.unwrap(),
        json!({"status": "flushed", "receipts": 2})
    );
    fake.wait_for_calls(2, WAIT).await;
}

#[tokio::test]
async fn the_bot_endpoint_is_off_without_a_token() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;

    let off = app
        .http
        .post(app.url("/chats/default/491511110050@c.us/read"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();

    assert_eq!(off.status(), 404);
}

#[tokio::test]
async fn max_age_falls_back_to_the_signed_message_timestamp_without_an_envelope_timestamp() {
    let fake = FakeWasend::start().await;
    let app = app_with(&fake, BASE_RULES, &[("webhook.max_age", "10m")]).await;
    let now_s = jiff::Timestamp::now().as_second();
    let old_style = |id: &str, sent_s: i64| {
        json!({"event": "message", "session": "default",
               "payload": {"id": id, "from": "491511110060@c.us", "fromMe": false, "timestamp": sent_s}})
        .to_string()
    };

    let (fresh, _) = app.send(&old_style("m-fresh", now_s - 5)).await;
    let (stale, answer) = app.send(&old_style("m-stale", now_s - 3 * 3600)).await;

    assert_eq!(fresh, 200);
    assert_eq!((stale, &answer["error"]), (400, &json!("stale_event")));
}

#[tokio::test]
async fn a_waha_request_id_becomes_the_request_id() {
    let fake = FakeWasend::start().await;
    // Accepted webhooks have their line at debug.
    let app = TestApp::spawn_process(&fake, Options::default().set("log.level", "debug")).await;
    let body = message("default", "491511110061@c.us", "m-request-id");

    let answer = app
        .http
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .header("x-webhook-hmac", sign(&body))
        .header("x-webhook-request-id", "waha-6789abcd")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(answer.headers()["x-request-id"], "waha-6789abcd");
    let line = app
        .wait_for_log(|l| l.contains("\"webhook\"") && l.contains("m-request-id"))
        .await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["span"]["request_id"], "waha-6789abcd", "{line}");
}

#[tokio::test]
async fn a_rejected_webhook_is_a_warning_with_its_request_id() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn_process(&fake, Options::default()).await;
    let body = message("default", "491511110062@c.us", "m-rejected");

    let answer = app
        .http
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .header("x-webhook-hmac", "00")
        .header("x-webhook-request-id", "waha-rejected-1")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 401);
    let line = app.wait_for_log(|l| l.contains("webhook rejected")).await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&v["level"], &v["request_id"]),
        (&json!("WARN"), &json!("waha-rejected-1")),
        "{line}"
    );
}

#[tokio::test]
async fn lids_without_phone_acks_and_confirmations_are_counted() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn_process(&fake, Options::default().rules(&rules())).await;
    app.send(&fixture("webjs-lid-direct-without-phone")).await;
    app.send(&message(
        "default",
        "491511110014@c.us",
        "false_491511110014@c.us_3EB0C0FFEE14",
    ))
    .await;
    app.send(&fixture("ack-webjs-read")).await;

    let text = app.metrics().await;

    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("autoseen_lid_without_phone_total 1"), "{text}");
    assert!(
        has("autoseen_receipts_cancelled_total{reason=\"read_elsewhere\"} 1"),
        "{text}"
    );
    assert!(
        has("autoseen_webhooks_total{result=\"ack\",reason=\"\"} 1"),
        "{text}"
    );
}
