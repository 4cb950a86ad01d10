//! Evolution API (v2, its Baileys channel) as a gateway.
//!
//! Inbound ([`inbound`]): `POST /webhook/evolution` (and the same with the suffix Evolution appends when
//! `byEvents` is on, e.g. `/webhook/evolution/messages-upsert`) carries one event per request. Evolution signs
//! nothing: a request is taken with a static header the operator stores on the instance webhook, or with the
//! bearer JWT Evolution makes from a `jwt_key`; the body's `apikey` is never authentication. [`event`] reads
//! incoming and own messages, reads on another device and deletions. The session is the instance's name.
//! Outbound ([`EvolutionClient`]): `markMessageAsRead` takes a list of message keys, up to 100 per call here.

mod config;
pub mod event;
pub mod inbound;
mod outbound;

pub use config::{EvolutionInstance, EvolutionSettings};
pub use event::{ParseError, parse};
pub use outbound::EvolutionClient;
