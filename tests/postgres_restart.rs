//! PostgreSQL stopped and started under load: nothing answered `scheduled` is lost, webhooks refused with 503
//! while it is down are accepted when the sender retries, and `/readyz` follows the outage. This test stops
//! the machine's PostgreSQL server, so it runs only where `AUTOSEEN_TEST_REQUIRE_POSTGRES=1` says the server
//! is the test's to use (`.ci/run`), and alone in its test binary.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::pg::Database;
use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// Stops or starts the local cluster the way this project's machines run it.
fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect"])
        .arg(&version)
        .args(["main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action}");
}

/// Posts message `i` (in one of seven chats); the answer's status.
async fn post(app: &TestApp, i: usize) -> u16 {
    let body = waha_message(
        &format!("4915120{:05}@c.us", i % 7),
        &format!("R{i:05}"),
        "hi",
    );
    app.post(&body).await.status().as_u16()
}

async fn ready(app: &TestApp) -> u16 {
    match app.http.get(app.url("/readyz")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn postgres_stopped_and_started_under_load_loses_nothing_scheduled() {
    if std::env::var("AUTOSEEN_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1") {
        println!("skipped: stopping the PostgreSQL server needs AUTOSEEN_TEST_REQUIRE_POSTGRES=1");
        return;
    }
    let db = Database::create().await.expect("required");
    let fake = FakeWasend::start().await;
    let options = Options::default()
        .rules("[defaults]\ndelay = \"2s\"\n")
        .set("store.url", &db.url());
    let app = TestApp::spawn_process(&fake, options).await;
    let id = |i: usize| format!("false_4915120{:05}@c.us_R{i:05}", i % 7);

    let mut scheduled: HashSet<usize> = HashSet::new();
    for i in 0..60 {
        if post(&app, i).await == 200 {
            scheduled.insert(i);
        }
    }
    cluster("stop");
    let mut refused = Vec::new();
    for i in 60..80 {
        match post(&app, i).await {
            200 => {
                scheduled.insert(i);
            }
            503 => refused.push(i),
            other => panic!("webhook {i} answered {other} during the outage"),
        }
    }
    let down = eventually(WAIT, "/readyz to report the outage", async || {
        (ready(&app).await == 503).then_some(())
    })
    .await;
    cluster("start");
    eventually(WAIT, "/readyz back after the restart", async || {
        (ready(&app).await == 200).then_some(())
    })
    .await;
    // The sender retries what was refused.
    for &i in &refused {
        let status = eventually(WAIT, "a refused webhook accepted on retry", async || {
            let s = post(&app, i).await;
            (s == 200).then_some(s)
        })
        .await;
        assert_eq!(status, 200);
        scheduled.insert(i);
    }
    eventually(WAIT, "every scheduled receipt sent", async || {
        let sent: HashSet<String> = fake.ids().into_iter().collect();
        scheduled
            .iter()
            .all(|&i| sent.contains(&id(i)))
            .then_some(())
    })
    .await;

    assert_eq!(down, ());
    assert!(!refused.is_empty(), "the outage was seen by the webhook");
    assert_eq!(scheduled.len(), 80);
}
