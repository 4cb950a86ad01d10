//! `/admin/*`: pending and dead receipts, replaying the dead, reloading rules. Behind `admin.token` (bearer,
//! compared in constant time); without a token configured the endpoints do not exist (404).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, bearer};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/pending", get(pending))
        .route("/dead", get(dead))
        .route("/dead/replay", post(replay))
        .route("/reload", post(reload))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    bearer(
        headers,
        state.settings.admin.token.as_ref(),
        "admin endpoints are off; set admin.token to turn them on",
    )
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

impl Limit {
    /// 100 unless asked, never more than 10,000.
    fn get(&self) -> usize {
        self.limit.unwrap_or(100).min(10_000)
    }
}

async fn pending(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let rows = state.operator.list_pending(q.get()).await?;
    Ok(Json(json!({ "pending": rows })))
}

async fn dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let rows = state.operator.list_dead(q.get()).await?;
    Ok(Json(json!({ "dead": rows })))
}

async fn replay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let now = state.clock.now();
    let chats = state.operator.replay_dead(now, None).await?;
    let n = chats.len();
    for chat in chats {
        state.scheduler.wake(chat, now);
    }
    tracing::info!(chats = n, "dead receipts replayed");
    Ok(Json(json!({ "status": "replayed", "chats": n })))
}

async fn reload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let n = state.reloader.reload("admin").await?;
    Ok(Json(json!({ "status": "reloaded", "rules": n })))
}
