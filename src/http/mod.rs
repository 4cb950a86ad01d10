//! The HTTP surface: the axum router, the state its handlers share, and how errors become JSON answers.
//!
//! One file per route group: `webhook` (the edge Wasend calls), `bot` (the bot flushes a chat), `health`
//! (probes), `admin` (operator endpoints behind a bearer token), `console` (the operator's pages at `/ui`),
//! `metrics`; `openapi` describes them all; `error` turns every failure into its one JSON answer.

mod admin;
pub mod body;
mod bot;
pub mod client;
pub mod console;
mod error;
mod health;
mod meta;
mod metrics;
pub mod openapi;
pub mod server;
pub mod throttle;
mod webhook;

pub use error::{ApiError, ErrorBody};
pub use metrics::MetricsState;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::HeaderName;
use axum::http::request::Parts;
use axum::routing::get;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

use crate::activity::Activity;
use crate::domain::{ChatId, SessionName};
use crate::receipts::Receipts;
use crate::rules::{LiveRules, Reloader, normalize_chat_pattern};
use crate::scheduler::leases::Holdings;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::{Operator, Readiness};
use crate::time::Clock;
use client::Client;

/// The inbound halves of the gateways, as configured.
pub struct Inbound {
    pub wasend: crate::gateway::wasend::inbound::Inbound,
    pub meta: crate::gateway::meta::inbound::Inbound,
    pub green: crate::gateway::green::inbound::Inbound,
    pub evolution: crate::gateway::evolution::inbound::Inbound,
}

/// What the handlers share.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub rules: LiveRules,
    pub reloader: Reloader,
    /// Where events become effects: accepting, flushing, replaying, acks.
    pub receipts: Receipts,
    /// The operator queries: admin endpoints and metrics.
    pub operator: Arc<dyn Operator>,
    pub readiness: Readiness,
    /// The sessions this replica reports on (all, with one process).
    pub holdings: Holdings,
    pub clock: Clock,
    /// The inbound half of each gateway: who may post to its route, and what a body becomes.
    pub gateways: Inbound,
    /// The Prometheus recorder, when this process installed one.
    pub metrics: Option<MetricsState>,
    /// What this replica decided and sent lately, for the console.
    pub activity: Activity,
    /// Who is signed in to the console.
    pub console: console::session::Sessions,
    /// The OpenAPI document, as served.
    pub openapi: Arc<serde_json::Value>,
    /// The proxies whose forwarding headers count.
    pub proxies: client::TrustedProxies,
    /// Wrong credentials per client address.
    pub throttle: throttle::AuthThrottle,
}

impl AppState {
    /// Whether `client` may present credentials now, and what their check (`ok`) means: while the address is
    /// locked out every attempt is 429, right or wrong; a wrong one counts against it and is logged with it.
    pub fn authenticate(
        &self,
        client: Client,
        what: &'static str,
        ok: bool,
    ) -> Result<(), ApiError> {
        if let Err(wait) = self.throttle.check(client.ip) {
            ::metrics::counter!(crate::metric_names::AUTH_REFUSED, "reason" => "throttled")
                .increment(1);
            return Err(ApiError::TooManyAttempts {
                retry_after: throttle::retry_after_secs(wait),
            });
        }
        if ok {
            self.throttle.succeed(client.ip);
            return Ok(());
        }
        ::metrics::counter!(crate::metric_names::AUTH_REFUSED, "reason" => "wrong").increment(1);
        let locked = self.throttle.fail(client.ip);
        tracing::warn!(
            client = %client.ip,
            what,
            locked_for_s = locked.map(|d| d.as_secs_f64()),
            "wrong credentials"
        );
        Err(ApiError::Unauthorized("missing or invalid bearer token"))
    }
}

/// The header carrying each request's id, in answers and on the request (where the webhook span reads it).
pub const REQUEST_ID: &str = "x-request-id";
/// WAHA names each webhook delivery with this header; it becomes the request id when present.
const WAHA_REQUEST_ID: &str = "x-webhook-request-id";

/// Longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id may be used as ours: short, and only `[A-Za-z0-9._:-]`, so it cannot bloat
/// logs and answers or smuggle anything into them.
fn acceptable_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Request ids: WAHA's own when the request carries an acceptable one (so a delivery can be found in both
/// logs), else a new random (v4) UUID. Its bytes come from the thread's generator, not the kernel: a `getrandom` call per
/// request cost measurable ingest rate (docs/performance.md).
#[derive(Clone, Default)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, request: &axum::http::Request<B>) -> Option<RequestId> {
        if let Some(id) = request.headers().get(WAHA_REQUEST_ID)
            && acceptable_request_id(id.as_bytes())
        {
            return Some(RequestId::new(id.clone()));
        }
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid.hyphenated().encode_lower(&mut text);
        axum::http::HeaderValue::from_str(text)
            .ok()
            .map(RequestId::new)
    }
}

/// Every route, before it gets its state: the documented API, the console's pages, and `/metrics` unless
/// `metrics.listen` puts it on a port of its own.
pub fn routes(metrics_here: bool) -> Router<Arc<AppState>> {
    let (api, _) = openapi::api().split_for_parts();
    let (actions, _) = openapi::console_actions().split_for_parts();
    // The console's answers (its pages, and its actions, which answer pages too) say: no framing, nothing
    // loaded from elsewhere. The webhook's hot path carries no such layer.
    let console = console::security_headers(console::pages_router().merge(actions));
    let router = api.merge(console);
    if metrics_here {
        router.route("/metrics", get(metrics::metrics))
    } else {
        router
    }
}

/// The OpenAPI document of [`routes`].
pub fn openapi_document() -> serde_json::Value {
    let (_, api) = openapi::documented().split_for_parts();
    serde_json::to_value(openapi::document(api)).expect("the document serializes")
}

/// The main router, with its state and request ids.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    routes(state.settings.metrics.listen.is_none())
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeId))
}

/// A session as a request names it; the error says what is wrong with it.
fn parse_session(raw: &str) -> Result<SessionName, String> {
    SessionName::parse(raw).map_err(|e| format!("session `{raw}` {e}"))
}

/// A chat as a request names it: any form a rule's `chats` takes (an id, a LID, a phone number).
fn parse_chat(raw: &str) -> Result<ChatId, String> {
    normalize_chat_pattern(raw).and_then(|c| ChatId::parse(&c).map_err(|e| format!("chat {e}")))
}

/// The routes behind a bearer token, and which token guards each.
#[derive(Clone, Copy)]
enum Guarded {
    Admin,
    Bot,
}

impl Guarded {
    fn token(self, settings: &Settings) -> Option<&Secret> {
        match self {
            Guarded::Admin => settings.admin.token.as_ref(),
            Guarded::Bot => settings.bot.token.as_ref(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Guarded::Admin => "admin",
            Guarded::Bot => "bot",
        }
    }

    fn off(self) -> &'static str {
        match self {
            Guarded::Admin => "admin endpoints are off; set admin.token to turn them on",
            Guarded::Bot => "the bot endpoint is off; set bot.token to turn it on",
        }
    }
}

/// Checks `Authorization: Bearer <token>` against the route's token in constant time, throttled per client.
/// Without a token configured the route is off: 404, so an endpoint nobody turned on does not even admit it
/// exists.
fn bearer(state: &AppState, parts: &Parts, route: Guarded) -> Result<(), ApiError> {
    let Some(expected) = route.token(&state.settings) else {
        return Err(ApiError::NotFound(route.off()));
    };
    let given = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|token| expected.matches(token));
    state.authenticate(Client::of(parts, state), route.name(), ok)
}

/// A request that carried `admin.token`.
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        bearer(state, parts, Guarded::Admin).map(|()| Admin)
    }
}

/// A request that carried `bot.token`.
pub struct Bot;

impl FromRequestParts<Arc<AppState>> for Bot {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        bearer(state, parts, Guarded::Bot).map(|()| Bot)
    }
}

/// The router for `metrics.listen`: `/metrics` alone.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}
