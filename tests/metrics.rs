//! `/metrics` counts real traffic by the right amounts.
#![allow(clippy::too_many_lines)] // tests read top to bottom as one story

mod common;

use std::collections::HashMap;
use std::time::Duration;

use autoseen::metric_names as names;
use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The value of the sample `name{labels…}` whose labels include all of `want`; 0 when absent.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let labels: HashMap<&str, &str> = labels
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim_matches(','), v.trim_matches('"')))
                })
                .collect();
            want.iter()
                .all(|(k, v)| labels.get(k) == Some(v))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test]
async fn counters_move_by_the_right_amounts_after_real_traffic() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(500)]);
    let rules = r#"
[defaults]
delay = "0s"

[[rules]]
name = "later"
sessions = ["slow"]
delay = "1h"

[[rules]]
name = "no-groups"
chat_types = ["group"]
action = "ignore"
"#;
    let app = TestApp::spawn_process(&fake, Options::default().rules(rules)).await;

    app.send(&message("default", "491511000001@c.us", "m1"))
        .await;
    app.send(&message("default", "491511000002@c.us", "m2"))
        .await;
    app.send(&message("default", "491511000002@c.us", "m2"))
        .await;
    app.send(&message("default", "120363000000000009@g.us", "m-group"))
        .await;
    app.send(&message("slow", "491511000003@c.us", "m-slow"))
        .await;
    app.send(&reply_of_ours("default", "491511000001@c.us", "true_1"))
        .await;
    app.send(&event("session.status", "default", json!({})))
        .await;
    app.send("{not json").await;
    let unsigned = app
        .http
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .body(message("default", "491511000001@c.us", "m-unsigned"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // m1 fails once (500) and is retried: three calls in all.
    fake.wait_for_calls(3, WAIT).await;
    let text = eventually(WAIT, "two receipts counted as sent", async || {
        let text = app.metrics().await;
        (sample(&text, names::RECEIPTS_SENT, &[("session", "default")]) == 2.0).then_some(text)
    })
    .await;

    let webhooks = |result: &str, reason: &str| {
        sample(
            &text,
            names::WEBHOOKS,
            &[("result", result), ("reason", reason)],
        )
    };
    assert_eq!(webhooks("scheduled", ""), 3.0);
    assert_eq!(webhooks("duplicate", ""), 1.0);
    assert_eq!(webhooks("ignored", "rule"), 1.0);
    assert_eq!(webhooks("ignored", "from_me"), 1.0);
    assert_eq!(webhooks("ignored", "event"), 1.0);
    assert_eq!(webhooks("bad_request", ""), 1.0);
    assert_eq!(webhooks("unauthorized", ""), 1.0);
    assert_eq!(
        sample(
            &text,
            names::DECISIONS,
            &[("rule", "no-groups"), ("decision", "ignore")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            names::DECISIONS,
            &[("rule", "later"), ("decision", "seen")]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, names::RECEIPTS_RETRIED, &[("session", "default")]),
        1.0
    );
    assert_eq!(
        sample(&text, names::SEND_SEEN_RESPONSES, &[("status", "500")]),
        1.0
    );
    assert_eq!(
        sample(&text, names::SEND_SEEN_RESPONSES, &[("status", "200")]),
        2.0
    );
    assert_eq!(
        sample(&text, "autoseen_send_seen_duration_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        sample(&text, names::PENDING_RECEIPTS, &[("session", "slow")]),
        1.0
    );
    assert!(sample(&text, "autoseen_store_commit_seconds_count", &[]) >= 3.0);
    assert!(!text.contains("491511000001"), "chat ids are not labels");
}

#[tokio::test]
async fn metrics_can_live_on_a_port_of_their_own() {
    let fake = FakeWasend::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_process(
        &fake,
        Options::default().set("metrics.listen", &format!("127.0.0.1:{port}")),
    )
    .await;

    let on_main = app.http.get(app.url("/metrics")).send().await.unwrap();
    let own = eventually(WAIT, "the metrics port to answer", async || {
        app.http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()
    })
    .await;

    assert_eq!(on_main.status(), 404);
    assert_eq!(own.status(), 200);
    assert!(own.text().await.unwrap().contains("# HELP autoseen_"));
}
