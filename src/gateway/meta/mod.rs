//! Meta's WhatsApp Cloud API as a gateway.
//!
//! Inbound ([`inbound`]): `GET /webhook/meta` is the verification handshake; `POST /webhook/meta` carries a
//! signed body ([`event`]) with any number of entries, changes, messages, echoes and statuses, each an item of
//! its own. The session is the business number's `phone_number_id`. Outbound ([`MetaClient`]): one Graph API
//! call per chat batch, with its newest message id, since marking a message reads the earlier ones too. Meta
//! cannot mark group messages read: they are answered `unsupported_by_gateway` and never sent.

mod config;
pub mod event;
pub mod inbound;
mod outbound;

pub use config::MetaSettings;
pub use event::{Item, ParseError, Skipped, parse};
pub use outbound::MetaClient;
