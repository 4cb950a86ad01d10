//! The `[green]` settings: Green API's webhook token (inbound) and each instance's API URL and token
//! (outbound).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::settings::Problems;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreenSettings {
    /// The instance's `webhookUrlToken` (SetSettings): Green sends it as `Authorization: Bearer <token>`.
    /// Required to serve a Green session; at least 16 characters.
    pub webhook_token: Option<Secret>,
    /// The instance's `apiUrl`, shown in Green's console (e.g. `https://7103.api.greenapi.com`).
    pub api_url: String,
    /// The instance's `apiTokenInstance`. Green puts it in the URL path; autoseen never logs that URL.
    pub api_token: Option<Secret>,
    /// Per-instance overrides, `[green.instances.1101000001]`, for several instances.
    pub instances: BTreeMap<String, InstanceOverride>,
    /// Timeout of one readChat call, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Decide, schedule and log as usual, but do not call Green.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceOverride {
    pub api_url: Option<String>,
    pub api_token: Option<Secret>,
}

impl Default for GreenSettings {
    fn default() -> Self {
        Self {
            webhook_token: None,
            api_url: "https://api.green-api.com".into(),
            api_token: None,
            instances: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            dry_run: false,
        }
    }
}

impl GreenSettings {
    pub(crate) fn check(&self, out: &mut Problems) {
        let urls = std::iter::once(("green.api_url".to_string(), &self.api_url)).chain(
            self.instances.iter().filter_map(|(id, o)| {
                o.api_url
                    .as_ref()
                    .map(|u| (format!("green.instances.{id}.api_url"), u))
            }),
        );
        for (key, url) in urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => out.bad(
                    &key,
                    format!("is `{url}`, not an http(s) URL like \"https://api.green-api.com\""),
                ),
            }
        }
        for id in self.instances.keys() {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                out.bad(
                    &format!("green.instances.{id}"),
                    "is not an idInstance (digits, like 1101000001)",
                );
            }
        }
        if self.timeout.is_zero() {
            out.bad("green.timeout", "must be above zero");
        }
        out.token("green.webhook_token", self.webhook_token.as_ref());
    }

    /// The API URL and token of instance `id`. The default token goes only to the default URL's server.
    pub fn instance(&self, id: &str) -> (&str, Option<&Secret>) {
        let o = self.instances.get(id);
        let url = o
            .and_then(|o| o.api_url.as_deref())
            .unwrap_or(&self.api_url);
        let same_server =
            crate::gateway::wasend::origin(url) == crate::gateway::wasend::origin(&self.api_url);
        let token = o
            .and_then(|o| o.api_token.as_ref())
            .or(self.api_token.as_ref().filter(|_| same_server));
        (url, token)
    }
}
