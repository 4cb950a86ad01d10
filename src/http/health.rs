//! Probes: `/healthz` (the process serves) and `/readyz` (settings and rules loaded, and the store commits).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    match state.readiness.check().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "rules": state.rules.get().len()})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": e.to_string()})),
        ),
    }
}
