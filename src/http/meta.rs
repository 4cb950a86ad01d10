//! `GET /webhook/meta` and `POST /webhook/meta`, Meta's WhatsApp Cloud API gateway's route.
//!
//! The GET is Meta's verification handshake. A POST is read within the server's limits, its signature checked
//! on the raw bytes (`gateway::meta::inbound`), then its items are taken together by the application layer,
//! every run of messages in one transaction; the answer lists each item's outcome and counts them. One item that cannot be read, has
//! a type autoseen does not mark, or belongs to a session another gateway serves is reported and skipped: a
//! non-2xx is only for the request itself (credentials, limits) or a store that cannot commit, because Meta
//! retries a non-2xx body for days. A retry after a store failure is safe: what was committed before it
//! answers `duplicate` the second time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::warn;
use utoipa::ToSchema;

use super::error::Query;
use super::openapi::WebhookRefusals;
use super::webhook::{WebhookAnswer, count_webhook};
use super::{ApiError, AppState, ErrorBody};
use crate::domain::{Event, Gateway};
use crate::gateway::meta::inbound::Handshake;
use crate::gateway::meta::{Item, Skipped};

/// What a POST answers: each item's outcome, in body order, and how many ended each way.
#[derive(Serialize, ToSchema)]
pub struct MetaAnswer {
    pub items: Vec<ItemAnswer>,
    /// Items by `status`: `scheduled`, `on_reply`, `duplicate`, `ignored`, `ack`, `skipped`.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: BTreeMap<&'static str, u64>,
}

/// One message, echo or status of the body.
#[derive(Serialize, ToSchema)]
pub struct ItemAnswer {
    /// Where it is in the body, e.g. `entry[0].changes[0].value.messages[1]`.
    pub item: String,
    /// Its message id (`wamid.…`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub outcome: ItemOutcome,
}

/// Taken (what became of it, as on the WAHA route), or skipped.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ItemOutcome {
    Taken(WebhookAnswer),
    Skipped(SkippedAnswer),
}

/// An item autoseen did not act on.
#[derive(Serialize, ToSchema)]
pub struct SkippedAnswer {
    /// Always `skipped`.
    #[schema(value_type = String, example = "skipped")]
    pub status: &'static str,
    /// `unsupported_type`, `invalid` or `wrong_gateway`.
    #[schema(value_type = String)]
    pub code: &'static str,
    pub reason: String,
}

/// Meta's verification handshake: the bare `hub.challenge` when `hub.mode` is `subscribe` and
/// `hub.verify_token` is `meta.verify_token`.
#[utoipa::path(get, path = "/webhook/meta", tag = "webhook",
    params(
        ("hub.mode" = Option<String>, Query, description = "`subscribe`"),
        ("hub.verify_token" = Option<String>, Query, description = "The value of `meta.verify_token`"),
        ("hub.challenge" = Option<String>, Query, description = "What to answer"),
    ),
    responses(
        (status = 200, description = "The challenge, as sent", content_type = "text/plain", body = String),
        (status = 400, description = "A query parameter is not text", body = ErrorBody),
        (status = 403, description = "Not Meta subscribing with our verify token", body = ErrorBody),
    ))]
pub async fn handshake(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Handshake>,
) -> Response {
    match state.gateways.meta.handshake(&query) {
        Ok(challenge) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response(),
        Err(_) => {
            warn!("meta webhook handshake refused");
            ApiError::Forbidden("not a subscription with our verify token (meta.verify_token)")
                .into_response()
        }
    }
}

/// Receives a Meta webhook body: every message, echo and status in it.
#[utoipa::path(post, path = "/webhook/meta", tag = "webhook",
    request_body(content = Object, content_type = "application/json",
        description = "`{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\",\"value\"}]}]}`"),
    params(
        ("x-hub-signature-256" = Option<String>, Header, description = "`sha256=` and the hex HMAC-SHA256 of the raw body with `meta.app_secret`"),
    ),
    responses(
        (status = 200, description = "Taken: each item's outcome", body = MetaAnswer),
        WebhookRefusals,
    ))]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    match handle(&state, &headers, body).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(e) => {
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            warn!(
                gateway = "meta", status = e.status().as_u16(), error = e.code(), message = %e,
                latency_ms, "webhook rejected"
            );
            count_webhook(e.code(), "");
            e.into_response()
        }
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<MetaAnswer, ApiError> {
    let settings = &state.settings;
    let body = super::body::read_json(headers, body, &settings.server).await?;
    let inbound = &state.gateways.meta;
    inbound.verify(headers, &body)?;
    let items = inbound.items(&body)?;
    let started = Instant::now();
    // The items to take, in body order, taken together (each run of messages is one commit); the others
    // keep their place in the answer.
    let mut events = Vec::new();
    let mut rows = Vec::with_capacity(items.len());
    for Item { path, id, what } in items {
        match what.and_then(|event| on_this_route(state, event)) {
            Ok(event) => {
                events.push(event);
                rows.push((path, id, None));
            }
            Err(skipped) => rows.push((path, id, Some(skipped))),
        }
    }
    let mut taken = state
        .receipts
        .take_all(events, &state.rules.get())
        .await?
        .into_iter();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut answer = MetaAnswer {
        items: Vec::with_capacity(rows.len()),
        counts: BTreeMap::new(),
    };
    for (path, id, skipped) in rows {
        let outcome = match skipped {
            None => {
                let outcome = taken.next().expect("one outcome per event taken");
                ItemOutcome::Taken(super::webhook::answer(outcome, latency_ms))
            }
            Some(Skipped { code, reason }) => {
                count_webhook("skipped", code);
                ItemOutcome::Skipped(SkippedAnswer {
                    status: "skipped",
                    code,
                    reason,
                })
            }
        };
        *answer.counts.entry(status_of(&outcome)).or_default() += 1;
        answer.items.push(ItemAnswer {
            item: path,
            id,
            outcome,
        });
    }
    Ok(answer)
}

/// The event, if its session is served by Meta; else skipped, naming both gateways.
fn on_this_route(state: &AppState, event: Event) -> Result<Event, Skipped> {
    let session = match &event {
        Event::Message(m) => &m.session,
        Event::Ack(a) => &a.session,
        Event::Deleted(d) => &d.session,
        Event::Other { .. } => return Ok(event),
    };
    match state.settings.gateway.check(session, Gateway::Meta) {
        Ok(()) => Ok(event),
        Err(refused) => Err(Skipped {
            code: "wrong_gateway",
            reason: refused.to_string(),
        }),
    }
}

fn status_of(outcome: &ItemOutcome) -> &'static str {
    match outcome {
        ItemOutcome::Taken(WebhookAnswer::Scheduled { .. }) => "scheduled",
        ItemOutcome::Taken(WebhookAnswer::OnReply { .. }) => "on_reply",
        ItemOutcome::Taken(WebhookAnswer::Duplicate) => "duplicate",
        ItemOutcome::Taken(WebhookAnswer::Ignored { .. }) => "ignored",
        ItemOutcome::Taken(WebhookAnswer::Ack { .. }) => "ack",
        ItemOutcome::Taken(WebhookAnswer::Deleted { .. }) => "deleted",
        ItemOutcome::Skipped(_) => "skipped",
    }
}
