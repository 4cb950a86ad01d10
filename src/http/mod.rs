//! The HTTP surface: the axum router, the state its handlers share, and how errors become JSON answers.
//!
//! One file per route group: `webhook` (the edge Wasend calls), `health` (probes), `admin` (operator
//! endpoints behind a bearer token). Every error answer is JSON `{"status":"error","error":…,"message":…}`.

mod admin;
mod health;
mod metrics;
pub mod server;
mod webhook;

pub use metrics::MetricsState;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::rules::LiveRules;
use crate::scheduler::{Clock, SchedulerHandle};
use crate::settings::{Secret, Settings};
use crate::store::Store;

/// What the handlers share.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub rules: LiveRules,
    pub store: Arc<dyn Store>,
    pub scheduler: SchedulerHandle,
    pub clock: Clock,
    pub hmac_keys: Vec<Secret>,
    /// The Prometheus recorder, when this process installed one.
    pub metrics: Option<MetricsState>,
    /// Reloads the rules now; answers the number of rules or every problem.
    pub reload: Arc<dyn Fn() -> Result<usize, crate::rules::RulesError> + Send + Sync>,
}

/// The main router; `/metrics` is on it unless `metrics.listen` puts it on a port of its own.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut router = Router::new();
    if state.settings.metrics.listen.is_none() {
        router = router.route("/metrics", get(metrics::metrics));
    }
    router
        .route("/webhook", post(webhook::open))
        .route("/webhook/{token}", post(webhook::with_token))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .nest("/admin", admin::router())
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The router for `metrics.listen`: `/metrics` alone.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}

/// An error answer: a status, a stable code, and a sentence for the sender's logs.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The one answer for every authentication failure, so it says nothing about which check failed.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid credentials (webhook token or signature)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "error": self.code, "message": self.message});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Compares two secrets in time that does not depend on where they differ (or on their lengths).
pub fn secrets_match(given: &str, expected: &Secret) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.expose().as_bytes()),
    );
    a.as_slice().ct_eq(b.as_slice()).into()
}
