//! Two real autoseen processes on one PostgreSQL and one fake API: sessions spread over the replicas, each
//! receipt sent once, pacing and pauses hold cluster-wide, and sessions move when a replica dies or stops.
//! Without a server the tests say `skipped: …` and pass, unless `AUTOSEEN_TEST_REQUIRE_POSTGRES=1`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::pg::Database;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
/// Short, so failover tests take seconds; deadlines below come from it.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// A replica: the real binary on `db`, with a short lease and these settings.
async fn replica(db: &Database, fake: &FakeWasend, settings: &[(&str, &str)]) -> TestApp {
    let options = settings.iter().fold(
        Options::default()
            .set("store.url", &db.url())
            .set("store.lease_ttl", &format!("{}ms", LEASE_TTL.as_millis())),
        |o, (k, v)| o.set(k, v),
    );
    TestApp::spawn_process(fake, options).await
}

/// Two replicas with these settings on a fresh database, and the fake API they call; `None` without a server.
async fn cluster(settings: &[(&str, &str)]) -> Option<(Database, FakeWasend, TestApp, TestApp)> {
    let db = Database::create().await?;
    let fake = FakeWasend::start().await;
    let a = replica(&db, &fake, settings).await;
    let b = replica(&db, &fake, settings).await;
    Some((db, fake, a, b))
}

/// Settings that pace each session at `rate` without a burst, so sends last long enough to interrupt.
fn slowly(
    rate: &'static str,
    more: (&'static str, &'static str),
) -> [(&'static str, &'static str); 3] {
    [
        ("delivery.rate_per_session", rate),
        ("delivery.burst", "1"),
        more,
    ]
}

/// How many times the API saw each message.
fn counts(fake: &FakeWasend) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in fake.ids() {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

async fn nothing_pending(app: &TestApp) {
    eventually(WAIT, "nothing pending cluster-wide", async || {
        let (_, v) = app.admin(reqwest::Method::GET, "/admin/pending").await;
        v["pending"].as_array()?.is_empty().then_some(())
    })
    .await;
}

/// The sessions a replica's log says it marked seen in.
fn sessions_sent_by(app: &TestApp) -> HashSet<String> {
    app.logs()
        .iter()
        .filter(|l| l.contains("marked seen"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["session"].as_str().map(String::from))
        .collect()
}

/// `n` messages for `session`, alternately posted to `a` and `b`.
async fn post_alternately(a: &TestApp, b: &TestApp, session: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("false_4915100{i:05}@c.us_{session}{i:05}");
        let body = message(session, &format!("4915100{i:05}@c.us"), &id);
        let app = if i % 2 == 0 { a } else { b };
        let (status, answer) = app.send(&body).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &Value::from("scheduled")),
            "{answer}"
        );
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn two_thousand_webhooks_for_twenty_sessions_are_spread_sent_once_and_paced_cluster_wide() {
    let paced = [
        ("delivery.rate_per_session", "50/s"),
        ("delivery.burst", "5"),
    ];
    let Some((_db, fake, a, b)) = cluster(&paced).await else {
        return;
    };

    let mut ids = Vec::new();
    for s in 0..20 {
        ids.extend(post_alternately(&a, &b, &format!("shop{s:02}"), 100).await);
    }
    fake.wait_for_calls(2_000, WAIT).await;
    nothing_pending(&a).await;

    let counts = counts(&fake);
    assert_eq!(counts.len(), 2_000);
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "each sent exactly once"
    );
    let (by_a, by_b) = (sessions_sent_by(&a), sessions_sent_by(&b));
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "both replicas sent: {by_a:?} {by_b:?}"
    );
    // In any one second a session makes at most burst + rate calls, whichever replica makes them; the API sees
    // them with some jitter, so a tenth of a second of slack (5 calls). Unpaced, 100 would arrive at once.
    let mut times: HashMap<String, Vec<Instant>> = HashMap::new();
    for call in fake.calls() {
        times
            .entry(call.body["session"].as_str().unwrap().into())
            .or_default()
            .push(call.at);
    }
    for (session, mut at) in times {
        at.sort();
        for (i, start) in at.iter().enumerate() {
            let within = at[i..]
                .iter()
                .take_while(|t| **t - *start < Duration::from_secs(1))
                .count();
            assert!(
                within <= 5 + 50 + 5,
                "{session}: {within} calls within a second"
            );
        }
    }
}

#[tokio::test]
async fn the_same_message_posted_to_both_replicas_at_once_is_scheduled_once_and_sent_once() {
    let Some((_db, fake, a, b)) = cluster(&[]).await else {
        return;
    };
    let body = message(
        "twice",
        "491511110080@c.us",
        "false_491511110080@c.us_TWICE0001",
    );

    let ((_, first), (_, second)) = tokio::join!(a.send(&body), b.send(&body));
    fake.wait_for_calls(1, WAIT).await;
    nothing_pending(&a).await;

    let mut answers = [first["status"].clone(), second["status"].clone()];
    answers.sort_by_key(ToString::to_string);
    assert_eq!(
        answers,
        [Value::from("duplicate"), Value::from("scheduled")]
    );
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn when_a_replica_is_killed_the_survivor_sends_its_sessions_after_the_lease_ttl() {
    let settings = slowly("5/s", ("delivery.max_in_flight", "4"));
    let Some((_db, fake, mut a, b)) = cluster(&settings).await else {
        return;
    };
    let mut ids = Vec::new();
    for s in 0..4 {
        ids.extend(post_alternately(&a, &b, &format!("slow{s}"), 15).await);
    }
    eventually(WAIT, "both replicas sending", async || {
        (!sessions_sent_by(&a).is_empty() && !sessions_sent_by(&b).is_empty()).then_some(())
    })
    .await;

    a.kill();
    nothing_pending(&b).await;

    let counts = counts(&fake);
    assert!(
        ids.iter().all(|id| counts.contains_key(id)),
        "every receipt sent"
    );
    let repeated: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        repeated <= 4,
        "{repeated} sends repeated; at most the 4 in flight at the kill"
    );
}

#[tokio::test]
async fn a_replica_stopped_with_sigterm_hands_its_sessions_over_without_waiting_for_the_lease_ttl()
{
    // A long lease: a move within it can only come from leases given back.
    const LEASE_TTL: &str = "9s";
    let lease_ttl = humantime::parse_duration(LEASE_TTL).unwrap();
    let Some((_db, fake, mut a, b)) = cluster(&slowly("4/s", ("store.lease_ttl", LEASE_TTL))).await
    else {
        return;
    };
    for s in 0..4 {
        post_alternately(&a, &b, &format!("move{s}"), 20).await;
    }
    eventually(WAIT, "the first replica sending", async || {
        (!sessions_sent_by(&a).is_empty()).then_some(())
    })
    .await;

    a.terminate(SHUTDOWN_TIMEOUT * 2).await;
    let stopped = Instant::now();
    let moved = sessions_sent_by(&a);
    nothing_pending(&b).await;

    for session in moved {
        let resumed = fake
            .calls()
            .iter()
            .filter(|c| c.body["session"] == session.as_str() && c.at > stopped)
            .map(|c| c.at)
            .min();
        if let Some(resumed) = resumed {
            assert!(
                resumed - stopped < lease_ttl,
                "{session} resumed after {:?}",
                resumed - stopped
            );
        }
    }
}

#[tokio::test]
async fn a_retry_after_seen_by_one_owner_is_honoured_after_the_session_moves() {
    let Some((_db, fake, mut a, mut b)) = cluster(&[]).await else {
        return;
    };
    fake.answer_session("busy", Answer::status(429).header("retry-after", "4"));
    let (status, _) = a
        .send(&message("busy", "491511110090@c.us", "m-busy-1"))
        .await;
    assert_eq!(status, 200);
    let first = fake.wait_for_calls(1, WAIT).await[0].at;

    // Stop whichever replica holds the session; the other takes it over.
    let holder_is_a = eventually(WAIT, "the 429 logged by its owner", async || {
        let retried = |app: &TestApp| app.logs().iter().any(|l| l.contains("will retry"));
        match (retried(&a), retried(&b)) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    })
    .await;
    fake.answer_session("busy", Answer::status(200));
    let survivor = if holder_is_a {
        a.terminate(Duration::from_secs(10)).await;
        &b
    } else {
        b.terminate(Duration::from_secs(10)).await;
        &a
    };
    nothing_pending(survivor).await;

    let calls: Vec<Instant> = fake.calls().iter().map(|c| c.at).collect();
    assert_eq!(calls.len(), 2, "the 429, then the send");
    assert!(
        calls[1] - first >= Duration::from_secs(4),
        "waited {:?}",
        calls[1] - first
    );
}
