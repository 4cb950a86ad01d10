//! Nothing lost, nothing twice: restarts, crashes, outages, batches, pacing.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn counts(fake: &FakeWasend) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in fake.ids() {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

async fn accept_many(app: &TestApp, n: usize, chats: usize, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let chat = format!("4915100000{:02}@c.us", i % chats);
        let (status, v) = app.send(&message("default", &chat, &id)).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("scheduled")),
            "{v}"
        );
        ids.push(id);
    }
    ids
}

/// `n` messages through another gateway's route (`meta`, `green`, `evolution`), each from a chat of its own:
/// Meta and Green read a chat up to one id per call, so one message per chat makes every id a call of its own.
async fn accept_one_per_chat(app: &TestApp, n: usize, gateway: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (id, (status, v)) = match gateway {
            "meta" => {
                let id = format!("wamid.kill-{i}");
                let body = meta_text(&format!("5511900000{i:03}"), &id);
                (id, app.post_meta(&body).await)
            }
            "green" => {
                let id = format!("BAE5{i:012}");
                let body = green_text(&format!("7900{i:07}@c.us"), &id);
                (id, app.post_green(&body).await)
            }
            _ => {
                let id = format!("3EB0{i:012}");
                let body = evolution_text(&format!("55119{i:08}@s.whatsapp.net"), &id);
                (id, app.post_evolution(&body).await)
            }
        };
        let taken = v["status"].as_str().or(v["items"][0]["status"].as_str());
        assert_eq!((status, taken), (200, Some("scheduled")), "{gateway}: {v}");
        ids.push(id);
    }
    ids
}

async fn wait_until_nothing_pending(app: &TestApp) {
    eventually(WAIT, "no pending receipts", async || {
        let (_, v) = app.admin(Method::GET, "/admin/pending").await;
        v["pending"].as_array()?.is_empty().then_some(())
    })
    .await;
}

async fn assert_each_sent_once(fake: &FakeWasend, app: &TestApp, ids: &[String]) {
    eventually(WAIT, "every accepted receipt to be sent", async || {
        let c = counts(fake);
        ids.iter().all(|id| c.contains_key(id)).then_some(())
    })
    .await;
    wait_until_nothing_pending(app).await;
    let c = counts(fake);
    let twice: Vec<_> = c.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(c.len(), ids.len());
}

#[tokio::test]
async fn receipts_accepted_before_a_sigkill_are_all_sent_once_after_restart() {
    let fake = FakeWasend::start().await;
    let mut app = TestApp::spawn_process(
        &fake,
        Options::default()
            .rules("[defaults]\ndelay = \"8s\"\n")
            .set(&format!("gateway.sessions.{META_NUMBER}"), "meta")
            .set(&format!("gateway.sessions.{GREEN_INSTANCE}"), "green")
            .set(
                &format!("gateway.sessions.{EVOLUTION_INSTANCE}"),
                "evolution",
            ),
    )
    .await;
    let mut ids = accept_many(&app, 200, 20, "kill").await;
    for gateway in ["meta", "green", "evolution"] {
        ids.extend(accept_one_per_chat(&app, 50, gateway).await);
    }

    app.kill();
    assert!(fake.calls().is_empty(), "nothing was due before the kill");
    app.restart().await;

    assert_each_sent_once(&fake, &app, &ids).await;
}

#[tokio::test]
async fn sigterm_exits_zero_within_the_timeout_and_nothing_is_lost() {
    let fake = FakeWasend::start().await;
    let mut app = TestApp::spawn_process(
        &fake,
        Options::default().rules("[defaults]\ndelay = \"3s\"\n"),
    )
    .await;
    let ids = accept_many(&app, 200, 20, "term").await;

    let started = Instant::now();
    let status = app.terminate(SHUTDOWN_TIMEOUT * 3).await;

    assert!(status.success(), "exit status {status}");
    // Within server.shutdown_timeout, with slack for the process's own exit on a busy machine.
    assert!(started.elapsed() < SHUTDOWN_TIMEOUT + SHUTDOWN_TIMEOUT / 2);
    assert!(
        app.logs().iter().any(|l| l.contains("\"stopped\"")),
        "a clean stop is logged"
    );
    app.restart().await;
    assert_each_sent_once(&fake, &app, &ids).await;
}

#[tokio::test]
async fn a_duplicate_after_a_restart_is_still_a_duplicate() {
    let fake = FakeWasend::start().await;
    let mut app = TestApp::spawn_process(&fake, Options::default()).await;
    let body = message("default", "491515555555@c.us", "m-once");
    assert_eq!(app.send(&body).await.1["status"], "scheduled");
    fake.wait_for_calls(1, WAIT).await;

    app.terminate(Duration::from_secs(5)).await;
    app.restart().await;
    let (_, again) = app.send(&body).await;

    assert_eq!(again["status"], "duplicate");
    assert_eq!(counts(&fake)["m-once"], 1);
}

#[tokio::test]
async fn an_api_outage_delays_receipts_with_backoff_and_loses_none() {
    // A port with nothing listening: connection refused until the fake starts on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_process_with_api(
        &api,
        Options::default().set("delivery.max_attempts", "100"),
    )
    .await;
    let ids = accept_many(&app, 20, 4, "outage").await;
    eventually(WAIT, "refused connections to be retried", async || {
        let n = app
            .logs()
            .iter()
            .filter(|l| l.contains("will retry") && l.contains("cannot connect"))
            .count();
        (n >= 40).then_some(())
    })
    .await;

    let fake = FakeWasend::start_on(format!("127.0.0.1:{port}").parse().unwrap()).await;
    fake.script((0..30).map(|_| Answer::status(500)));

    eventually(
        WAIT,
        "every receipt to succeed once the API is back",
        async || {
            let ok: Vec<_> = fake
                .calls()
                .into_iter()
                .skip(30)
                .map(|c| c.message_id().to_string())
                .collect();
            ids.iter().all(|id| ok.contains(id)).then_some(())
        },
    )
    .await;
    wait_until_nothing_pending(&app).await;
    let (_, dead) = app.admin(Method::GET, "/admin/dead").await;
    assert!(dead["dead"].as_array().unwrap().is_empty(), "{dead}");
    // Every retry waited no longer than its backoff ceiling: min(400ms, 100ms * 2^(attempt-1)).
    for line in app.logs().iter().filter(|l| l.contains("will retry")) {
        let v: Value = serde_json::from_str(line).unwrap();
        let attempt = v["attempt"].as_u64().unwrap() as u32;
        let ceiling = 400.min(100 * 2u64.pow(attempt.min(10) - 1)) as i64;
        let wait = v["retry_in_ms"].as_i64().unwrap();
        assert!(
            (0..=ceiling).contains(&wait),
            "attempt {attempt} waited {wait} ms (ceiling {ceiling})"
        );
    }
}

#[tokio::test]
async fn an_unwritable_store_answers_503_names_the_cause_by_code_and_loses_nothing_accepted() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .rules("[defaults]\ndelay = \"2s\"\n")
            .set("store.busy_timeout", "200ms"),
    )
    .await;
    let ids = accept_many(&app, 5, 5, "before").await;

    let lock = rusqlite::Connection::open(app.dir.path().join("data/autoseen.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let refused = app
        .post(&message("default", "491516666666@c.us", "m-refused"))
        .await;
    let refused_status = refused.status().as_u16();
    let retry_after = refused.headers().get("retry-after").cloned();
    let refused_body: Value = refused.json().await.unwrap();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    let ready_status = ready.status().as_u16();
    let ready_body: Value = ready.json().await.unwrap();
    lock.execute_batch("COMMIT").unwrap();

    assert_eq!(refused_status, 503);
    assert!(retry_after.is_some());
    assert_eq!(ready_status, 503);
    // The cause as a code; the store's own words stay in the log.
    assert_eq!(ready_body["reason"], "store_unavailable", "{ready_body}");
    assert_eq!(refused_body["error"], "store_unavailable", "{refused_body}");
    assert!(
        !refused_body.to_string().contains("locked"),
        "{refused_body}"
    );
    assert_each_sent_once(&fake, &app, &ids).await;
    // The refused message was not remembered: the sender's retry is accepted.
    let (_, retried) = app
        .send(&message("default", "491516666666@c.us", "m-refused"))
        .await;
    assert_eq!(retried["status"], "scheduled");
}

#[tokio::test]
async fn messages_in_one_chat_go_out_together_when_the_earliest_is_due() {
    /// The slow rule's delay, below.
    const SLOW_DELAY: Duration = Duration::from_secs(30);
    let fake = FakeWasend::start().await;
    let rules = r#"
[defaults]
delay = "1s"

[[rules]]
name = "slow"
text = "^slow"
delay = "30s"
"#;
    let app = TestApp::spawn(&fake, Options::default().rules(rules)).await;
    let chat = "491517777777@c.us";
    let slow = |id: &str| {
        event(
            "message",
            "default",
            serde_json::json!({"id": id, "from": chat, "body": "slow one"}),
        )
    };

    let start = Instant::now();
    for i in 0..4 {
        assert_eq!(
            app.send(&slow(&format!("m-slow-{i}"))).await.1["rule"],
            "slow"
        );
    }
    assert_eq!(
        app.send(&message("default", chat, "m-fast")).await.1["rule"],
        "defaults"
    );

    let calls = fake.wait_for_calls(5, WAIT).await;
    let last = calls.iter().map(|c| c.at).max().unwrap();
    assert!(
        last - start < SLOW_DELAY / 2,
        "the slow ones did not wait for their own delay ({SLOW_DELAY:?})"
    );
    let first = calls.iter().map(|c| c.at).min().unwrap();
    assert!(
        first - start >= Duration::from_secs(1),
        "the batch waited for the earliest delay"
    );
}

#[tokio::test]
async fn a_reply_of_ours_marks_the_chat_seen_at_once() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default().rules("[defaults]\ndelay = \"1h\"\n"),
    )
    .await;
    let chat = "491518888888@c.us";
    for i in 0..3 {
        app.send(&message("default", chat, &format!("m-wait-{i}")))
            .await;
    }
    app.send(&message("default", "491519999999@c.us", "m-other-chat"))
        .await;

    let (_, answer) = app
        .send(&reply_of_ours("default", chat, "true_reply"))
        .await;

    assert_eq!(answer["reason"], "from_me");
    fake.wait_for_calls(3, WAIT).await;
    let mut ids = fake.ids();
    ids.sort();
    assert_eq!(ids, ["m-wait-0", "m-wait-1", "m-wait-2"]);
}

/// Accepts `n` receipts in one chat with a long delay, then flushes them all at once with a reply of ours;
/// returns the moments the API saw them, in order.
async fn flush_burst(app: &TestApp, fake: &FakeWasend, n: usize) -> Vec<std::time::Instant> {
    let chat = "491510000042@c.us";
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let body = message("default", chat, &format!("m-burst-{i}"));
        let url = app.url("/webhook");
        let http = app.http.clone();
        tasks.spawn(async move {
            http.post(url)
                .header("content-type", "application/json")
                .header("x-webhook-hmac", sign(&body))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    app.send(&reply_of_ours("default", chat, "true_flush"))
        .await;
    let calls = fake.wait_for_calls(n, Duration::from_secs(30)).await;
    let mut at: Vec<_> = calls.iter().map(|c| c.at).collect();
    at.sort();
    at
}

#[tokio::test]
async fn a_burst_due_at_once_goes_out_no_faster_than_the_session_rate() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .rules("[defaults]\ndelay = \"1h\"\n")
            .set("delivery.rate_per_session", "100/s")
            .set("delivery.burst", "5"),
    )
    .await;

    let at = flush_burst(&app, &fake, 155).await;

    // 5 at once, then 100 per second: the last of 155 leaves no sooner than 1.5 s after the first. Measured
    // first to last, as a lower bound (with a fifth of slack), because a busy machine can only make calls
    // arrive later and bunch them, never earlier: a window of arrival times would count such a bunch.
    // Unpaced, all 155 arrive within about 50 ms.
    let least = Duration::from_secs_f64((155.0 - 5.0) / 100.0 * 0.8);
    let spread = *at.last().unwrap() - at[0];
    assert!(
        spread >= least,
        "155 calls within {spread:?}, less than {least:?}"
    );
    assert_eq!(counts(&fake).len(), 155);
}

#[tokio::test]
async fn with_the_rate_off_a_flushed_burst_is_sent_whole_and_once() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default().rules("[defaults]\ndelay = \"1h\"\n"),
    )
    .await;

    flush_burst(&app, &fake, 500).await;

    let counts = counts(&fake);
    assert_eq!(counts.len(), 500);
    assert!(counts.values().all(|&n| n == 1), "each sent once");
}

/// `autoseen backup` on the config folder of a running app.
fn backup(app: &TestApp, to: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .args(["backup", "--config"])
        .arg(app.config_dir())
        .arg(to)
        .env_remove("AUTOSEEN_CONFIG")
        .output()
        .expect("autoseen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_store_restored_from_a_backup_sends_every_receipt_pending_at_backup_time() {
    let fake = FakeWasend::start().await;
    let mut app = TestApp::spawn_process(
        &fake,
        Options::default().rules("[defaults]\ndelay = \"6s\"\n"),
    )
    .await;
    let ids = accept_many(&app, 60, 12, "kept").await;
    let copies = tempfile::tempdir().unwrap();
    let copy = copies.path().join("autoseen-backup.db");

    let said = backup(&app, &copy);
    accept_many(&app, 5, 5, "after").await;
    app.kill();

    assert!(said.starts_with("ok: "), "{said}");
    let sent_by_the_original = fake.ids();
    // The original store is gone; the copy takes its place.
    let store = app.config_dir().parent().unwrap().join("data");
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(&copy, store.join("autoseen.db")).unwrap();
    app.restart().await;

    let expected: Vec<String> = ids
        .into_iter()
        .filter(|id| !sent_by_the_original.contains(id))
        .collect();
    assert!(
        !expected.is_empty(),
        "the original sent everything before the kill"
    );
    eventually(WAIT, "every receipt of the backup to be sent", async || {
        let c = counts(&fake);
        expected.iter().all(|id| c.contains_key(id)).then_some(())
    })
    .await;
    wait_until_nothing_pending(&app).await;
    let c = counts(&fake);
    let twice: Vec<_> = expected.iter().filter(|id| c[*id] > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert!(
        c.keys().all(|id| !id.starts_with("after")),
        "accepted after the backup, yet restored: {c:?}"
    );
}

#[test]
fn a_backup_never_overwrites_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), "[defaults]\n").unwrap();
    let store = dir.path().join("autoseen.db");
    std::fs::write(
        dir.path().join("autoseen.toml"),
        format!("[store]\nurl = \"sqlite:{}\"\n", store.display()),
    )
    .unwrap();
    let existing = dir.path().join("existing.db");
    std::fs::write(&existing, "keep me").unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .args(["backup", "--config"])
        .arg(dir.path())
        .arg(&existing)
        .env_remove("AUTOSEEN_CONFIG")
        .output()
        .unwrap();

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
}
