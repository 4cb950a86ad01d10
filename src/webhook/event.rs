//! Wire types of WAHA webhook events, and `parse`, which turns a body into an [`Event`].
//!
//! Only the fields autoseen uses are read; everything else (including the engine-specific `_data`) is tolerated
//! and ignored. The payload is kept raw until the event type says it is a message, so unknown events with any
//! payload shape are never a parse error.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{ChatId, IdError, IncomingMessage, MessageId, SessionName};

/// A webhook body, parsed.
#[derive(Debug)]
pub enum Event {
    /// `message` or `message.any`.
    Message(IncomingMessage),
    /// Any other event type; answered 200 "ignored" so the sender does not retry it.
    Other { event: String },
}

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
}

impl ParseError {
    /// The JSON path of the offending field, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ParseError::Json(_) => None,
            ParseError::Missing(f) | ParseError::Invalid { field: f, .. } => Some(f),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: Option<String>,
    timestamp: Option<f64>,
    session: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireMessage {
    id: Option<String>,
    from: Option<String>,
    #[serde(rename = "fromMe", default)]
    from_me: bool,
    to: Option<String>,
    participant: Option<String>,
    body: Option<String>,
    #[serde(rename = "hasMedia", default)]
    has_media: bool,
}

/// Parses a webhook body. `message` events need `session`, `payload.id` and `payload.from`.
pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body)?;
    let event = envelope.event.ok_or(ParseError::Missing("event"))?;
    if event != "message" && event != "message.any" {
        return Ok(Event::Other { event });
    }
    let session = envelope.session.ok_or(ParseError::Missing("session"))?;
    let session = SessionName::parse(&session).map_err(|problem| ParseError::Invalid {
        field: "session",
        problem,
    })?;
    let payload = envelope.payload.ok_or(ParseError::Missing("payload"))?;
    let wire: WireMessage = serde_json::from_str(payload.get())?;

    let id = wire.id.ok_or(ParseError::Missing("payload.id"))?;
    let id = MessageId::parse(&id).map_err(|problem| ParseError::Invalid {
        field: "payload.id",
        problem,
    })?;
    // For our own messages WAHA puts the chat in `to`; for incoming ones it is `from`.
    let (chat_field, chat) = if wire.from_me {
        ("payload.to", wire.to.or(wire.from))
    } else {
        ("payload.from", wire.from)
    };
    let chat = chat.ok_or(ParseError::Missing(chat_field))?;
    let chat = ChatId::parse(&chat).map_err(|problem| ParseError::Invalid {
        field: chat_field,
        problem,
    })?;
    let sender = match wire.participant.as_deref() {
        Some(p) if !p.is_empty() => ChatId::parse(p).map_err(|problem| ParseError::Invalid {
            field: "payload.participant",
            problem,
        })?,
        _ => chat.clone(),
    };
    Ok(Event::Message(IncomingMessage {
        session,
        chat,
        id,
        sender,
        from_me: wire.from_me,
        text: wire.body,
        has_media: wire.has_media,
        sent_at: envelope
            .timestamp
            .filter(|t| t.is_finite())
            .map(|t| crate::time::from_millis(t as i64)),
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
