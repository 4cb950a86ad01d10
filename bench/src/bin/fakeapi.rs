//! A fast fake Wasend for the dispatch benchmark. Every message id carries its due time
//! (`bench_<due_ms>_<n>`), so lateness is measured where the call arrives. `GET /stats` reports the count,
//! the first and last arrival, and lateness percentiles; `GET /calls` every call as `[session, due ms, arrival
//! ms]`; `POST /reset` forgets them. Prints `listening ADDR`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Default)]
struct Seen {
    /// (arrival ms, lateness ms)
    calls: Vec<(i64, i64)>,
    /// (session, due ms, arrival ms)
    log: Vec<(String, i64, i64)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn send_seen(State(seen): State<Arc<Mutex<Seen>>>, Json(body): Json<Value>) -> &'static str {
    let now = now_ms();
    let due = body["messageId"]
        .as_str()
        .and_then(|id| id.split('_').nth(1))
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(now);
    let session = body["session"].as_str().unwrap_or_default().to_string();
    let mut seen = seen.lock().unwrap();
    seen.calls.push((now, now - due));
    seen.log.push((session, due, now));
    "{}"
}

async fn stats(State(seen): State<Arc<Mutex<Seen>>>) -> Json<Value> {
    let seen = seen.lock().unwrap();
    let mut late: Vec<i64> = seen.calls.iter().map(|c| c.1).collect();
    late.sort_unstable();
    let pct = |p: f64| {
        late.get(((late.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    Json(json!({
        "count": seen.calls.len(),
        "first_ms": seen.calls.iter().map(|c| c.0).min(),
        "last_ms": seen.calls.iter().map(|c| c.0).max(),
        "late_p50_ms": pct(0.5),
        "late_p99_ms": pct(0.99),
        "late_max_ms": late.last(),
    }))
}

/// Forgets every call so far (a warm-up's).
async fn reset(State(seen): State<Arc<Mutex<Seen>>>) -> &'static str {
    *seen.lock().unwrap() = Seen::default();
    "{}"
}

async fn calls(State(seen): State<Arc<Mutex<Seen>>>) -> Json<Value> {
    Json(json!(seen.lock().unwrap().log))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/sendSeen", post(send_seen))
        .route("/stats", get(stats))
        .route("/calls", get(calls))
        .route("/reset", post(reset))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
