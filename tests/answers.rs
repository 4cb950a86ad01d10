//! README.md's table "What the webhook answers", row by row, against the spawned binary: each row's answer is
//! produced by a request made for it, and a row without such a scenario fails the test.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// One row of the table: the status code, the `status` field of a 200 body, the fields it names, and whether
/// the answer carries `Retry-After`.
#[derive(Debug)]
struct Row {
    code: u16,
    status: Option<String>,
    fields: Vec<String>,
    retry_after: bool,
}

fn readme_rows() -> Vec<Row> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("## What the webhook answers")
        .nth(1)
        .expect("README.md has the answer table");
    let rows: Vec<Row> = table
        .lines()
        .skip_while(|l| !l.starts_with("| ---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let answer = line.split('|').nth(1).unwrap().trim();
            let code = answer.trim_start_matches('`')[..3].parse().unwrap();
            let quoted: Vec<String> = answer
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            let status = answer
                .contains("\"status\":")
                .then(|| quoted.get(1).cloned().unwrap());
            let fields = quoted
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 1 || status.is_none())
                .map(|(_, f)| f.clone())
                .collect();
            Row {
                code,
                status,
                fields,
                retry_after: answer.contains("Retry-After"),
            }
        })
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    rows
}

const RULES: &str = r#"
[defaults]
delay = "1h"

[[rules]]
name = "no-status"
chat_types = ["status"]
action = "ignore"

[[rules]]
name = "held"
chats = ["491519999999"]
action = "on_reply"
max_wait = "1h"
"#;

/// An answer: status code, `Retry-After` present, body.
type Answer = (u16, bool, Value);

async fn answer(response: reqwest::Response) -> Answer {
    let code = response.status().as_u16();
    let retry = response.headers().contains_key("retry-after");
    let body = response.json().await.unwrap_or(Value::Null);
    (code, retry, body)
}

/// A request written by hand on a socket: for a body that never arrives.
fn raw(app: &TestApp, request: &[u8]) -> Answer {
    let mut stream = std::net::TcpStream::connect(app.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let retry = head.to_ascii_lowercase().contains("\r\nretry-after:");
    (
        code,
        retry,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The request made for the row whose answer is `key` (a 200 body's `status`, else the status code).
async fn scenario(app: &TestApp, key: &str) -> Option<Answer> {
    let webhook = || app.http.post(app.url("/webhook"));
    Some(match key {
        "scheduled" => answer(app.post(&message("default", "491511000001@c.us", "s-1")).await).await,
        "on_reply" => answer(app.post(&message("default", "491519999999@c.us", "h-1")).await).await,
        "ack" => {
            let chat = "491511110015@c.us";
            app.send(&message("default", chat, &format!("false_{chat}_A2B2C3D4E5F60718293A4B5C6D7E8F96")))
                .await;
            answer(app.post(&fixture("ack-noweb-read")).await).await
        }
        "ignored" => answer(app.post(&message("default", "status@broadcast", "i-1")).await).await,
        "duplicate" => {
            app.send(&message("default", "491511000002@c.us", "d-1")).await;
            answer(app.post(&message("default", "491511000002@c.us", "d-1")).await).await
        }
        "400" => answer(app.post("{\"event\": ").await).await,
        "401" => {
            let body = message("default", "491511000003@c.us", "u-1");
            let request = webhook()
                .header("content-type", "application/json")
                .header("x-webhook-hmac", "00")
                .body(body);
            answer(request.send().await.unwrap()).await
        }
        "408" => raw(
            app,
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        ),
        "413" => {
            let big = message("default", "491511000004@c.us", &"x".repeat(8192));
            answer(app.post(&big).await).await
        }
        "415" => {
            let body = message("default", "491511000005@c.us", "t-1");
            let request = webhook()
                .header("content-type", "text/plain")
                .header("x-webhook-hmac", sign(&body))
                .body(body);
            answer(request.send().await.unwrap()).await
        }
        "503" => {
            let lock = rusqlite::Connection::open(app.dir.path().join("data/autoseen.db")).unwrap();
            lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
            let refused = answer(app.post(&message("default", "491511000006@c.us", "w-1")).await).await;
            lock.execute_batch("COMMIT").unwrap();
            refused
        }
        _ => return None,
    })
}

#[tokio::test]
async fn every_row_of_the_readme_answer_table_is_what_the_binary_answers() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn_process(
        &fake,
        Options::default()
            .rules(RULES)
            .set("server.body_timeout", "1s")
            .set("server.max_body_bytes", "4096")
            .set("store.busy_timeout", "200ms"),
    )
    .await;

    for row in readme_rows() {
        let key = row.status.clone().unwrap_or_else(|| row.code.to_string());
        let Some((code, retry_after, body)) = scenario(&app, &key).await else {
            panic!("README.md's answer `{key}` has no scenario in tests/answers.rs: {row:?}");
        };
        assert_eq!(code, row.code, "`{key}`: {body}");
        if let Some(status) = &row.status {
            assert_eq!(body["status"], status.as_str(), "`{key}`: {body}");
        } else {
            assert_eq!(body["status"], "error", "`{key}`: an error body: {body}");
            assert!(body["error"].is_string(), "`{key}`: {body}");
        }
        for field in &row.fields {
            assert!(body.get(field).is_some(), "`{key}` lacks `{field}`: {body}");
        }
        assert_eq!(retry_after, row.retry_after, "`{key}`: Retry-After");
    }
}
