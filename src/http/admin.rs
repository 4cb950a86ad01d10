//! `/admin/*`: pending and dead receipts, replaying the dead, reloading rules. Behind `admin.token` (bearer,
//! compared in constant time); without a token configured the endpoints do not exist (404).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::Query;
use super::openapi::AdminRefusals;
use super::{Admin, ApiError, AppState, ErrorBody};
use crate::domain::{ChatId, MessageId, SessionName};
use crate::receipts::By;
use crate::store::{DeadReceipt, PendingQuery, Receipt, ReceiptId};
use crate::time::serialize_rfc3339;

/// Which pending receipts to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PendingParams {
    /// At most this many (100 unless asked, never more than 10,000).
    #[param(minimum = 0)]
    limit: Option<usize>,
    /// Only this session's.
    session: Option<String>,
    /// Only this chat's: an id (`…@c.us`, `…@g.us`, `…@lid`) or a phone number (a LID chat filed with it
    /// matches too).
    chat: Option<String>,
}

/// How many dead receipts to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// At most this many (100 unless asked, never more than 10,000).
    #[param(minimum = 0)]
    limit: Option<usize>,
}

/// 100 unless asked, never more than 10,000.
fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(100).min(10_000)
}

#[derive(Serialize, ToSchema)]
pub struct PendingList {
    /// Earliest due first.
    pending: Vec<PendingReceipt>,
}

/// A receipt waiting to be sent, as the admin API shows it (its own type: a storage change is not an API
/// change).
#[derive(Serialize, ToSchema)]
pub struct PendingReceipt {
    #[schema(value_type = i64)]
    id: ReceiptId,
    #[schema(value_type = String)]
    session: SessionName,
    #[schema(value_type = String)]
    chat: ChatId,
    /// The phone number a LID chat was filed with.
    #[schema(value_type = Option<String>)]
    chat_phone: Option<ChatId>,
    #[schema(value_type = String)]
    message_id: MessageId,
    #[schema(value_type = String)]
    rule: Arc<str>,
    #[serde(serialize_with = "serialize_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    due_at: Timestamp,
    #[serde(serialize_with = "serialize_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    not_before: Timestamp,
    read_on_reply: bool,
    on_reply: bool,
    expires: bool,
    attempts: u32,
    last_error: Option<String>,
}

impl From<Receipt> for PendingReceipt {
    fn from(r: Receipt) -> Self {
        Self {
            id: r.id,
            session: r.session,
            chat: r.chat,
            chat_phone: r.chat_phone,
            message_id: r.message_id,
            rule: r.rule,
            due_at: r.due_at,
            not_before: r.not_before,
            read_on_reply: r.read_on_reply,
            on_reply: r.on_reply,
            expires: r.expires,
            attempts: r.attempts,
            last_error: r.last_error,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeadList {
    /// Newest first.
    dead: Vec<DeadLetter>,
}

/// A receipt given up on, with why, as the admin API shows it.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = i64)]
    id: ReceiptId,
    #[schema(value_type = String)]
    session: SessionName,
    #[schema(value_type = String)]
    chat: ChatId,
    #[schema(value_type = String)]
    message_id: MessageId,
    #[schema(value_type = String)]
    rule: Arc<str>,
    attempts: u32,
    last_error: String,
    #[serde(serialize_with = "serialize_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    died_at: Timestamp,
}

impl From<DeadReceipt> for DeadLetter {
    fn from(d: DeadReceipt) -> Self {
        Self {
            id: d.id,
            session: d.session,
            chat: d.chat,
            message_id: d.message_id,
            rule: d.rule,
            attempts: d.attempts,
            last_error: d.last_error,
            died_at: d.died_at,
        }
    }
}

/// Pending receipts, earliest due first.
#[utoipa::path(get, path = "/admin/pending", tag = "admin", params(PendingParams),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The pending receipts asked for", body = PendingList),
        (status = 400, description = "A filter is not a session or a chat", body = ErrorBody),
        AdminRefusals,
    ))]
pub async fn pending(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Query(q): Query<PendingParams>,
) -> Result<Json<PendingList>, ApiError> {
    let session = q.session.as_deref().map(super::parse_session).transpose();
    let chat = q.chat.as_deref().map(super::parse_chat).transpose();
    let (session, chat) = (
        session.map_err(ApiError::bad_request)?,
        chat.map_err(ApiError::bad_request)?,
    );
    let query = PendingQuery {
        session,
        chat,
        limit: limit(q.limit),
    };
    let pending = state.operator.find_pending(query).await?;
    Ok(Json(PendingList {
        pending: pending.into_iter().map(PendingReceipt::from).collect(),
    }))
}

/// Dead receipts (given up on), newest first.
#[utoipa::path(get, path = "/admin/dead", tag = "admin", params(Limit),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The dead receipts", body = DeadList),
        (status = 400, description = "`limit` is not a number", body = ErrorBody),
        AdminRefusals,
    ))]
pub async fn dead(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Query(q): Query<Limit>,
) -> Result<Json<DeadList>, ApiError> {
    let dead = state.operator.list_dead(limit(q.limit)).await?;
    Ok(Json(DeadList {
        dead: dead.into_iter().map(DeadLetter::from).collect(),
    }))
}

/// Which dead receipt to replay.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// Only this dead receipt; every one when absent.
    #[param(value_type = Option<i64>)]
    id: Option<ReceiptId>,
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Always `replayed`.
    status: &'static str,
    /// Chats with receipts due again now.
    chats: usize,
}

/// Moves dead receipts back to pending, due now with no attempts.
#[utoipa::path(post, path = "/admin/dead/replay", tag = "admin", params(ReplayParams),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Replayed", body = Replayed),
        (status = 400, description = "`id` is not a number", body = ErrorBody),
        AdminRefusals,
    ))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Query(q): Query<ReplayParams>,
) -> Result<Json<Replayed>, ApiError> {
    let chats = state.receipts.replay(q.id, By::Admin).await?;
    Ok(Json(Replayed {
        status: "replayed",
        chats,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Reloaded {
    /// Always `reloaded`.
    status: &'static str,
    /// The number of rules now in force.
    rules: usize,
}

/// Reads the rule files again and swaps them in; on any problem the running rules stay.
#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The new rules are in force", body = Reloaded),
        (status = 422, description = "The rule files were refused; every problem with file and line", body = ErrorBody),
        AdminRefusals,
    ))]
pub async fn reload(
    State(state): State<Arc<AppState>>,
    _: Admin,
) -> Result<Json<Reloaded>, ApiError> {
    let rules = state.reloader.reload("admin").await?;
    Ok(Json(Reloaded {
        status: "reloaded",
        rules,
    }))
}
