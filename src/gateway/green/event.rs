//! Green API's notifications, and [`parse`], which turns one into an [`Event`].
//!
//! One notification per request; `typeWebhook` says what it is: `incomingMessageReceived` (someone wrote),
//! `outgoingMessageReceived` and `outgoingAPIMessageReceived` (we wrote, from the phone or through the API),
//! `incomingMessageStatus` with status `read` (an incoming message read on another device). An incoming
//! `deletedMessage` (`deletedMessageWebhook`) is a deletion of `deletedMessageData.stanzaId`; an
//! `editedMessage` is no new message. Any other type is answered ignored. The session is `instanceData.idInstance`; the chat is `senderData.chatId` (or `chatId`
//! for a status), the group sender `senderData.sender`; ids are Green's `idMessage`.

use serde::Deserialize;

use crate::domain::{
    Ack, AckLevel, BareMessageId, ChatId, Deletion, Event, Gateway, IncomingMessage, MessageId,
    SessionName,
};
use crate::gateway::json::{
    BodyError, MAX_DEPTH, MEDIA_TYPES, from_object, invalid, nests_at_most,
};
use crate::time::from_millis;

/// Why a body is not an event autoseen can act on.
pub type ParseError = BodyError;

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "typeWebhook")]
    kind: Option<String>,
    #[serde(rename = "instanceData")]
    instance: Option<InstanceData>,
    timestamp: Option<i64>,
    #[serde(rename = "idMessage")]
    id: Option<String>,
    #[serde(rename = "senderData")]
    sender: Option<SenderData>,
    #[serde(rename = "messageData")]
    message: Option<MessageData>,
    /// A status's chat.
    #[serde(rename = "chatId")]
    chat: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct InstanceData {
    #[serde(rename = "idInstance")]
    id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SenderData {
    #[serde(rename = "chatId")]
    chat: Option<String>,
    sender: Option<String>,
}

#[derive(Deserialize)]
struct MessageData {
    #[serde(rename = "typeMessage")]
    kind: Option<String>,
    #[serde(rename = "textMessageData")]
    text: Option<TextData>,
    #[serde(rename = "extendedTextMessageData")]
    extended: Option<ExtendedData>,
    #[serde(rename = "deletedMessageData")]
    deleted: Option<DeletedData>,
}

#[derive(Deserialize)]
struct DeletedData {
    #[serde(rename = "stanzaId")]
    stanza_id: Option<String>,
}

#[derive(Deserialize)]
struct TextData {
    #[serde(rename = "textMessage")]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ExtendedData {
    text: Option<String>,
}

/// Reads a notification.
pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    if !nests_at_most(body, MAX_DEPTH) {
        return Err(ParseError::TooDeep);
    }
    let n: Notification = from_object(body)?;
    let kind = n.kind.clone().ok_or(ParseError::Missing("typeWebhook"))?;
    let from_me = match kind.as_str() {
        "incomingMessageReceived" => false,
        "outgoingMessageReceived" | "outgoingAPIMessageReceived" => true,
        "incomingMessageStatus" => return status(n),
        _ => return Ok(Event::Other { event: kind }),
    };
    let session = session(&n)?;
    let id = n.id.as_deref().ok_or(ParseError::Missing("idMessage"))?;
    let id = MessageId::parse(id).map_err(invalid("idMessage"))?;
    let sender_data = n.sender.ok_or(ParseError::Missing("senderData"))?;
    let chat = sender_data
        .chat
        .as_deref()
        .ok_or(ParseError::Missing("senderData.chatId"))?;
    let chat = ChatId::parse(chat).map_err(invalid("senderData.chatId"))?;
    let sender = match sender_data.sender.as_deref().filter(|s| !s.is_empty()) {
        Some(s) if !from_me => ChatId::parse(s).map_err(invalid("senderData.sender"))?,
        _ => chat.clone(),
    };
    let message = n.message;
    let kind = message
        .as_ref()
        .and_then(|m| m.kind.as_deref())
        .unwrap_or("");
    match (kind, from_me) {
        // Deleted by its sender for everyone (`deletedMessageWebhook`): the deleted message is
        // `deletedMessageData.stanzaId`, not this notification's id.
        ("deletedMessage", false) => {
            let deleted = message
                .and_then(|m| m.deleted)
                .and_then(|d| d.stanza_id)
                .ok_or(ParseError::Missing(
                    "messageData.deletedMessageData.stanzaId",
                ))?;
            return Ok(Event::Deleted(Deletion {
                session,
                chat,
                bare: BareMessageId::parse(&deleted)
                    .map_err(invalid("messageData.deletedMessageData.stanzaId"))?,
            }));
        }
        // An edit (`editedMessageWebhook`), or our own message deleted: no new message to mark.
        ("editedMessage" | "deletedMessage", _) => {
            return Ok(Event::Other {
                event: format!("{} {kind}", n.kind.as_deref().unwrap_or_default()),
            });
        }
        _ => {}
    }
    let has_media = MEDIA_TYPES.contains(&kind);
    let text = message.and_then(|m| {
        m.text
            .and_then(|t| t.text)
            .or(m.extended.and_then(|e| e.text))
    });
    Ok(Event::Message(IncomingMessage {
        session,
        chat_phone: None,
        chat,
        id,
        sender,
        sender_phone: None,
        from_me,
        text,
        has_media,
        sent_at: n.timestamp.map(|s| from_millis(s.saturating_mul(1000))),
        engine: None,
        gateway: Gateway::Green,
    }))
}

/// `idInstance`, a number in Green's bodies, as the session name.
fn session(n: &Notification) -> Result<SessionName, ParseError> {
    let id = n
        .instance
        .as_ref()
        .and_then(|i| i.id.as_ref())
        .ok_or(ParseError::Missing("instanceData.idInstance"))?;
    let id = match id {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    SessionName::parse(&id).map_err(invalid("instanceData.idInstance"))
}

/// An incoming message's status: `read` (any case) is this account reading it on another device.
fn status(n: Notification) -> Result<Event, ParseError> {
    let status = n.status.clone().unwrap_or_default();
    if !status.eq_ignore_ascii_case("read") {
        return Ok(Event::Other {
            event: format!("incomingMessageStatus {status}"),
        });
    }
    let session = session(&n)?;
    let chat = n.chat.as_deref().ok_or(ParseError::Missing("chatId"))?;
    let chat = ChatId::parse(chat).map_err(invalid("chatId"))?;
    let id = n.id.as_deref().ok_or(ParseError::Missing("idMessage"))?;
    let id = MessageId::parse(id).map_err(invalid("idMessage"))?;
    Ok(Event::Ack(Ack {
        session,
        chat,
        bare: id.bare(),
        from_me: false,
        level: AckLevel::Read,
    }))
}
