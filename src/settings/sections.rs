//! The small sections: `[webhook]`, `[admin]`, `[bot]`, `[metrics]` and `[log]`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve `/metrics` on this address instead of `server.listen` (keep it off the public port).
    pub listen: Option<String>,
    /// Distinct `session` label values at most; further sessions count as `session="_other"`. A session's
    /// series go away once it has had nothing pending for a day.
    pub max_sessions: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_sessions: 1000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// HMAC key configured on the Wasend session's webhook; when set, `X-Webhook-Hmac` must match.
    pub hmac_key: Option<Secret>,
    /// More HMAC keys, any of which passes: put the new key here, switch Wasend, then drop the old one.
    pub hmac_keys: Vec<Secret>,
    /// Secret path segment: when set, webhooks must come to `/webhook/{token}`.
    pub token: Option<Secret>,
    /// When set, events whose `timestamp` is further than this from now (past or future) are refused (replays).
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Accept webhooks with neither an HMAC key nor a token configured: anyone who can reach the port can
    /// then make autoseen call the API with your key. For a local try only; `serve` refuses an open webhook
    /// without it.
    pub allow_unsigned: bool,
}

impl WebhookSettings {
    /// Every HMAC key that passes.
    pub fn all_hmac_keys(&self) -> Vec<Secret> {
        self.hmac_key
            .iter()
            .chain(&self.hmac_keys)
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token for `/admin/*`; when unset, the admin endpoints are off (404).
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotSettings {
    /// Bearer token for `POST /chats/{session}/{chat}/read`, with which the bot says it handled a chat;
    /// when unset, that endpoint is off (404).
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `json` (one object per line) or `pretty`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `autoseen=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl WebhookSettings {
    pub(super) fn check(&self, out: &mut Problems) {
        out.token("webhook.token", self.token.as_ref());
        if self.all_hmac_keys().iter().any(|k| k.expose().is_empty()) {
            out.bad(
                "webhook.hmac_key",
                "is empty; remove it or set the key configured in the gateway",
            );
        }
    }
}

impl AdminSettings {
    pub(super) fn check(&self, out: &mut Problems) {
        out.token("admin.token", self.token.as_ref());
    }
}

impl BotSettings {
    pub(super) fn check(&self, out: &mut Problems) {
        out.token("bot.token", self.token.as_ref());
    }
}

impl MetricsSettings {
    pub(super) fn check(&self, out: &mut Problems) {
        if let Some(listen) = &self.listen
            && listen.parse::<SocketAddr>().is_err()
        {
            out.bad(
                "metrics.listen",
                format!("is `{listen}`, not an address like \"127.0.0.1:9090\""),
            );
        }
        if self.max_sessions == 0 {
            out.bad("metrics.max_sessions", "must be at least 1");
        }
    }
}
