//! Evolution API's webhook events, and [`parse`], which turns one into an [`Event`].
//!
//! The envelope is `{"event","instance","data",…}`; `event` is lower-case dotted (`messages.upsert`), read
//! without case and with `_` for `.` as Evolution's settings spell them (`MESSAGES_UPSERT`). What is read,
//! from Evolution's source (evolution-foundation/evolution-api 2.3.7,
//! `src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts`):
//! - `messages.upsert`: a message; `data.key.fromMe` says whose (true: written on the phone or another device).
//! - `send.message`: our own, sent through Evolution's API.
//! - `messages.update` with `status` `READ` or `PLAYED` and `fromMe` false: read on another device.
//! - `messages.delete`: `data` is the deleted message's key (`sendDataWebhook(Events.MESSAGES_DELETE, key)`).
//!
//! The chat is `key.remoteJid` (`…@s.whatsapp.net`, `…@g.us`, `…@lid`, with the phone in `key.remoteJidAlt`);
//! a group's sender `key.participant` (`participantAlt`); the time `data.messageTimestamp` (the envelope's
//! `date_time` is local time labelled UTC). The body's `apikey` is never read.

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
struct Envelope {
    event: Option<String>,
    instance: Option<String>,
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Upsert {
    key: Option<Key>,
    message: Option<Message>,
    #[serde(rename = "messageType")]
    kind: Option<String>,
    #[serde(rename = "messageTimestamp")]
    timestamp: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Key {
    #[serde(rename = "remoteJid")]
    remote_jid: Option<String>,
    #[serde(rename = "remoteJidAlt")]
    remote_jid_alt: Option<String>,
    #[serde(rename = "fromMe")]
    from_me: Option<bool>,
    id: Option<String>,
    participant: Option<String>,
    #[serde(rename = "participantAlt")]
    participant_alt: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    conversation: Option<String>,
    #[serde(rename = "extendedTextMessage")]
    extended: Option<Extended>,
}

#[derive(Deserialize)]
struct Extended {
    text: Option<String>,
}

#[derive(Deserialize)]
struct Update {
    #[serde(rename = "keyId")]
    key_id: Option<String>,
    #[serde(rename = "remoteJid")]
    remote_jid: Option<String>,
    #[serde(rename = "fromMe")]
    from_me: Option<bool>,
    status: Option<String>,
}

/// Reads an Evolution webhook body.
pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    if !nests_at_most(body, MAX_DEPTH) {
        return Err(ParseError::TooDeep);
    }
    let envelope: Envelope = from_object(body)?;
    let event = envelope.event.clone().ok_or(ParseError::Missing("event"))?;
    let name = event.to_ascii_lowercase().replace('_', ".");
    let from_api = match name.as_str() {
        "messages.upsert" => false,
        "send.message" => true,
        "messages.update" => return update(envelope),
        "messages.delete" => return deletion(envelope),
        _ => return Ok(Event::Other { event }),
    };
    let session = session(&envelope)?;
    let data = envelope.data.ok_or(ParseError::Missing("data"))?;
    let upsert: Upsert = serde_json::from_value(data)?;
    let key = upsert.key.ok_or(ParseError::Missing("data.key"))?;
    let id = key
        .id
        .as_deref()
        .ok_or(ParseError::Missing("data.key.id"))?;
    let id = MessageId::parse(id).map_err(invalid("data.key.id"))?;
    let chat = key
        .remote_jid
        .as_deref()
        .ok_or(ParseError::Missing("data.key.remoteJid"))?;
    let chat = ChatId::parse(chat).map_err(invalid("data.key.remoteJid"))?;
    let from_me = from_api || key.from_me.unwrap_or(false);
    let chat_phone = alternative(&chat, key.remote_jid_alt.as_deref());
    let (sender, sender_phone) = match key.participant.as_deref().filter(|p| !p.is_empty()) {
        Some(p) if !from_me => {
            let sender = ChatId::parse(p).map_err(invalid("data.key.participant"))?;
            let phone = alternative(&sender, key.participant_alt.as_deref());
            (sender, phone)
        }
        _ => (chat.clone(), chat_phone.clone()),
    };
    let text = upsert
        .message
        .and_then(|m| m.conversation.or(m.extended.and_then(|e| e.text)));
    let seconds = upsert.timestamp.and_then(|t| match t {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    Ok(Event::Message(IncomingMessage {
        session,
        chat,
        chat_phone,
        id,
        sender,
        sender_phone,
        from_me,
        text,
        has_media: upsert
            .kind
            .as_deref()
            .is_some_and(|k| MEDIA_TYPES.contains(&k)),
        sent_at: seconds.map(|s| from_millis(s.saturating_mul(1000))),
        engine: None,
        gateway: Gateway::Evolution,
    }))
}

/// The phone number beside a LID (`remoteJidAlt`, `participantAlt`), as `…@c.us`.
fn alternative(id: &ChatId, alt: Option<&str>) -> Option<ChatId> {
    id.is_lid()
        .then(|| alt.and_then(ChatId::phone_alternative))
        .flatten()
}

fn session(envelope: &Envelope) -> Result<SessionName, ParseError> {
    let name = envelope
        .instance
        .as_deref()
        .ok_or(ParseError::Missing("instance"))?;
    SessionName::parse(name).map_err(invalid("instance"))
}

/// `messages.update`: READ or PLAYED of a message we received is this account reading it elsewhere.
fn update(envelope: Envelope) -> Result<Event, ParseError> {
    let session = session(&envelope)?;
    let data = envelope.data.ok_or(ParseError::Missing("data"))?;
    let update: Update = serde_json::from_value(data)?;
    let status = update.status.clone().unwrap_or_default();
    let read = matches!(status.to_ascii_uppercase().as_str(), "READ" | "PLAYED");
    let from_me = update.from_me.unwrap_or(false);
    if !read || from_me {
        return Ok(Event::Other {
            event: format!("messages.update {status}"),
        });
    }
    let chat = update
        .remote_jid
        .as_deref()
        .ok_or(ParseError::Missing("data.remoteJid"))?;
    let chat = ChatId::parse(chat).map_err(invalid("data.remoteJid"))?;
    let id = update
        .key_id
        .as_deref()
        .ok_or(ParseError::Missing("data.keyId"))?;
    Ok(Event::Ack(Ack {
        session,
        chat,
        bare: BareMessageId::parse(id).map_err(invalid("data.keyId"))?,
        from_me: false,
        level: if status.eq_ignore_ascii_case("PLAYED") {
            AckLevel::Played
        } else {
            AckLevel::Read
        },
    }))
}

/// `messages.delete`: the deleted message's key. Our own deleted messages concern nothing autoseen marks.
fn deletion(envelope: Envelope) -> Result<Event, ParseError> {
    let session = session(&envelope)?;
    let data = envelope.data.ok_or(ParseError::Missing("data"))?;
    let key: Key = serde_json::from_value(data)?;
    if key.from_me.unwrap_or(false) {
        return Ok(Event::Other {
            event: "messages.delete of our own message".into(),
        });
    }
    let chat = key
        .remote_jid
        .as_deref()
        .ok_or(ParseError::Missing("data.remoteJid"))?;
    let id = key.id.as_deref().ok_or(ParseError::Missing("data.id"))?;
    Ok(Event::Deleted(Deletion {
        session,
        chat: ChatId::parse(chat).map_err(invalid("data.remoteJid"))?,
        bare: BareMessageId::parse(id).map_err(invalid("data.id"))?,
    }))
}
