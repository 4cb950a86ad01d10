//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json` (public: it holds no secrets).
//!
//! The document and the router come from the same list: each route below is registered with its handler's
//! `#[utoipa::path]`, whose request and response schemas are the handlers' own types (the webhook body's
//! schema is the event wire types). Console pages and `/metrics` are routes without a document entry; a test
//! takes the routes from the router itself and fails on any other route the document lacks.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use utoipa::IntoResponses;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, admin, bot, console, health, meta, webhook};

pub use super::error::ErrorBody;

/// The refusals of every webhook route (WAHA's, Meta's POST).
#[derive(IntoResponses)]
pub enum WebhookRefusals {
    /// Not an event autoseen can act on (a Meta body: not one at all); the message names the field.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing or wrong token or signature (one answer for all).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The body did not arrive within `server.body_timeout`.
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// The body is larger than `server.max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `Content-Type: application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The store cannot commit now: retry (`Retry-After`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The refusals every admin endpoint shares.
#[derive(IntoResponses)]
pub enum AdminRefusals {
    /// Missing or wrong bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Admin endpoints are off (no `admin.token`).
    #[response(status = 404)]
    Off(ErrorBody),
    /// Too many wrong tokens from this address: every attempt waits `Retry-After` seconds.
    #[response(status = 429)]
    Throttled(ErrorBody),
    /// The store cannot answer or commit now.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The refusals every console action shares.
#[derive(IntoResponses)]
pub enum ConsoleRefusals {
    /// Not signed in: the sign-in form.
    #[response(status = 401, content_type = "text/html")]
    SignIn(String),
    /// No valid CSRF token in the form.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The console is off (no `admin.token`).
    #[response(status = 404)]
    Off(ErrorBody),
}

/// Every documented route, with its document.
pub fn documented() -> OpenApiRouter<Arc<AppState>> {
    api().merge(console_actions())
}

/// The API: webhook, probes, bot and admin endpoints, and this document.
pub fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(webhook::open))
        .routes(routes!(webhook::with_token))
        .routes(routes!(meta::handshake, meta::receive))
        .routes(routes!(webhook::green))
        .routes(routes!(webhook::evolution))
        .routes(routes!(webhook::evolution_by_event))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(bot::read))
        .routes(routes!(admin::pending))
        .routes(routes!(admin::dead))
        .routes(routes!(admin::replay))
        .routes(routes!(admin::reload))
        .routes(routes!(openapi_json))
}

/// What the console's forms post to.
pub fn console_actions() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(console::sign_in))
        .routes(routes!(console::sign_out))
        .routes(routes!(console::send_now))
        .routes(routes!(console::replay))
        .routes(routes!(console::explain))
}

/// The document, with the service's name, version and security schemes.
pub fn document(mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title("autoseen")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(env!("CARGO_PKG_DESCRIPTION")))
        .build();
    let bearer = || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme("admin", bearer());
    components.add_security_scheme("bot", bearer());
    api
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub async fn openapi_json(State(state): State<Arc<AppState>>) -> Json<Arc<serde_json::Value>> {
    Json(state.openapi.clone())
}
