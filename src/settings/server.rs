//! `[server]`: the listener and what one client may hold.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

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

/// An address or a CIDR (`10.0.0.0/8`, `::1`), as `server.trusted_proxies` lists them.
pub fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl ServerSettings {
    pub(super) fn check(&self, out: &mut Problems) {
        if self.listen.parse::<SocketAddr>().is_err() {
            out.bad(
                "server.listen",
                format!("is `{}`, not an address like \"0.0.0.0:8080\"", self.listen),
            );
        }
        for (key, zero) in [
            ("server.max_connections", self.max_connections == 0),
            (
                "server.max_connections_per_ip",
                self.max_connections_per_ip == 0,
            ),
            ("server.auth_failures", self.auth_failures == 0),
        ] {
            if zero {
                out.bad(key, "must be at least 1");
            }
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            out.bad(
                "server.header_timeout",
                "and `server.body_timeout` must be above zero",
            );
        }
        if self.idle_timeout.is_zero() || self.auth_failure_window.is_zero() {
            out.bad(
                "server.idle_timeout",
                "and `server.auth_failure_window` must be above zero",
            );
        }
        if self.max_body_bytes == 0 {
            out.bad("server.max_body_bytes", "must be above zero");
        }
        for proxy in &self.trusted_proxies {
            if parse_net(proxy).is_none() {
                out.bad(
                    "server.trusted_proxies",
                    format!("holds `{proxy}`, not an address or a CIDR like \"10.0.0.0/8\""),
                );
            }
        }
    }
}
