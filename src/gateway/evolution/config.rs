//! The `[evolution]` settings: how Evolution's webhooks are authenticated (a static header, or its `jwt_key`
//! JWT), and where each instance's `markMessageAsRead` goes with which key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::settings::Problems;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvolutionSettings {
    /// The header Evolution sends on the instance webhook with `token` as its value (set in the webhook's
    /// `headers`).
    pub header: String,
    /// The value of `header`: at least 16 characters. Usually `AUTOSEEN__EVOLUTION__TOKEN`.
    pub token: Option<Secret>,
    /// The key of Evolution's `jwt_key` mode: the instance webhook's `headers` hold `jwt_key`, and Evolution
    /// sends `Authorization: Bearer <HS256 JWT>` made with it. At least 16 characters.
    pub jwt_key: Option<Secret>,
    /// The Evolution server's base URL.
    pub base_url: String,
    /// The instance's token (or the server's global `AUTHENTICATION_API_KEY`), sent as `apikey`. Usually
    /// `AUTOSEEN__EVOLUTION__API_KEY`.
    pub api_key: Option<Secret>,
    /// Per-instance overrides, `[evolution.instances.sales]`.
    pub instances: BTreeMap<String, EvolutionInstance>,
    /// Timeout of one markMessageAsRead call, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Decide, schedule and log as usual, but do not call Evolution.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvolutionInstance {
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
}

impl Default for EvolutionSettings {
    fn default() -> Self {
        Self {
            header: "x-autoseen-token".into(),
            token: None,
            jwt_key: None,
            base_url: "http://localhost:8080".into(),
            api_key: None,
            instances: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            dry_run: false,
        }
    }
}

impl EvolutionSettings {
    pub(crate) fn check(&self, out: &mut Problems) {
        let urls = std::iter::once(("evolution.base_url".to_string(), &self.base_url)).chain(
            self.instances.iter().filter_map(|(name, o)| {
                o.base_url
                    .as_ref()
                    .map(|u| (format!("evolution.instances.{name}.base_url"), u))
            }),
        );
        for (key, url) in urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => out.bad(
                    &key,
                    format!(
                        "is `{url}`, not an http(s) URL like \"https://evolution.example.com\""
                    ),
                ),
            }
        }
        if http::HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            out.bad(
                "evolution.header",
                format!(
                    "is `{}`, not an HTTP header name like \"x-autoseen-token\"",
                    self.header
                ),
            );
        }
        if self.timeout.is_zero() {
            out.bad("evolution.timeout", "must be above zero");
        }
        out.token("evolution.token", self.token.as_ref());
        out.token("evolution.jwt_key", self.jwt_key.as_ref());
    }

    /// The base URL and key of instance `name`. The default key goes only to the default base URL's server.
    pub fn instance(&self, name: &str) -> (&str, Option<&Secret>) {
        let o = self.instances.get(name);
        let url = o
            .and_then(|o| o.base_url.as_deref())
            .unwrap_or(&self.base_url);
        let same_server =
            crate::gateway::wasend::origin(url) == crate::gateway::wasend::origin(&self.base_url);
        let key = o
            .and_then(|o| o.api_key.as_ref())
            .or(self.api_key.as_ref().filter(|_| same_server));
        (url, key)
    }
}
