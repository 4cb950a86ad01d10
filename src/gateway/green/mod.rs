//! Green API as a gateway (its WhatsApp instances).
//!
//! Inbound ([`inbound`]): `POST /webhook/green` carries one notification per request, authenticated by
//! `Authorization: Bearer <webhookUrlToken>` (Green signs nothing); [`event`] reads incoming messages, our own
//! (sent from the phone or through the API) and reads on another device. The session is the instance's
//! `idInstance`. Outbound ([`GreenClient`]): `readChat` reads a chat up to and including one message, at most
//! 100 per call, so a chat's batch is one call per hundred with the newest id of each.

mod config;
pub mod event;
pub mod inbound;
mod outbound;

pub use config::{GreenSettings, InstanceOverride};
pub use event::{ParseError, parse};
pub use outbound::GreenClient;
