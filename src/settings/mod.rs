//! Settings: `DIR/autoseen.toml`, then `AUTOSEEN__SECTION__KEY` environment variables, then checks across
//! fields.
//!
//! The file is read twice on purpose: once on its own with `toml`, which gives errors a line and column and
//! refuses unknown keys, then layered with the environment by the `config` crate. So a mistake in the file is
//! reported with its line, and a mistake in the environment names the variable. Secrets are [`Secret`]s: they
//! print as `***` under `Debug` and `Display`, at every log level. Each section is checked beside its own type
//! (`server`, `store`, `sections` here; `[wasend]` with the client, `[delivery]` with the scheduler) into one
//! list of [`Problems`]; sections that one part of the service owns alone live beside it and are gathered here.

mod keys;
mod postgres_url;
mod sections;
mod server;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use postgres_url::{PostgresUrl, RootCerts, SslMode};
pub use sections::{
    AdminSettings, BotSettings, LogFormat, LogSettings, MetricsSettings, WebhookSettings,
};
pub use server::{ServerSettings, parse_net};
pub use store::{Backend, DEFAULT_SQLITE_PATH, StoreSettings, StoreUrl, Synchronous};

pub use crate::gateway::evolution::{EvolutionInstance, EvolutionSettings};
pub use crate::gateway::green::{GreenSettings, InstanceOverride};
pub use crate::gateway::meta::MetaSettings;
pub use crate::gateway::wasend::{Flavor, SessionOverride, WasendSettings, origin};
pub use crate::gateway::{Choice, Gateway};
pub use crate::scheduler::DeliverySettings;
pub use crate::scheduler::pacing::Rate;
pub use crate::secret::Secret;
use crate::toml_span::line_of;
pub use keys::Problems;
use keys::key_by_key;

/// Tokens (admin, bot, webhook path) shorter than this are refused; HMAC keys shorter are warned about.
pub const MIN_SECRET_CHARS: usize = 16;

/// Name of the settings file inside the config folder.
pub const SETTINGS_FILE: &str = "autoseen.toml";
/// Prefix of settings environment variables: `AUTOSEEN__WASEND__API_KEY` sets `wasend.api_key`.
pub const ENV_PREFIX: &str = "AUTOSEEN";

/// Everything `autoseen.toml` can say. Each key is documented here and in the shipped `config/autoseen.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub gateway: Choice,
    pub webhook: WebhookSettings,
    pub wasend: WasendSettings,
    pub meta: MetaSettings,
    pub green: GreenSettings,
    pub evolution: EvolutionSettings,
    pub delivery: DeliverySettings,
    pub store: StoreSettings,
    pub admin: AdminSettings,
    pub bot: BotSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
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
            // Every bad key, each read on its own; the parser's first error when that finds none (a syntax
            // error, after which nothing can be read).
            let each = key_by_key(&text, &place);
            if !each.is_empty() {
                return Err(SettingsError { problems: each });
            }
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
            // Inbound secrets take two values during a rotation: `AUTOSEEN__ADMIN__TOKEN=new,old`.
            .with_list_parse_key("webhook.token")
            .with_list_parse_key("admin.token")
            .with_list_parse_key("bot.token")
            .with_list_parse_key("meta.app_secret")
            .with_list_parse_key("meta.verify_token")
            .with_list_parse_key("green.webhook_token")
            .with_list_parse_key("evolution.token")
            .with_list_parse_key("evolution.jwt_key")
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
        let problems = settings.problems(&place, &text);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError { problems })
        }
    }

    /// Checks that span fields, or that serde cannot express: each section checks itself.
    fn problems(&self, place: &str, text: &str) -> Vec<Problem> {
        let mut out = Problems::new(place, text);
        self.server.check(&mut out);
        self.gateway.check_choice(&mut out);
        self.webhook.check(&mut out);
        self.wasend.check(&mut out);
        self.meta.check(&mut out);
        self.green.check(&mut out);
        self.evolution.check(&mut out);
        self.delivery.check(&mut out);
        self.store.check(&mut out);
        self.admin.check(&mut out);
        self.bot.check(&mut out);
        self.metrics.check(&mut out);
        out.into_vec()
    }

    /// What is allowed but unwise: `check` prints these, `serve` logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let short = self
            .webhook
            .all_hmac_keys()
            .iter()
            .any(|k| (1..MIN_SECRET_CHARS).contains(&k.expose().chars().count()));
        let mut out = Vec::new();
        let green = self.gateway.default == Gateway::Green
            || self.gateway.sessions.values().any(|&g| g == Gateway::Green);
        if green && !matches!(self.delivery.rate_per_session, Rate::PerSecond(r) if r <= 10.0) {
            out.push(
                "`delivery.rate_per_session` is off or above 10 per second, Green API's limit for readChat per instance: \
                 Green will answer 429, which autoseen retries after a wait"
                    .into(),
            );
        }
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
        let serves = |g: Gateway| {
            self.gateway.default == g || self.gateway.sessions.values().any(|&s| s == g)
        };
        // Self-hosted WAHA may run without a key; Wasend never does.
        if serves(Gateway::Wasend)
            && !(self.wasend.dry_run
                || self.wasend.api_key.is_some()
                || self.wasend.flavor == Flavor::Waha)
        {
            missing(
                "`wasend.api_key` is not set: set AUTOSEEN__WASEND__API_KEY to your Wasend API key \
                 (or set `wasend.dry_run = true` to try rules without calling the API)",
            );
        }
        if serves(Gateway::Wasend)
            && self.webhook.token.is_none()
            && self.webhook.all_hmac_keys().is_empty()
            && !self.webhook.allow_unsigned
        {
            missing(
                "`webhook.hmac_key` is not set, nor `webhook.token`: the webhook would be open to anyone who can \
                 reach it. Set AUTOSEEN__WEBHOOK__HMAC_KEY to the key configured on the gateway's webhook (or \
                 `webhook.token`), or `webhook.allow_unsigned = true` for a local try",
            );
        }
        if serves(Gateway::Meta) && self.meta.app_secret.is_none() {
            missing(
                "`meta.app_secret` is not set: set AUTOSEEN__META__APP_SECRET to the Meta app's secret (App \
                 settings > Basic); every POST to /webhook/meta is checked against it",
            );
        }
        if serves(Gateway::Meta) && !self.meta.dry_run && self.meta.access_token.is_none() {
            missing(
                "`meta.access_token` is not set: set AUTOSEEN__META__ACCESS_TOKEN to a system user's token with \
                 whatsapp_business_messaging (or `meta.dry_run = true` to try rules without calling the API)",
            );
        }
        if serves(Gateway::Green) && self.green.webhook_token.is_none() {
            missing(
                "`green.webhook_token` is not set: set AUTOSEEN__GREEN__WEBHOOK_TOKEN to the instance's \
                 webhookUrlToken (SetSettings); Green signs nothing, so this token is the webhook's only guard",
            );
        }
        if serves(Gateway::Green) && !self.green.dry_run && self.green.api_token.is_none() {
            missing(
                "`green.api_token` is not set: set AUTOSEEN__GREEN__API_TOKEN to the instance's apiTokenInstance \
                 (or `green.dry_run = true` to try rules without calling the API)",
            );
        }
        if serves(Gateway::Evolution)
            && self.evolution.token.is_none()
            && self.evolution.jwt_key.is_none()
        {
            missing(
                "`evolution.token` is not set, nor `evolution.jwt_key`: Evolution signs nothing, so its webhook \
                 would be open. Set AUTOSEEN__EVOLUTION__TOKEN and put the same value in the instance webhook's \
                 headers under `evolution.header` (or use `jwt_key`)",
            );
        }
        if serves(Gateway::Evolution) && !self.evolution.dry_run && self.evolution.api_key.is_none()
        {
            missing(
                "`evolution.api_key` is not set: set AUTOSEEN__EVOLUTION__API_KEY to the instance's token (or \
                 `evolution.dry_run = true` to try rules without calling the API)",
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
    use std::path::PathBuf;
    use std::time::Duration;

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
    fn the_heartbeat_is_at_most_a_third_of_the_lease() {
        let err = load("[store]\nlease_ttl = \"2s\"\nheartbeat = \"1s\"\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("`store.heartbeat` is 1s")
                && err.to_string().contains("a third of store.lease_ttl (2s)"),
            "{err}"
        );
        let short = load("[store]\nlease_ttl = \"300ms\"\n", &[]).unwrap();
        assert_eq!(short.store.heartbeat(), Duration::from_millis(100));
        let default = load("", &[]).unwrap();
        assert_eq!(
            (default.store.lease_ttl, default.store.heartbeat()),
            (Duration::from_secs(2), Duration::from_millis(500))
        );
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
