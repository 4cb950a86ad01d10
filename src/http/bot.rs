//! `POST /chats/{session}/{chat}/read`: the bot says it handled a chat, so every pending receipt of that chat
//! is due now (receipts held for a reply and closed windows included). Behind `bot.token` (bearer, compared
//! in constant time); without a token configured the endpoint does not exist (404).
//!
//! `{chat}` takes any form a rule's `chats` does, percent-encoded: a phone number (`%2B49%20151…`), a chat id
//! (`49151…@c.us`, `…@g.us`) or a LID; a phone number also finds receipts of a LID chat filed with it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::domain::{ChatId, SessionName};
use crate::rules::normalize_chat_pattern;
use crate::store::FlushScope;

pub async fn read(
    State(state): State<Arc<AppState>>,
    Path((session, chat)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Some(expected) = &state.settings.bot.token else {
        return Err(ApiError::NotFound(
            "the bot endpoint is off; set bot.token to turn it on",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|t| expected.matches(t)) {
        return Err(ApiError::Unauthorized("missing or invalid bearer token"));
    }
    let session = SessionName::parse(&session)
        .map_err(|e| ApiError::bad_request(format!("session `{session}` {e}")))?;
    let chat = normalize_chat_pattern(&chat)
        .map_err(ApiError::bad_request)
        .and_then(|c| ChatId::parse(&c).map_err(|e| ApiError::bad_request(format!("chat {e}"))))?;
    let now = state.clock.now();
    let flushed = state
        .queue
        .flush_chat(&session, &[chat], FlushScope::All, now)
        .await?;
    for chat in flushed.chats {
        state.scheduler.wake(chat, now);
    }
    tracing::info!(session = %session, receipts = flushed.receipts, "chat flushed by the bot");
    Ok(Json(
        json!({"status": "flushed", "receipts": flushed.receipts}),
    ))
}
