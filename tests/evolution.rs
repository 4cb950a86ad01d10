//! Evolution API as a gateway, black-box, on the project's own fixtures (`tests/events/evolution/`): the
//! header token and the `jwt_key` JWT, messages from phone and LID chats, groups with LID senders, our own
//! messages releasing held receipts, reads on another device, deletions, markMessageAsRead's batches, the
//! error classes and pacing, from a fake Evolution on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const PAULA: &str = "5511999990001@s.whatsapp.net";
const HELD: &str = "[defaults]\naction = \"on_reply\"\n";

async fn evolution_app(fake: &FakeWasend, rules: &str, settings: &[(&str, &str)]) -> TestApp {
    let options = settings.iter().fold(
        Options::default()
            .rules(rules)
            .set("gateway.default", "evolution"),
        |o, (k, v)| o.set(k, v),
    );
    TestApp::spawn(fake, options).await
}

fn jwt(key: &str, exp_from_now: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims =
        json!({"iat": now, "exp": now + exp_from_now, "app": "evolution", "action": "webhook"});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn an_event_is_taken_with_the_instance_header_or_an_unexpired_jwt_never_with_the_body_apikey()
{
    let fake = FakeWasend::start().await;
    let app = evolution_app(&fake, HOUR_RULES, &[]).await;
    let body = evolution_fixture("upsert");
    let post = |headers: Vec<(&'static str, String)>| {
        let app = &app;
        let body = body.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.post_evolution_with("/webhook/evolution", &body, &headers)
                .await
        }
    };

    let refused = [
        vec![],
        vec![("x-autoseen-token", "not-the-evolution-token".to_string())],
        // The instance's token from the body, as a header, is not ours.
        vec![("apikey", "B6D711FCDE4D4FD5936544120E713976".to_string())],
        vec![(
            "authorization",
            format!("Bearer {}", jwt(EVOLUTION_JWT_KEY, -120)),
        )],
        vec![(
            "authorization",
            format!("Bearer {}", jwt("another-key-of-16-chars", 600)),
        )],
        vec![("authorization", format!("Bearer {EVOLUTION_JWT_KEY}"))],
    ];
    for headers in refused {
        let (status, answer) = post(headers.clone()).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
    }
    assert!(app.pending().await.is_empty());

    let (status, answer) = post(vec![("x-autoseen-token", EVOLUTION_TOKEN.to_string())]).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("scheduled")),
        "{answer}"
    );
    let (status, answer) = post(vec![(
        "authorization",
        format!("Bearer {}", jwt(EVOLUTION_JWT_KEY, 600)),
    )])
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    // `byEvents`: the same event on the suffixed path.
    let (status, answer) = app
        .post_evolution_with(
            "/webhook/evolution/messages-upsert",
            &evolution_text(PAULA, "3EB0000000000000B1"),
            &[("x-autoseen-token", EVOLUTION_TOKEN)],
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("scheduled")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_message_is_read_with_mark_message_as_read_and_lid_chats_by_their_phone() {
    let fake = FakeWasend::start().await;
    let app = evolution_app(&fake, BASE_RULES, &[]).await;

    let (_, answer) = app.post_evolution(&evolution_fixture("upsert")).await;
    assert_eq!(answer["status"], "scheduled", "{answer}");
    let (_, answer) = app.post_evolution(&evolution_fixture("upsert-lid")).await;
    assert_eq!(answer["status"], "scheduled", "{answer}");
    let (_, answer) = app
        .post_evolution(&evolution_fixture("upsert-lid-no-phone"))
        .await;
    assert_eq!(answer["status"], "scheduled", "{answer}");

    let calls = fake.wait_for_calls(3, WAIT).await;
    let mut keys: Vec<(String, String)> = calls.iter().flat_map(|c| c.evolution_keys()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            (
                "181234567890999@lid".to_string(),
                "3EB0AA11BB22CC33DD44".to_string()
            ),
            (PAULA.to_string(), "3EB0C431C26A1916E07A".to_string()),
            (
                "5511999990002@s.whatsapp.net".to_string(),
                "3EB05F2A9D7E11C4B8A1".to_string()
            ),
        ]
    );
    for call in &calls {
        assert_eq!(
            call.path,
            format!("/chat/markMessageAsRead/{EVOLUTION_INSTANCE}")
        );
        assert_eq!(call.api_key.as_deref(), Some(EVOLUTION_API_KEY));
        assert_eq!(call.body["readMessages"][0]["fromMe"], false);
    }
}

#[tokio::test]
async fn a_group_sender_known_by_a_lid_matches_phone_rules_through_its_phone() {
    let fake = FakeWasend::start().await;
    let rules = group_sender_rules("bia", "+55 11 99999-0003");
    let app = evolution_app(&fake, &rules, &[]).await;
    let (_, answer) = app.post_evolution(&evolution_fixture("group-lid")).await;
    assert_eq!(answer["rule"], "bia", "{answer}");
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(
        calls[0].evolution_keys(),
        [(
            "120363041234567890@g.us".to_string(),
            "3EB0D8E7F6A5B4C3D2E1".to_string()
        )]
    );
}

#[tokio::test]
async fn our_own_messages_from_the_phone_or_the_api_release_held_receipts_in_one_call() {
    for own in ["own-phone", "send-message"] {
        let fake = FakeWasend::start().await;
        let app = evolution_app(&fake, HELD, &[]).await;
        for id in ["3EB0000000000000C1", "3EB0000000000000C2"] {
            let (_, answer) = app.post_evolution(&evolution_text(PAULA, id)).await;
            assert_eq!(answer["status"], "on_reply", "{answer}");
        }
        let (_, answer) = app.post_evolution(&evolution_fixture(own)).await;
        assert_eq!(answer["reason"], "from_me", "{own}: {answer}");
        let calls = fake.wait_for_calls(1, WAIT).await;
        let ids: Vec<String> = calls[0]
            .evolution_keys()
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(ids, ["3EB0000000000000C1", "3EB0000000000000C2"], "{own}");
        app.wait_until_nothing_pending(WAIT).await;
        assert_eq!(fake.calls().len(), 1, "{own}");
    }
}

#[tokio::test]
async fn a_read_on_another_device_cancels_and_a_deletion_cancels_only_the_deleted_message() {
    let fake = FakeWasend::start().await;
    let app = evolution_app(&fake, HOUR_RULES, &[]).await;
    app.post_evolution(&evolution_text(PAULA, "3EB0000000000000D0"))
        .await;
    app.post_evolution(&evolution_fixture("upsert")).await;
    app.post_evolution(&evolution_text(PAULA, "3EB0000000000000D2"))
        .await;

    // Deleted by its sender: that message alone is forgotten.
    let (status, answer) = app.post_evolution(&evolution_fixture("delete")).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"status": "deleted", "cancelled": 1}));
    let ids: Vec<Value> = app
        .pending_ids()
        .await
        .into_iter()
        .map(Value::from)
        .collect();
    assert_eq!(
        ids,
        [json!("3EB0000000000000D0"), json!("3EB0000000000000D2")]
    );

    // Read on the phone: everything up to the read one goes.
    let read =
        evolution_fixture("update-read").replace("3EB0C431C26A1916E07A", "3EB0000000000000D2");
    let (_, answer) = app.post_evolution(&read).await;
    assert_eq!(answer["status"], "ack", "{answer}");
    assert_eq!(answer["cancelled"], 2, "{answer}");
    assert!(app.pending().await.is_empty());
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn evolutions_answers_retry_pause_or_give_up_as_documented() {
    let fake = FakeWasend::start().await;
    let app = evolution_app(&fake, BASE_RULES, &[]).await;

    fake.script([Answer::status(500).body(r#"{"status":500,"error":"Internal Server Error","response":{"message":["Read messages fail"]}}"#)]);
    app.post_evolution(&evolution_text(PAULA, "3EB0000000000000E1"))
        .await;
    fake.wait_for_calls(2, WAIT).await;
    app.wait_until_nothing_pending(WAIT).await;

    fake.script([Answer::status(400).body(r#"{"status":400,"error":"Bad Request","response":{"message":["readMessages must be an array"]}}"#)]);
    app.post_evolution(&evolution_text(
        "5511999990009@s.whatsapp.net",
        "3EB0000000000000E2",
    ))
    .await;
    let dead = app.wait_for_dead(WAIT).await;
    assert_eq!(dead[0]["message_id"], "3EB0000000000000E2");

    fake.answer_always(Answer::status(404).body(r#"{"status":404,"error":"Not Found","response":{"message":["The \"sales\" instance does not exist"]}}"#));
    app.post_evolution(&evolution_text(
        "5511999990008@s.whatsapp.net",
        "3EB0000000000000E3",
    ))
    .await;
    app.wait_for_pending_error("does not know this instance", WAIT)
        .await;
}

#[tokio::test]
async fn mark_message_as_read_takes_a_hundred_keys_a_call_one_token_each() {
    let fake = FakeWasend::start().await;
    let settings = [
        ("delivery.rate_per_session", "4/s"),
        ("delivery.burst", "1"),
    ];
    let app = evolution_app(&fake, HELD, &settings).await;
    for i in 0..150 {
        app.post_evolution(&evolution_text(PAULA, &format!("3EB0000000000{i:05}")))
            .await;
    }
    let others = [
        "5511999990021@s.whatsapp.net",
        "5511999990022@s.whatsapp.net",
    ];
    for (i, jid) in others.iter().enumerate() {
        app.post_evolution(&evolution_text(jid, &format!("3EB0000000001{i:05}")))
            .await;
    }
    for jid in std::iter::once(PAULA).chain(others) {
        let own = evolution_fixture("send-message").replace(PAULA, jid);
        app.post_evolution(&own).await;
    }
    fake.wait_for_calls(4, WAIT).await;
    app.wait_until_nothing_pending(WAIT).await;
    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        4,
        "150 keys in two calls, two chats in one each"
    );
    let sizes: Vec<usize> = calls.iter().map(|c| c.evolution_keys().len()).collect();
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 152);
    let mut at: Vec<_> = calls.iter().map(|c| c.at).collect();
    at.sort();
    let least = Duration::from_secs_f64(3.0 / 4.0 * 0.8);
    assert!(at[3] - at[0] >= least, "4 calls within {:?}", at[3] - at[0]);
}

#[tokio::test]
async fn a_wrong_instance_key_pauses_the_instance_with_its_receipts_waiting() {
    let fake = FakeWasend::start().await;
    let app = evolution_app(&fake, BASE_RULES, &[]).await;
    fake.answer_session(
        EVOLUTION_INSTANCE,
        Answer::status(401)
            .body(r#"{"status":401,"error":"Unauthorized","response":{"message":"Unauthorized"}}"#),
    );
    app.post_evolution(&evolution_text(PAULA, "3EB0000000000000F1"))
        .await;
    app.wait_for_pending_error("HTTP 401", WAIT).await;
    let refused = fake.calls().len();
    app.post_evolution(&evolution_text(
        "5511999990031@s.whatsapp.net",
        "3EB0000000000000F2",
    ))
    .await;
    // Another instance goes on while this one is paused.
    let other = evolution_text("5511999990032@s.whatsapp.net", "3EB0000000000000F3")
        .replace(r#""instance":"sales""#, r#""instance":"support""#);
    app.post_evolution(&other).await;
    fake.wait_for_calls(refused + 1, WAIT).await;
    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        refused + 1,
        "a paused instance is not called: {calls:?}"
    );
    assert_eq!(calls[refused].path, "/chat/markMessageAsRead/support");
    // The other instance's receipt leaves once its answer is recorded; the paused two stay.
    app.wait_until_pending_are(&["3EB0000000000000F1", "3EB0000000000000F2"], WAIT)
        .await;
}
