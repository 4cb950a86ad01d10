//! The HTTP surface: the axum router, the state its handlers share, and how errors become JSON answers.
//!
//! One file per route group: `webhook` (the edge Wasend calls), `bot` (the bot flushes a chat), `health`
//! (probes), `admin` (operator endpoints behind a bearer token), `metrics`; `error` turns every failure into its one JSON answer.

mod admin;
mod bot;
mod error;
mod health;
mod metrics;
pub mod server;
mod webhook;

pub use error::ApiError;
pub use metrics::MetricsState;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderName;
use axum::routing::{get, post};
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

use crate::activity::Activity;
use crate::rules::{LiveRules, Reloader};
use crate::scheduler::SchedulerHandle;
use crate::scheduler::leases::Holdings;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::cluster::Cluster;
use crate::store::{Operator, Queue, Readiness};
use crate::time::Clock;

/// What the handlers share.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub rules: LiveRules,
    pub reloader: Reloader,
    /// The hot path: accepting receipts and flushing chats.
    pub queue: Arc<dyn Queue>,
    /// The operator queries: admin endpoints and metrics.
    pub operator: Arc<dyn Operator>,
    pub readiness: Readiness,
    pub scheduler: SchedulerHandle,
    /// The sessions this replica reports on (all, with one process).
    pub holdings: Holdings,
    /// With several replicas: how to tell the holder of a session about work accepted here.
    pub cluster: Option<Arc<dyn Cluster>>,
    pub clock: Clock,
    pub hmac_keys: Vec<Secret>,
    /// The Prometheus recorder, when this process installed one.
    pub metrics: Option<MetricsState>,
    /// What this replica decided and sent lately, for the console.
    pub activity: Activity,
}

/// The header carrying each request's id, in answers and on the request (where the webhook span reads it).
pub const REQUEST_ID: &str = "x-request-id";
/// WAHA names each webhook delivery with this header; it becomes the request id when present.
const WAHA_REQUEST_ID: &str = "x-webhook-request-id";

/// Request ids: WAHA's own when the request carries one (so a delivery can be found in both logs), else a
/// new UUID.
#[derive(Clone, Default)]
struct MakeId(MakeRequestUuid);

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, request: &axum::http::Request<B>) -> Option<RequestId> {
        match request.headers().get(WAHA_REQUEST_ID) {
            Some(id) => Some(RequestId::new(id.clone())),
            None => self.0.make_request_id(request),
        }
    }
}

/// The main router; `/metrics` is on it unless `metrics.listen` puts it on a port of its own.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    let mut router = Router::new();
    if state.settings.metrics.listen.is_none() {
        router = router.route("/metrics", get(metrics::metrics));
    }
    router
        .route("/webhook", post(webhook::open))
        .route("/webhook/{token}", post(webhook::with_token))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/chats/{session}/{chat}/read", post(bot::read))
        .nest("/admin", admin::router())
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeId::default()))
}

/// Checks `Authorization: Bearer <token>` against `expected` in constant time. Without a token configured the
/// route is off: 404 with `off`, so an endpoint nobody turned on does not even admit it exists.
fn bearer(
    headers: &axum::http::HeaderMap,
    expected: Option<&Secret>,
    off: &'static str,
) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::NotFound(off));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if expected.matches(token) => Ok(()),
        _ => Err(ApiError::Unauthorized("missing or invalid bearer token")),
    }
}

/// The router for `metrics.listen`: `/metrics` alone.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}
