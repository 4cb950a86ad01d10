//! The Wasend/WAHA gateway's inbound half: who may post to `/webhook`, and what a body becomes.
//!
//! Checked in this order, each before anything is parsed: the path token (`webhook.token`), then WAHA's
//! `X-Webhook-Hmac` over the raw bytes with any of `webhook.hmac_key(s)`; then the body is parsed into one
//! [`Event`] and, with `webhook.max_age`, a message too far from now is refused as a replay.

use std::time::Duration;

use http::HeaderMap;
use jiff::Timestamp;

use crate::domain::{Event, IncomingMessage};
use crate::gateway::Refused;
use crate::gateway::signature::{Algorithm, MacKeys};
use crate::secret::Secret;
use crate::settings::WebhookSettings;
use crate::time::millis_between;

const HMAC_HEADER: &str = "x-webhook-hmac";
const HMAC_ALGORITHM_HEADER: &str = "x-webhook-hmac-algorithm";

/// The `[webhook]` settings as the route checks them.
#[derive(Debug, Clone)]
pub struct Inbound {
    token: Option<Secret>,
    hmac_keys: MacKeys,
    max_age: Option<Duration>,
}

impl Inbound {
    pub fn new(settings: &WebhookSettings) -> Self {
        Self {
            token: settings.token.clone(),
            hmac_keys: MacKeys::new(&settings.all_hmac_keys()),
            max_age: settings.max_age,
        }
    }

    /// The path token: required when `webhook.token` is set, refused when it is not.
    pub fn check_token(&self, given: Option<&str>) -> Result<(), Refused> {
        let ok = match (&self.token, given) {
            (None, None) => true,
            (Some(expected), Some(given)) => expected.matches(given),
            _ => false,
        };
        ok.then_some(()).ok_or(Refused::Credentials)
    }

    /// The HMAC of the raw body, when keys are configured; one refusal for every cause.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Refused> {
        if self.hmac_keys.is_empty() {
            return Ok(());
        }
        let single = |name: &str| -> Result<Option<&str>, ()> {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(v), None) => v.to_str().map(Some).map_err(drop),
                (Some(_), Some(_)) => Err(()),
            }
        };
        let result = (|| {
            let algorithm = single(HMAC_ALGORITHM_HEADER)
                .map_err(|_| "several algorithm headers".to_string())?;
            let algorithm = Algorithm::from_header(algorithm).map_err(|e| e.to_string())?;
            let given = single(HMAC_HEADER).map_err(|_| "several signature headers".to_string())?;
            self.hmac_keys
                .verify(algorithm, given, body)
                .map_err(|e| e.to_string())
        })();
        result.map_err(|reason| {
            tracing::debug!(%reason, "signature refused");
            Refused::Credentials
        })
    }

    /// The events of an authenticated body: WAHA posts one per request.
    pub fn events(&self, body: &[u8], now: Timestamp) -> Result<Vec<Event>, Refused> {
        let event = super::parse(body).map_err(|e| Refused::Invalid(e.to_string()))?;
        if let (Event::Message(message), Some(max_age)) = (&event, self.max_age) {
            check_age(message, max_age, now)?;
        }
        Ok(vec![event])
    }
}

/// Refuses an event whose envelope `timestamp` is missing or further than `max_age` from now: a replay.
fn check_age(message: &IncomingMessage, max_age: Duration, now: Timestamp) -> Result<(), Refused> {
    let max_ms = max_age.as_millis() as i64;
    match message.sent_at {
        Some(sent) if millis_between(sent, now).abs() <= max_ms => Ok(()),
        Some(sent) => Err(Refused::Stale(format!(
            "event timestamp is {} s from now, more than webhook.max_age allows",
            millis_between(sent, now) / 1000
        ))),
        None => Err(Refused::Stale(
            "missing field `timestamp`, required when webhook.max_age is set".into(),
        )),
    }
}
