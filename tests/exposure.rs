//! Safe to put on the internet: what an idle or hostile client can hold, what credentials cost to guess, where
//! API keys may go, and what state a stranger can make grow. Real sockets on 127.0.0.x, bounded in count and
//! time; every timing bound is derived from the setting under test, with slack.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(15);

/// A connection to `addr` from the local address `from` (any of 127.0.0.0/8 works on Linux).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; how long that took, or `None` if it was still open at
/// `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue, // HTTP/2: the server's SETTINGS, then a GOAWAY
            }
        }
    };
    tokio::time::timeout(within, read_to_end)
        .await
        .ok()
        .map(|()| started.elapsed())
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn silent_sockets_are_closed_after_the_header_timeout_while_a_signed_webhook_is_answered() {
    let header_timeout = Duration::from_secs(1);
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .set("server.header_timeout", "1s")
            .set("server.max_connections", "8"),
    )
    .await;
    // Every slot taken: four say nothing, four send only the HTTP/2 preface.
    let mut silent = Vec::new();
    for i in 0..8 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(H2_PREFACE).await.unwrap();
        }
        silent.push(s);
    }

    let started = Instant::now();
    let (status, _) = app
        .send(&message("default", "491511234567@c.us", "m-behind-silent"))
        .await;
    let answered_after = started.elapsed();
    let mut closed = Vec::new();
    for s in &mut silent {
        closed.push(closed_within(s, header_timeout * 5).await);
    }

    assert_eq!(status, 200);
    assert!(
        answered_after < header_timeout * 5,
        "answered after {answered_after:?}"
    );
    assert!(
        closed.iter().all(Option::is_some),
        "every silent socket is closed: {closed:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("server.idle_timeout", "1s")).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer).await.unwrap();

    let closed = closed_within(&mut s, idle * 5).await;

    assert_eq!(&answer, b"HTTP/1.1 200");
    let closed = closed.expect("the idle connection is closed");
    assert!(
        closed >= idle / 2,
        "closed after {closed:?}, before it was idle"
    );
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_once_and_counted() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn_process(
        &fake,
        Options::default().set("server.max_connections_per_ip", "2"),
    )
    .await;
    let _held = [
        connect_from([127, 0, 0, 2], app.addr).await,
        connect_from([127, 0, 0, 2], app.addr).await,
    ];

    let mut third = connect_from([127, 0, 0, 2], app.addr).await;
    let third_closed = closed_within(&mut third, Duration::from_secs(5)).await;
    let other_address = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    let metrics = app.metrics().await;

    assert!(third_closed.is_some(), "the third connection is closed");
    assert_eq!(other_address, 200, "another address is served");
    assert!(
        metrics.contains(r#"autoseen_connections_closed_total{reason="per_ip_cap"} 1"#),
        "{metrics}"
    );
}

/// Writes a whole request with a body of `len` bytes before reading anything, as Python's urllib does; answers
/// the status line.
fn write_everything_then_read(addr: SocketAddr, len: usize) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b' ', len));
    if let Err(e) = s.write_all(&request) {
        return format!("write failed: {e}");
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        Err(e) => format!("read failed: {e}"),
    }
}

#[tokio::test]
async fn a_client_that_writes_its_whole_oversized_body_first_reads_the_413_every_time() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let addr = app.addr;

    // 2 MiB over the 1 MiB limit, as reported; and 8 MiB, more than loopback's socket buffers hold, so the
    // client is still writing when the server decides.
    let answers = tokio::task::spawn_blocking(move || {
        [2 << 20, 8 << 20]
            .into_iter()
            .cycle()
            .take(10)
            .map(|len| write_everything_then_read(addr, len))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();

    for answer in &answers {
        assert_eq!(answer, "HTTP/1.1 413 Payload Too Large", "{answers:?}");
    }
}

#[tokio::test]
async fn a_console_form_that_arrives_too_slowly_gets_408() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("server.body_timeout", "1s")).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=")
        .await
        .unwrap();

    let mut answer = vec![0u8; 12];
    let read = tokio::time::timeout(WAIT, s.read_exact(&mut answer)).await;

    assert!(read.is_ok(), "answered");
    assert_eq!(&answer, b"HTTP/1.1 408");
}

/// An admin request with `token`, from the peer this test runs on, naming `forwarded` as the client.
async fn admin_as(app: &TestApp, token: &str, forwarded: Option<&str>) -> reqwest::Response {
    let mut r = app.http.get(app.url("/admin/dead")).bearer_auth(token);
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    r.send().await.unwrap()
}

async fn admin_status(app: &TestApp, token: &str, forwarded: Option<&str>) -> u16 {
    admin_as(app, token, forwarded).await.status().as_u16()
}

#[tokio::test]
async fn wrong_tokens_lock_the_address_out_right_or_wrong_until_retry_after_then_it_resets() {
    let fake = FakeWasend::start().await;
    let app =
        TestApp::spawn_process(&fake, Options::default().set("server.auth_failures", "3")).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            admin_as(&app, "wrong-token-0123456789", None)
                .await
                .status()
                .as_u16(),
        );
    }

    let locked = admin_as(&app, ADMIN_TOKEN, None).await;
    let locked_status = locked.status().as_u16();
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = locked.json().await.unwrap();
    let bot = app
        .http
        .post(app.url("/chats/default/491511234567/read"))
        .bearer_auth("any")
        .send()
        .await
        .unwrap()
        .status();
    let started = Instant::now();
    let back = eventually(
        Duration::from_secs(retry_after) + WAIT,
        "the lock to end",
        async || {
            let status = admin_status(&app, ADMIN_TOKEN, None).await;
            (status != 429).then_some(status)
        },
    )
    .await;
    let waited = started.elapsed();
    let after_reset = admin_status(&app, "wrong-token-0123456789", None).await;

    assert_eq!(statuses, [401, 401, 401]);
    assert_eq!((locked_status, retry_after), (429, 1), "{body}");
    assert_eq!(body["error"], "too_many_attempts");
    assert_eq!(
        bot, 404,
        "the bot route is off here: off comes before the lock"
    );
    assert_eq!(back, 200, "the right token works once the lock ends");
    assert!(
        waited + Duration::from_millis(100) >= Duration::from_secs(retry_after) / 2,
        "{waited:?}"
    );
    assert_eq!(after_reset, 401, "a success forgot the failures: no lock");
    let line = app.wait_for_log(|l| l.contains("wrong credentials")).await;
    assert!(line.contains(r#""client":"127.0.0.1""#), "{line}");
    assert!(!line.contains("wrong-token-0123456789"), "{line}");
}

#[tokio::test]
async fn console_sign_ins_are_throttled_too() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().set("server.auth_failures", "2")).await;
    let sign_in = async |token: &str| {
        let r = app
            .http
            .post(app.url("/ui/login"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.headers().get("retry-after").cloned())
    };

    let first = sign_in("not-the-admin-token").await;
    let second = sign_in("not-the-admin-token").await;
    let right_but_locked = sign_in(ADMIN_TOKEN).await;

    assert_eq!((first.0, second.0), (401, 401));
    assert_eq!(right_but_locked.0, 429);
    assert_eq!(right_but_locked.1.unwrap(), "1");
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let fake = FakeWasend::start().await;
    let direct = TestApp::spawn(&fake, Options::default().set("server.auth_failures", "1")).await;
    let proxied = TestApp::spawn(
        &fake,
        Options::default()
            .set("server.auth_failures", "1")
            .set("server.trusted_proxies", "127.0.0.0/8"),
    )
    .await;

    // One wrong token locks out "the client"; then a right token from "another client".
    let direct_wrong = admin_status(&direct, "wrong", Some("203.0.113.1")).await;
    let direct_other = admin_status(&direct, ADMIN_TOKEN, Some("203.0.113.2")).await;
    let proxied_wrong = admin_status(&proxied, "wrong", Some("203.0.113.1")).await;
    let proxied_other = admin_status(&proxied, ADMIN_TOKEN, Some("203.0.113.2")).await;
    let proxied_same = admin_status(&proxied, ADMIN_TOKEN, Some("203.0.113.1")).await;

    assert_eq!(
        (direct_wrong, direct_other),
        (401, 429),
        "untrusted: the header is ignored"
    );
    assert_eq!(
        (proxied_wrong, proxied_other, proxied_same),
        (401, 200, 429),
        "trusted: the header names the client"
    );
}

#[tokio::test]
async fn a_redirect_from_the_api_is_not_followed_and_the_key_never_reaches_its_target() {
    let elsewhere = FakeWasend::start().await;
    let fake = FakeWasend::start().await;
    let location = format!("{}/api/sendSeen", elsewhere.url());
    fake.answer_always(Answer::status(307).header("location", location.clone()));
    let app = TestApp::spawn(
        &fake,
        Options::default()
            .set("wasend.flavor", "waha")
            .set("delivery.max_attempts", "1"),
    )
    .await;

    let (status, _) = app
        .send(&message("default", "491511234567@c.us", "m-redirected"))
        .await;
    let dead = eventually(WAIT, "the receipt to be given up", async || {
        let (_, body) = app.admin(reqwest::Method::GET, "/admin/dead").await;
        let dead = body["dead"].as_array()?.first()?.clone();
        Some(dead)
    })
    .await;

    assert_eq!(status, 200);
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(fake.calls()[0].api_key.as_deref(), Some(API_KEY));
    assert!(
        elsewhere.calls().is_empty(),
        "followed: {:?}",
        elsewhere.calls()
    );
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(&location), "{dead}");
}

#[tokio::test]
async fn session_label_values_are_capped_and_the_rest_count_as_other() {
    let fake = FakeWasend::start().await;
    let app =
        TestApp::spawn_process(&fake, Options::default().set("metrics.max_sessions", "2")).await;
    for session in ["s1", "s2", "s3", "s4"] {
        let (status, _) = app
            .send(&message(
                session,
                "491511234567@c.us",
                &format!("m-{session}"),
            ))
            .await;
        assert_eq!(status, 200);
    }
    fake.wait_for_calls(4, WAIT).await;

    let metrics = eventually(WAIT, "four sends counted", async || {
        let m = app.metrics().await;
        m.contains(r#"autoseen_receipts_sent_total{session="_other"} 2"#)
            .then_some(m)
    })
    .await;

    let labels: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split("session=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert!(labels.contains("_other"), "{labels:?}");
}

#[tokio::test]
async fn a_request_id_is_taken_only_when_short_and_plain() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let body = message("default", "491511234567@c.us", "m-request-id");
    let post = async |id: &str| {
        app.http
            .post(app.url("/webhook"))
            .header("content-type", "application/json")
            .header("x-webhook-hmac", sign(&body))
            .header("x-webhook-request-id", id)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let huge = "a".repeat(20_000);

    let plain = post("evt_01JD:delivery-7.2").await;
    let replaced = post(&huge).await;
    let odd = post("has spaces and <tags>").await;

    assert_eq!(plain, "evt_01JD:delivery-7.2");
    assert!(
        replaced.len() <= 128 && replaced != huge,
        "{}",
        replaced.len()
    );
    assert_ne!(odd, "has spaces and <tags>");
}

#[tokio::test]
async fn the_process_refuses_to_start_with_an_open_webhook_and_starts_when_allowed() {
    let fake = FakeWasend::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("autoseen.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite:data.db\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("rules.toml"), BASE_RULES).unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_autoseen"))
        .args(["serve", "--config"])
        .arg(dir.path())
        .current_dir(dir.path())
        .env("AUTOSEEN__WASEND__API_KEY", API_KEY)
        .env_remove("AUTOSEEN__WEBHOOK__HMAC_KEY")
        .output()
        .unwrap();
    let allowed = TestApp::spawn_process(&fake, Options::default().without_hmac()).await;

    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("webhook.hmac_key") && stderr.contains("allow_unsigned"),
        "{stderr}"
    );
    let warning = allowed.wait_for_log(|l| l.contains("allow_unsigned")).await;
    assert!(warning.contains("WARN"), "{warning}");
}
