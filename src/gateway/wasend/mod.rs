//! The Wasend/WAHA gateway: Wasend's hosted API and self-hosted WAHA, which share WAHA's events and differ in
//! their sendSeen call (`[wasend]`, `flavor`).
//!
//! Inbound: `POST /webhook` (or `/webhook/{token}`) carries one WAHA event per body, signed with WAHA's
//! `X-Webhook-Hmac` over the raw bytes ([`inbound`]); [`event`] parses it, whatever the engine (WEBJS, NOWEB,
//! GOWS). Outbound: [`WasendClient`] marks a chat's batch read, one call per message on Wasend, up to 100 ids
//! per call on WAHA.

mod config;
pub mod event;
pub mod inbound;
mod outbound;

pub use config::{Flavor, SessionOverride, WasendSettings, origin};
pub use event::{ParseError, WireEvent, parse};
pub use outbound::WasendClient;
