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
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String)]
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
id_newtype!(
    /// The bare message id, the third part of WAHA's serialized id (`false_<chat>_<bare>[_<participant>]`):
    /// the part an ack and its message share, whatever prefix and chat form each carries.
    BareMessageId
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

    /// The parts of WAHA's serialized id, `{true|false}_{chat}_{bare}[_{participant}]`, when the id has that
    /// shape (every engine builds message ids so; ids from elsewhere may not).
    pub fn parts(&self) -> Option<IdParts> {
        let (from_me, chat, bare, participant) = self.split()?;
        Some(IdParts {
            from_me,
            chat: ChatId(chat.into()),
            bare: BareMessageId(bare.into()),
            participant: participant.map(|p| ChatId(p.into())),
        })
    }

    /// The bare id: the third part of a WAHA id, or the whole id when it has no such shape.
    pub fn bare(&self) -> BareMessageId {
        match self.split() {
            Some((_, _, bare, _)) => BareMessageId(bare.into()),
            None => BareMessageId(self.0.clone()),
        }
    }

    /// [`Self::bare`] as text, read in place: the stores key and store every receipt by it.
    pub fn bare_str(&self) -> &str {
        self.split().map_or(&self.0, |(_, _, bare, _)| bare)
    }

    /// The four parts of [`Self::parts`], each checked as its type would be, without copying any.
    fn split(&self) -> Option<(bool, &str, &str, Option<&str>)> {
        let mut parts = self.0.splitn(4, '_');
        let from_me = match parts.next()? {
            "true" => true,
            "false" => false,
            _ => return None,
        };
        let chat = parts.next().filter(|c| ChatId::check(c).is_ok())?;
        let bare = parts.next().filter(|b| check_id(b).is_ok())?;
        let participant = match parts.next() {
            Some(p) if ChatId::check(p).is_err() => return None,
            p => p,
        };
        Some((from_me, chat, bare, participant))
    }
}

impl BareMessageId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id(raw)?;
        Ok(Self(raw.into()))
    }
}

/// What a WAHA message id says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdParts {
    /// Whether this account wrote the message.
    pub from_me: bool,
    /// The chat it belongs to, in the form the engine uses for it (a LID for LID contacts).
    pub chat: ChatId,
    pub bare: BareMessageId,
    /// Who wrote it, in groups and statuses.
    pub participant: Option<ChatId>,
}

impl ChatId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        Self::check(raw)?;
        Ok(Self(raw.into()))
    }

    /// Checks `raw` as [`Self::parse`] does, without keeping it.
    fn check(raw: &str) -> Result<(), IdError> {
        check_id(raw)?;
        match raw.split_once('@') {
            Some((user, server)) if !user.is_empty() && !server.is_empty() => Ok(()),
            _ => Err(IdError::NotAChat),
        }
    }

    /// The kind of chat, read from the server part of the id ([`ChatType::chat_id`] is the way back).
    pub fn chat_type(&self) -> ChatType {
        let server = self.0.rsplit_once('@').map_or("", |(_, s)| s);
        match server {
            "c.us" | "lid" | "s.whatsapp.net" | "bsuid" => ChatType::Direct,
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

    /// Whether this is a LID (`…@lid`): an id that hides the phone number.
    pub fn is_lid(&self) -> bool {
        self.0.ends_with("@lid")
    }

    /// A phone-number JID as engines give it beside a LID (`4915…@s.whatsapp.net`, `4915…:12@s.whatsapp.net`,
    /// `4915…@c.us`), as the chat id `4915…@c.us`; `None` for anything else (an empty string, another LID).
    pub fn phone_alternative(raw: &str) -> Option<ChatId> {
        let (user, server) = raw.trim().split_once('@')?;
        let user = user.split_once(':').map_or(user, |(u, _device)| u);
        let is_phone = matches!(server, "s.whatsapp.net" | "c.us")
            && !user.is_empty()
            && user.bytes().all(|b| b.is_ascii_digit());
        is_phone.then(|| ChatId(format!("{user}@c.us").into()))
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

    /// The chat id of a chat of this type whose user part is `user` (a number, a group's id); the status
    /// chat is always `status@broadcast`. `None` for `other`, which has no server of its own.
    pub fn chat_id(self, user: &str) -> Option<String> {
        let server = match self {
            ChatType::Direct => "c.us",
            ChatType::Group => "g.us",
            ChatType::Channel => "newsletter",
            ChatType::Broadcast => "broadcast",
            ChatType::Status => return Some("status@broadcast".into()),
            ChatType::Other => return None,
        };
        Some(format!("{user}@{server}"))
    }
}

/// One incoming (or, with `from_me`, outgoing) WhatsApp message, parsed from a webhook event.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub session: SessionName,
    /// The chat, as the message id names it (a LID for LID contacts).
    pub chat: ChatId,
    /// The chat's phone-number form, when the chat is a LID and the engine gave one beside it.
    pub chat_phone: Option<ChatId>,
    pub id: MessageId,
    /// Who wrote it: the participant in a group, the chat itself otherwise.
    pub sender: ChatId,
    /// The sender's phone-number form, when the sender is a LID and the engine gave one.
    pub sender_phone: Option<ChatId>,
    pub from_me: bool,
    /// The message text. Used by `text` rules only; never logged.
    pub text: Option<String>,
    pub has_media: bool,
    /// When the event was made: the envelope `timestamp`, else the message's own `timestamp`.
    pub sent_at: Option<jiff::Timestamp>,
    /// The WAHA engine that sent the event (`WEBJS`, `NOWEB`, `GOWS`), when the envelope says.
    pub engine: Option<String>,
    /// The gateway it came from: what it can mark read depends on it.
    pub gateway: Gateway,
}

impl IncomingMessage {
    /// A LID chat or sender that came without its phone number: phone-number rules cannot match it.
    pub fn lid_without_phone(&self) -> bool {
        (self.chat.is_lid() && self.chat_phone.is_none())
            || (self.sender != self.chat && self.sender.is_lid() && self.sender_phone.is_none())
    }

    /// Every form the chat is known by: the chat id, and its phone number when there is one.
    pub fn chat_forms(&self) -> Vec<ChatId> {
        std::iter::once(self.chat.clone())
            .chain(self.chat_phone.clone())
            .collect()
    }
}

/// A message as acks name it: its session and bare id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageKey {
    pub session: SessionName,
    pub bare: BareMessageId,
}

/// A message deleted by its sender for everyone (WAHA `message.revoked`, Evolution `messages.delete`).
#[derive(Debug, Clone)]
pub struct Deletion {
    pub session: SessionName,
    /// The chat, as the gateway names it.
    pub chat: ChatId,
    /// The deleted message.
    pub bare: BareMessageId,
}

/// A delivery receipt (`message.ack`, `message.ack.group`) for a message.
#[derive(Debug, Clone)]
pub struct Ack {
    pub session: SessionName,
    /// The chat as the ack's id names it; its form may differ from the message's (LID or phone).
    pub chat: ChatId,
    /// What the ack and its message share.
    pub bare: BareMessageId,
    /// Whether the acked message is ours (someone read what we sent) rather than one we received.
    pub from_me: bool,
    pub level: AckLevel,
}

/// How far a message got: WAHA's `ack` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AckLevel {
    Error,
    Pending,
    Server,
    Device,
    Read,
    Played,
}

impl AckLevel {
    /// WAHA's number for it (`-1` error … `4` played); `None` for numbers it does not use.
    pub fn from_number(n: i64) -> Option<Self> {
        Some(match n {
            -1 => AckLevel::Error,
            0 => AckLevel::Pending,
            1 => AckLevel::Server,
            2 => AckLevel::Device,
            3 => AckLevel::Read,
            4 => AckLevel::Played,
            _ => return None,
        })
    }

    /// Read or played: someone opened the chat.
    pub fn is_read(self) -> bool {
        self >= AckLevel::Read
    }
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
    fn waha_ids_split_into_their_parts() {
        let group = MessageId::parse("false_120363@g.us_3EB0AB_111222@lid").unwrap();
        let parts = group.parts().unwrap();
        assert!(!parts.from_me);
        assert_eq!(parts.chat.as_str(), "120363@g.us");
        assert_eq!(parts.bare.as_str(), "3EB0AB");
        assert_eq!(parts.participant.unwrap().as_str(), "111222@lid");
        let status = MessageId::parse("false_status@broadcast_AAAA_123123@c.us").unwrap();
        assert_eq!(status.parts().unwrap().chat.as_str(), "status@broadcast");
        let own = MessageId::parse("true_49151@c.us_X")
            .unwrap()
            .parts()
            .unwrap();
        assert!(own.from_me && own.participant.is_none());
        for not_waha in [
            "3EB0AB",
            "maybe_1@c.us_X",
            "false_nochat_X",
            "false_1@c.us_X_[_participant]",
        ] {
            let id = MessageId::parse(not_waha).unwrap();
            assert_eq!(id.parts(), None, "{not_waha}");
            assert_eq!((id.bare_str(), id.bare().as_str()), (not_waha, not_waha));
        }
        assert_eq!(
            (group.bare_str(), group.bare().as_str()),
            ("3EB0AB", "3EB0AB")
        );
        assert_eq!(
            MessageId::parse("3EB0AB").unwrap().bare().as_str(),
            "3EB0AB"
        );
    }

    #[test]
    fn phone_alternatives_lose_their_device_and_read_as_c_us() {
        let alt = |raw: &str| ChatId::phone_alternative(raw).map(|c| c.to_string());
        assert_eq!(
            alt("4915112345@s.whatsapp.net").as_deref(),
            Some("4915112345@c.us")
        );
        assert_eq!(
            alt("4915112345:12@s.whatsapp.net").as_deref(),
            Some("4915112345@c.us")
        );
        assert_eq!(alt("4915112345@c.us").as_deref(), Some("4915112345@c.us"));
        assert_eq!(alt(""), None);
        assert_eq!(alt("12345@lid"), None);
    }

    #[test]
    fn matching_form_is_canonical_and_idempotent() {
        let once = normalize_chat("4915@s.whatsapp.net").into_owned();
        assert_eq!(once, "4915@c.us");
        assert_eq!(normalize_chat(&once), once);
    }
}

/// What a gateway's inbound half makes of a body: one of these per message, ack or other event in it.
#[derive(Debug)]
pub enum Event {
    /// A message in a chat: someone else's, or our own (`from_me`).
    Message(IncomingMessage),
    /// A delivery or read ack of a message.
    Ack(Ack),
    /// A message its sender deleted for everyone.
    Deleted(Deletion),
    /// Any other event type; answered 200 "ignored" so the sender does not retry it.
    Other { event: String },
}

/// A gateway autoseen speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gateway {
    /// Wasend's hosted API or a self-hosted WAHA server (`[wasend]`, `[webhook]`; route `/webhook`).
    #[default]
    Wasend,
    /// Meta's WhatsApp Cloud API (`[meta]`; route `/webhook/meta`).
    Meta,
    /// Green API (`[green]`; route `/webhook/green`).
    Green,
    /// Evolution API (`[evolution]`; route `/webhook/evolution`).
    Evolution,
}

impl Gateway {
    pub fn as_str(self) -> &'static str {
        match self {
            Gateway::Wasend => "wasend",
            Gateway::Meta => "meta",
            Gateway::Green => "green",
            Gateway::Evolution => "evolution",
        }
    }

    /// Whether the gateway can mark messages of `chat_type` read: Meta lists marking group messages read as
    /// unsupported.
    pub fn marks(self, chat_type: ChatType) -> bool {
        !(self == Gateway::Meta && chat_type == ChatType::Group)
    }
}

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
