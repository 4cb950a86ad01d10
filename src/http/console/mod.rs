//! The operator console at `/ui`: server-rendered pages over the same store, scheduler and rules the API
//! uses, present only when `admin.token` is set (404 otherwise, like `/admin/*`).
//!
//! Signing in posts the admin token and gets a session cookie (`session`); every form that changes
//! something carries the session's CSRF token, and a request without it is refused (403). Pages are plain
//! HTML from `pages`; the stylesheet and the live page's script are compiled into the binary (no CDN, works
//! offline). Figures read from the store are the cluster's; figures this process keeps in memory (sends,
//! failures, confirmations, pauses, the live feed) are labelled "this replica". No page and no event ever
//! holds a message's text: explain uses the text to decide and then drops it.

mod pages;
pub mod session;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::{IntoParams, ToSchema};

use super::body::Form;
use super::client::Client;
use super::openapi::ConsoleRefusals;
use super::{ApiError, AppState, parse_chat, parse_session};
use crate::domain::{ChatId, ChatType, IncomingMessage, MessageId};
use crate::receipts::By;
use crate::store::{PendingQuery, ReceiptId};
use session::SignedIn;

/// Rows a listing page shows at most.
const PAGE_ROWS: usize = 200;
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
/// Pages load nothing from anywhere else and run no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console's routes: pages (GET, not in the OpenAPI document) and the actions they post (documented in
/// `openapi`, via the handlers' `#[utoipa::path]`).
pub fn pages_router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(overview))
        .route("/ui/pending", get(pending))
        .route("/ui/dead", get(dead))
        .route("/ui/rules", get(rules))
        .route("/ui/explain", get(explain_form))
        .route("/ui/live", get(live))
        .route("/ui/live/events", get(live_events))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(js))
}

/// Headers for the console's answers: no framing, no caching, nothing loaded from elsewhere.
pub fn security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// A request of a signed-in operator. Without `admin.token` the console does not exist (404); without a
/// valid session the answer is the sign-in form (401).
pub struct Signed(SignedIn);

impl FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        console_on(state).map_err(IntoResponse::into_response)?;
        let jar = CookieJar::from_headers(&parts.headers);
        match state.console.find(&jar) {
            Some(s) => Ok(Signed(s)),
            None => Err(sign_in_page(None)),
        }
    }
}

fn console_on(state: &AppState) -> Result<(), ApiError> {
    match state.settings.admin.token {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(
            "the console is off; set admin.token to turn it on",
        )),
    }
}

fn sign_in_page(problem: Option<&str>) -> Response {
    (StatusCode::UNAUTHORIZED, pages::sign_in(problem)).into_response()
}

/// Checks the CSRF token a form posted.
fn check_csrf(op: &Signed, given: Option<&str>) -> Result<(), ApiError> {
    if op.0.csrf_matches(given) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the form's CSRF token is missing or stale; reload the page and try again",
        ))
    }
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

/// The sign-in form: the admin token, posted once; nothing else.
#[derive(Deserialize, ToSchema)]
pub struct SignIn {
    /// The value of `admin.token`.
    token: Option<String>,
}

/// Signs in with the admin token: on success a session cookie and a redirect to the overview.
#[utoipa::path(post, path = "/ui/login", tag = "console",
    request_body(content = SignIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: the session cookie is set; on to the overview"),
        (status = 401, description = "Wrong token: the sign-in form again", content_type = "text/html", body = String),
        (status = 429, description = "Too many wrong tokens from this address: the sign-in form, and `Retry-After` seconds to wait", content_type = "text/html", body = String),
        (status = 404, description = "The console is off (no `admin.token`)", body = super::openapi::ErrorBody),
    ))]
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    client: Client,
    jar: CookieJar,
    Form(form): Form<SignIn>,
) -> Result<Response, ApiError> {
    console_on(&state)?;
    let expected = state.settings.admin.token.as_ref().expect("checked above");
    let ok = form.token.as_deref().is_some_and(|t| expected.matches(t));
    match state.authenticate(client, "console sign-in", ok) {
        Ok(()) => {}
        Err(ApiError::TooManyAttempts { retry_after }) => {
            let problem = format!(
                "Too many failed sign-ins from this address; try again in {retry_after} s."
            );
            let mut page = (
                StatusCode::TOO_MANY_REQUESTS,
                pages::sign_in(Some(&problem)),
            )
                .into_response();
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return Ok(page);
        }
        Err(_) => return Ok(sign_in_page(Some("That is not the admin token."))),
    }
    tracing::info!(client = %client.ip, "console signed in");
    // Behind a TLS proxy (one of server.trusted_proxies) the cookie is `Secure`; on plain HTTP (localhost, a
    // port-forward) it cannot be.
    let cookie = state.console.start(client.https);
    Ok((jar.add(cookie), Redirect::to("/ui")).into_response())
}

/// What every console action posts: the session's CSRF token.
#[derive(Deserialize, ToSchema)]
pub struct Csrf {
    /// The session's CSRF token, from the page's form.
    csrf: Option<String>,
}

/// Signs out: the session ends here and the cookie is cleared.
#[utoipa::path(post, path = "/ui/logout", tag = "console",
    request_body(content = Csrf, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out; on to the sign-in form"),
        ConsoleRefusals,
    ))]
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    op: Signed,
    jar: CookieJar,
    Form(form): Form<Csrf>,
) -> Result<Response, ApiError> {
    check_csrf(&op, form.csrf.as_deref())?;
    let [plain, secure] = state.console.end(&op.0);
    Ok((jar.add(plain).add(secure), Redirect::to("/ui")).into_response())
}

async fn overview(State(state): State<Arc<AppState>>, op: Signed) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let pending = state.operator.pending_stats().await?;
    let activity = state.activity.summary(now);
    Ok(pages::overview(
        &op.0.csrf,
        now,
        &pending,
        &activity,
        &state.settings.gateway,
    )
    .into_response())
}

/// Which receipts the pending page lists; a notice after an action.
#[derive(Deserialize, Default)]
struct PendingFilter {
    session: Option<String>,
    chat: Option<String>,
    notice: Option<String>,
}

/// An empty form field is no filter.
fn filled(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

async fn pending(
    State(state): State<Arc<AppState>>,
    op: Signed,
    Query(f): Query<PendingFilter>,
) -> Result<Response, ApiError> {
    let session = filled(&f.session).map(parse_session).transpose();
    let chat = filled(&f.chat).map(parse_chat).transpose();
    let (rows, problem) = match (session, chat) {
        (Ok(session), Ok(chat)) => {
            let q = PendingQuery {
                session,
                chat,
                limit: PAGE_ROWS,
            };
            (state.operator.find_pending(q).await?, None)
        }
        (Err(e), _) | (_, Err(e)) => (Vec::new(), Some(e)),
    };
    let filter = (filled(&f.session), filled(&f.chat));
    let notice = problem.as_deref().or(f.notice.as_deref());
    let now = state.clock.now();
    Ok(pages::pending(&op.0.csrf, now, filter, &rows, notice).into_response())
}

/// "Send now" for one chat.
#[derive(Deserialize, ToSchema)]
pub struct SendNow {
    csrf: Option<String>,
    /// The session, as Wasend names it.
    session: Option<String>,
    /// The chat: an id (`…@c.us`, `…@g.us`, `…@lid`) or a phone number.
    chat: Option<String>,
}

/// Makes every pending receipt of one chat due now (as the bot endpoint does); back to the pending page.
#[utoipa::path(post, path = "/ui/pending/send", tag = "console",
    request_body(content = SendNow, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Done or refused; the pending page says which"),
        (status = 503, description = "The store cannot commit now", body = super::openapi::ErrorBody),
        ConsoleRefusals,
    ))]
pub async fn send_now(
    State(state): State<Arc<AppState>>,
    op: Signed,
    Form(form): Form<SendNow>,
) -> Result<Response, ApiError> {
    check_csrf(&op, form.csrf.as_deref())?;
    let session = parse_session(form.session.as_deref().unwrap_or_default());
    let chat = parse_chat(form.chat.as_deref().unwrap_or_default());
    let notice = match (session, chat) {
        (Ok(session), Ok(chat)) => {
            let receipts = state.receipts.flush(session, chat, By::Console).await?;
            format!("{receipts} receipt(s) due now")
        }
        (Err(e), _) | (_, Err(e)) => e,
    };
    Ok(redirect_with_notice("/ui/pending", &notice))
}

fn redirect_with_notice(to: &str, notice: &str) -> Response {
    #[derive(Serialize)]
    struct Notice<'a> {
        notice: &'a str,
    }
    let query = serde_urlencoded::to_string(Notice { notice }).unwrap_or_default();
    Redirect::to(&format!("{to}?{query}")).into_response()
}

#[derive(Deserialize, Default)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn dead(
    State(state): State<Arc<AppState>>,
    op: Signed,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, ApiError> {
    let rows = state.operator.list_dead(PAGE_ROWS).await?;
    Ok(pages::dead(&op.0.csrf, &rows, q.notice.as_deref()).into_response())
}

/// Replays one dead receipt (`id`) or all of them (no `id`).
#[derive(Deserialize, ToSchema, IntoParams)]
pub struct Replay {
    csrf: Option<String>,
    /// The dead receipt to replay; all of them when absent.
    #[schema(value_type = Option<i64>)]
    id: Option<ReceiptId>,
}

/// Moves dead receipts back to pending, due now; back to the dead-letter page.
#[utoipa::path(post, path = "/ui/dead/replay", tag = "console",
    request_body(content = Replay, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Replayed; the dead-letter page says how many chats"),
        (status = 503, description = "The store cannot commit now", body = super::openapi::ErrorBody),
        ConsoleRefusals,
    ))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    op: Signed,
    Form(form): Form<Replay>,
) -> Result<Response, ApiError> {
    check_csrf(&op, form.csrf.as_deref())?;
    let n = state.receipts.replay(form.id, By::Console).await?;
    Ok(redirect_with_notice(
        "/ui/dead",
        &format!("replayed: {n} chat(s) due now"),
    ))
}

async fn rules(State(state): State<Arc<AppState>>, op: Signed) -> Response {
    let rules = state.rules.get();
    let report = state.reloader.last_report();
    pages::rules(&op.0.csrf, &rules, report.as_ref()).into_response()
}

async fn explain_form(op: Signed) -> Response {
    pages::explain(&op.0.csrf, None).into_response()
}

/// An event to explain: a pasted webhook body, or a message described by its fields.
#[derive(Deserialize, ToSchema)]
pub struct Explain {
    csrf: Option<String>,
    /// A webhook body (JSON) as Wasend would post it; when given, the fields below are not used.
    body: Option<String>,
    session: Option<String>,
    /// A chat id or a phone number.
    chat: Option<String>,
    /// `direct`, `group`, `channel`, `status`, `broadcast`: the server part added to a bare number.
    chat_type: Option<String>,
    /// Used to decide (`text` rules); never shown, logged or streamed.
    text: Option<String>,
}

/// Explains what the service would do with an event now, with the code `autoseen explain` runs.
#[utoipa::path(post, path = "/ui/explain", tag = "console",
    request_body(content = Explain, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The explain page with the decision, the rule, the reason and when", content_type = "text/html", body = String),
        ConsoleRefusals,
    ))]
pub async fn explain(
    State(state): State<Arc<AppState>>,
    op: Signed,
    Form(form): Form<Explain>,
) -> Result<Response, ApiError> {
    check_csrf(&op, form.csrf.as_deref())?;
    let now = state.clock.now();
    let (settings, rules) = (&state.settings, state.rules.get());
    let explained = match filled(&form.body) {
        Some(body) => crate::explain::body(settings, &rules, body.as_bytes(), now),
        None => event_of(&form, settings).map(|event| {
            crate::explain::Explained::One(Box::new(crate::explain::event(
                settings, &rules, &event, now,
            )))
        }),
    };
    let answer = explained.map(|e| serde_json::to_value(e).expect("an explanation serializes"));
    Ok(pages::explain(&op.0.csrf, Some(&answer)).into_response())
}

/// The event a form's fields describe; the text goes into it to decide and goes nowhere else.
fn event_of(
    form: &Explain,
    settings: &crate::settings::Settings,
) -> Result<crate::domain::Event, String> {
    let session = parse_session(filled(&form.session).unwrap_or("default"))?;
    let raw_chat = filled(&form.chat)
        .ok_or("give a chat (an id or a phone number), or paste a webhook body")?;
    let raw_type = filled(&form.chat_type).unwrap_or("direct");
    let known = || ChatType::ALL.map(ChatType::as_str).join(", ");
    let chat_type = ChatType::ALL
        .into_iter()
        .find(|t| t.as_str() == raw_type)
        .ok_or_else(|| format!("chat type `{raw_type}` is not one of {}", known()))?;
    // An id says its type itself; a bare number (or a direct chat's phone number in any form) gets the server
    // part of the type picked.
    let chat = match chat_type {
        _ if raw_chat.contains('@') => parse_chat(raw_chat)?,
        ChatType::Direct => parse_chat(raw_chat)?,
        other => {
            let id = other.chat_id(raw_chat).ok_or_else(|| {
                format!(
                    "chat type `{raw_type}` names no chat; pick one of {}",
                    known()
                )
            })?;
            ChatId::parse(&id).map_err(|e| format!("chat {e}"))?
        }
    };
    let id = MessageId::parse(&format!("false_{}_EXPLAIN", chat.as_str()))
        .map_err(|e| format!("chat {e}"))?;
    let gateway = settings.gateway.of(&session);
    Ok(crate::domain::Event::Message(IncomingMessage {
        session,
        sender: chat.clone(),
        chat,
        chat_phone: None,
        id,
        sender_phone: None,
        from_me: false,
        text: form.text.clone(),
        has_media: false,
        sent_at: None,
        engine: None,
        gateway,
    }))
}

async fn live(op: Signed) -> Response {
    pages::live(&op.0.csrf).into_response()
}

/// How often an open feed checks that its session is still signed in (sign-out ends it at once).
const FEED_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Decisions and sends as they happen, as server-sent events (`happening`, JSON of
/// [`crate::activity::Happening`]); never message text. The stream ends when the session does; a session
/// holds a few feeds at most (429 past that).
async fn live_events(State(state): State<Arc<AppState>>, op: Signed) -> Response {
    let feed = match state.console.open_feed(&op.0) {
        Ok(feed) => feed,
        Err(session::FeedRefused::SignedOut) => return sign_in_page(None),
        Err(session::FeedRefused::TooMany) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from_static("10"))],
                "too many live feeds open; close another console tab",
            )
                .into_response();
        }
    };
    let happenings = state.activity.watch();
    let stream = futures_util::stream::unfold(happenings, |mut happenings| async move {
        let event = match happenings.recv().await {
            Ok(h) => SseEvent::default()
                .event("happening")
                .json_data(&h)
                .unwrap_or_else(|_| SseEvent::default().comment("unserializable")),
            Err(RecvError::Lagged(n)) => SseEvent::default().event("missed").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), happenings))
    });
    // The feed (its place among the bounded feeds) lives as long as the stream.
    let ended = async move { feed.ended(FEED_CHECK).await };
    let stream = futures_util::StreamExt::take_until(stream, Box::pin(ended));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
