//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json` (public: it holds no secrets).
//!
//! The document and the router come from the same list: each route below is registered with its handler's
//! `#[utoipa::path]`, whose request and response schemas are the handlers' own types (the webhook body's
//! schema is the event wire types). Console pages and `/metrics` are routes without a document entry; a test
//! takes the routes from the router itself and fails on any other route the document lacks.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, admin, bot, console, health, webhook};

pub use super::error::ErrorBody;

/// Every documented route, with its document.
pub fn documented() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(webhook::open))
        .routes(routes!(webhook::with_token))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(bot::read))
        .routes(routes!(admin::pending))
        .routes(routes!(admin::dead))
        .routes(routes!(admin::replay))
        .routes(routes!(admin::reload))
        .routes(routes!(console::sign_in))
        .routes(routes!(console::sign_out))
        .routes(routes!(console::send_now))
        .routes(routes!(console::replay))
        .routes(routes!(console::explain))
        .routes(routes!(openapi_json))
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
