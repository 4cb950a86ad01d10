//! Evolution's inbound half: who may post to `/webhook/evolution`.
//!
//! Evolution signs nothing, so a request is taken when it carries either credential configured:
//! - the static header `evolution.header` with the value `evolution.token`, which the operator also puts in
//!   the instance webhook's `headers` (compared in constant time);
//! - `Authorization: Bearer <JWT>`, HS256 with `evolution.jwt_key`, unexpired (`exp` required), which Evolution
//!   makes when the webhook's `headers` hold `jwt_key`.
//!
//! The body's `apikey` field is the instance's API token handed out in every body, never authentication.
//! Global webhooks send no custom headers, so only instance webhooks can be authenticated.

use http::HeaderMap;

use super::EvolutionSettings;
use crate::domain::Event;
use crate::gateway::Refused;
use crate::secret::Secret;

/// The `[evolution]` settings as the route checks them.
#[derive(Clone)]
pub struct Inbound {
    header: http::HeaderName,
    token: Option<Secret>,
    /// One key, or two during a rotation.
    jwt: Vec<jsonwebtoken::DecodingKey>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("header", &self.header)
            .field("token", &self.token)
            .field("jwt", &self.jwt.iter().map(|_| "***").collect::<Vec<_>>())
            .finish()
    }
}

impl Inbound {
    pub fn new(settings: &EvolutionSettings) -> Self {
        Self {
            header: http::HeaderName::from_bytes(settings.header.as_bytes())
                .unwrap_or(http::HeaderName::from_static("x-autoseen-token")),
            token: settings.token.clone(),
            jwt: settings
                .jwt_key
                .iter()
                .flat_map(Secret::values)
                .map(|k| jsonwebtoken::DecodingKey::from_secret(k.as_bytes()))
                .collect(),
        }
    }

    /// The static header or the JWT; without either configured nothing passes (`serve` refuses to start an
    /// Evolution session without one).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let header_ok = self.token.as_ref().is_some_and(|token| {
            headers
                .get(&self.header)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|given| token.matches(given))
        });
        if header_ok || self.jwt_ok(headers) {
            Ok(())
        } else {
            Err(Refused::Credentials)
        }
    }

    fn jwt_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        // Every key is tried (a rotation has two), so the time taken does not say which one matched.
        self.jwt.iter().fold(false, |found, key| {
            match jsonwebtoken::decode::<serde::de::IgnoredAny>(token, key, &validation) {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(reason = %e, "evolution JWT refused");
                    found
                }
            }
        })
    }

    /// The event of an authenticated body: Evolution posts one per request.
    pub fn events(&self, body: &[u8]) -> Result<Vec<Event>, Refused> {
        super::parse(body)
            .map(|e| vec![e])
            .map_err(|e| Refused::Invalid(e.to_string()))
    }
}
