//! Gateways: the WhatsApp APIs autoseen sits beside. Each is one module with two halves.
//!
//! - **Inbound**: its routes' authentication (a path token, a signature over the raw bytes, a handshake) and
//!   the parsing of a body into zero or more domain [`Event`](crate::domain::Event)s. The HTTP layer reads the
//!   body and hands it to the gateway's inbound half; what comes out goes to the application layer
//!   (`receipts`), which knows no gateway.
//! - **Outbound**: marking a chat's batch read ([`MarkRead`]): how many calls, which ids in each, the headers
//!   and body, and what each answer means ([`SendError`]).
//!
//! Gateways: `wasend` (Wasend and WAHA), `meta` (Meta's WhatsApp Cloud API), `green` (Green API), `evolution`
//! (Evolution API).
//!
//! Which gateway serves a session is settings (`[gateway]`: a default and per-session choices, [`Choice`]).
//! [`Outbound`] hands each batch to the session's gateway. A new gateway is a module here, a settings section
//! of its own, a variant of [`Gateway`], its routes in `http`, and its fixtures in `tests/`.

mod choice;
pub mod evolution;
pub mod green;
pub(crate) mod json;
pub mod meta;
pub mod outbound;
pub mod signature;
pub mod wasend;

use std::sync::Arc;

pub use choice::{Choice, Gateway};
pub use outbound::{MarkRead, SendError, SendResult, Verdict};

use crate::domain::{ChatId, MessageId, SessionName};

/// Why a gateway's inbound half refused a request; each becomes one HTTP answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// Missing or wrong credentials: one answer for every cause, so a prober learns nothing.
    #[error("missing or wrong credentials")]
    Credentials,
    /// The body is not this gateway's event: what is wrong, naming the field.
    #[error("{0}")]
    Invalid(String),
    /// A replayed event: its timestamp is too far from now.
    #[error("{0}")]
    Stale(String),
    /// The event's session is configured for another gateway than the one whose route it came on.
    #[error(
        "session `{session}` is served by the `{configured}` gateway (gateway.default / gateway.sessions), \
         but this event came on the `{route}` gateway's route; point the session's webhook at the `{configured}` \
         route or change its gateway"
    )]
    WrongGateway {
        session: SessionName,
        configured: Gateway,
        route: Gateway,
    },
}

/// The outbound half of every configured gateway, each batch handed to its session's.
pub struct Outbound {
    choice: Choice,
    wasend: Arc<dyn MarkRead>,
    meta: Arc<dyn MarkRead>,
    green: Arc<dyn MarkRead>,
    evolution: Arc<dyn MarkRead>,
}

impl Outbound {
    /// The outbound half of every gateway, as the settings configure them.
    pub fn from_settings(settings: &crate::settings::Settings) -> anyhow::Result<Self> {
        Ok(Self::new(
            settings.gateway.clone(),
            Arc::new(wasend::WasendClient::new(&settings.wasend)?),
            Arc::new(meta::MetaClient::new(&settings.meta)?),
            Arc::new(green::GreenClient::new(&settings.green)?),
            Arc::new(evolution::EvolutionClient::new(&settings.evolution)?),
        ))
    }

    pub fn new(
        choice: Choice,
        wasend: Arc<dyn MarkRead>,
        meta: Arc<dyn MarkRead>,
        green: Arc<dyn MarkRead>,
        evolution: Arc<dyn MarkRead>,
    ) -> Self {
        Self {
            choice,
            wasend,
            meta,
            green,
            evolution,
        }
    }

    fn of(&self, session: &SessionName) -> &dyn MarkRead {
        match self.choice.of(session) {
            Gateway::Wasend => &*self.wasend,
            Gateway::Meta => &*self.meta,
            Gateway::Green => &*self.green,
            Gateway::Evolution => &*self.evolution,
        }
    }
}

#[async_trait::async_trait]
impl MarkRead for Outbound {
    async fn check_credentials(&self, session: &SessionName) -> Verdict {
        self.of(session).check_credentials(session).await
    }

    fn calls_for(&self, session: &SessionName, ids: usize) -> usize {
        self.of(session).calls_for(session, ids)
    }

    async fn mark_read(
        &self,
        session: &SessionName,
        chat: &ChatId,
        phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        self.of(session).mark_read(session, chat, phone, ids).await
    }
}
