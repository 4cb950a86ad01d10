//! Meta's inbound half: the GET verification handshake, and the signature of every POST.
//!
//! The handshake answers `hub.challenge` when `hub.mode` is `subscribe` and `hub.verify_token` is
//! `meta.verify_token` (compared in constant time); anything else is refused. A POST must carry
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`, checked on the raw bytes
//! before anything is parsed; missing and wrong are one refusal. The header is read as pywa reads it (its
//! validator is the reference `.ci/gateway-sdks` compares with): lower-case hex, the prefix optional.

use http::HeaderMap;

use super::MetaSettings;
use super::event::{self, Item};
use crate::gateway::Refused;
use crate::gateway::signature::{Algorithm, MacKeys};
use crate::secret::Secret;

const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The `[meta]` settings as the route checks them.
#[derive(Debug, Clone)]
pub struct Inbound {
    app_secret: Option<MacKeys>,
    verify_token: Option<Secret>,
}

/// The handshake's query: `hub.mode`, `hub.verify_token`, `hub.challenge`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    pub mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    pub verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    pub challenge: Option<String>,
}

impl Inbound {
    pub fn new(settings: &MetaSettings) -> Self {
        Self {
            app_secret: settings
                .app_secret
                .as_ref()
                .map(|s| MacKeys::new(std::slice::from_ref(s))),
            verify_token: settings.verify_token.clone(),
        }
    }

    /// The challenge to answer, when the handshake is Meta subscribing with our verify token.
    pub fn handshake(&self, query: &Handshake) -> Result<String, Refused> {
        let token_ok = match (&self.verify_token, &query.verify_token) {
            (Some(expected), Some(given)) => expected.matches(given),
            _ => false,
        };
        match (&query.challenge, query.mode.as_deref()) {
            (Some(challenge), Some("subscribe")) if token_ok => Ok(challenge.clone()),
            _ => Err(Refused::Credentials),
        }
    }

    /// The signature of the raw body. Without `meta.app_secret` nothing passes (`serve` refuses to start a
    /// Meta session without one).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Refused> {
        let Some(secret) = &self.app_secret else {
            return Err(Refused::Credentials);
        };
        let mut values = headers.get_all(SIGNATURE_HEADER).iter();
        let given = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        };
        // As Meta's most used client (pywa) reads it: the `sha256=` prefix, then exactly the lower-case hex
        // digest Meta sends.
        let hex = given
            .map(|v| v.strip_prefix("sha256=").unwrap_or(v))
            .filter(|h| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        secret
            .verify(Algorithm::Sha256, hex, body)
            .map_err(|reason| {
                tracing::debug!(%reason, "meta signature refused");
                Refused::Credentials
            })
    }

    /// The items of an authenticated body.
    pub fn items(&self, body: &[u8]) -> Result<Vec<Item>, Refused> {
        event::parse(body).map_err(|e| Refused::Invalid(e.to_string()))
    }
}
