//! The path from a Wasend webhook to a sendSeen call, black-box.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_signed_message_is_marked_seen_with_the_exact_body_and_bearer_header() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;

    let (status, answer) = app
        .send(&message(
            "sales",
            "491511234567@c.us",
            "false_491511234567@c.us_AAA",
        ))
        .await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "scheduled");
    assert_eq!(answer["rule"], "defaults");
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(calls[0].path, "/sendSeen");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(
        calls[0].body,
        json!({"session": "sales", "to": "491511234567@c.us", "messageId": "false_491511234567@c.us_AAA"})
    );
}

#[tokio::test]
async fn a_group_message_is_marked_seen_with_its_ids_as_received() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let id = "false_120363012345678901@g.us_3EB0ABC_491511234567@c.us";
    let body = event(
        "message",
        "default",
        json!({"id": id, "from": "120363012345678901@g.us", "participant": "491511234567@c.us", "fromMe": false}),
    );

    assert_eq!(app.send(&body).await.0, 200);

    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(
        calls[0].body,
        json!({"session": "default", "to": "120363012345678901@g.us", "messageId": id})
    );
}

#[tokio::test]
async fn a_bad_or_missing_signature_gets_401_and_nothing_is_sent() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let body = message("default", "491511234567@c.us", "m-unsigned");
    let post = |sig: Option<String>| {
        let mut r = app
            .http
            .post(app.url("/webhook"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(sig) = sig {
            r = r.header("x-webhook-hmac", sig);
        }
        r.send()
    };

    let missing = post(None).await.unwrap();
    let wrong = post(Some("ab".repeat(64))).await.unwrap();
    let other_body = post(Some(sign(&message(
        "default",
        "491511234567@c.us",
        "other",
    ))))
    .await
    .unwrap();

    for r in [missing, wrong, other_body] {
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized");
    }
    // A signed one after them goes through, and it is the only call made.
    assert_eq!(
        app.send(&message("default", "491511234567@c.us", "m-signed"))
            .await
            .0,
        200
    );
    fake.wait_for_calls(1, WAIT).await;
    assert_eq!(fake.ids(), ["m-signed"]);
}

#[tokio::test]
async fn with_a_token_only_the_secret_path_is_accepted() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .without_hmac()
            .set("webhook.token", "s3cret-path-0123456789"),
    )
    .await;
    let body = message("default", "491511234567@c.us", "m-token");

    let plain = app.post_to("/webhook", &body).await;
    let wrong = app.post_to("/webhook/not-it", &body).await;
    let right = app.post_to("/webhook/s3cret-path-0123456789", &body).await;

    assert_eq!(plain.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
    fake.wait_for_calls(1, WAIT).await;
    assert_eq!(fake.ids(), ["m-token"]);
}

#[tokio::test]
async fn our_own_messages_and_other_events_are_ignored() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;

    let (s1, mine) = app
        .send(&reply_of_ours("default", "491511234567@c.us", "true_mine"))
        .await;
    let from_me_in_message = event(
        "message",
        "default",
        json!({"id": "true_x", "from": "491511234567@c.us", "fromMe": true}),
    );
    let (s2, mine2) = app.send(&from_me_in_message).await;
    let (s3, other) = app
        .send(&event(
            "session.status",
            "default",
            json!({"status": "WORKING"}),
        ))
        .await;

    assert_eq!((s1, s2, s3), (200, 200, 200));
    assert_eq!(mine["status"], "ignored");
    assert_eq!(mine["reason"], "from_me");
    assert_eq!(mine2["reason"], "from_me");
    assert_eq!(other["status"], "ignored");
    // A message sent after them is the first and only call: nothing was sent for the ignored ones.
    app.send(&message("default", "491511234567@c.us", "m-after"))
        .await;
    fake.wait_for_calls(1, WAIT).await;
    assert_eq!(fake.ids(), ["m-after"]);
}

#[tokio::test]
async fn a_duplicate_is_answered_as_such_and_sent_once() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let body = message("default", "491511234567@c.us", "m-dup");

    let first = app.send(&body).await.1;
    let second = app.send(&body).await.1;
    let as_any = app
        .send(&body.replace("\"message\"", "\"message.any\""))
        .await
        .1;

    assert_eq!(first["status"], "scheduled");
    assert_eq!(second["status"], "duplicate");
    assert_eq!(as_any["status"], "duplicate");
    app.send(&message("default", "491511234567@c.us", "m-next"))
        .await;
    fake.wait_for_calls(2, WAIT).await;
    let mut ids = fake.ids();
    ids.sort();
    assert_eq!(ids, ["m-dup", "m-next"]);
}

#[tokio::test]
async fn the_delay_is_respected() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default().rules("[defaults]\ndelay = \"1500ms\"\n"),
    )
    .await;

    let sent = std::time::Instant::now();
    let (_, answer) = app
        .send(&message("default", "491511234567@c.us", "m-delay"))
        .await;

    assert_eq!(answer["due_in_ms"], 1500);
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert!(
        calls[0].at.duration_since(sent) >= Duration::from_millis(1500),
        "{:?}",
        calls[0].at - sent
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_one_success() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(500), Answer::status(500)]);
    let app = TestApp::spawn(&fake, Options::default()).await;

    app.send(&message("default", "491511234567@c.us", "m-retry"))
        .await;

    fake.wait_for_calls(3, WAIT).await;
    let (_, pending) = eventually(WAIT, "the receipt to leave pending", async || {
        let (s, v) = app.admin(reqwest::Method::GET, "/admin/pending").await;
        (v["pending"].as_array()?.is_empty()).then_some((s, v))
    })
    .await;
    assert!(pending["pending"].as_array().unwrap().is_empty());
    assert_eq!(fake.ids(), ["m-retry", "m-retry", "m-retry"]);
    let (_, dead) = app.admin(reqwest::Method::GET, "/admin/dead").await;
    assert!(dead["dead"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_429_with_retry_after_waits_at_least_that_long() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(429).header("retry-after", "2")]);
    let app = TestApp::spawn(&fake, Options::default()).await;

    app.send(&message("default", "491511234567@c.us", "m-429"))
        .await;

    let calls = fake.wait_for_calls(2, WAIT).await;
    let gap = calls[1].at - calls[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
}

#[tokio::test]
async fn a_400_is_not_retried_and_goes_to_the_dead_letters() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(400)]);
    let app = TestApp::spawn(&fake, Options::default()).await;

    app.send(&message("default", "491511234567@c.us", "m-400"))
        .await;

    let dead = eventually(WAIT, "the receipt in the dead letters", async || {
        let (_, v) = app.admin(reqwest::Method::GET, "/admin/dead").await;
        let dead = v["dead"].as_array()?.clone();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead[0]["message_id"], "m-400");
    assert!(dead[0]["last_error"].as_str().unwrap().contains("HTTP 400"));
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies_are_refused_and_service_goes_on() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default().set("server.max_body_bytes", "4096"),
    )
    .await;

    let (s_json, malformed) = app.send("{\"event\": \"message\", ").await;
    let (s_field, no_id) = app
        .send(&event(
            "message",
            "default",
            json!({"from": "491511234567@c.us"}),
        ))
        .await;
    let (s_session, no_session) = app
        .send(&json!({"event": "message", "payload": {"id": "x", "from": "1@c.us"}}).to_string())
        .await;
    let big = message("default", "491511234567@c.us", &"x".repeat(5000));
    let (s_big, too_big) = app.send(&big).await;
    let text = app
        .http
        .post(app.url("/webhook"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();

    assert_eq!(s_json, 400, "{malformed}");
    assert!(
        malformed["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    assert_eq!(s_field, 400);
    assert!(
        no_id["message"].as_str().unwrap().contains("payload.id"),
        "{no_id}"
    );
    assert_eq!(s_session, 400);
    assert!(
        no_session["message"].as_str().unwrap().contains("session"),
        "{no_session}"
    );
    assert_eq!(s_big, 413, "{too_big}");
    assert_eq!(too_big["error"], "payload_too_large");
    assert_eq!(text.status(), 415);
    // The service is unharmed.
    assert_eq!(
        app.send(&message("default", "491511234567@c.us", "m-ok"))
            .await
            .0,
        200
    );
    fake.wait_for_calls(1, WAIT).await;
    assert_eq!(fake.ids(), ["m-ok"]);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;

    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn logs_are_json_lines_naming_the_message_and_never_its_text_or_keys() {
    let fake = FakeWasend::start().await;
    // At debug, where each accepted webhook has its line: no level may show the text or a key.
    let app = TestApp::spawn_process(&fake, Options::default().set("log.level", "debug")).await;
    let body = event(
        "message",
        "default",
        json!({"id": "m-log", "from": "491511234567@c.us", "body": "very private words"}),
    );

    app.send(&body).await;
    fake.wait_for_calls(1, WAIT).await;

    let logs = eventually(WAIT, "a `marked seen` log line", async || {
        let logs = app.logs();
        logs.iter()
            .any(|l| l.contains("marked seen"))
            .then_some(logs)
    })
    .await;
    let webhook_line = logs
        .iter()
        .find(|l| l.contains("\"message\":\"webhook\""))
        .expect("a webhook line");
    let v: serde_json::Value = serde_json::from_str(webhook_line).unwrap();
    assert_eq!(v["span"]["message_id"], "m-log");
    assert_eq!(v["status"], "scheduled");
    let all = logs.join("\n");
    for secret in ["very private words", API_KEY, HMAC_KEY, ADMIN_TOKEN] {
        assert!(!all.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test]
async fn the_probe_command_passes_on_a_ready_service_and_fails_on_a_closed_port() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    // The probe blocks while it waits; the app serves on this test's runtime meanwhile.
    let probe = |url: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_autoseen"))
                .args(["probe", &url])
                .output()
                .unwrap()
        })
    };

    let ready = probe(app.url("/readyz")).await.unwrap();
    let closed = probe("http://127.0.0.1:9/readyz".into()).await.unwrap();

    assert!(ready.status.success());
    assert!(!closed.status.success());
}
