//! `[store]`: which store, where, and the knobs of each backend.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::postgres_url::{PostgresUrl, RootCerts};
use crate::secret::Secret;

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
    /// loses its sessions to the others after at most this long (plus a heartbeat).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// PostgreSQL only: how often a replica renews its leases and looks for sessions to take. Default 500ms,
    /// or a third of `lease_ttl` when that is shorter; at most a third of `lease_ttl`.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            path: None,
            dedup_window: Duration::from_secs(48 * 3600),
            synchronous: None,
            busy_timeout: None,
            lease_ttl: Duration::from_secs(2),
            heartbeat: None,
        }
    }
}

/// The heartbeat when the settings name none (or a third of `store.lease_ttl`, if shorter).
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(500);

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
    /// How often a replica heartbeats: `heartbeat`, else 500ms or a third of `lease_ttl` if shorter.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
            .unwrap_or(DEFAULT_HEARTBEAT.min(self.lease_ttl / 3))
    }

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

    /// A `postgres://` URL taken apart into what the driver reads and the TLS options autoseen reads.
    pub fn postgres(&self) -> Result<PostgresUrl, String> {
        PostgresUrl::parse(self.expose())
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

/// What the driver would refuse in a `postgres://` URL, and a root certificate file that cannot be read.
fn check_postgres_url(url: &StoreUrl, out: &mut Problems) {
    let parsed = match url.postgres() {
        Ok(parsed) => parsed,
        Err(problem) => return out.bad("store.url", problem),
    };
    if let Err(e) = parsed.driver.parse::<tokio_postgres::Config>() {
        out.bad(
            "store.url",
            format!("is not a PostgreSQL URL the driver accepts ({e}): `{url}`"),
        );
    }
    if let Some(RootCerts::File(path)) = &parsed.root
        && let Err(e) = std::fs::metadata(path)
    {
        out.bad(
            "store.url",
            format!(
                "has sslrootcert={} which cannot be read ({e}); mount the CA's PEM file there",
                path.display()
            ),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

impl StoreSettings {
    pub(super) fn check(&self, out: &mut Problems) {
        if let Some(url) = &self.url {
            if !(url.is_postgres() || url.expose().starts_with("sqlite:")) {
                out.bad(
                    "store.url",
                    format!(
                        "is `{url}`; write \"sqlite:PATH\" or \"postgres://user:password@host:5432/db\""
                    ),
                );
            }
            if self.path.is_some() {
                out.bad(
                    "store.path",
                    "and `store.url` are both set; keep one (`store.url = \"sqlite:PATH\"` replaces `store.path`)",
                );
            }
            if url.is_postgres() {
                check_postgres_url(url, out);
                for (key, set) in [
                    ("store.synchronous", self.synchronous.is_some()),
                    ("store.busy_timeout", self.busy_timeout.is_some()),
                ] {
                    if set {
                        out.bad(
                            key,
                            "applies to SQLite only; with PostgreSQL durability follows the server's synchronous_commit. Remove it",
                        );
                    }
                }
            }
        }
        if self.lease_ttl < Duration::from_millis(300) {
            out.bad(
                "store.lease_ttl",
                "must be at least 300ms (a lease outlives at least two missed heartbeats)",
            );
        }
        if let Some(heartbeat) = self.heartbeat
            && (heartbeat < Duration::from_millis(50) || heartbeat * 3 > self.lease_ttl)
        {
            out.bad(
                "store.heartbeat",
                format!(
                    "is {}; write 50ms or more, and at most a third of store.lease_ttl ({}), so that a lease outlives two missed heartbeats",
                    humantime::format_duration(heartbeat),
                    humantime::format_duration(self.lease_ttl)
                ),
            );
        }
    }
}
