//! Meta's WhatsApp Cloud API as a gateway, black-box, on the project's own fixtures (`tests/events/meta/`):
//! the verification handshake, the signature over the raw body, batched bodies item by item, usernames,
//! groups Meta cannot mark, our own messages (echoes and `sent` statuses) releasing held receipts, and the
//! Graph API's error classes from a fake Graph API on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

const ANA_1: &str = "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABIYFDNBQjdGMUM0RTJBOTU1QTE3QTk1AA==";
const ANA_2: &str = "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABIYFDNBOEU2MEFBQjc3QjI1NTQzMTlGAA==";
const JONAS: &str = "wamid.HBgNNDkxNzYxMjM0MDAwMhUCABIYFDNBRjk5QjA4QzJEMjE0NzZCODhFAA==";
const REACTION: &str = "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABIYFDNBMTE0RDJFNzk4QjBCRjNCMDY0AA==";

/// autoseen with Meta serving every session, and these rules.
async fn meta_app(fake: &FakeWasend, rules: &str) -> TestApp {
    let options = Options::default()
        .rules(rules)
        .set("gateway.default", "meta");
    TestApp::spawn(fake, options).await
}

fn statuses(answer: &Value) -> Vec<(String, String)> {
    answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_handshake_answers_the_challenge_only_to_a_subscription_with_our_verify_token() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, BASE_RULES).await;
    let get = |query: String| {
        let http = app.http.clone();
        let url = app.url(&format!("/webhook/meta?{query}"));
        async move {
            let r = http.get(url).send().await.unwrap();
            let kind = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), kind, r.text().await.unwrap())
        }
    };

    let (status, kind, body) = get(format!(
        "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={META_VERIFY_TOKEN}"
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    assert!(kind.unwrap().starts_with("text/plain"));

    for query in [
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=not-the-verify-token".to_string(),
        format!("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={META_VERIFY_TOKEN}"),
        format!("hub.challenge=1&hub.verify_token={META_VERIFY_TOKEN}"),
        "hub.mode=subscribe&hub.challenge=1".to_string(),
    ] {
        let (status, _, body) = get(query.clone()).await;
        assert_eq!(status, 403, "{query}: {body}");
        assert!(
            !body.contains('1') || body.contains("error"),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn a_body_is_taken_only_with_the_app_secrets_signature_of_its_raw_bytes() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, BASE_RULES).await;
    let body = meta_fixture("username");

    let (status, answer) = app.post_meta_with(&body, None).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = format!("sha256={}", "0".repeat(64));
    let (status, _) = app.post_meta_with(&body, Some(&wrong)).await;
    assert_eq!(status, 401);
    // Signed, then re-serialised (compact): the bytes differ, so the signature does not hold.
    let signature = format!("sha256={}", meta_sign(&body));
    let compact = serde_json::from_str::<Value>(&body).unwrap().to_string();
    assert_ne!(compact, body);
    let (status, _) = app.post_meta_with(&compact, Some(&signature)).await;
    assert_eq!(status, 401);
    // Meta sends lower-case hex; the same digest in upper case is not its header.
    let upper = format!("sha256={}", meta_sign(&body).to_uppercase());
    let (status, _) = app.post_meta_with(&body, Some(&upper)).await;
    assert_eq!(status, 401);
    assert!(app.pending_ids().await.is_empty());

    let (status, answer) = app.post_meta(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["counts"]["scheduled"], 1, "{answer}");
}

#[tokio::test]
async fn every_message_of_a_batched_body_is_taken_once_and_unsupported_items_are_reported_beside_them()
 {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, BASE_RULES).await;
    let body = meta_fixture("batch");

    let (status, answer) = app.post_meta(&body).await;
    assert_eq!(status, 200, "{answer}");
    let items = statuses(&answer);
    assert_eq!(
        items,
        vec![
            (ANA_1.to_string(), "scheduled".to_string()),
            (JONAS.to_string(), "scheduled".to_string()),
            (REACTION.to_string(), "skipped".to_string()),
            (ANA_2.to_string(), "scheduled".to_string()),
            (
                "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABIYFDNBN0UxRjNDMDQ5QjVEMTFBNzIyAA==".to_string(),
                "skipped".to_string()
            ),
            (
                "wamid.HBgNNTUxMTk4NzY1MDAwMRUCABEYEjQxQkE0QTMyMzU0MEI2NkE2RAA=".to_string(),
                "ignored".to_string()
            ),
        ],
        "{answer}"
    );
    assert_eq!(answer["items"][2]["code"], "unsupported_type");
    assert_eq!(
        answer["items"][0]["item"],
        "entry[0].changes[0].value.messages[0]"
    );
    assert_eq!(
        answer["items"][5]["item"],
        "entry[1].changes[1].value.statuses[0]"
    );
    assert_eq!(answer["counts"]["scheduled"], 3, "{answer}");
    assert_eq!(answer["counts"]["skipped"], 2, "{answer}");
    assert_eq!(answer["counts"]["ignored"], 1, "{answer}");

    // Meta retries a delivery: every item it already took answers duplicate, one by one.
    let (status, again) = app.post_meta(&body).await;
    assert_eq!(status, 200);
    let duplicates: Vec<String> = statuses(&again)
        .into_iter()
        .filter(|(_, s)| s == "duplicate")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(duplicates, [ANA_1, JONAS, ANA_2], "{again}");

    // Each chat is marked through the Graph API; Ana's newest message reads her earlier one too.
    eventually(WAIT, "both chats marked", async || {
        let ids: Vec<String> = fake
            .calls()
            .iter()
            .map(|c| c.meta_message_id().to_string())
            .collect();
        (ids.contains(&JONAS.to_string()) && ids.contains(&ANA_2.to_string())).then_some(())
    })
    .await;
    app.wait_until_nothing_pending(WAIT).await;
    for call in fake.calls() {
        assert_eq!(call.path, format!("/v23.0/{META_NUMBER}/messages"));
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("Bearer {META_ACCESS_TOKEN}").as_str())
        );
        assert_eq!(call.body["messaging_product"], "whatsapp");
        assert_eq!(call.body["status"], "read");
        assert_ne!(call.meta_message_id(), REACTION);
    }
    assert!(fake.calls().len() <= 3, "{:?}", fake.calls());
}

#[tokio::test]
async fn a_user_known_only_by_a_username_is_a_chat_of_its_own_and_phone_rules_match_meta_numbers() {
    let fake = FakeWasend::start().await;
    let rules = r#"
[defaults]
action = "ignore"

[[rules]]
name = "usernames"
chats = ["*@bsuid"]
action = "seen"
delay = "0s"

[[rules]]
name = "ana"
chats = ["+55 11 98765-0001"]
action = "seen"
delay = "0s"
"#;
    let app = meta_app(&fake, rules).await;

    let (_, answer) = app.post_meta(&meta_fixture("username")).await;
    assert_eq!(answer["items"][0]["status"], "scheduled", "{answer}");
    assert_eq!(answer["items"][0]["rule"], "usernames", "{answer}");
    let (_, answer) = app
        .post_meta(&meta_text("5511987650001", "wamid.ana.1"))
        .await;
    assert_eq!(answer["items"][0]["rule"], "ana", "{answer}");

    let calls = fake.wait_for_calls(2, WAIT).await;
    let mut ids: Vec<&str> = calls.iter().map(|c| c.meta_message_id()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "wamid.HBgUVVMuMTM0OTEyMDg2NTUzMDI3NDE5MTgVAgASGBQzQUU0QjI3RjlDMTg4N0Y3QjEyMgA=",
            "wamid.ana.1"
        ]
    );
}

#[tokio::test]
async fn a_group_message_is_ignored_as_unsupported_by_meta_and_never_sent() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, BASE_RULES).await;

    let (status, answer) = app.post_meta(&meta_fixture("group")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["items"][0]["status"], "ignored", "{answer}");
    assert_eq!(answer["items"][0]["reason"], "unsupported_by_gateway");

    // A direct message after it is marked; the group's never is.
    app.post_meta(&meta_text("447700900123", "wamid.after.group"))
        .await;
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(calls[0].meta_message_id(), "wamid.after.group");
    app.wait_until_nothing_pending(WAIT).await;
    assert_eq!(fake.calls().len(), 1);
}

/// Rules that hold every message until a reply of ours.
const ON_REPLY: &str = r#"
[defaults]
action = "on_reply"
"#;

#[tokio::test]
async fn an_echo_of_our_own_message_releases_the_chats_held_messages_in_one_call() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, ON_REPLY).await;
    for id in ["wamid.held.1", "wamid.held.2"] {
        let (_, answer) = app.post_meta(&meta_text("5511987650001", id)).await;
        assert_eq!(answer["items"][0]["status"], "on_reply", "{answer}");
    }
    assert_eq!(app.pending_ids().await.len(), 2);

    let (_, answer) = app.post_meta(&meta_fixture("echo")).await;
    assert_eq!(answer["items"][0]["status"], "ignored", "{answer}");
    assert_eq!(answer["items"][0]["reason"], "from_me");

    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(calls[0].meta_message_id(), "wamid.held.2");
    app.wait_until_nothing_pending(WAIT).await;
    assert_eq!(
        fake.calls().len(),
        1,
        "one call reads the chat up to its newest"
    );
}

#[tokio::test]
async fn a_sent_status_counts_as_our_reply_where_meta_echoes_nothing() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, ON_REPLY).await;
    app.post_meta(&meta_text("5511987650001", "wamid.waiting"))
        .await;
    app.post_meta(&meta_text("4917612340002", "wamid.other.chat"))
        .await;

    let (_, answer) = app.post_meta(&meta_fixture("status-sent")).await;
    assert_eq!(answer["items"][0]["reason"], "from_me", "{answer}");

    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(calls[0].meta_message_id(), "wamid.waiting");
    // Its answer recorded, only the other chat's receipt is left.
    eventually(WAIT, "only the other chat pending", async || {
        (app.pending_ids().await == ["wamid.other.chat"]).then_some(())
    })
    .await;
}

fn graph_error(status: u16, code: i64) -> Answer {
    Answer::status(status).body(format!(
        r#"{{"error":{{"message":"(#{code}) test","type":"OAuthException","code":{code},"fbtrace_id":"AbC"}}}}"#
    ))
}

#[tokio::test]
async fn graph_api_errors_retry_pause_or_give_up_by_metas_error_code() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, BASE_RULES).await;

    // Throttled (pair rate limit), then taken.
    fake.script([graph_error(400, 131056)]);
    app.post_meta(&meta_text("5511987650001", "wamid.throttled"))
        .await;
    let calls = fake.wait_for_calls(2, WAIT).await;
    assert!(
        calls
            .iter()
            .all(|c| c.meta_message_id() == "wamid.throttled")
    );
    app.wait_until_nothing_pending(WAIT).await;

    // A parameter Meta refuses: dead at once, never retried.
    fake.script([graph_error(400, 100)]);
    app.post_meta(&meta_text("5511987650002", "wamid.refused"))
        .await;
    let dead = app.wait_for_dead(WAIT).await;
    assert_eq!(dead[0]["message_id"], "wamid.refused");
    assert_eq!(dead[0]["attempts"], 1);

    // An expired token: the session pauses; the receipt waits, with the error.
    fake.answer_always(graph_error(401, 190));
    app.post_meta(&meta_text("5511987650003", "wamid.expired"))
        .await;
    app.wait_for_pending_error("190", WAIT).await;
    assert_eq!(app.pending_ids().await, ["wamid.expired"]);
}

#[tokio::test]
async fn an_event_on_another_gateways_route_is_refused_naming_both() {
    let fake = FakeWasend::start().await;
    let options = Options::default().set(&format!("gateway.sessions.{META_NUMBER}"), "meta");
    let app = TestApp::spawn(&fake, options).await;

    // A WAHA event for the Meta number on the WAHA route: refused whole.
    let (status, answer) = app
        .send(&message(
            META_NUMBER,
            "491511234567@c.us",
            "false_491511234567@c.us_A1",
        ))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "wrong_gateway");
    let text = answer["message"].as_str().unwrap();
    assert!(
        text.contains("`meta`") && text.contains("`wasend`"),
        "{text}"
    );

    // A Meta body for a number the WAHA gateway serves (the default): that item is skipped, the body taken.
    let body = meta_text("5511987650001", "wamid.elsewhere").replace(META_NUMBER, "default");
    let (status, answer) = app.post_meta(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"][0]["status"], "skipped");
    assert_eq!(answer["items"][0]["code"], "wrong_gateway");
    assert!(app.pending_ids().await.is_empty());
}

/// `autoseen credentials` on the app's config folder, with the test secrets and a Meta number.
async fn credentials(app: &TestApp, extra: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_autoseen"));
    command
        .args(["credentials", "--config"])
        .arg(app.config_dir())
        .env("AUTOSEEN__META__ACCESS_TOKEN", META_ACCESS_TOKEN)
        .env(
            format!("AUTOSEEN__GATEWAY__SESSIONS__{META_NUMBER}"),
            "meta",
        )
        .env("AUTOSEEN__WASEND__API_KEY", API_KEY);
    for (k, v) in extra {
        command.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn credentials_are_checked_with_calls_that_mark_nothing_and_said_where_a_gateway_has_none() {
    let fake = FakeWasend::start().await;
    let app = meta_app(&fake, BASE_RULES).await;

    let (ok, text) = credentials(&app, &[]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("ok: {META_NUMBER} (meta)")),
        "{text}"
    );
    assert!(text.contains("not checked: default (wasend)"), "{text}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].path, format!("/v23.0/{META_NUMBER}"));
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {META_ACCESS_TOKEN}").as_str())
    );

    // An expired token: refused, and the exit status says so.
    fake.answer_always(Answer::status(401).body(
        r#"{"error":{"message":"Error validating access token","type":"OAuthException","code":190}}"#,
    ));
    let (ok, text) = credentials(&app, &[]).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("error: {META_NUMBER} (meta): refused: HTTP 401")),
        "{text}"
    );

    // WAHA has a harmless call: the session's own status.
    fake.answer_always(Answer::status(200));
    let (ok, text) = credentials(&app, &[("AUTOSEEN__WASEND__FLAVOR", "waha")]).await;
    assert!(ok, "{text}");
    assert!(text.contains("ok: default (wasend)"), "{text}");
    let waha = fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/api/sessions/default");
    assert_eq!(
        waha.expect("WAHA's session read").api_key.as_deref(),
        Some(API_KEY)
    );
    assert!(
        fake.calls().iter().all(|c| c.method == "GET"),
        "nothing was marked"
    );
}

#[tokio::test]
async fn meta_calls_are_paced_per_number_one_token_per_chat_batch() {
    let fake = FakeWasend::start().await;
    let rate = 4.0;
    let options = Options::default()
        .rules(ON_REPLY)
        .set("gateway.default", "meta")
        .set("delivery.rate_per_session", "4/s")
        .set("delivery.burst", "1");
    let app = TestApp::spawn(&fake, options).await;
    // Four chats held for a reply: one with ten messages, three with one.
    let chats = [
        "5511987650001",
        "5511987650002",
        "5511987650003",
        "5511987650004",
    ];
    for i in 0..10 {
        app.post_meta(&meta_text(chats[0], &format!("wamid.busy.{i}")))
            .await;
    }
    for chat in &chats[1..] {
        app.post_meta(&meta_text(chat, &format!("wamid.one.{chat}")))
            .await;
    }
    // A sent status per chat releases them all at once.
    for chat in chats {
        let status = meta_fixture("status-sent").replace("5511987650001", chat);
        let (_, answer) = app.post_meta(&status).await;
        assert_eq!(answer["items"][0]["reason"], "from_me", "{answer}");
    }

    let calls = fake.wait_for_calls(4, WAIT).await;
    let ids: Vec<&str> = calls.iter().map(|c| c.meta_message_id()).collect();
    assert!(
        ids.contains(&"wamid.busy.9"),
        "the busy chat up to its newest: {ids:?}"
    );
    app.wait_until_nothing_pending(WAIT).await;
    // Ten messages of one chat are one call, one token: four calls for four chats.
    let calls = fake.calls();
    assert_eq!(calls.len(), 4, "{ids:?}");
    // One token per call at `rate` after a burst of one: the last call no sooner than 3 intervals after the
    // first (with a fifth of slack for timer granularity).
    let mut at: Vec<_> = calls.iter().map(|c| c.at).collect();
    at.sort();
    let spread = at[3] - at[0];
    let least = Duration::from_secs_f64(3.0 / rate * 0.8);
    assert!(
        spread >= least,
        "4 calls within {spread:?}, less than {least:?}"
    );
}
