//! Parsed types used everywhere past the webhook edge.
//!
//! Nothing past `webhook::parse` handles a raw `String` for a session, a chat or a message id: these newtypes
//! are built once, checked once, and then trusted. `ChatId` also knows which kind of chat it names and how it
//! reads when matched against rules (`@s.whatsapp.net` and `@c.us` are one person).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Longest identifier we accept from the wire; real ones are well under 200 bytes.
const MAX_ID_LEN: usize = 512;

/// Why an identifier from the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("contains a control character or whitespace")]
    BadCharacter,
    #[error("is not a chat id (expected something like `49151...@c.us` or `...@g.us`)")]
    NotAChat,
}

fn check_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_newtype!(
    /// A Wasend (WAHA) session name, e.g. `default` or `sales`.
    SessionName
);
id_newtype!(
    /// A serialized WhatsApp message id, kept exactly as received: it goes back to the API verbatim.
    MessageId
);
id_newtype!(
    /// A chat id as received (`…@c.us`, `…@lid`, `…@g.us`, `…@newsletter`, `status@broadcast`).
    ChatId
);

impl SessionName {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id(raw)?;
        Ok(Self(raw.into()))
    }
}

impl MessageId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id(raw)?;
        Ok(Self(raw.into()))
    }
}

impl ChatId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id(raw)?;
        match raw.split_once('@') {
            Some((user, server)) if !user.is_empty() && !server.is_empty() => Ok(Self(raw.into())),
            _ => Err(IdError::NotAChat),
        }
    }

    /// The kind of chat, read from the server part of the id.
    pub fn chat_type(&self) -> ChatType {
        let server = self.0.rsplit_once('@').map_or("", |(_, s)| s);
        match server {
            "c.us" | "lid" | "s.whatsapp.net" => ChatType::Direct,
            "g.us" => ChatType::Group,
            "newsletter" => ChatType::Channel,
            "broadcast" if self.0.starts_with("status@") => ChatType::Status,
            "broadcast" => ChatType::Broadcast,
            _ => ChatType::Other,
        }
    }

    /// The id as rules see it: `@s.whatsapp.net` is written `@c.us`, as WAHA does everywhere else.
    pub fn for_matching(&self) -> std::borrow::Cow<'_, str> {
        normalize_chat(&self.0)
    }
}

/// Canonical form of a chat id for matching: `49151…@s.whatsapp.net` becomes `49151…@c.us`. Idempotent.
pub fn normalize_chat(id: &str) -> std::borrow::Cow<'_, str> {
    match id.strip_suffix("@s.whatsapp.net") {
        Some(user) => format!("{user}@c.us").into(),
        None => id.into(),
    }
}

/// What kind of conversation a chat is; rule files name these in `chat_types`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ChatType {
    Direct,
    Group,
    Channel,
    Status,
    Broadcast,
    Other,
}

impl ChatType {
    pub const ALL: [ChatType; 6] = [
        ChatType::Direct,
        ChatType::Group,
        ChatType::Channel,
        ChatType::Status,
        ChatType::Broadcast,
        ChatType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Direct => "direct",
            ChatType::Group => "group",
            ChatType::Channel => "channel",
            ChatType::Status => "status",
            ChatType::Broadcast => "broadcast",
            ChatType::Other => "other",
        }
    }
}

/// One incoming (or, with `from_me`, outgoing) WhatsApp message, parsed from a webhook event.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub session: SessionName,
    pub chat: ChatId,
    pub id: MessageId,
    /// Who wrote it: the participant in a group, the chat itself otherwise.
    pub sender: ChatId,
    pub from_me: bool,
    /// The message text. Used by `text` rules only; never logged.
    pub text: Option<String>,
    pub has_media: bool,
    /// When the sender says it sent the event (the envelope `timestamp`), if it did.
    pub sent_at: Option<jiff::Timestamp>,
}

/// A chat within a session: the unit of batching and of read-on-reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatKey {
    pub session: SessionName,
    pub chat: ChatId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_types_come_from_the_server_part() {
        let t = |s: &str| ChatId::parse(s).unwrap().chat_type();
        assert_eq!(t("491511234567@c.us"), ChatType::Direct);
        assert_eq!(t("123456789@lid"), ChatType::Direct);
        assert_eq!(t("491511234567@s.whatsapp.net"), ChatType::Direct);
        assert_eq!(t("120363012345678901@g.us"), ChatType::Group);
        assert_eq!(t("120363012345678901@newsletter"), ChatType::Channel);
        assert_eq!(t("status@broadcast"), ChatType::Status);
        assert_eq!(t("1234@broadcast"), ChatType::Broadcast);
        assert_eq!(t("x@example"), ChatType::Other);
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert_eq!(ChatId::parse(""), Err(IdError::Empty));
        assert_eq!(ChatId::parse("4915112345"), Err(IdError::NotAChat));
        assert_eq!(ChatId::parse("@c.us"), Err(IdError::NotAChat));
        assert_eq!(MessageId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(SessionName::parse(&"x".repeat(600)), Err(IdError::TooLong));
    }

    #[test]
    fn matching_form_is_canonical_and_idempotent() {
        let once = normalize_chat("4915@s.whatsapp.net").into_owned();
        assert_eq!(once, "4915@c.us");
        assert_eq!(normalize_chat(&once), once);
    }
}
