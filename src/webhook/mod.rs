//! The edge: what Wasend (WAHA) sends us, checked and turned into domain types.
//!
//! `signature` checks the HMAC of the raw body bytes before anything is parsed; `event` turns a body into an
//! [`Event`]. Nothing here knows about rules, the store or the HTTP framework.

pub mod event;
pub mod signature;

pub use event::{Event, ParseError, WireEvent, parse};
pub use signature::{Algorithm, SignatureError, verify};
