//! Hostile input, abusive clients, a misbehaving upstream, and secrets, tested the way trusted webhook
//! receivers test theirs. Every load here targets 127.0.0.1 and is bounded in count and time.
#![allow(clippy::too_many_lines)] // tests read top to bottom as one story

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn post_raw(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut r = app
        .http
        .post(app.url("/webhook"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// A named request: its body and headers.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

#[tokio::test]
async fn every_signature_rejection_is_401_with_one_and_the_same_body() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let body = message("default", "491511234567@c.us", "m-sig");
    let good = sign(&body);
    let other_key = autoseen::gateway::signature::sign(
        "wrong-key",
        autoseen::gateway::signature::Algorithm::Sha512,
        body.as_bytes(),
    );
    let sha256 = autoseen::gateway::signature::sign(
        HMAC_KEY,
        autoseen::gateway::signature::Algorithm::Sha256,
        body.as_bytes(),
    );
    let mut modified = body.clone().into_bytes();
    modified[10] ^= 1;
    let modified = String::from_utf8(modified).unwrap();
    let truncated = &good[..good.len() - 2];
    let long = format!("{good}00");
    let non_hex = good.replace(|c: char| c.is_ascii_digit(), "z");

    let cases: Vec<Case> = vec![
        (
            "wrong key",
            body.clone(),
            vec![("x-webhook-hmac", &other_key)],
        ),
        (
            "truncated hex",
            body.clone(),
            vec![("x-webhook-hmac", truncated)],
        ),
        (
            "over-long hex",
            body.clone(),
            vec![("x-webhook-hmac", &long)],
        ),
        ("non-hex", body.clone(), vec![("x-webhook-hmac", &non_hex)]),
        ("empty header", body.clone(), vec![("x-webhook-hmac", "")]),
        ("no header", body.clone(), vec![]),
        (
            "body changed by one byte",
            modified,
            vec![("x-webhook-hmac", &good)],
        ),
        (
            "sha512 signature, sha256 header",
            body.clone(),
            vec![
                ("x-webhook-hmac", &good),
                ("x-webhook-hmac-algorithm", "sha256"),
            ],
        ),
        (
            "sha256 signature, no header",
            body.clone(),
            vec![("x-webhook-hmac", &sha256)],
        ),
        (
            "unknown algorithm",
            body.clone(),
            vec![
                ("x-webhook-hmac", &good),
                ("x-webhook-hmac-algorithm", "md5"),
            ],
        ),
        (
            "two signature headers",
            body.clone(),
            vec![("x-webhook-hmac", &good), ("x-webhook-hmac", &good)],
        ),
    ];
    let mut bodies = Vec::new();
    for (name, body, headers) in &cases {
        let (status, answer) = post_raw(&app, body, headers).await;
        assert_eq!(status, 401, "{name}");
        bodies.push(answer);
    }

    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every rejection has the same body"
    );
    let upper = good.to_uppercase();
    let (status, _) = post_raw(&app, &body, &[("x-webhook-hmac", &upper)]).await;
    assert_eq!(
        status, 200,
        "upper-case hex carries the same MAC and is accepted"
    );
    let (status, _) = post_raw(
        &app,
        &message("default", "491511234567@c.us", "m-256"),
        &[
            (
                "x-webhook-hmac",
                &autoseen::gateway::signature::sign(
                    HMAC_KEY,
                    autoseen::gateway::signature::Algorithm::Sha256,
                    message("default", "491511234567@c.us", "m-256").as_bytes(),
                ),
            ),
            ("x-webhook-hmac-algorithm", "sha256"),
        ],
    )
    .await;
    assert_eq!(status, 200, "sha256 with its header passes");
    fake.wait_for_calls(2, WAIT).await;
    let mut ids = fake.ids();
    ids.sort();
    assert_eq!(ids, ["m-256", "m-sig"], "nothing refused was sent");
}

#[tokio::test]
async fn during_key_rotation_both_keys_pass() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default().set("webhook.hmac_keys", "next-key-1,next-key-2"),
    )
    .await;
    let body = message("default", "491511234567@c.us", "m-rotated");
    let with_next = autoseen::gateway::signature::sign(
        "next-key-2",
        autoseen::gateway::signature::Algorithm::Sha512,
        body.as_bytes(),
    );

    let (old, _) = post_raw(
        &app,
        &message("default", "491511234567@c.us", "m-old"),
        &[(
            "x-webhook-hmac",
            &sign(&message("default", "491511234567@c.us", "m-old")),
        )],
    )
    .await;
    let (new, _) = post_raw(&app, &body, &[("x-webhook-hmac", &with_next)]).await;

    assert_eq!((old, new), (200, 200));
}

#[tokio::test]
async fn events_older_than_max_age_are_refused_as_replays() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("webhook.max_age", "5m")).await;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let with_time = |id: &str, ts: i64| {
        let mut v: Value =
            serde_json::from_str(&message("default", "491511234567@c.us", id)).unwrap();
        v["timestamp"] = json!(ts);
        v.to_string()
    };

    let (fresh, _) = app.send(&with_time("m-fresh", now_ms - 1_000)).await;
    let (old, old_answer) = app.send(&with_time("m-old", now_ms - 3 * 3_600_000)).await;
    let (future, _) = app.send(&with_time("m-future", now_ms + 3_600_000)).await;

    assert_eq!(fresh, 200);
    assert_eq!(old, 400);
    assert_eq!(old_answer["error"], "stale_event");
    assert_eq!(future, 400);
}

#[tokio::test]
async fn an_events_age_is_judged_by_the_services_own_clock() {
    let fake = FakeWasend::start().await;
    let service_now: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .set("webhook.max_age", "5m")
            .clock_at(service_now),
    )
    .await;
    let with_time = |id: &str, ts: i64| {
        let mut v: Value =
            serde_json::from_str(&message("default", "491511234567@c.us", id)).unwrap();
        v["timestamp"] = json!(ts);
        v.to_string()
    };
    let service_ms = service_now.as_millisecond();

    let (fresh_to_the_service, _) = app.send(&with_time("m-then", service_ms - 60_000)).await;
    let (now_on_the_wall, answer) = app
        .send(&with_time("m-now", jiff::Timestamp::now().as_millisecond()))
        .await;

    assert_eq!(fresh_to_the_service, 200);
    assert_eq!(
        (now_on_the_wall, &answer["error"]),
        (400, &json!("stale_event"))
    );
}

/// Opens a raw connection to the app.
fn connect(app: &TestApp) -> TcpStream {
    let s = TcpStream::connect(app.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `bytes` one at a time, `gap` apart, until the server closes the connection (or answers); returns
/// how long that took, or `None` if it never did.
fn dribble(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_nonblocking(true).unwrap();
    for b in bytes.iter().cycle().take(200) {
        if stream.write_all(&[*b]).is_err() {
            return Some(start.elapsed());
        }
        std::thread::sleep(gap);
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            _ => return Some(start.elapsed()),
        }
    }
    None
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_cut_off() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("server.header_timeout", "1s")).await;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    let mut stream = connect(&app);

    let took = tokio::task::spawn_blocking(move || {
        dribble(
            &mut stream,
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            Duration::from_millis(100),
        )
    })
    .await
    .unwrap();

    let took = took.expect("the server closed the connection");
    // The 1 s header timeout, with generous slack for a busy machine.
    assert!(took < HEADER_TIMEOUT * 8, "cut off after {took:?}");
    assert_eq!(
        app.send(&message("default", "491511234567@c.us", "m-after-slow"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_gets_408() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("server.body_timeout", "1s")).await;
    let mut stream = connect(&app);
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();

    let answer = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("server.max_connections", "3")).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    let (answered_in_turn, fourth_before, fourth_after) = tokio::task::spawn_blocking({
        let app_addr = app.addr;
        move || {
            let open = || {
                let s = TcpStream::connect(app_addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s
            };
            // The kernel queues connections in order and the server accepts them in that order: these three
            // take every slot before the fourth arrives.
            let mut held: Vec<TcpStream> = (0..3).map(|_| open()).collect();
            let mut fourth = open();
            fourth.write_all(request).unwrap();
            // A held connection is served: the server is running and has read what came before.
            held[0].write_all(request).unwrap();
            let answered_in_turn = read_answer(&mut held[0]);
            fourth.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            let fourth_before = match fourth.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                other => Some(format!("{other:?}")),
            };
            fourth.set_nonblocking(false).unwrap();
            drop(held);
            (answered_in_turn, fourth_before, read_answer(&mut fourth))
        }
    })
    .await
    .unwrap();

    assert!(
        answered_in_turn.starts_with("HTTP/1.1 200"),
        "{answered_in_turn}"
    );
    assert_eq!(
        fourth_before, None,
        "the fourth is not served while three are open"
    );
    assert!(fourth_after.starts_with("HTTP/1.1 200"), "{fourth_after}");
}

/// Reads one answer's first bytes (blocking, up to the stream's read timeout).
fn read_answer(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_huge_body_is_refused_without_being_read_whole() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let mut stream = connect(&app);
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();

    let (written, answer) = tokio::task::spawn_blocking(move || {
        let chunk = vec![b' '; 1 << 20];
        let mut written = 0usize;
        // Up to 1 GiB, stopping as soon as the server answers or closes.
        while written < 1 << 30 {
            let head = format!("{:x}\r\n", chunk.len());
            if stream.write_all(head.as_bytes()).is_err()
                || stream.write_all(&chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                break;
            }
            written += chunk.len();
        }
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        (written, String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await
    .unwrap();

    assert!(
        written < 256 << 20,
        "the server read {written} bytes before refusing"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );
    assert_eq!(
        app.send(&message("default", "491511234567@c.us", "m-after-huge"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn deeply_nested_json_is_a_400() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Deep inside a field autoseen skips, where the JSON parser itself would not count the levels.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let in_a_skipped_field = message("default", "491511234567@c.us", "m-deep").replacen(
        "\"body\":\"hello\"",
        &format!("\"body\":\"hello\",\"extra\":{deep}"),
        1,
    );

    let (status, answer) = app.send(&body).await;
    let (skipped_status, skipped_answer) = app.send(&in_a_skipped_field).await;

    assert_eq!(status, 400, "{answer}");
    assert_eq!(skipped_status, 400, "{skipped_answer}");
    assert!(
        skipped_answer["message"]
            .as_str()
            .unwrap()
            .contains("128 levels"),
        "{skipped_answer}"
    );
    assert_eq!(
        app.send(&message("default", "491511234567@c.us", "m-after-deep"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_flood_of_invalid_requests_is_refused_and_leaves_the_service_healthy() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let body = message("default", "491511234567@c.us", "m-flood");

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..25 {
        let (http, url, body) = (app.http.clone(), app.url("/webhook"), body.clone());
        tasks.spawn(async move {
            let mut unauthorized = 0;
            for _ in 0..400 {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-webhook-hmac", "00")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                unauthorized += usize::from(r.status() == 401);
            }
            unauthorized
        });
    }
    let mut refused = 0;
    while let Some(n) = tasks.join_next().await {
        refused += n.unwrap();
    }

    assert_eq!(refused, 10_000);
    assert_eq!(app.send(&body).await.0, 200);
    fake.wait_for_calls(1, WAIT).await;
    assert_eq!(fake.ids(), ["m-flood"]);
}

/// A fake API on a raw socket that resets the first `resets` connections, then answers 200.
async fn resetting_api(resets: usize) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            seen += 1;
            let reset = seen <= resets;
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                if reset {
                    // Linger 0 makes the close a reset; it does not block here.
                    #[allow(deprecated)]
                    let _ = s.set_linger(Some(Duration::ZERO));
                    return;
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot json!").await;
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (format!("http://{addr}"), served)
}

#[tokio::test]
async fn resets_before_an_answer_are_retried_and_invalid_json_on_200_is_success() {
    let (api, served) = resetting_api(2).await;
    let app = TestApp::spawn_process_with_api(&api, Options::default()).await;

    app.send(&message("default", "491511234567@c.us", "m-reset"))
        .await;

    eventually(WAIT, "the receipt sent after two resets", async || {
        (served.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    eventually(WAIT, "nothing pending", async || {
        let (_, v) = app.admin(Method::GET, "/admin/pending").await;
        v["pending"].as_array()?.is_empty().then_some(())
    })
    .await;
    let retries = app
        .logs()
        .iter()
        .filter(|l| l.contains("will retry"))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn an_answer_that_never_comes_times_out_and_is_retried() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::hang()]);
    let app =
        TestApp::spawn_process(&fake, Options::default().set("wasend.timeout", "500ms")).await;

    app.send(&message("default", "491511234567@c.us", "m-hang"))
        .await;

    fake.wait_for_calls(2, WAIT).await;
    let timed_out = eventually(WAIT, "a timeout logged", async || {
        app.logs()
            .into_iter()
            .find(|l| l.contains("will retry") && l.contains("timed out"))
    })
    .await;
    let v: Value = serde_json::from_str(&timed_out).unwrap();
    assert!(v["duration_ms"].as_u64().unwrap() >= 450);
}

#[tokio::test]
async fn a_10_mb_error_body_is_read_only_up_to_a_cap() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(500).body("E".repeat(10 << 20))]);
    let app = TestApp::spawn_process(&fake, Options::default()).await;

    app.send(&message("default", "491511234567@c.us", "m-big-error"))
        .await;

    fake.wait_for_calls(2, WAIT).await;
    let line = eventually(WAIT, "the failure logged", async || {
        app.logs().into_iter().find(|l| l.contains("will retry"))
    })
    .await;
    assert!(line.len() < 8 * 1024, "logged {} bytes", line.len());
}

#[tokio::test]
async fn a_401_for_one_session_pauses_it_and_the_others_go_on() {
    let fake = FakeWasend::start().await;
    fake.answer_session(
        "revoked",
        Answer::status(401).body(r#"{"message":"invalid api key"}"#),
    );
    let app = TestApp::spawn_process(&fake, Options::default()).await;

    app.send(&message("revoked", "491511234567@c.us", "m-revoked-0"))
        .await;
    eventually(WAIT, "the session paused", async || {
        app.logs()
            .iter()
            .any(|l| l.contains("refused this session's API key"))
            .then_some(())
    })
    .await;
    for i in 1..3 {
        app.send(&message(
            "revoked",
            "491511234568@c.us",
            &format!("m-revoked-{i}"),
        ))
        .await;
    }
    for i in 0..3 {
        app.send(&message(
            "fine",
            "491511234567@c.us",
            &format!("m-fine-{i}"),
        ))
        .await;
    }

    eventually(WAIT, "the healthy session's receipts sent", async || {
        let ids = fake.ids();
        (0..3)
            .all(|i| ids.contains(&format!("m-fine-{i}")))
            .then_some(())
    })
    .await;
    let revoked_calls = fake
        .calls()
        .iter()
        .filter(|c| c.body["session"] == "revoked")
        .count();
    assert_eq!(
        revoked_calls, 1,
        "the paused session makes no calls while paused"
    );
    // The healthy session's sends are recorded just after the API saw them; then only the paused ones wait.
    let waiting = eventually(
        WAIT,
        "only the paused session's receipts pending",
        async || {
            let (_, v) = app.admin(Method::GET, "/admin/pending").await;
            let sessions: Vec<Value> = v["pending"]
                .as_array()?
                .iter()
                .map(|r| r["session"].clone())
                .collect();
            sessions.iter().all(|s| s == "revoked").then_some(sessions)
        },
    )
    .await;
    assert_eq!(waiting.len(), 3, "its receipts wait");
    let (_, dead) = app.admin(Method::GET, "/admin/dead").await;
    assert!(dead["dead"].as_array().unwrap().is_empty());
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("refused this session's API key"))
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("autoseen_session_paused_total{session=\"revoked\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_429_storm_waits_as_asked_between_calls_and_then_sends_everything() {
    let fake = FakeWasend::start().await;
    fake.answer_always(Answer::status(429).header("retry-after", "1"));
    let app = TestApp::spawn(
        &fake,
        Options::default().set("delivery.max_attempts", "1000"),
    )
    .await;
    let ids: Vec<String> = (0..5).map(|i| format!("m-storm-{i}")).collect();
    for id in &ids {
        app.send(&message("default", "491511234567@c.us", id)).await;
    }

    // Three rounds of 429s for each receipt.
    fake.wait_for_calls(3 * ids.len(), WAIT).await;
    fake.answer_always(Answer::status(200));
    eventually(WAIT, "every receipt sent after the storm", async || {
        let (_, v) = app.admin(Method::GET, "/admin/pending").await;
        v["pending"].as_array()?.is_empty().then_some(())
    })
    .await;

    for id in &ids {
        let times: Vec<Instant> = fake
            .calls()
            .iter()
            .filter(|c| c.message_id() == id)
            .map(|c| c.at)
            .collect();
        assert!(times.len() >= 3, "{id} was tried {} times", times.len());
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(1),
                "{id} was tried again after {gap:?}, before Retry-After"
            );
        }
    }
}

#[tokio::test]
async fn secrets_never_appear_in_logs_even_at_trace_level() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(500), Answer::status(401)]);
    let options = Options::default()
        .set("log.level", "trace")
        .set(&format!("gateway.sessions.{META_NUMBER}"), "meta")
        .set(&format!("gateway.sessions.{GREEN_INSTANCE}"), "green")
        .set(
            &format!("gateway.sessions.{EVOLUTION_INSTANCE}"),
            "evolution",
        );
    let app = TestApp::spawn_process(&fake, options).await;

    app.send(&message("default", "491511234567@c.us", "m-trace"))
        .await;
    post_raw(
        &app,
        &message("default", "491511234567@c.us", "m-bad"),
        &[("x-webhook-hmac", "00")],
    )
    .await;
    app.admin(Method::GET, "/admin/pending").await;
    app.http
        .get(app.url("/admin/pending"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    app.admin(Method::POST, "/admin/reload").await;
    fake.wait_for_calls(2, WAIT).await;
    eventually(WAIT, "the pause logged", async || {
        app.logs()
            .iter()
            .any(|l| l.contains("refused this session's API key"))
            .then_some(())
    })
    .await;

    // Every other gateway once, right and wrong: Green's token travels in the URL path.
    app.post_meta(&meta_text("5511987650001", "wamid.trace"))
        .await;
    app.post_meta_with(&meta_text("5511987650001", "wamid.bad"), Some("sha256=00"))
        .await;
    app.post_green(&green_text("79001234568@c.us", "BAE5TRACE0000001"))
        .await;
    app.post_green_with(
        &green_text("79001234568@c.us", "BAE5TRACE0000002"),
        Some("Bearer wrong"),
    )
    .await;
    app.post_evolution(&evolution_text(
        "5511999990001@s.whatsapp.net",
        "3EB0TRACE00000001",
    ))
    .await;
    app.post_evolution_with(
        "/webhook/evolution",
        &evolution_text("5511999990001@s.whatsapp.net", "3EB0TRACE00000002"),
        &[("authorization", "Bearer not.a.jwt")],
    )
    .await;
    fake.wait_for_calls(5, WAIT).await;

    let logs = app.logs().join("\n");
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the run logged at trace level"
    );
    for secret in [
        API_KEY,
        HMAC_KEY,
        ADMIN_TOKEN,
        META_APP_SECRET,
        META_VERIFY_TOKEN,
        META_ACCESS_TOKEN,
        GREEN_WEBHOOK_TOKEN,
        GREEN_API_TOKEN,
        EVOLUTION_TOKEN,
        EVOLUTION_JWT_KEY,
        EVOLUTION_API_KEY,
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test]
async fn admin_endpoints_refuse_without_the_token_and_are_off_without_one() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn_process(&fake, Options::default()).await;
    let get = |token: Option<&'static str>, url: String| {
        let mut r = app.http.get(url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };

    let none = get(None, app.url("/admin/pending")).await.unwrap();
    let wrong = get(Some("not-the-token"), app.url("/admin/dead"))
        .await
        .unwrap();
    let right = get(Some(ADMIN_TOKEN), app.url("/admin/dead"))
        .await
        .unwrap();

    assert_eq!(none.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
    let dir = app.config_dir();
    let settings = std::fs::read_to_string(dir.join("autoseen.toml")).unwrap();
    std::fs::write(
        dir.join("autoseen.toml"),
        settings.replace(&format!("token = \"{ADMIN_TOKEN}\""), ""),
    )
    .unwrap();
    let mut app = app;
    app.terminate(Duration::from_secs(5)).await;
    app.restart().await;
    let off = app
        .http
        .post(app.url("/admin/dead/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
}

#[tokio::test]
async fn during_a_rotation_both_values_of_a_secret_pass_and_no_other() {
    const NEW_ADMIN: &str = "rotated-admin-token-9f2e";
    const NEW_META: &str = "rotated-meta-app-secret-51aa";
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .set("admin.token", &format!("{NEW_ADMIN},{ADMIN_TOKEN}"))
            .set("meta.app_secret", &format!("{NEW_META},{META_APP_SECRET}"))
            .set(&format!("gateway.sessions.{META_NUMBER}"), "meta"),
    )
    .await;

    for (token, wanted) in [
        (NEW_ADMIN, 200),
        (ADMIN_TOKEN, 200),
        ("some-other-admin-token", 401),
    ] {
        let answer = app
            .http
            .get(app.url("/admin/pending"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), wanted, "{token}");
    }
    let signed_with = |secret: &str, body: &str| {
        let hex = autoseen::gateway::signature::sign(
            secret,
            autoseen::gateway::signature::Algorithm::Sha256,
            body.as_bytes(),
        );
        format!("sha256={hex}")
    };
    for (i, (secret, wanted)) in [
        (NEW_META, 200),
        (META_APP_SECRET, 200),
        ("some-other-app-secret", 401),
    ]
    .into_iter()
    .enumerate()
    {
        let body = meta_text(&format!("551190000{i:04}"), &format!("wamid.rotation-{i}"));
        let (status, v) = app
            .post_meta_with(&body, Some(&signed_with(secret, &body)))
            .await;
        assert_eq!(status, wanted, "{secret}: {v}");
    }
}
