//! The `[meta]` settings: Meta's WhatsApp Cloud API, inbound (app secret, verify token) and outbound (Graph
//! API base, version, access token).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::settings::Problems;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaSettings {
    /// The app secret of the Meta app (App settings > Basic): `X-Hub-Signature-256` is its HMAC-SHA256 of the
    /// raw body. Required to serve a Meta session. Usually `AUTOSEEN__META__APP_SECRET`.
    pub app_secret: Option<Secret>,
    /// The token typed into the app dashboard's webhook "Verify token" field, answered in the GET handshake.
    /// At least 16 characters.
    pub verify_token: Option<Secret>,
    /// A system user's access token with `whatsapp_business_messaging`. Required to serve a Meta session
    /// unless `dry_run`. Usually `AUTOSEEN__META__ACCESS_TOKEN`.
    pub access_token: Option<Secret>,
    /// The Graph API's base URL.
    pub base_url: String,
    /// The Graph API version in the path, e.g. `v23.0`.
    pub api_version: String,
    /// Timeout of one mark-read call, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Decide, schedule and log as usual, but do not call the Graph API.
    pub dry_run: bool,
}

impl Default for MetaSettings {
    fn default() -> Self {
        Self {
            app_secret: None,
            verify_token: None,
            access_token: None,
            base_url: "https://graph.facebook.com".into(),
            api_version: "v23.0".into(),
            timeout: Duration::from_secs(10),
            dry_run: false,
        }
    }
}

impl MetaSettings {
    pub(crate) fn check(&self, out: &mut Problems) {
        match reqwest::Url::parse(&self.base_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => out.bad(
                "meta.base_url",
                format!(
                    "is `{}`, not an http(s) URL like \"https://graph.facebook.com\"",
                    self.base_url
                ),
            ),
        }
        let version = self.api_version.strip_prefix('v').unwrap_or("");
        let numeric = version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !numeric {
            out.bad(
                "meta.api_version",
                format!(
                    "is `{}`, not a Graph API version like \"v23.0\"",
                    self.api_version
                ),
            );
        }
        if self.timeout.is_zero() {
            out.bad("meta.timeout", "must be above zero");
        }
        out.token("meta.verify_token", self.verify_token.as_ref());
        for (key, secret) in [
            ("meta.app_secret", &self.app_secret),
            ("meta.access_token", &self.access_token),
        ] {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose().trim().is_empty())
            {
                out.bad(key, "is empty; set it or remove it");
            }
        }
    }
}
