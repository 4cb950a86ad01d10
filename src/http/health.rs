//! Probes: `/healthz` (the process serves) and `/readyz` (settings and rules loaded, and the store commits).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// The answer of `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The answer of `/readyz`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Readiness {
    /// Settings and rules are loaded and the store commits.
    Ready { rules: usize },
    /// The store cannot commit; `reason` is its code (`store_unavailable`, `store_read_only`); the error's
    /// text is in the log.
    Unavailable { reason: &'static str },
}

/// Liveness: the process serves.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "The process serves", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the rules are loaded and the store commits.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready to accept webhooks", body = Readiness),
        (status = 503, description = "The store cannot commit now", body = Readiness),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    match state.readiness.check().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Readiness::Ready {
                rules: state.rules.get().len(),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store cannot commit");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Readiness::Unavailable { reason: e.code() }),
            )
        }
    }
}
