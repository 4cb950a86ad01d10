//! `/admin/*`: pending and dead receipts, replaying the dead, reloading rules. Behind `admin.token` (bearer,
//! compared in constant time); without a token configured the endpoints do not exist (404).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, secrets_match};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/pending", get(pending))
        .route("/dead", get(dead))
        .route("/dead/replay", post(replay))
        .route("/reload", post(reload))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.settings.admin.token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "admin endpoints are off; set admin.token to turn them on",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if secrets_match(token, expected) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )),
    }
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

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

async fn pending(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let rows = state
        .store
        .list_pending(q.get())
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "pending": rows })))
}

async fn dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let rows = state.store.list_dead(q.get()).await.map_err(store_error)?;
    Ok(Json(json!({ "dead": rows })))
}

async fn replay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let now = state.clock.now_ms();
    let chats = state.store.replay_dead(now).await.map_err(store_error)?;
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
    match (state.reload)() {
        Ok(n) => Ok(Json(json!({ "status": "reloaded", "rules": n }))),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            format!("the running rules stay in force: {e}"),
        )),
    }
}
