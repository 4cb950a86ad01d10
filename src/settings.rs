//! Settings: `DIR/autoseen.toml`, then `AUTOSEEN__SECTION__KEY` environment variables, then checks across
//! fields.
//!
//! The file is read twice on purpose: once on its own with `toml`, which gives errors a line and column and
//! refuses unknown keys, then layered with the environment by the `config` crate. So a mistake in the file is
//! reported with its line, and a mistake in the environment names the variable. Secrets are [`Secret`]s: they
//! print as `***` under `Debug` and `Display`, at every log level. Sections that one part of the service owns
//! alone live beside it (`[delivery]` with the scheduler) and are gathered here.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::scheduler::DeliverySettings;
pub use crate::scheduler::pacing::Rate;
pub use crate::secret::Secret;
use crate::toml_span::line_of;
pub use crate::wasend::{Flavor, SessionOverride, WasendSettings};

/// Tokens (admin, bot, webhook path) shorter than this are refused; HMAC keys shorter are warned about.
pub const MIN_SECRET_CHARS: usize = 16;

/// An address or a CIDR (`10.0.0.0/8`, `::1`), as `server.trusted_proxies` lists them.
pub fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Scheme, host and port of a URL, for telling whether two base URLs are the same server.
pub fn origin(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// Name of the settings file inside the config folder.
pub const SETTINGS_FILE: &str = "autoseen.toml";
/// Prefix of settings environment variables: `AUTOSEEN__WASEND__API_KEY` sets `wasend.api_key`.
pub const ENV_PREFIX: &str = "AUTOSEEN";

/// Everything `autoseen.toml` can say. Each key is documented here and in the shipped `config/autoseen.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub webhook: WebhookSettings,
    pub wasend: WasendSettings,
    pub delivery: DeliverySettings,
    pub store: StoreSettings,
    pub admin: AdminSettings,
    pub bot: BotSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address the HTTP server listens on; port 0 picks a free port (it is logged).
    pub listen: String,
    /// Largest webhook body accepted; larger ones get 413 without being read whole.
    pub max_body_bytes: usize,
    /// How long shutdown waits for requests and sends in flight before exiting.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// A request's headers must arrive within this long (slow clients are cut off).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request's body must arrive within this long, else 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Open connections at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Open connections at once from one client address (IPv6: one /64); a connection over it is closed at
    /// once. Addresses in `trusted_proxies` are exempt.
    pub max_connections_per_ip: usize,
    /// A connection with no request in flight is closed after this long (HTTP/1 keep-alive and HTTP/2 alike).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed; from any
    /// other peer those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Wrong credentials (console sign-in, admin and bot tokens) from one client address within
    /// `auth_failure_window` before every attempt from it answers 429 for a while (1 s, doubling to 15 min).
    pub auth_failures: u32,
    /// How long a wrong credential counts against its client address.
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 256,
            idle_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            auth_failures: 5,
            auth_failure_window: Duration::from_secs(15 * 60),
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Where the store is: `sqlite:PATH` (the embedded default) or `postgres://user:password@host/db` for
    /// several replicas sharing one queue. Env: `AUTOSEEN__STORE__URL`. The password never prints.
    pub url: Option<StoreUrl>,
    /// The SQLite file, as before `url` existed (created with its folder; relative to the working directory).
    /// Default `data/autoseen.db` when neither is set; setting both is an error.
    pub path: Option<PathBuf>,
    /// How long accepted message ids are remembered to answer re-deliveries with "duplicate".
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// SQLite only, `synchronous`: `"normal"` (default; survives a crash of the process; a power loss may lose
    /// the last commits) or `"full"` (also survives power loss, slower writes).
    pub synchronous: Option<Synchronous>,
    /// SQLite only: how long a write waits for a lock held by another process before the store counts as
    /// unwritable (default 2s).
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Option<Duration>,
    /// PostgreSQL only: how long a replica's hold on a session lasts without a heartbeat; a replica that dies
    /// loses its sessions to the others after at most this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            path: None,
            dedup_window: Duration::from_secs(48 * 3600),
            synchronous: None,
            busy_timeout: None,
            lease_ttl: Duration::from_secs(15),
        }
    }
}

/// The SQLite file used when the settings name none.
pub const DEFAULT_SQLITE_PATH: &str = "data/autoseen.db";

/// Which store the settings choose.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Sqlite {
        path: PathBuf,
        synchronous: Synchronous,
        busy_timeout: Duration,
    },
    Postgres(StoreUrl),
}

impl StoreSettings {
    /// The SQLite file, unless the store is PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self.backend() {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// The backend named by `url` (or `path`), with SQLite's defaults filled in. Checked when loaded.
    pub fn backend(&self) -> Backend {
        match &self.url {
            Some(url) if url.is_postgres() => Backend::Postgres(url.clone()),
            url => Backend::Sqlite {
                path: url
                    .as_ref()
                    .and_then(|u| u.sqlite_path())
                    .or_else(|| self.path.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SQLITE_PATH)),
                synchronous: self.synchronous.unwrap_or(Synchronous::Normal),
                busy_timeout: self.busy_timeout.unwrap_or(Duration::from_secs(2)),
            },
        }
    }
}

/// A store URL: `sqlite:PATH` or `postgres://…`. Prints with its password masked.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(Secret);

impl StoreUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn is_postgres(&self) -> bool {
        let url = self.expose();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    fn sqlite_path(&self) -> Option<PathBuf> {
        self.expose()
            .strip_prefix("sqlite:")
            .map(|p| PathBuf::from(p.trim_start_matches("//")))
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match reqwest::Url::parse(self.expose()) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "(not a URL)".into(),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
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

/// One thing wrong with the settings: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `config/autoseen.toml`, `config/autoseen.toml:12` or `environment`.
    pub place: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// The settings could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct SettingsError {
    pub problems: Vec<Problem>,
}

impl Settings {
    /// Loads `dir/autoseen.toml` and the environment, and checks the result.
    pub fn load(dir: &Path) -> Result<Settings, SettingsError> {
        Self::load_with_env(dir, None)
    }

    /// As [`Settings::load`], with the environment given instead of read from the process (for tests).
    pub fn load_with_env(
        dir: &Path,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, SettingsError> {
        let path = dir.join(SETTINGS_FILE);
        let place = path.display().to_string();
        let fail = |place: String, message: String| SettingsError {
            problems: vec![Problem { place, message }],
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            fail(
                place.clone(),
                format!("cannot read it ({e}); pass the folder that holds it with --config DIR"),
            )
        })?;
        if let Err(e) = toml::from_str::<Settings>(&text) {
            let line = e
                .span()
                .map(|s| format!(":{}", line_of(&text, s.start)))
                .unwrap_or_default();
            return Err(fail(format!("{place}{line}"), e.message().to_string()));
        }
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("webhook.hmac_keys")
            .with_list_parse_key("server.trusted_proxies")
            .try_parsing(true);
        if let Some(env) = env {
            environment = environment.source(Some(env.into_iter().collect()));
        }
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(environment)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| {
                fail(
                    "environment".into(),
                    format!("{e} (variables are named AUTOSEEN__<SECTION>__<KEY>)"),
                )
            })?;
        let problems = settings.problems(&place);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError { problems })
        }
    }

    /// Checks that span fields, or that serde cannot express.
    fn problems(&self, place: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(Problem {
                place: place.to_string(),
                message: format!("`{key}` {message}"),
            })
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            bad(
                "server.listen",
                format!(
                    "is `{}`, not an address like \"0.0.0.0:8080\"",
                    self.server.listen
                ),
            );
        }
        if let Some(listen) = &self.metrics.listen
            && listen.parse::<SocketAddr>().is_err()
        {
            bad(
                "metrics.listen",
                format!("is `{listen}`, not an address like \"127.0.0.1:9090\""),
            );
        }
        if self.server.max_connections == 0 {
            bad("server.max_connections", "must be at least 1".into());
        }
        if self.server.header_timeout.is_zero() || self.server.body_timeout.is_zero() {
            bad(
                "server.header_timeout",
                "and `server.body_timeout` must be above zero".into(),
            );
        }
        if self.server.max_body_bytes == 0 {
            bad("server.max_body_bytes", "must be above zero".into());
        }
        let urls = std::iter::once(("wasend.base_url".to_string(), &self.wasend.base_url)).chain(
            self.wasend.sessions.iter().filter_map(|(name, o)| {
                o.base_url
                    .as_ref()
                    .map(|u| (format!("wasend.sessions.{name}.base_url"), u))
            }),
        );
        for (key, url) in urls {
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => bad(
                    &key,
                    format!("is `{url}`, not an http(s) URL like \"https://api.wasend.dev\""),
                ),
            }
        }
        for (name, flavor, url) in self.wasend.endpoints() {
            if flavor == Flavor::Waha && url.trim_end_matches('/').ends_with("/api") {
                let key = name.map_or("wasend.base_url".into(), |n| {
                    format!("wasend.sessions.{n}.base_url")
                });
                bad(
                    &key,
                    format!(
                        "is `{url}`, but with flavor \"waha\" it is the WAHA server's root: autoseen calls \
                         <base_url>/api/sendSeen; drop the trailing /api"
                    ),
                );
            }
        }
        let store = &self.store;
        if let Some(url) = &store.url {
            if !(url.is_postgres() || url.expose().starts_with("sqlite:")) {
                bad(
                    "store.url",
                    format!(
                        "is `{url}`; write \"sqlite:PATH\" or \"postgres://user:password@host:5432/db\""
                    ),
                );
            }
            if store.path.is_some() {
                bad(
                    "store.path",
                    "and `store.url` are both set; keep one (`store.url = \"sqlite:PATH\"` replaces `store.path`)".into(),
                );
            }
            if url.is_postgres() {
                for (key, set) in [
                    ("store.synchronous", store.synchronous.is_some()),
                    ("store.busy_timeout", store.busy_timeout.is_some()),
                ] {
                    if set {
                        bad(
                            key,
                            "applies to SQLite only; with PostgreSQL durability follows the server's synchronous_commit. Remove it".into(),
                        );
                    }
                }
            }
        }
        if store.lease_ttl < Duration::from_millis(300) {
            bad(
                "store.lease_ttl",
                "must be at least 300ms (heartbeats run every third of it)".into(),
            );
        }
        let d = &self.delivery;
        if d.max_attempts == 0 {
            bad("delivery.max_attempts", "must be at least 1".into());
        }
        if d.backoff_initial.is_zero() || d.backoff_initial > d.backoff_max {
            bad(
                "delivery.backoff_initial",
                "must be above zero and at most `delivery.backoff_max`".into(),
            );
        }
        if d.burst == 0 {
            bad("delivery.burst", "must be at least 1".into());
        }
        if d.max_in_flight == 0 {
            bad("delivery.max_in_flight", "must be at least 1".into());
        }
        if self.wasend.timeout.is_zero() {
            bad("wasend.timeout", "must be above zero".into());
        }
        for (key, token) in [
            ("webhook.token", &self.webhook.token),
            ("admin.token", &self.admin.token),
            ("bot.token", &self.bot.token),
        ] {
            if let Some(token) = token
                && token.expose().chars().count() < MIN_SECRET_CHARS
            {
                bad(
                    key,
                    format!(
                        "is {}; it must be at least {MIN_SECRET_CHARS} characters (for example `openssl rand -hex 24`), \
                         or removed to turn its route off",
                        if token.expose().is_empty() {
                            "empty".to_string()
                        } else {
                            "too short".to_string()
                        }
                    ),
                );
            }
        }
        if self
            .webhook
            .all_hmac_keys()
            .iter()
            .any(|k| k.expose().is_empty())
        {
            bad(
                "webhook.hmac_key",
                "is empty; remove it or set the key configured in the gateway".into(),
            );
        }
        for proxy in &self.server.trusted_proxies {
            if parse_net(proxy).is_none() {
                bad(
                    "server.trusted_proxies",
                    format!("holds `{proxy}`, not an address or a CIDR like \"10.0.0.0/8\""),
                );
            }
        }
        for (key, zero) in [
            (
                "server.max_connections_per_ip",
                self.server.max_connections_per_ip == 0,
            ),
            ("server.auth_failures", self.server.auth_failures == 0),
            ("metrics.max_sessions", self.metrics.max_sessions == 0),
        ] {
            if zero {
                bad(key, "must be at least 1".into());
            }
        }
        if self.server.idle_timeout.is_zero() || self.server.auth_failure_window.is_zero() {
            bad(
                "server.idle_timeout",
                "and `server.auth_failure_window` must be above zero".into(),
            );
        }
        let default_origin = origin(&self.wasend.base_url);
        for (name, o) in &self.wasend.sessions {
            if let Some(url) = &o.base_url
                && o.api_key.is_none()
                && self.wasend.api_key.is_some()
                && origin(url) != default_origin
            {
                bad(
                    &format!("wasend.sessions.{name}.base_url"),
                    format!(
                        "is on another server than `wasend.base_url`, and the session has no `api_key` of its own: \
                         the default key is never sent to another server. Set AUTOSEEN__WASEND__SESSIONS__{}__API_KEY",
                        name.to_uppercase()
                    ),
                );
            }
        }
        out
    }

    /// What is allowed but unwise: `check` prints these, `serve` logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let short = self
            .webhook
            .all_hmac_keys()
            .iter()
            .any(|k| (1..MIN_SECRET_CHARS).contains(&k.expose().chars().count()));
        let mut out = Vec::new();
        if short {
            out.push(format!(
                "`webhook.hmac_key`: a key shorter than {MIN_SECRET_CHARS} characters is easy to guess; set a longer one \
                 on the gateway and here (both keys pass during the switch: `webhook.hmac_keys`)"
            ));
        }
        if self.webhook.allow_unsigned
            && self.webhook.token.is_none()
            && self.webhook.all_hmac_keys().is_empty()
        {
            out.push(
                "`webhook.allow_unsigned`: the webhook is open; anyone who can reach it can make autoseen mark \
                 messages seen with your API key"
                    .into(),
            );
        }
        out
    }

    /// What `serve` needs on top of a valid file, usually from the environment: an API key for every session
    /// it may call, and a webhook that only the gateway can call. `check` prints these as notes.
    pub fn check_ready_to_serve(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        let mut missing = |message: &str| {
            problems.push(Problem {
                place: "environment".into(),
                message: message.into(),
            })
        };
        // Self-hosted WAHA may run without a key; Wasend never does.
        if !(self.wasend.dry_run
            || self.wasend.api_key.is_some()
            || self.wasend.flavor == Flavor::Waha)
        {
            missing(
                "`wasend.api_key` is not set: set AUTOSEEN__WASEND__API_KEY to your Wasend API key \
                 (or set `wasend.dry_run = true` to try rules without calling the API)",
            );
        }
        if self.webhook.token.is_none()
            && self.webhook.all_hmac_keys().is_empty()
            && !self.webhook.allow_unsigned
        {
            missing(
                "`webhook.hmac_key` is not set, nor `webhook.token`: the webhook would be open to anyone who can \
                 reach it. Set AUTOSEEN__WEBHOOK__HMAC_KEY to the key configured on the gateway's webhook (or \
                 `webhook.token`), or `webhook.allow_unsigned = true` for a local try",
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().expect("checked when loaded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dir_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), text).unwrap();
        dir
    }

    /// Loads `text` with `env`, and an HMAC key unless the test is about the webhook's credentials.
    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !text.contains("[webhook]") && !env.keys().any(|k| k.starts_with("AUTOSEEN__WEBHOOK__"))
        {
            env.insert(
                "AUTOSEEN__WEBHOOK__HMAC_KEY".into(),
                "settings-test-hmac-key".into(),
            );
        }
        load_exactly(text, env)
    }

    fn load_exactly(text: &str, env: HashMap<String, String>) -> Result<Settings, SettingsError> {
        let dir = dir_with(text);
        Settings::load_with_env(dir.path(), Some(env))
    }

    #[test]
    fn serve_refuses_an_open_webhook_unless_allowed_and_then_warns_about_it() {
        let key = HashMap::from([("AUTOSEEN__WASEND__API_KEY".to_string(), "k".to_string())]);
        let open = load_exactly("", key.clone()).unwrap();
        let allowed = load_exactly("[webhook]\nallow_unsigned = true\n", key.clone()).unwrap();
        let with_token = load_exactly("[webhook]\ntoken = \"0123456789abcdef\"\n", key).unwrap();

        let text = open.check_ready_to_serve().unwrap_err().to_string();
        assert!(
            allowed.check_ready_to_serve().is_ok() && with_token.check_ready_to_serve().is_ok()
        );
        assert!(
            text.contains("webhook.hmac_key") && text.contains("allow_unsigned"),
            "{text}"
        );
        assert!(
            allowed.warnings().iter().any(|w| w.contains("open")),
            "{:?}",
            allowed.warnings()
        );
        assert!(
            with_token.warnings().is_empty(),
            "{:?}",
            with_token.warnings()
        );
    }

    #[test]
    fn tokens_must_be_sixteen_characters_and_short_hmac_keys_are_warned_about() {
        let short = load(
            "[webhook]\ntoken = \"short-token\"\n[admin]\ntoken = \"\"\n[bot]\ntoken = \"fifteen-chars-x\"\n",
            &[],
        )
        .unwrap_err();
        let short_key = load("", &[("AUTOSEEN__WEBHOOK__HMAC_KEY", "abc123")]).unwrap();
        let empty_key = load("", &[("AUTOSEEN__WEBHOOK__HMAC_KEY", "")]).unwrap_err();

        let text = short.to_string();
        for key in ["webhook.token", "admin.token", "bot.token"] {
            assert!(text.contains(&format!("`{key}`")), "{key}: {text}");
        }
        assert!(
            text.contains("is empty") && text.contains("too short"),
            "{text}"
        );
        assert!(
            !text.contains("short-token") && !text.contains("fifteen-chars-x"),
            "secrets print: {text}"
        );
        assert!(short_key.warnings().iter().any(|w| w.contains("hmac_key")));
        assert!(empty_key.to_string().contains("is empty"), "{empty_key}");
    }

    #[test]
    fn an_override_on_another_server_needs_its_own_key() {
        let env = [("AUTOSEEN__WASEND__API_KEY", "default-api-key")];
        let elsewhere = "[wasend.sessions.sales]\nbase_url = \"https://other.example\"\n";
        let same = "[wasend.sessions.sales]\nbase_url = \"https://api.wasend.dev/\"\n";
        let own_key =
            "[wasend.sessions.sales]\nbase_url = \"https://other.example\"\napi_key = \"k2\"\n";

        let err = load(elsewhere, &env).unwrap_err();

        assert!(
            err.to_string().contains("wasend.sessions.sales.base_url"),
            "{err}"
        );
        assert!(load(same, &env).is_ok());
        assert!(load(own_key, &env).is_ok());
    }

    #[test]
    fn trusted_proxies_must_be_addresses_or_cidrs() {
        let ok = load(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
            &[],
        );
        let bad = load("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", &[]).unwrap_err();

        assert_eq!(ok.unwrap().server.trusted_proxies.len(), 2);
        assert!(bad.to_string().contains("10.0.0.0/33"), "{bad}");
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let s = load("", &[]).unwrap();
        assert_eq!(s.server.listen, "0.0.0.0:8080");
        assert_eq!(s.server.max_body_bytes, 1 << 20);
        assert_eq!(s.wasend.base_url, "https://api.wasend.dev");
        assert_eq!(s.wasend.timeout, Duration::from_secs(10));
        assert_eq!(s.delivery.rate_per_session, Rate::PerSecond(1.0));
        assert!(s.check_ready_to_serve().is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = load(
            "[wasend]\ntimeout = \"2s\"\n",
            &[
                ("AUTOSEEN__WASEND__API_KEY", "k-123"),
                ("AUTOSEEN__WASEND__TIMEOUT", "250ms"),
                ("AUTOSEEN__SERVER__MAX_BODY_BYTES", "2048"),
                ("AUTOSEEN__WASEND__DRY_RUN", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.wasend.api_key.as_ref().unwrap().expose(), "k-123");
        assert_eq!(s.wasend.timeout, Duration::from_millis(250));
        assert_eq!(s.server.max_body_bytes, 2048);
        assert!(s.wasend.dry_run);
        assert!(s.check_ready_to_serve().is_ok());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &[]).unwrap_err();
        let p = &err.problems[0];
        assert!(p.place.ends_with("autoseen.toml:3"), "{p}");
        assert!(p.message.contains("lisen"), "{p}");
    }

    #[test]
    fn bad_values_are_refused_with_a_hint() {
        let err = load("[delivery]\nrate_per_session = \"fast\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("N/min"), "{err}");
        let err = load("[server]\nlisten = \"nowhere\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("server.listen"), "{err}");
        let err = load("[wasend]\ntimeout = \"soon\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains(":2"), "{err}");
    }

    #[test]
    fn the_store_url_chooses_the_backend_and_keeps_store_path_working() {
        let default = load("", &[]).unwrap();
        let old_style = load("[store]\npath = \"/var/lib/autoseen/a.db\"\n", &[]).unwrap();
        let url = load("[store]\nurl = \"sqlite:/tmp/b.db\"\n", &[]).unwrap();
        let pg = load(
            "",
            &[(
                "AUTOSEEN__STORE__URL",
                "postgres://autoseen:pg-secret-9@db:5432/autoseen",
            )],
        )
        .unwrap();

        assert_eq!(
            default.store.sqlite_path().unwrap(),
            PathBuf::from(DEFAULT_SQLITE_PATH)
        );
        assert_eq!(
            old_style.store.sqlite_path().unwrap(),
            PathBuf::from("/var/lib/autoseen/a.db")
        );
        assert_eq!(url.store.sqlite_path().unwrap(), PathBuf::from("/tmp/b.db"));
        assert!(matches!(pg.store.backend(), Backend::Postgres(_)));
        let printed = format!(
            "{:?} {}",
            pg.store,
            serde_json::to_string(&pg.store).unwrap()
        );
        assert!(!printed.contains("pg-secret-9"), "{printed}");
        assert!(printed.contains("autoseen:***@db"), "{printed}");
    }

    #[test]
    fn store_settings_that_contradict_each_other_are_refused() {
        let both = load("[store]\npath = \"a.db\"\nurl = \"sqlite:b.db\"\n", &[]).unwrap_err();
        let sqlite_only = load(
            "[store]\nurl = \"postgres://db/x\"\nsynchronous = \"full\"\nbusy_timeout = \"1s\"\n",
            &[],
        )
        .unwrap_err();
        let unknown = load("[store]\nurl = \"mysql://db/x\"\n", &[]).unwrap_err();

        assert!(both.to_string().contains("both set"), "{both}");
        let text = sqlite_only.to_string();
        assert!(
            text.contains("store.synchronous") && text.contains("store.busy_timeout"),
            "{text}"
        );
        assert!(unknown.to_string().contains("postgres://"), "{unknown}");
    }

    #[test]
    fn secrets_never_print() {
        let s = load(
            "[webhook]\nhmac_key = \"hmac-secret-1\"\n[admin]\ntoken = \"admin-secret-1-0123456\"\n",
            &[("AUTOSEEN__WASEND__API_KEY", "api-secret-1")],
        )
        .unwrap();
        let printed = format!("{s:?}");
        for secret in ["hmac-secret-1", "admin-secret-1-0123456", "api-secret-1"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(printed.contains("***"));
    }
}
