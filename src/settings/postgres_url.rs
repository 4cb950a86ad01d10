//! The TLS part of a `postgres://` store URL: `sslmode` and `sslrootcert`, read by autoseen itself because the
//! driver knows only `disable`, `prefer` and `require` and has no certificate options. Everything else in the
//! URL goes to the driver unchanged. The modes mean what libpq documents: `prefer` (the default) tries TLS and
//! falls back to plain text when the server offers none, `require` encrypts without checking who answers,
//! `verify-ca` also checks the certificate chain against `sslrootcert`, `verify-full` also the host name.

use std::path::PathBuf;

/// How a PostgreSQL connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [(&'static str, SslMode); 5] = [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, mode)| *mode == self)
            .map_or("prefer", |(name, _)| name)
    }

    /// Whether the server's certificate chain is checked against the roots.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The roots a verifying mode trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla roots built into autoseen (the same the gateway calls trust).
    System,
}

/// A PostgreSQL store URL taken apart: what the driver reads, and the TLS options autoseen reads.
#[derive(Clone)]
pub struct PostgresUrl {
    /// The URL without `sslmode` and `sslrootcert`; holds the password, so it is never printed.
    pub driver: String,
    pub ssl_mode: SslMode,
    pub root: Option<RootCerts>,
}

/// Without the driver's URL, which holds the password.
impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("ssl_mode", &self.ssl_mode)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl PostgresUrl {
    /// Splits `url`, or says what is wrong with its TLS options and what to write instead.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let (mut mode, mut root) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("has a `{key}` that is not UTF-8 once decoded"))?;
            match key {
                "sslmode" => mode = Some(mode_named(&value)?),
                "sslrootcert" if value == "system" => root = Some(RootCerts::System),
                "sslrootcert" => root = Some(RootCerts::File(PathBuf::from(value.as_ref()))),
                _ => kept.push(pair),
            }
        }
        // libpq: with a root certificate given, `require` behaves as `verify-ca`.
        let ssl_mode = match (mode.unwrap_or(SslMode::Prefer), &root) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        if ssl_mode.verifies() && root.is_none() {
            return Err(format!(
                "has sslmode={} but no sslrootcert: add sslrootcert=PATH (the PEM file of the CA that signed the server's certificate) or sslrootcert=system (the public web roots)",
                ssl_mode.name()
            ));
        }
        let driver = match kept.is_empty() {
            true => base.to_string(),
            false => format!("{base}?{}", kept.join("&")),
        };
        Ok(Self {
            driver,
            ssl_mode,
            root,
        })
    }
}

fn mode_named(value: &str) -> Result<SslMode, String> {
    SslMode::ALL
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, mode)| *mode)
        .ok_or_else(|| {
            format!(
                "has sslmode={value}, which is none of disable, prefer, require, verify-ca, verify-full"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_options_are_taken_out_and_the_rest_kept_in_order() {
        let url = PostgresUrl::parse(
            "postgres://a:pw@db:5432/x?application_name=autoseen&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            url.driver,
            "postgres://a:pw@db:5432/x?application_name=autoseen&connect_timeout=3"
        );
        assert_eq!(url.ssl_mode, SslMode::VerifyFull);
        assert_eq!(url.root, Some(RootCerts::File("/etc/ca.pem".into())));
    }

    #[test]
    fn prefer_is_the_default_as_in_libpq() {
        let url = PostgresUrl::parse("postgres://db/x").unwrap();
        assert_eq!(
            (url.driver.as_str(), url.ssl_mode),
            ("postgres://db/x", SslMode::Prefer)
        );
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_in_libpq() {
        let url = PostgresUrl::parse("postgres://db/x?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(url.ssl_mode, SslMode::VerifyCa);
        assert_eq!(url.root, Some(RootCerts::System));
    }

    #[test]
    fn an_unknown_mode_is_named_with_the_modes_there_are() {
        let err = PostgresUrl::parse("postgres://db/x?sslmode=strict").unwrap_err();
        assert!(
            err.contains("sslmode=strict") && err.contains("verify-full"),
            "{err}"
        );
    }

    #[test]
    fn a_verifying_mode_without_roots_says_what_to_add() {
        let err = PostgresUrl::parse("postgres://db/x?sslmode=verify-ca").unwrap_err();
        assert!(err.contains("sslrootcert=PATH"), "{err}");
    }
}
