//! `POST /webhook` and `POST /webhook/{token}`, the Wasend/WAHA gateway's route: authenticate, read, verify,
//! parse, decide, persist, answer.
//!
//! Order matters: the path token is checked first, then the content type and size, then the HMAC over the
//! raw bytes, and only then is anything parsed (the gateway's inbound half, `gateway::wasend::inbound`); an
//! event for a session another gateway serves is refused. The answer for a scheduled message is sent after its receipt
//! is committed; sending happens later, in the scheduler.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{Instrument, debug, debug_span, field::Empty, warn};
use utoipa::ToSchema;

use super::error::Path;
use super::openapi::WebhookRefusals;
use super::{ApiError, AppState};
use crate::domain::Event;
use crate::gateway::{Gateway, wasend};
use crate::metric_names as names;
use crate::receipts::Outcome;
use crate::scheduler::AckResult;

/// What the webhook answers when it took the event: what became of it.
#[derive(Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WebhookAnswer {
    /// A receipt is stored and will be sent in `due_in_ms`.
    Scheduled {
        #[schema(value_type = String)]
        rule: Arc<str>,
        due_in_ms: i64,
    },
    /// Not marked: `reason` says why (`event …`, `from_me`, a rule's ignore, a closed window).
    Ignored {
        reason: String,
        #[schema(value_type = Option<String>)]
        rule: Option<Arc<str>>,
    },
    /// This message id was accepted before; nothing changed.
    Duplicate,
    /// Kept until a reply of ours in the chat (or the bot endpoint); sent anyway after `max_wait_ms` if set.
    OnReply {
        #[schema(value_type = String)]
        rule: Arc<str>,
        max_wait_ms: Option<u64>,
    },
    /// An ack: receipts it cancelled (the chat was read elsewhere) and sent ones it confirmed.
    Ack { cancelled: u64, confirmed: u64 },
    /// A message its sender deleted: its receipt cancelled (1) or none waiting (0); it is never marked.
    Deleted { cancelled: u64 },
}

/// The webhook body, as WAHA posts it: read raw for its signature, then parsed as this.
pub type WebhookBody = wasend::WireEvent;

/// Receives a WAHA event (no path token configured).
#[utoipa::path(post, path = "/webhook", tag = "webhook",
    request_body(content = WebhookBody, content_type = "application/json"),
    params(
        ("x-webhook-hmac" = Option<String>, Header, description = "Hex HMAC of the raw body, required when `webhook.hmac_key` is set"),
        ("x-webhook-hmac-algorithm" = Option<String>, Header, description = "`sha512` (WAHA's) or `sha256`"),
    ),
    responses(
        (status = 200, description = "Taken: what became of the event", body = WebhookAnswer),
        WebhookRefusals,
    ))]
pub async fn open(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    receive(state, Route::Wasend(None), headers, body).await
}

/// Receives a WAHA event, with the path token `webhook.token`.
#[utoipa::path(post, path = "/webhook/{token}", tag = "webhook",
    request_body(content = WebhookBody, content_type = "application/json"),
    params(
        ("token" = String, Path, description = "The value of `webhook.token`"),
        ("x-webhook-hmac" = Option<String>, Header, description = "Hex HMAC of the raw body, required when `webhook.hmac_key` is set"),
        ("x-webhook-hmac-algorithm" = Option<String>, Header, description = "`sha512` (WAHA's) or `sha256`"),
    ),
    responses(
        (status = 200, description = "Taken: what became of the event", body = WebhookAnswer),
        WebhookRefusals,
    ))]
pub async fn with_token(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(state, Route::Wasend(Some(token)), headers, body).await
}

/// Receives a Green API notification (`Authorization: Bearer <green.webhook_token>`).
#[utoipa::path(post, path = "/webhook/green", tag = "webhook",
    request_body(content = Object, content_type = "application/json",
        description = "A Green API notification: `{\"typeWebhook\",\"instanceData\":{\"idInstance\"},\"idMessage\",\"senderData\",…}`"),
    params(
        ("authorization" = Option<String>, Header, description = "`Bearer ` and the value of `green.webhook_token` (Green's `webhookUrlToken`)"),
    ),
    responses(
        (status = 200, description = "Taken: what became of the notification", body = WebhookAnswer),
        WebhookRefusals,
    ))]
pub async fn green(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    receive(state, Route::Green, headers, body).await
}

/// Receives an Evolution API event (the static header `evolution.header`, or Evolution's `jwt_key` JWT).
#[utoipa::path(post, path = "/webhook/evolution", tag = "webhook",
    request_body(content = Object, content_type = "application/json",
        description = "An Evolution API event: `{\"event\",\"instance\",\"data\",…}`"),
    params(
        ("x-autoseen-token" = Option<String>, Header, description = "`evolution.token`, under the header `evolution.header` names"),
        ("authorization" = Option<String>, Header, description = "`Bearer ` and an HS256 JWT made with `evolution.jwt_key`"),
    ),
    responses(
        (status = 200, description = "Taken: what became of the event", body = WebhookAnswer),
        WebhookRefusals,
    ))]
pub async fn evolution(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(state, Route::Evolution, headers, body).await
}

/// Receives an Evolution API event on the path Evolution uses when `byEvents` is on.
#[utoipa::path(post, path = "/webhook/evolution/{event}", tag = "webhook",
    request_body(content = Object, content_type = "application/json",
        description = "An Evolution API event: `{\"event\",\"instance\",\"data\",…}`"),
    params(
        ("event" = String, Path, description = "The suffix Evolution appends, e.g. `messages-upsert`; the body's `event` decides"),
        ("x-autoseen-token" = Option<String>, Header, description = "`evolution.token`, under the header `evolution.header` names"),
        ("authorization" = Option<String>, Header, description = "`Bearer ` and an HS256 JWT made with `evolution.jwt_key`"),
    ),
    responses(
        (status = 200, description = "Taken: what became of the event", body = WebhookAnswer),
        WebhookRefusals,
    ))]
pub async fn evolution_by_event(
    State(state): State<Arc<AppState>>,
    Path(_event): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(state, Route::Evolution, headers, body).await
}

/// Which gateway's route a webhook came on, with what its path carried.
enum Route {
    /// `/webhook` or `/webhook/{token}`.
    Wasend(Option<String>),
    /// `/webhook/green`.
    Green,
    /// `/webhook/evolution`, with or without an event suffix.
    Evolution,
}

impl Route {
    fn gateway(&self) -> Gateway {
        match self {
            Route::Wasend(_) => Gateway::Wasend,
            Route::Green => Gateway::Green,
            Route::Evolution => Gateway::Evolution,
        }
    }
}

async fn receive(state: Arc<AppState>, route: Route, headers: HeaderMap, body: Body) -> Response {
    // One line per accepted webhook is a debug line: at info it would cost about a quarter of the ingest
    // rate (docs/performance.md). Rejections are warnings, with the request id.
    let request_id = |headers: &HeaderMap| {
        headers
            .get(super::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let span = debug_span!(
        "webhook",
        request_id = tracing::enabled!(tracing::Level::DEBUG).then(|| request_id(&headers)),
        session = Empty,
        chat = Empty,
        message_id = Empty,
        rule = Empty
    );
    async move {
        let started = Instant::now();
        let result = handle(&state, route, &headers, body).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(outcome) => {
                let body = answer(outcome, latency_ms);
                (StatusCode::OK, Json(body)).into_response()
            }
            Err(e) => {
                warn!(
                    request_id = request_id(&headers), status = e.status().as_u16(), error = e.code(),
                    message = %e, latency_ms, "webhook rejected"
                );
                count_webhook(e.code(), "");
                e.into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// What became of an event, as answered, counted and logged (at debug, with its latency).
pub(super) fn answer(outcome: Outcome, latency_ms: f64) -> WebhookAnswer {
    match outcome {
        Outcome::Scheduled {
            rule, due_in_ms, ..
        } => {
            tracing::Span::current().record("rule", &*rule);
            debug!(status = "scheduled", due_in_ms, latency_ms, "webhook");
            count_webhook("scheduled", "");
            WebhookAnswer::Scheduled { rule, due_in_ms }
        }
        Outcome::Ignored { reason, rule } => {
            if let Some(rule) = &rule {
                tracing::Span::current().record("rule", &**rule);
            }
            let text = reason.reason();
            debug!(status = "ignored", reason = %text, latency_ms, "webhook");
            count_webhook("ignored", reason.code());
            WebhookAnswer::Ignored { reason: text, rule }
        }
        Outcome::Duplicate => {
            debug!(status = "duplicate", latency_ms, "webhook");
            count_webhook("duplicate", "");
            WebhookAnswer::Duplicate
        }
        Outcome::Held { rule, max_wait } => {
            let max_wait_ms = max_wait.map(|w| w.as_millis() as u64);
            tracing::Span::current().record("rule", &*rule);
            debug!(status = "on_reply", max_wait_ms, latency_ms, "webhook");
            count_webhook("on_reply", "");
            WebhookAnswer::OnReply { rule, max_wait_ms }
        }
        Outcome::Ack(AckResult {
            cancelled,
            confirmed,
        }) => {
            debug!(status = "ack", cancelled, confirmed, latency_ms, "webhook");
            count_webhook("ack", "");
            metrics::counter!(names::RECEIPTS_CONFIRMED).increment(confirmed);
            WebhookAnswer::Ack {
                cancelled,
                confirmed,
            }
        }
        Outcome::Deleted { cancelled } => {
            debug!(status = "deleted", cancelled, latency_ms, "webhook");
            count_webhook("deleted", "");
            WebhookAnswer::Deleted { cancelled }
        }
    }
}

async fn handle(
    state: &AppState,
    route: Route,
    headers: &HeaderMap,
    body: Body,
) -> Result<Outcome, ApiError> {
    let settings = &state.settings;
    let gateways = &state.gateways;
    match &route {
        Route::Wasend(token) => gateways.wasend.check_token(token.as_deref())?,
        Route::Green => gateways.green.authenticate(headers)?,
        Route::Evolution => gateways.evolution.authenticate(headers)?,
    }
    let body = super::body::read_json(headers, body, &settings.server).await?;
    let mut events = match &route {
        Route::Wasend(_) => {
            gateways.wasend.verify(headers, &body)?;
            gateways.wasend.events(&body, state.clock.now())?
        }
        Route::Green => gateways.green.events(&body)?,
        Route::Evolution => gateways.evolution.events(&body)?,
    };
    // WAHA and Green post one event per body.
    let event = events.pop().expect("one event per body");
    let span = tracing::Span::current();
    let session = match &event {
        Event::Message(message) => {
            span.record("chat", message.chat.as_str());
            span.record("message_id", message.id.as_str());
            Some(&message.session)
        }
        Event::Ack(ack) => {
            span.record("chat", ack.chat.as_str());
            span.record("message_id", ack.bare.as_str());
            Some(&ack.session)
        }
        Event::Deleted(d) => {
            span.record("chat", d.chat.as_str());
            span.record("message_id", d.bare.as_str());
            Some(&d.session)
        }
        Event::Other { .. } => None,
    };
    if let Some(session) = session {
        span.record("session", session.as_str());
        settings.gateway.check(session, route.gateway())?;
    }
    Ok(state.receipts.take(event, &state.rules.get()).await?)
}

pub(super) fn count_webhook(result: &'static str, reason: &'static str) {
    metrics::counter!(names::WEBHOOKS, "result" => result, "reason" => reason).increment(1);
}
