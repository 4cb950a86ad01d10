//! The `[wasend]` settings: where sendSeen goes, with which key, in which API's shape.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::settings::Problems;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasendSettings {
    /// Which API `base_url` is: `"wasend"` (`POST {base_url}/sendSeen`, bearer key, one call per message) or
    /// `"waha"` (a self-hosted WAHA server's root: `POST {base_url}/api/sendSeen`, `X-Api-Key`, one call per
    /// chat batch).
    pub flavor: Flavor,
    /// Base URL of the Wasend API, or under `flavor = "waha"` the WAHA server's root.
    pub base_url: String,
    /// API key. Required for `serve` with flavor `wasend` unless `dry_run`; optional with `waha`, which may run
    /// without one. Usually given as `AUTOSEEN__WASEND__API_KEY`.
    pub api_key: Option<Secret>,
    /// Timeout of one `sendSeen` call, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Decide, schedule and log as usual, but do not call the API.
    pub dry_run: bool,
    /// Per-session overrides for people with several Wasend accounts: `[wasend.sessions.sales]`.
    pub sessions: BTreeMap<String, SessionOverride>,
}

impl Default for WasendSettings {
    fn default() -> Self {
        Self {
            flavor: Flavor::Wasend,
            base_url: "https://api.wasend.dev".into(),
            api_key: None,
            timeout: Duration::from_secs(10),
            dry_run: false,
            sessions: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOverride {
    pub api_key: Option<Secret>,
    pub base_url: Option<String>,
    pub flavor: Option<Flavor>,
}

/// Which sendSeen API a base URL offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Wasend's hosted API: `POST /sendSeen` with `{session, to, messageId}`, one message per call.
    #[default]
    Wasend,
    /// WAHA's own API: `POST /api/sendSeen` with `{session, chatId, messageIds}`, up to 100 messages per call.
    Waha,
}

impl WasendSettings {
    /// Each endpoint the settings name: `(None, …)` for the default, `(Some(session), …)` for an override,
    /// with its flavor and base URL.
    pub fn endpoints(&self) -> impl Iterator<Item = (Option<&str>, Flavor, &str)> {
        std::iter::once((None, self.flavor, self.base_url.as_str())).chain(
            self.sessions.iter().map(|(name, o)| {
                (
                    Some(name.as_str()),
                    o.flavor.unwrap_or(self.flavor),
                    o.base_url.as_deref().unwrap_or(&self.base_url),
                )
            }),
        )
    }
}

/// Scheme, host and port of a URL, for telling whether two base URLs are the same server.
pub fn origin(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

impl WasendSettings {
    pub(crate) fn check(&self, out: &mut Problems) {
        let urls = std::iter::once(("wasend.base_url".to_string(), &self.base_url)).chain(
            self.sessions.iter().filter_map(|(name, o)| {
                o.base_url
                    .as_ref()
                    .map(|u| (format!("wasend.sessions.{name}.base_url"), u))
            }),
        );
        for (key, url) in urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => out.bad(
                    &key,
                    format!("is `{url}`, not an http(s) URL like \"https://api.wasend.dev\""),
                ),
            }
        }
        for (name, flavor, url) in self.endpoints() {
            if flavor == Flavor::Waha && url.trim_end_matches('/').ends_with("/api") {
                let key = name.map_or("wasend.base_url".into(), |n| {
                    format!("wasend.sessions.{n}.base_url")
                });
                out.bad(
                    &key,
                    format!(
                        "is `{url}`, but with flavor \"waha\" it is the WAHA server's root: autoseen calls \
                         <base_url>/api/sendSeen; drop the trailing /api"
                    ),
                );
            }
        }
        if self.timeout.is_zero() {
            out.bad("wasend.timeout", "must be above zero");
        }
        let default_origin = origin(&self.base_url);
        for (name, o) in &self.sessions {
            if let Some(url) = &o.base_url
                && o.api_key.is_none()
                && self.api_key.is_some()
                && origin(url) != default_origin
            {
                out.bad(
                    &format!("wasend.sessions.{name}.base_url"),
                    format!(
                        "is on another server than `wasend.base_url`, and the session has no `api_key` of its own: \
                         the default key is never sent to another server. Set AUTOSEEN__WASEND__SESSIONS__{}__API_KEY",
                        name.to_uppercase()
                    ),
                );
            }
        }
    }
}
