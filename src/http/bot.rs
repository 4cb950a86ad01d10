//! `POST /chats/{session}/{chat}/read`: the bot says it handled a chat, so every pending receipt of that chat
//! is due now (receipts held for a reply and closed windows included). Behind `bot.token` (bearer, compared
//! in constant time); without a token configured the endpoint does not exist (404).
//!
//! `{chat}` takes any form a rule's `chats` does, percent-encoded: a phone number (`%2B49%20151…`), a chat id
//! (`49151…@c.us`, `…@g.us`) or a LID; a phone number also finds receipts of a LID chat filed with it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::Path;
use super::{ApiError, AppState, Bot, ErrorBody};
use crate::receipts::By;

#[derive(Serialize, ToSchema)]
pub struct Flushed {
    /// Always `flushed`.
    status: &'static str,
    /// Receipts made due now.
    receipts: u64,
}

/// The bot handled this chat: every pending receipt of it is due now.
#[utoipa::path(post, path = "/chats/{session}/{chat}/read", tag = "bot",
    params(
        ("session" = String, Path, description = "The session, as Wasend names it"),
        ("chat" = String, Path, description = "A chat id or a phone number, percent-encoded"),
    ),
    security(("bot" = [])),
    responses(
        (status = 200, description = "The chat's receipts are due now", body = Flushed),
        (status = 400, description = "The session or the chat is not one", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "The bot endpoint is off (no `bot.token`)", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address: wait `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The store cannot commit now", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<Arc<AppState>>,
    _: Bot,
    Path((session, chat)): Path<(String, String)>,
) -> Result<Json<Flushed>, ApiError> {
    let session = super::parse_session(&session).map_err(ApiError::bad_request)?;
    let chat = super::parse_chat(&chat).map_err(ApiError::bad_request)?;
    let receipts = state.receipts.flush(session, chat, By::Bot).await?;
    Ok(Json(Flushed {
        status: "flushed",
        receipts,
    }))
}
