//! `POST /chats/{session}/{chat}/read`: the bot says it handled a chat, so every pending receipt of that chat
//! is due now (receipts held for a reply and closed windows included). Behind `bot.token` (bearer, compared
//! in constant time); without a token configured the endpoint does not exist (404).
//!
//! `{chat}` takes any form a rule's `chats` does, percent-encoded: a phone number (`%2B49%20151…`), a chat id
//! (`49151…@c.us`, `…@g.us`) or a LID; a phone number also finds receipts of a LID chat filed with it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{ApiError, AppState, bearer};
use crate::domain::{ChatId, SessionName};
use crate::rules::normalize_chat_pattern;
use crate::store::{Flush, FlushScope};

pub async fn read(
    State(state): State<Arc<AppState>>,
    Path((session, chat)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    bearer(
        &headers,
        state.settings.bot.token.as_ref(),
        "the bot endpoint is off; set bot.token to turn it on",
    )?;
    let session = SessionName::parse(&session)
        .map_err(|e| ApiError::bad_request(format!("session `{session}` {e}")))?;
    let chat = normalize_chat_pattern(&chat)
        .map_err(ApiError::bad_request)
        .and_then(|c| ChatId::parse(&c).map_err(|e| ApiError::bad_request(format!("chat {e}"))))?;
    let now = state.clock.now();
    let flush = Flush {
        session: session.clone(),
        forms: vec![chat],
        scope: FlushScope::All,
        at: now,
    };
    let flushed = state.queue.flush_chat(flush).await?;
    for chat in flushed.chats {
        state.scheduler.wake(chat, now);
    }
    tracing::info!(session = %session, receipts = flushed.receipts, "chat flushed by the bot");
    Ok(Json(
        json!({"status": "flushed", "receipts": flushed.receipts}),
    ))
}
