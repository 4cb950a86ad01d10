//! The console in a real browser: Debian's Chromium, headless, driven over WebDriver by `chromedriver`.
//!
//! One walk through every page, as an operator would: sign in, see a webhook's receipt pending, send it now
//! and see it sent, replay a dead letter, explain an event, watch the live feed. Without Chromium the test
//! says `skipped: …` and passes, unless `AUTOSEEN_TEST_REQUIRE_BROWSER` is set (as `.ci/run` does). With
//! `AUTOSEEN_SCREENSHOTS=DIR` it saves a screenshot of each page there (`docs/console/` holds the README's).
#![allow(clippy::too_many_lines)] // tests read top to bottom as one story

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ADMIN_TOKEN, Answer, FakeWasend, Options, TestApp, eventually, waha_message};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(15);

/// `chromedriver`, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session, or `None` (the test is skipped) where Chromium is not installed.
async fn browser() -> Option<(Driver, Client)> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        let why = format!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
        );
        assert!(
            std::env::var_os("AUTOSEEN_TEST_REQUIRE_BROWSER").is_none(),
            "AUTOSEEN_TEST_REQUIRE_BROWSER is set but {why}"
        );
        eprintln!("skipped: {why}");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let status = reqwest::Client::new();
    eventually(WAIT, "chromedriver to answer", async || {
        let r = status.get(format!("{url}/status")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,860",
    ];
    let capabilities = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&url)
        .await
        .expect("a Chromium session");
    Some((driver, client))
}

/// Saves a screenshot of the current page as `name.png` when `AUTOSEEN_SCREENSHOTS` names a folder.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(dir) = std::env::var_os("AUTOSEEN_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Waits until the page's text holds `text`, reloading it between looks when `reload`.
async fn page_shows(client: &Client, text: &str, reload: bool) -> String {
    eventually(WAIT, &format!("the page to show `{text}`"), async || {
        if reload {
            client.refresh().await.ok()?;
        }
        let body = client
            .find(Locator::Css("body"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.contains(text).then_some(body)
    })
    .await
}

/// Clicks the button labelled `label` in the table row of message `message_id`.
async fn click_in_row(client: &Client, message_id: &str, label: &str) {
    let row = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(r#"tr[data-message="{message_id}"]"#)))
        .await
        .unwrap_or_else(|e| panic!("a row for {message_id}: {e}"));
    let button = row
        .find(Locator::XPath(&format!(
            ".//button[normalize-space()='{label}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("a `{label}` button in the row of {message_id}: {e}"));
    button.click().await.unwrap();
}

const RULES: &str = r#"
[defaults]
action = "seen"
delay = "1h"

[[rules]]
name = "support-fast"
sessions = ["support"]
delay = "0s"
"#;

#[tokio::test]
async fn an_operator_works_through_every_console_page() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().rules(RULES)).await;

    // Sign in: the only thing served before it.
    client.goto(&app.url("/ui/pending")).await.unwrap();
    page_shows(&client, "Admin token", false).await;
    screenshot(&client, "sign-in").await;
    let token = client
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap();
    token.send_keys(ADMIN_TOKEN).await.unwrap();
    client
        .find(Locator::Css("form.signin button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page_shows(
        &client,
        "No pending receipts and no sends in the last hour",
        false,
    )
    .await;

    // A signed webhook's receipt shows as pending.
    let chat = "491511234567@c.us";
    let id = format!("false_{chat}_PEND1");
    assert_eq!(app.send(&waha_message(chat, "PEND1", "hello")).await.0, 200);
    client.goto(&app.url("/ui/pending")).await.unwrap();
    page_shows(&client, &id, false).await;
    screenshot(&client, "pending").await;

    // "Send now": the fake API gets it, and the overview counts it as sent.
    click_in_row(&client, &id, "Send now").await;
    page_shows(&client, "1 receipt(s) due now", false).await;
    let calls = fake.wait_for_calls(1, WAIT).await;
    assert_eq!(calls[0].message_id(), id);
    client.goto(&app.url("/ui")).await.unwrap();
    eventually(WAIT, "the overview to count the send", async || {
        client.refresh().await.ok()?;
        let sent = client
            .find(Locator::Css("tr[data-session=default] td.sent"))
            .await
            .ok()?;
        (sent.text().await.ok()? == "1").then_some(())
    })
    .await;

    // A dead letter (the API refuses it for good), replayed once the API takes it.
    fake.answer_session("support", Answer::status(400));
    let dead_id = "false_491517654321@c.us_DEAD1";
    let event = common::event(
        "message",
        "support",
        json!({"id": dead_id, "from": "491517654321@c.us", "fromMe": false, "body": "x"}),
    );
    assert_eq!(app.send(&event).await.0, 200);
    client.goto(&app.url("/ui/dead")).await.unwrap();
    page_shows(&client, dead_id, true).await;
    screenshot(&client, "dead").await;
    fake.answer_session("support", Answer::status(200));
    click_in_row(&client, dead_id, "Replay").await;
    page_shows(&client, "replayed: 1 chat(s) due now", false).await;
    eventually(WAIT, "the replayed receipt to be sent", async || {
        let ids = fake.ids();
        (ids.iter().filter(|i| *i == dead_id).count() == 2).then_some(())
    })
    .await;
    assert_eq!(app.send(&waha_message(chat, "PEND2", "hello")).await.0, 200);
    client.goto(&app.url("/ui")).await.unwrap();
    let overview = page_shows(&client, "support", false).await;
    assert!(
        overview.contains("s ago"),
        "the oldest pending receipt's age: {overview}"
    );
    screenshot(&client, "overview").await;

    // Explain an event described by its fields.
    client.goto(&app.url("/ui/explain")).await.unwrap();
    let form = client.find(Locator::Css("form.explain")).await.unwrap();
    form.find(Locator::Css("input[name=session]"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    form.find(Locator::Css("input[name=session]"))
        .await
        .unwrap()
        .send_keys("support")
        .await
        .unwrap();
    form.find(Locator::Css("input[name=chat]"))
        .await
        .unwrap()
        .send_keys("+49 151 1234567")
        .await
        .unwrap();
    form.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let answer = page_shows(&client, "Decision: seen", false).await;
    assert!(answer.contains("support-fast"), "{answer}");
    screenshot(&client, "explain").await;

    // The live feed shows a decision as it happens.
    client.goto(&app.url("/ui/live")).await.unwrap();
    page_shows(&client, "connected", false).await;
    assert_eq!(app.send(&waha_message(chat, "LIVE1", "hello")).await.0, 200);
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//tbody[@id='feed']/tr[td[contains(., 'LIVE1')] and td[.='scheduled']]",
        ))
        .await
        .expect("the live feed shows the decision");
    screenshot(&client, "live").await;

    client.goto(&app.url("/ui/rules")).await.unwrap();
    page_shows(&client, "support-fast", false).await;
    screenshot(&client, "rules").await;

    client.close().await.unwrap();
}
