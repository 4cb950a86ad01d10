//! autoseen on PostgreSQL, black-box: the same webhook-to-sendSeen path as on SQLite, and a database that is
//! down at start. Each test gets a database of its own on `AUTOSEEN_TEST_DATABASE_URL` (default the local
//! server), dropped after. Without a server the tests say `skipped: …` and pass, unless
//! `AUTOSEEN_TEST_REQUIRE_POSTGRES=1` (set by `.ci/run`).

mod common;

use std::time::Duration;

use common::pg::Database;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_webhook_on_postgres_is_committed_then_sent_once_and_duplicates_are_refused() {
    let Some(db) = Database::reserve().await else {
        return;
    };
    db.create_now().await;
    let fake = FakeWasend::start().await;
    let app = db.app(&fake).await;
    let body = message(
        "default",
        "491511110070@c.us",
        "false_491511110070@c.us_PG0001",
    );

    let (status, first) = app.send(&body).await;
    let (_, again) = app.send(&body).await;
    let calls = fake.wait_for_calls(1, WAIT).await;

    assert_eq!((status, &first["status"]), (200, &Value::from("scheduled")));
    assert_eq!(again["status"], "duplicate");
    assert_eq!(calls[0].message_id(), "false_491511110070@c.us_PG0001");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_database_down_at_start_gives_503s_and_works_once_it_is_there_without_a_restart() {
    let Some(db) = Database::reserve().await else {
        return;
    };
    let fake = FakeWasend::start().await;
    // The database does not exist yet: every connection fails, as when the server is down.
    let app = db.app(&fake).await;
    let body = waha_message("491511110071@c.us", "PG0002", "hi");

    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    let refused = app.post(&body).await;
    let (health, ready_status) = (health.status(), ready.status());
    let reason: Value = ready.json().await.unwrap();
    let (refused_status, retry_after) = (
        refused.status(),
        refused.headers().get("retry-after").cloned(),
    );
    db.create_now().await;
    let accepted = eventually(
        WAIT,
        "the webhook accepted once the database is there",
        async || {
            let (status, v) = app.send(&body).await;
            (status == 200).then_some(v)
        },
    )
    .await;
    fake.wait_for_calls(1, WAIT).await;

    assert_eq!(health, 200);
    assert_eq!(ready_status, 503);
    assert_eq!(reason["reason"], "store_unavailable", "{reason}");
    assert_eq!(refused_status, 503);
    assert!(retry_after.is_some());
    assert_eq!(accepted["status"], "scheduled");
}
