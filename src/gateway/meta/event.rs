//! Wire types of Meta's webhook bodies, and [`parse`], which turns one body into its items.
//!
//! A body is `{"object":"whatsapp_business_account","entry":[{"changes":[{"field","value"}]}]}` and every
//! array in it may hold several items: each message (`value.messages[]`), each echo of our own
//! (`value.message_echoes[]`, coexistence numbers) and each status (`value.statuses[]`) is an [`Item`]. An item
//! that cannot be read, or whose `type` autoseen does not mark, is an item too, skipped with its reason: one
//! bad item never refuses the body (Meta retries a non-2xx for days).
//!
//! Chat forms: a phone number `from` is `<digits>@c.us`, as WAHA writes it, so the same `chats` and `senders`
//! rules match; a user known only by a username has the business-scoped user id (BSUID) as
//! `<bsuid>@bsuid`; a group is `<group_id>@g.us`, its sender the participant `from`.

use serde::Deserialize;

use crate::domain::{ChatId, Event, IdError, IncomingMessage, MessageId, SessionName};
use crate::gateway::Gateway;
use crate::gateway::json::{MAX_DEPTH, from_object, nests_at_most};
use crate::time::from_millis;

/// Why a whole body is refused (400): it is not a Meta webhook body at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("field `object` is {0:?}, not \"whatsapp_business_account\"")]
    Object(Option<String>),
}

/// One message, echo or status of a body: where it is, and what it is.
#[derive(Debug)]
pub struct Item {
    /// Its place in the body, e.g. `entry[0].changes[1].value.messages[2]`.
    pub path: String,
    /// The message id (`wamid.…`), when the item has one.
    pub id: Option<String>,
    pub what: Result<Event, Skipped>,
}

/// An item autoseen does not act on, and why; reported in the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// `unsupported_type` or `invalid`.
    pub code: &'static str,
    pub reason: String,
}

#[derive(Deserialize)]
struct Body {
    object: Option<String>,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

/// A change; its `field` (`messages`, `smb_message_echoes`, …) is not read: the arrays in `value` say
/// what it holds.
#[derive(Deserialize)]
struct Change {
    value: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Value {
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<serde_json::Value>,
    #[serde(default)]
    message_echoes: Vec<serde_json::Value>,
    #[serde(default)]
    statuses: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: Option<String>,
}

#[derive(Deserialize)]
struct Contact {
    wa_id: Option<String>,
    user_id: Option<String>,
}

/// A message or an echo: the fields autoseen reads.
#[derive(Deserialize)]
struct WireMessage {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    timestamp: Option<String>,
    from: Option<String>,
    from_user_id: Option<String>,
    to: Option<String>,
    to_user_id: Option<String>,
    group_id: Option<String>,
    text: Option<Text>,
}

#[derive(Deserialize)]
struct Text {
    body: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    id: Option<String>,
    status: Option<String>,
    recipient_id: Option<String>,
    recipient_user_id: Option<String>,
    recipient_type: Option<String>,
}

/// Message types autoseen marks read: what a person sends. Anything else (`reaction`, `system`, `unknown`,
/// `unsupported`, types Meta adds later) is skipped and reported.
const MARKED_TYPES: [&str; 12] = [
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "order",
    "voice",
];

const MEDIA_TYPES: [&str; 6] = ["image", "video", "audio", "document", "sticker", "voice"];

/// Reads a body into its items. Only a body that is not JSON, nests too deep or is not a WhatsApp Business
/// Account body is an error.
pub fn parse(body: &[u8]) -> Result<Vec<Item>, ParseError> {
    if !nests_at_most(body, MAX_DEPTH) {
        return Err(ParseError::TooDeep);
    }
    let body: Body = from_object(body)?;
    if body.object.as_deref() != Some("whatsapp_business_account") {
        return Err(ParseError::Object(body.object));
    }
    let mut items = Vec::new();
    for (e, entry) in body.entry.into_iter().enumerate() {
        for (c, change) in entry.changes.into_iter().enumerate() {
            let at = format!("entry[{e}].changes[{c}].value");
            change_items(&at, change, &mut items);
        }
    }
    Ok(items)
}

fn change_items(at: &str, change: Change, items: &mut Vec<Item>) {
    let value = change.value.unwrap_or_default();
    let session = value
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number_id.as_deref())
        .ok_or_else(|| invalid("missing field `metadata.phone_number_id`".into()))
        .and_then(|id| {
            SessionName::parse(id)
                .map_err(|e| invalid(format!("field `metadata.phone_number_id` {e}")))
        });
    for (i, raw) in value.messages.into_iter().enumerate() {
        let path = format!("{at}.messages[{i}]");
        items.push(message_item(path, raw, &session, &value.contacts, false));
    }
    for (i, raw) in value.message_echoes.into_iter().enumerate() {
        let path = format!("{at}.message_echoes[{i}]");
        items.push(message_item(path, raw, &session, &value.contacts, true));
    }
    for (i, raw) in value.statuses.into_iter().enumerate() {
        let path = format!("{at}.statuses[{i}]");
        items.push(status_item(path, raw, &session));
    }
}

fn invalid(reason: String) -> Skipped {
    Skipped {
        code: "invalid",
        reason,
    }
}

fn chat_error(field: &'static str) -> impl Fn(IdError) -> Skipped {
    move |e| invalid(format!("field `{field}` {e}"))
}

fn filled(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The chat id of a user: a phone number as `<digits>@c.us`, else a BSUID as `<bsuid>@bsuid`.
fn user_chat(
    phone: Option<&str>,
    user_id: Option<&str>,
    fields: (&'static str, &'static str),
) -> Result<ChatId, Skipped> {
    if let Some(phone) = filled(phone) {
        return ChatId::parse(&format!("{phone}@c.us")).map_err(chat_error(fields.0));
    }
    match filled(user_id) {
        Some(bsuid) => ChatId::parse(&format!("{bsuid}@bsuid")).map_err(chat_error(fields.1)),
        None => Err(invalid(format!(
            "neither `{}` nor `{}` names the user",
            fields.0, fields.1
        ))),
    }
}

fn message_item(
    path: String,
    raw: serde_json::Value,
    session: &Result<SessionName, Skipped>,
    contacts: &[Contact],
    echo: bool,
) -> Item {
    let id = raw.get("id").and_then(|v| v.as_str()).map(str::to_owned);
    let what = session
        .clone()
        .and_then(|session| message(raw, session, contacts, echo));
    Item { path, id, what }
}

fn message(
    raw: serde_json::Value,
    session: SessionName,
    contacts: &[Contact],
    echo: bool,
) -> Result<Event, Skipped> {
    let wire: WireMessage =
        serde_json::from_value(raw).map_err(|e| invalid(format!("not a message: {e}")))?;
    let kind = wire.kind.as_deref().unwrap_or("");
    if !MARKED_TYPES.contains(&kind) {
        return Err(Skipped {
            code: "unsupported_type",
            reason: format!("type `{kind}` is not a message autoseen marks read"),
        });
    }
    let id = wire
        .id
        .as_deref()
        .ok_or_else(|| invalid("missing field `id`".into()))?;
    let id = MessageId::parse(id).map_err(chat_error("id"))?;
    let (chat, sender) = if echo {
        let chat = user_chat(
            wire.to.as_deref(),
            wire.to_user_id.as_deref(),
            ("to", "to_user_id"),
        )?;
        (chat.clone(), chat)
    } else {
        // A user known only by a username: `from` is empty, the BSUID is in `from_user_id` or the contact.
        let contact_id = contacts.iter().find_map(|c| {
            let matches = c.wa_id.as_deref().unwrap_or("") == wire.from.as_deref().unwrap_or("");
            c.user_id.as_deref().filter(|_| matches)
        });
        let sender = user_chat(
            wire.from.as_deref(),
            wire.from_user_id.as_deref().or(contact_id),
            ("from", "from_user_id"),
        )?;
        match wire.group_id.as_deref().filter(|g| !g.is_empty()) {
            Some(group) => (
                ChatId::parse(&format!("{group}@g.us")).map_err(chat_error("group_id"))?,
                sender,
            ),
            None => (sender.clone(), sender),
        }
    };
    let sent_at = wire
        .timestamp
        .as_deref()
        .and_then(|t| t.parse::<i64>().ok())
        .map(|s| from_millis(s.saturating_mul(1000)));
    Ok(Event::Message(IncomingMessage {
        session,
        chat,
        chat_phone: None,
        id,
        sender,
        sender_phone: None,
        from_me: echo,
        text: wire.text.and_then(|t| t.body),
        has_media: MEDIA_TYPES.contains(&kind),
        sent_at,
        engine: None,
        gateway: Gateway::Meta,
    }))
}

/// A status of a message we sent. `sent` means we wrote in that chat: our reply, which releases the chat's
/// read-on-reply receipts (plain Cloud API numbers get no echo of our messages). Other statuses are reported
/// and ignored: Meta never confirms our own mark-read.
fn status_item(
    path: String,
    raw: serde_json::Value,
    session: &Result<SessionName, Skipped>,
) -> Item {
    let id = raw.get("id").and_then(|v| v.as_str()).map(str::to_owned);
    let what = session.clone().and_then(|session| status(raw, session));
    Item { path, id, what }
}

fn status(raw: serde_json::Value, session: SessionName) -> Result<Event, Skipped> {
    let wire: WireStatus =
        serde_json::from_value(raw).map_err(|e| invalid(format!("not a status: {e}")))?;
    let status = wire.status.as_deref().unwrap_or("");
    if status != "sent" {
        return Ok(Event::Other {
            event: format!("status {status}"),
        });
    }
    let id = wire
        .id
        .as_deref()
        .ok_or_else(|| invalid("missing field `id`".into()))?;
    let id = MessageId::parse(id).map_err(chat_error("id"))?;
    let chat = if wire.recipient_type.as_deref() == Some("group") {
        let group = wire.recipient_id.as_deref().unwrap_or("");
        ChatId::parse(&format!("{group}@g.us")).map_err(chat_error("recipient_id"))?
    } else {
        user_chat(
            wire.recipient_id.as_deref(),
            wire.recipient_user_id.as_deref(),
            ("recipient_id", "recipient_user_id"),
        )?
    };
    Ok(Event::Message(IncomingMessage {
        session,
        sender: chat.clone(),
        chat,
        chat_phone: None,
        id,
        sender_phone: None,
        from_me: true,
        text: None,
        has_media: false,
        sent_at: None,
        engine: None,
        gateway: Gateway::Meta,
    }))
}
