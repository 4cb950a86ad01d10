//! Wire types of WAHA webhook events (all three engines), and `parse`, which turns a body into an [`Event`].
//!
//! Only the fields autoseen uses are read; everything else (including the engine-specific `_data`) is tolerated
//! and ignored. The payload is kept raw until the event type says it is a message, so unknown events with any
//! payload shape are never a parse error.

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::domain::{
    Ack, AckLevel, BareMessageId, ChatId, Deletion, Event, IdError, IncomingMessage, MessageId,
    SessionName,
};
use crate::gateway::json::{MAX_DEPTH, from_object, nests_at_most, object, optional_object};
use crate::time::from_millis;

/// Why a body is not an event we can act on; each becomes a 400 naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` {problem}")]
    Invalid {
        field: &'static str,
        problem: IdError,
    },
    #[error("field `payload.ack` is {0}, not one of WAHA's ack levels (-1 to 4)")]
    AckLevel(i64),
    #[error("body is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl ParseError {
    /// The JSON path of the offending field, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ParseError::Json(_) => None,
            ParseError::Missing(f) | ParseError::Invalid { field: f, .. } => Some(f),
            ParseError::AckLevel(_) => Some("payload.ack"),
            ParseError::TooDeep => None,
        }
    }
}

/// A WAHA webhook event as it arrives (the fields autoseen reads; any others are ignored). The payload
/// is read as a message for `message`, `message.any`, `message.ack` and `message.ack.group`, and not at all
/// for other events.
#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookEvent, example = json!({
    "event": "message",
    "session": "default",
    "timestamp": 1_764_000_000_000i64,
    "engine": "WEBJS",
    "payload": {
        "id": "false_491511234567@c.us_3EB0C0FFEE",
        "timestamp": 1_764_000_000,
        "from": "491511234567@c.us",
        "fromMe": false,
        "body": "Hello",
        "hasMedia": false
    }
}))]
pub struct Envelope<'a> {
    /// `message`, `message.any`, `message.ack`, `message.ack.group`, or any other (ignored).
    event: Option<String>,
    /// When the event was made, in ms (WAHA 2025.3 and later).
    timestamp: Option<f64>,
    session: Option<String>,
    /// `WEBJS`, `NOWEB` or `GOWS`.
    engine: Option<String>,
    #[serde(borrow)]
    #[schema(value_type = Option<WireMessage>)]
    payload: Option<&'a RawValue>,
}

/// The schema of a webhook body (the wire types above).
pub type WireEvent = Envelope<'static>;

/// A message or an ack, as the payload of an event.
#[derive(Deserialize, ToSchema)]
pub struct WireMessage {
    id: Option<String>,
    /// When the message was sent, in seconds.
    timestamp: Option<f64>,
    from: Option<String>,
    #[serde(rename = "fromMe")]
    from_me: Option<bool>,
    to: Option<String>,
    participant: Option<String>,
    body: Option<String>,
    #[serde(rename = "hasMedia", default)]
    has_media: bool,
    ack: Option<i64>,
    #[serde(rename = "_data", default, deserialize_with = "object")]
    data: EngineData,
}

/// The few engine-specific fields read: where NOWEB and GOWS put the phone number beside a LID.
#[derive(Deserialize, Default, ToSchema)]
struct EngineData {
    /// NOWEB (Baileys): the message key.
    #[serde(default, deserialize_with = "optional_object")]
    key: Option<NowebKey>,
    /// GOWS (whatsmeow): the message info.
    #[serde(rename = "Info", default, deserialize_with = "optional_object")]
    info: Option<GowsInfo>,
}

#[derive(Deserialize, ToSchema)]
struct NowebKey {
    #[serde(rename = "remoteJidAlt")]
    remote_jid_alt: Option<String>,
    #[serde(rename = "participantAlt")]
    participant_alt: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct GowsInfo {
    #[serde(rename = "SenderAlt")]
    sender_alt: Option<String>,
    #[serde(rename = "RecipientAlt")]
    recipient_alt: Option<String>,
}

fn invalid(field: &'static str) -> impl Fn(IdError) -> ParseError {
    move |problem| ParseError::Invalid { field, problem }
}

fn alternative(raw: Option<&String>) -> Option<ChatId> {
    raw.and_then(|r| ChatId::phone_alternative(r))
}

/// The chat of a message whose id does not name it (not WAHA's shape): `payload.from`, or `payload.to` for
/// our own (engines disagree on which of the two our own messages carry it in, which is why the id wins).
fn chat_from_fields(wire: &WireMessage, from_me: bool) -> Result<ChatId, ParseError> {
    let (field, raw) = match (from_me, &wire.to) {
        (true, Some(to)) => ("payload.to", to),
        _ => (
            "payload.from",
            wire.from
                .as_ref()
                .ok_or(ParseError::Missing("payload.from"))?,
        ),
    };
    ChatId::parse(raw).map_err(invalid(field))
}

/// The phone numbers engines give beside LIDs: the chat's (`key.remoteJidAlt`, or GOWS's `Info`) and a
/// group sender's (`key.participantAlt`, or `Info.SenderAlt`).
fn phone_alternatives(
    wire: &WireMessage,
    chat: &ChatId,
    sender: &ChatId,
    from_me: bool,
) -> (Option<ChatId>, Option<ChatId>) {
    let (key, info) = (wire.data.key.as_ref(), wire.data.info.as_ref());
    let chat_phone = if chat.is_lid() {
        let gows = info.and_then(|i| {
            if from_me {
                i.recipient_alt.as_ref()
            } else {
                i.sender_alt.as_ref()
            }
        });
        alternative(key.and_then(|k| k.remote_jid_alt.as_ref())).or_else(|| alternative(gows))
    } else {
        None
    };
    let sender_phone = if sender == chat {
        chat_phone.clone()
    } else if sender.is_lid() {
        alternative(key.and_then(|k| k.participant_alt.as_ref()))
            .or_else(|| alternative(info.and_then(|i| i.sender_alt.as_ref())))
    } else {
        None
    };
    (chat_phone, sender_phone)
}

/// The envelope's `session`.
fn session(envelope: &Envelope<'_>) -> Result<SessionName, ParseError> {
    let session = envelope
        .session
        .as_deref()
        .ok_or(ParseError::Missing("session"))?;
    SessionName::parse(session).map_err(invalid("session"))
}

/// `message.revoked`: `payload.revokedMessageId` is the deleted message's bare id; its chat is the one the
/// revocation's id (`payload.after.id`, else the original's `payload.before.id`) names, else `after.from`.
/// Shape from WAHA's docs (content/docs/how-to/events/index.md, "message.revoked").
fn revoked(envelope: &Envelope<'_>) -> Result<Event, ParseError> {
    #[derive(Deserialize)]
    struct Revoked {
        #[serde(default, deserialize_with = "optional_object")]
        after: Option<Side>,
        #[serde(default, deserialize_with = "optional_object")]
        before: Option<Side>,
        #[serde(rename = "revokedMessageId")]
        revoked: Option<String>,
    }
    #[derive(Deserialize)]
    struct Side {
        id: Option<String>,
        from: Option<String>,
    }
    let session = session(envelope)?;
    let payload = envelope.payload.ok_or(ParseError::Missing("payload"))?;
    let wire: Revoked = from_object(payload.get().as_bytes())?;
    let parts = |side: &Option<Side>| {
        let id = side.as_ref()?.id.as_deref()?;
        MessageId::parse(id).ok()?.parts()
    };
    let (after, before) = (parts(&wire.after), parts(&wire.before));
    let bare = match (wire.revoked.as_deref(), &before) {
        (Some(id), _) => BareMessageId::parse(id).map_err(invalid("payload.revokedMessageId"))?,
        (None, Some(p)) => p.bare.clone(),
        (None, None) => return Err(ParseError::Missing("payload.revokedMessageId")),
    };
    let chat = match after.or(before) {
        Some(p) => p.chat,
        None => {
            let from = wire.after.and_then(|a| a.from);
            let from = from.ok_or(ParseError::Missing("payload.after.id"))?;
            ChatId::parse(&from).map_err(invalid("payload.after.from"))?
        }
    };
    Ok(Event::Deleted(Deletion {
        session,
        chat,
        bare,
    }))
}

/// Parses a webhook body. Messages and acks need `session` and `payload.id`; the chat comes from the id
/// when it has WAHA's shape, else from `payload.from` (or `payload.to` for our own messages).
pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    if !nests_at_most(body, MAX_DEPTH) {
        return Err(ParseError::TooDeep);
    }
    let envelope: Envelope<'_> = from_object(body)?;
    let event = envelope.event.clone().ok_or(ParseError::Missing("event"))?;
    let is_ack = match event.as_str() {
        "message" | "message.any" => false,
        "message.ack" | "message.ack.group" => true,
        "message.revoked" => return revoked(&envelope),
        _ => return Ok(Event::Other { event }),
    };
    let session = session(&envelope)?;
    let payload = envelope.payload.ok_or(ParseError::Missing("payload"))?;
    let wire: WireMessage = from_object(payload.get().as_bytes())?;
    let id = wire
        .id
        .as_deref()
        .ok_or(ParseError::Missing("payload.id"))?;
    let id = MessageId::parse(id).map_err(invalid("payload.id"))?;
    let parts = id.parts();
    let from_me = wire
        .from_me
        .or(parts.as_ref().map(|p| p.from_me))
        .unwrap_or(false);
    let chat = match parts.as_ref() {
        Some(p) => p.chat.clone(),
        None => chat_from_fields(&wire, from_me)?,
    };
    if is_ack {
        let level = wire.ack.ok_or(ParseError::Missing("payload.ack"))?;
        return Ok(Event::Ack(Ack {
            session,
            chat,
            bare: id.bare(),
            from_me,
            level: AckLevel::from_number(level).ok_or(ParseError::AckLevel(level))?,
        }));
    }
    let sender = match wire.participant.as_deref() {
        Some(p) if !p.is_empty() => ChatId::parse(p).map_err(invalid("payload.participant"))?,
        _ => parts
            .as_ref()
            .and_then(|p| p.participant.clone())
            .unwrap_or_else(|| chat.clone()),
    };
    let (chat_phone, sender_phone) = phone_alternatives(&wire, &chat, &sender, from_me);
    let sent_at = envelope
        .timestamp
        .filter(|t| t.is_finite())
        .map(|ms| from_millis(ms as i64))
        .or_else(|| {
            wire.timestamp
                .filter(|t| t.is_finite())
                .map(|s| from_millis((s * 1000.0) as i64))
        });
    Ok(Event::Message(IncomingMessage {
        session,
        chat,
        chat_phone,
        id,
        sender,
        sender_phone,
        from_me,
        text: wire.body,
        has_media: wire.has_media,
        sent_at,
        engine: envelope.engine,
        gateway: crate::domain::Gateway::Wasend,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChatType;

    fn message(event: &str, payload: &str) -> String {
        format!(
            r#"{{"id":"evt_1","timestamp":1700000000000,"event":"{event}","session":"default","me":{{"id":"4900@c.us"}},"engine":"WEBJS","payload":{payload}}}"#
        )
    }

    #[test]
    fn nesting_is_limited_in_skipped_fields_too_and_brackets_in_strings_do_not_count() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let payload = |skipped: &str| {
            format!(r#"{{"id":"false_1@c.us_A","from":"1@c.us","extra":{skipped}}}"#)
        };
        // The envelope and the payload are two levels, `extra` (a field autoseen skips) the third.
        let at_limit = message("message", &payload(&deep(MAX_DEPTH - 2)));
        let over = message("message", &payload(&deep(MAX_DEPTH - 1)));
        let strings = message(
            "message",
            &payload(&format!(r#"["{}\"{}"]"#, "[".repeat(500), "{".repeat(500))),
        );

        assert!(
            parse(at_limit.as_bytes()).is_ok(),
            "{:?}",
            parse(at_limit.as_bytes()).err()
        );
        assert!(matches!(parse(over.as_bytes()), Err(ParseError::TooDeep)));
        assert!(parse(strings.as_bytes()).is_ok());
    }

    #[test]
    fn a_direct_message_is_parsed_with_its_ids_verbatim() {
        let body = message(
            "message",
            r#"{"id":"false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA","timestamp":1700000000,"from":"11111111111@c.us","fromMe":false,"to":"4900@c.us","participant":null,"body":"hi","hasMedia":false,"_data":{"x":[1,2,{"y":null}]}}"#,
        );
        let Event::Message(m) = parse(body.as_bytes()).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(m.session.as_str(), "default");
        assert_eq!(m.chat.as_str(), "11111111111@c.us");
        assert_eq!(m.id.as_str(), "false_11111111111@c.us_AAAAAAAAAAAAAAAAAAAA");
        assert_eq!(m.sender, m.chat);
        assert_eq!(m.text.as_deref(), Some("hi"));
        assert!(!m.from_me && !m.has_media);
        assert_eq!(m.chat.chat_type(), ChatType::Direct);
    }

    #[test]
    fn a_group_message_names_its_participant_as_sender() {
        let body = message(
            "message",
            r#"{"id":"false_120363@g.us_3EB0_49151@c.us","from":"120363@g.us","participant":"49151@c.us","hasMedia":true}"#,
        );
        let Event::Message(m) = parse(body.as_bytes()).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(m.sender.as_str(), "49151@c.us");
        assert_eq!(m.chat.chat_type(), ChatType::Group);
        assert!(m.has_media);
    }

    #[test]
    fn our_own_message_uses_the_to_field_as_chat() {
        let body = message(
            "message.any",
            r#"{"id":"true_49151@c.us_X","from":"4900@c.us","to":"49151@c.us","fromMe":true}"#,
        );
        let Event::Message(m) = parse(body.as_bytes()).unwrap() else {
            panic!("not a message")
        };
        assert!(m.from_me);
        assert_eq!(m.chat.as_str(), "49151@c.us");
    }

    #[test]
    fn an_event_or_a_payload_that_is_an_array_is_refused_though_serde_could_read_it() {
        let array_body = r#"["message", 1764000000000, "default"]"#;
        let array_payload =
            r#"{"event":"message","session":"default","payload":["false_1@c.us_A"]}"#;
        let array_data = r#"{"event":"message","session":"default","payload":{"id":"false_1@c.us_A","from":"1@c.us","_data":[null,null]}}"#;

        for body in [array_body, array_payload, array_data] {
            let err = parse(body.as_bytes()).expect_err(body);
            assert!(
                err.to_string().contains("expected an object"),
                "{body}: {err}"
            );
        }
        let null_key = r#"{"event":"message","session":"default","payload":{"id":"false_1@c.us_A","from":"1@c.us","_data":{"key":null,"Info":null}}}"#;
        assert!(matches!(parse(null_key.as_bytes()), Ok(Event::Message(_))));
    }

    #[test]
    fn other_events_are_not_errors_whatever_their_payload() {
        let body =
            r#"{"event":"session.status","session":"default","payload":[1,"two",{"three":3}]}"#;
        assert!(
            matches!(parse(body.as_bytes()).unwrap(), Event::Other { event } if event == "session.status")
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let cases = [
            (r#"{"session":"s","payload":{}}"#, "event"),
            (
                r#"{"event":"message","payload":{"id":"a","from":"1@c.us"}}"#,
                "session",
            ),
            (r#"{"event":"message","session":"s"}"#, "payload"),
            (
                r#"{"event":"message","session":"s","payload":{"from":"1@c.us"}}"#,
                "payload.id",
            ),
            (
                r#"{"event":"message","session":"s","payload":{"id":"a"}}"#,
                "payload.from",
            ),
            (
                r#"{"event":"message","session":"s","payload":{"id":"a","from":"nochat"}}"#,
                "payload.from",
            ),
        ];
        for (body, field) in cases {
            let err = parse(body.as_bytes()).unwrap_err();
            assert_eq!(err.field(), Some(field), "{body}: {err}");
        }
    }

    #[test]
    fn malformed_json_is_a_json_error() {
        assert!(matches!(parse(b"{\"event\":"), Err(ParseError::Json(_))));
        assert!(matches!(parse(b"[]"), Err(ParseError::Json(_))));
    }
}
