//! Green API as a gateway, black-box, on the project's own fixtures (`tests/events/green/`): the webhook
//! token, incoming and group messages, our own messages releasing held receipts, reads on another device,
//! readChat up to the newest id, Green's error classes and pacing, from a fake Green API on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const IVAN: &str = "79001234568@c.us";

async fn green_app(fake: &FakeWasend, rules: &str, settings: &[(&str, &str)]) -> TestApp {
    let options = settings.iter().fold(
        Options::default()
            .rules(rules)
            .set("gateway.default", "green"),
        |o, (k, v)| o.set(k, v),
    );
    TestApp::spawn(fake, options).await
}

const HELD: &str = "[defaults]\naction = \"on_reply\"\n";

#[tokio::test]
async fn a_notification_is_taken_only_with_the_webhook_token_as_green_sends_it() {
    let fake = FakeWasend::start().await;
    let app = green_app(&fake, BASE_RULES, &[]).await;
    let body = green_fixture("incoming");

    for authorization in [
        None,
        Some("Bearer not-the-webhook-token".to_string()),
        Some(GREEN_WEBHOOK_TOKEN.to_string()),
        Some(format!("Bearer {GREEN_WEBHOOK_TOKEN}x")),
    ] {
        let (status, answer) = app.post_green_with(&body, authorization.as_deref()).await;
        assert_eq!(status, 401, "{authorization:?}: {answer}");
        assert_eq!(answer["error"], "unauthorized");
    }
    assert!(app.pending().await.is_empty());

    let (status, answer) = app.post_green(&body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("scheduled")),
        "{answer}"
    );
    // Green's own guard takes the header's second word, whatever the first.
    let (status, answer) = app
        .post_green_with(
            &green_text(IVAN, "BAE5000000000001"),
            Some(&format!("Token {GREEN_WEBHOOK_TOKEN}")),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn an_incoming_message_is_read_with_readchat_and_the_token_only_in_the_path() {
    let fake = FakeWasend::start().await;
    let app = green_app(&fake, BASE_RULES, &[]).await;

    let (_, answer) = app.post_green(&green_fixture("incoming")).await;
    assert_eq!(answer["status"], "scheduled", "{answer}");
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(calls[0].method, "POST");
    assert_eq!(
        calls[0].path,
        format!("/waInstance{GREEN_INSTANCE}/readChat/{GREEN_API_TOKEN}")
    );
    assert_eq!(calls[0].green_read(), (IVAN, "BAE5F4886F6F2D05"));
    assert_eq!(calls[0].authorization, None, "Green takes no auth header");

    // Ignored notifications are answered 200, naming the type.
    let (status, answer) = app.post_green(&green_fixture("state")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["reason"],
        "event `stateInstanceChanged` is not a message"
    );
}

#[tokio::test]
async fn a_group_message_is_filed_under_the_group_with_its_participant_as_sender() {
    let fake = FakeWasend::start().await;
    let rules = group_sender_rules("olga in groups", "+7 900 555-01-01");
    let app = green_app(&fake, &rules, &[]).await;

    let (_, answer) = app.post_green(&green_fixture("group")).await;
    assert_eq!(answer["rule"], "olga in groups", "{answer}");
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(
        calls[0].green_read(),
        ("79001234567-1587570015@g.us", "3EB0A1B2C3D4E5F60718")
    );
}

#[tokio::test]
async fn our_own_messages_from_the_phone_or_the_api_release_the_chat_up_to_its_newest() {
    for own in ["outgoing", "outgoing-api"] {
        let fake = FakeWasend::start().await;
        let app = green_app(&fake, HELD, &[]).await;
        for id in ["BAE5000000000010", "BAE5000000000011", "BAE5000000000012"] {
            let (_, answer) = app.post_green(&green_text(IVAN, id)).await;
            assert_eq!(answer["status"], "on_reply", "{answer}");
        }

        let (_, answer) = app.post_green(&green_fixture(own)).await;
        assert_eq!(answer["reason"], "from_me", "{own}: {answer}");

        let calls = fake.wait_for_calls(1, WAIT).await;
        assert_eq!(calls[0].green_read(), (IVAN, "BAE5000000000012"), "{own}");
        app.wait_until_nothing_pending(WAIT).await;
        assert_eq!(fake.calls().len(), 1, "{own}: one readChat for the chat");
    }
}

#[tokio::test]
async fn a_message_read_on_another_device_is_not_marked_again() {
    let fake = FakeWasend::start().await;
    let app = green_app(&fake, HOUR_RULES, &[]).await;
    app.post_green(&green_fixture("incoming")).await;
    app.post_green(&green_text("79001112233@c.us", "BAE5000000000020"))
        .await;
    assert_eq!(app.pending().await.len(), 2);

    let (status, answer) = app.post_green(&green_fixture("status-read")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "ack", "{answer}");
    assert_eq!(answer["cancelled"], 1, "{answer}");
    let left: Vec<Value> = app.pending().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["message_id"], "BAE5000000000020");
    // Any case: Green's docs do not fix it.
    let upper = green_fixture("status-read")
        .replace("\"read\"", "\"READ\"")
        .replace("79001234568@c.us", "79001112233@c.us")
        .replace("BAE5F4886F6F2D05", "BAE5000000000020");
    let (_, answer) = app.post_green(&upper).await;
    assert_eq!(answer["cancelled"], 1, "{answer}");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn greens_answers_retry_pause_or_give_up_as_documented() {
    let fake = FakeWasend::start().await;
    let app = green_app(&fake, BASE_RULES, &[]).await;

    // Starting up, then fine: retried.
    fake.script([
        Answer::status(400).body(r#"{"message":"instance is starting or not authorized"}"#)
    ]);
    app.post_green(&green_text(IVAN, "BAE5000000000030")).await;
    fake.wait_for_calls(2, WAIT).await;
    app.wait_until_nothing_pending(WAIT).await;

    // A request Green refuses: dead at once.
    fake.script([Answer::status(400)
        .body(r#"{"message":"Validation failed. Details: 'chatId' is required"}"#)]);
    app.post_green(&green_text("79001112233@c.us", "BAE5000000000031"))
        .await;
    let dead = app.wait_for_dead(WAIT).await;
    assert_eq!(dead[0]["message_id"], "BAE5000000000031");

    // The plan's quota: the instance pauses, saying why; the receipt waits.
    fake.answer_always(
        Answer::status(466).body(r#"{"invokeStatus":{"status":"QUOTE_ALLOWED_EXCEEDED"}}"#),
    );
    app.post_green(&green_text("79004445566@c.us", "BAE5000000000032"))
        .await;
    app.wait_for_pending_error("quota", WAIT).await;
}

#[tokio::test]
async fn an_event_for_an_instance_another_gateway_serves_is_refused_naming_both() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let (status, answer) = app.post_green(&green_fixture("incoming")).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "wrong_gateway");
    let text = answer["message"].as_str().unwrap();
    assert!(
        text.contains("`wasend`") && text.contains("`green`"),
        "{text}"
    );
}

#[tokio::test]
async fn readchat_calls_are_paced_per_instance_one_token_per_hundred_messages() {
    let fake = FakeWasend::start().await;
    let rate = 4.0;
    let settings = [
        ("delivery.rate_per_session", "4/s"),
        ("delivery.burst", "1"),
    ];
    let app = green_app(&fake, HELD, &settings).await;
    // One chat with 120 held messages (two calls), three with one each.
    for i in 0..120 {
        app.post_green(&green_text(IVAN, &format!("BAE5100000000{i:03}")))
            .await;
    }
    let others = ["79001112201@c.us", "79001112202@c.us", "79001112203@c.us"];
    for (i, chat) in others.iter().enumerate() {
        app.post_green(&green_text(chat, &format!("BAE52000000000{i:02}")))
            .await;
    }
    for chat in std::iter::once(IVAN).chain(others) {
        let own = green_fixture("outgoing").replace(IVAN, chat);
        let (_, answer) = app.post_green(&own).await;
        assert_eq!(answer["reason"], "from_me", "{answer}");
    }

    fake.wait_for_calls(5, WAIT).await;
    app.wait_until_nothing_pending(WAIT).await;
    let calls = fake.calls();
    assert_eq!(calls.len(), 5, "{calls:?}");
    let ivan: Vec<&str> = calls
        .iter()
        .filter(|c| c.green_read().0 == IVAN)
        .map(|c| c.green_read().1)
        .collect();
    assert_eq!(ivan.len(), 2, "120 messages take two readChat calls");
    assert!(ivan.contains(&"BAE5100000000119"), "{ivan:?}");
    let mut at: Vec<_> = calls.iter().map(|c| c.at).collect();
    at.sort();
    let least = Duration::from_secs_f64(4.0 / rate * 0.8);
    assert!(at[4] - at[0] >= least, "5 calls within {:?}", at[4] - at[0]);
}

#[tokio::test]
async fn a_429_waits_and_retries_and_a_401_pauses_the_instance() {
    let fake = FakeWasend::start().await;
    let app = green_app(&fake, BASE_RULES, &[]).await;

    fake.script([Answer::status(429).header("retry-after", "0")]);
    app.post_green(&green_text(IVAN, "BAE5000000000040")).await;
    let calls = fake.wait_for_calls(2, WAIT).await;
    assert!(calls.iter().all(|c| c.green_read().1 == "BAE5000000000040"));
    app.wait_until_nothing_pending(WAIT).await;

    fake.answer_session(
        GREEN_INSTANCE,
        Answer::status(401).body(r#"{"message":"Unauthorized"}"#),
    );
    app.post_green(&green_text("79001112244@c.us", "BAE5000000000041"))
        .await;
    app.wait_for_pending_error("HTTP 401", WAIT).await;
    let refused = fake.calls().len();
    // Paused for delivery.auth_pause: another message of the instance waits, uncalled, while another instance
    // goes on.
    app.post_green(&green_text("79001112255@c.us", "BAE5000000000042"))
        .await;
    let other =
        green_text("79001112266@c.us", "BAE5000000000043").replace(GREEN_INSTANCE, "1101000002");
    app.post_green(&other).await;
    fake.wait_for_calls(refused + 1, WAIT).await;
    let calls = fake.calls();
    assert_eq!(calls.len(), refused + 1, "{calls:?}");
    assert_eq!(
        calls[refused].path,
        format!("/waInstance1101000002/readChat/{GREEN_API_TOKEN}")
    );
    // The other instance's receipt leaves once its answer is recorded; the paused two stay.
    app.wait_until_pending_are(&["BAE5000000000041", "BAE5000000000042"], WAIT)
        .await;
}

#[tokio::test]
async fn a_message_its_sender_deleted_is_never_marked_and_the_deletion_is_no_new_message() {
    let fake = FakeWasend::start().await;
    let app = green_app(&fake, HOUR_RULES, &[]).await;
    app.post_green(&green_fixture("incoming")).await;
    app.post_green(&green_text(IVAN, "BAE5000000000050")).await;

    let (status, answer) = app.post_green(&green_fixture("deleted")).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        serde_json::json!({"status": "deleted", "cancelled": 1})
    );
    assert_eq!(app.pending_ids().await, ["BAE5000000000050"]);
    // An edit is no new message either.
    let edited = green_fixture("deleted")
        .replace("deletedMessage\"", "editedMessage\"")
        .replace("BAE5D5E1E7ED0A11", "BAE5ED17ED000001");
    let (_, answer) = app.post_green(&edited).await;
    assert_eq!(answer["status"], "ignored", "{answer}");
    assert_eq!(app.pending_ids().await, ["BAE5000000000050"]);
}
