//! Who is asking: the client address a request counts against (throttling, logs) and whether it came over
//! HTTPS (the console cookie's `Secure` flag).
//!
//! The peer's address is the truth unless the peer is one of `server.trusted_proxies`: only then do
//! `X-Forwarded-For` and `X-Forwarded-Proto` count, and the client is the right-most address in
//! `X-Forwarded-For` that is not itself a trusted proxy (the left part is whatever the client wrote). IPv6
//! clients are grouped by /64, since one host is usually given a whole /64 to pick addresses from.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::AppState;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `server.trusted_proxies` (checked when loaded; a bad entry is skipped here).
    pub fn new(entries: &[String]) -> Self {
        Self(
            entries
                .iter()
                .filter_map(|e| crate::settings::parse_net(e))
                .collect(),
        )
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a client counts under: its IPv4 address, or its IPv6 /64.
pub fn group(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The client's address: the peer's, or behind a trusted proxy the right-most untrusted `X-Forwarded-For`.
pub fn address(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !proxies.contains(peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .map(canonical)
        .find(|ip| !proxies.contains(*ip))
        .unwrap_or(peer)
}

/// Whether the browser's connection was HTTPS: only a trusted proxy can say so (`X-Forwarded-Proto`).
pub fn forwarded_https(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> bool {
    proxies.contains(peer)
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The client of a request, as the extractor finds it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Where the request came from (after trusted proxies), IPv6 grouped by /64.
    pub ip: IpAddr,
    /// Whether the browser's connection was HTTPS (said by a trusted proxy).
    pub https: bool,
}

impl Client {
    /// The client of the request `parts` belong to.
    pub fn of(parts: &Parts, state: &AppState) -> Self {
        // The accept loop puts the peer on every request; a request built without it (a test calling the
        // router directly) counts as the loopback address.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let proxies = &state.proxies;
        Client {
            ip: group(address(peer, &parts.headers, proxies)),
            https: forwarded_https(peer, &parts.headers, proxies),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client::of(parts, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".into(), "::1".into()]);
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let untrusted: IpAddr = "198.51.100.4".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();

        assert_eq!(address(untrusted, &h, &proxies), untrusted);
        assert!(!forwarded_https(untrusted, &h, &proxies));
        // The right-most address that is not a proxy: the left part is the client's own to write.
        assert_eq!(
            address(proxy, &h, &proxies),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert!(forwarded_https(proxy, &h, &proxies));
        assert_eq!(address(proxy, &headers(&[]), &proxies), proxy);
    }

    #[test]
    fn ipv6_clients_group_by_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();

        assert_eq!(group(a), group(b));
        assert_ne!(group(a), group(c));
        assert_eq!(group(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
