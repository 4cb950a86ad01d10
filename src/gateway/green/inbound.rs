//! Green API's inbound half: `Authorization: Bearer <webhookUrlToken>` on every notification.
//!
//! Green signs nothing; its own integration library compares the header's second word with the instance's
//! `webhookUrlToken`, and so does autoseen, in constant time. Missing and wrong are one refusal.

use http::HeaderMap;

use super::GreenSettings;
use crate::domain::Event;
use crate::gateway::Refused;
use crate::secret::Secret;

/// The `[green]` settings as the route checks them.
#[derive(Debug, Clone)]
pub struct Inbound {
    token: Option<Secret>,
}

impl Inbound {
    pub fn new(settings: &GreenSettings) -> Self {
        Self {
            token: settings.webhook_token.clone(),
        }
    }

    /// The header's second word against `green.webhook_token`. Without a token configured nothing passes
    /// (`serve` refuses to start a Green session without one).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(' ').nth(1));
        match (&self.token, given) {
            (Some(expected), Some(given)) if expected.matches(given) => Ok(()),
            _ => Err(Refused::Credentials),
        }
    }

    /// The event of an authenticated body: Green posts one per request.
    pub fn events(&self, body: &[u8]) -> Result<Vec<Event>, Refused> {
        super::parse(body)
            .map(|e| vec![e])
            .map_err(|e| Refused::Invalid(e.to_string()))
    }
}
