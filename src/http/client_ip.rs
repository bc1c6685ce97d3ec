//! Which address a request comes from: the one place that decides it, for
//! the failure limits, the audit trail and anything else that keys on the
//! client.
//!
//! The TCP peer is the client, unless the peer is one of the trusted
//! proxies (`AGENTKEY_TRUSTED_PROXIES`, empty by default). Then the client
//! is read from what the proxy forwarded:
//! - `X-Forwarded-For`, walked from the right (the entry the nearest proxy
//!   added) leftwards past trusted proxies: the right-most address that is
//!   not a trusted proxy is the client. Entries left of it were written by
//!   the client itself and are ignored. Several `X-Forwarded-For` headers
//!   count as one list, in order.
//! - Without `X-Forwarded-For`, `X-Real-IP` (one address, as nginx sets it
//!   with `proxy_set_header X-Real-IP $remote_addr`). A trusted proxy must
//!   therefore set or append `X-Forwarded-For` (nginx:
//!   `$proxy_add_x_forwarded_for`), or strip it: one that sets only
//!   `X-Real-IP` and passes a client's own `X-Forwarded-For` through lets
//!   the client choose its address. `AGENTKEY_CLIENT_IP_HEADER` names the
//!   one header to believe instead ([`ClientIpHeader`]), which closes that.
//!
//! Forward authentication (`GET /v1/authorize`) follows the same rule: the
//! gateway's subrequest carries the original client in these headers (see
//! docs/deploy.md for the nginx, Caddy and Traefik settings). From a peer
//! that is not trusted, both headers are ignored, so a client cannot choose
//! the address it is counted under.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::app::AppState;

pub const FORWARDED_FOR: &str = "x-forwarded-for";
pub const REAL_IP: &str = "x-real-ip";

/// The networks whose forwarded client address is believed, and which
/// header it is read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ClientIpHeader,
}

/// Which header of a trusted proxy names the client
/// (`AGENTKEY_CLIENT_IP_HEADER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, or `X-Real-IP` when there is none: fits proxies
    /// that set either, but a proxy that sets only `X-Real-IP` and passes a
    /// client's own `X-Forwarded-For` through lets the client choose.
    #[default]
    Either,
    /// `X-Forwarded-For` alone.
    ForwardedFor,
    /// `X-Real-IP` alone (nginx's `proxy_set_header X-Real-IP $remote_addr`),
    /// whatever `X-Forwarded-For` says.
    RealIp,
}

impl FromStr for ClientIpHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<ClientIpHeader, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "either" => Ok(ClientIpHeader::Either),
            FORWARDED_FOR => Ok(ClientIpHeader::ForwardedFor),
            REAL_IP => Ok(ClientIpHeader::RealIp),
            other => Err(format!(
                "{other:?} is not one of either, {FORWARDED_FOR} or {REAL_IP}"
            )),
        }
    }
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies {
            networks,
            header: ClientIpHeader::default(),
        }
    }

    /// The same proxies, their client read from `header`.
    pub fn reading(self, header: ClientIpHeader) -> TrustedProxies {
        TrustedProxies { header, ..self }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }
}

/// Parses one entry of `AGENTKEY_TRUSTED_PROXIES`: a CIDR block, or a
/// single address (a /32 or /128).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    IpNet::from_str(text)
        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8)"))
}

/// The client of a request from `peer` with `headers` (see the module).
/// `None` when the peer is unknown (a request made in-process).
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !trusted.contains(peer) {
        return Some(peer);
    }
    // The last `X-Real-IP`: a proxy that appends the header rather than
    // replacing it leaves a client's own first.
    let real_ip = || {
        headers
            .get_all(REAL_IP)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_forwarded(v.trim()))
            .or(Some(peer))
    };
    if trusted.header == ClientIpHeader::RealIp {
        return real_ip();
    }
    let forwarded: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !forwarded.is_empty() {
        // Walk from the nearest hop; stop at the first address no trusted
        // proxy could have written for itself.
        let mut client = peer;
        for entry in forwarded.iter().rev() {
            match parse_forwarded(entry) {
                Some(ip) => {
                    client = ip;
                    if !trusted.contains(ip) {
                        break;
                    }
                }
                // Garbage where a trusted proxy should have written an
                // address: the client cannot be known, and an unknown
                // client is outside every allowlist.
                None => return None,
            }
        }
        return Some(client);
    }
    match trusted.header {
        ClientIpHeader::ForwardedFor => Some(peer),
        _ => real_ip(),
    }
}

/// The client of the request in `parts`, by the state's trusted proxies.
pub fn of(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    client_ip(peer(parts), &parts.headers, &state.settings.trusted_proxies)
}

/// The TCP peer, as the server recorded it.
fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The client address of a request (see the module); `None` in-process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(of(parts, state)))
    }
}

/// An address as a proxy writes it: bare, `[v6]`, or with a port
/// (`1.2.3.4:5678`, `[v6]:5678`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(canonical(ip));
    }
    if let Ok(addr) = SocketAddr::from_str(entry) {
        return Some(canonical(addr.ip()));
    }
    let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
    IpAddr::from_str(bracketed).ok().map(canonical)
}

/// IPv4 mapped into IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports
/// an IPv4 peer) is IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| parse_network(n).unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let forged = headers(&[(FORWARDED_FOR, "203.0.113.9"), (REAL_IP, "203.0.113.8")]);
        assert_eq!(
            client_ip(ip("198.51.100.1"), &forged, &TrustedProxies::default()),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(ip("198.51.100.1"), &forged, &trusted(&["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
        assert_eq!(client_ip(None, &forged, &trusted(&["10.0.0.0/8"])), None);
    }

    #[test]
    fn a_trusted_peer_forwards_the_right_most_untrusted_address() {
        let proxies = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        // The client sent a forged entry; the proxies appended the truth.
        let chain = headers(&[(FORWARDED_FOR, "1.1.1.1, 203.0.113.5, 192.168.1.1")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &chain, &proxies),
            ip("203.0.113.5")
        );
        // Split over two headers, with ports and brackets.
        let split = headers(&[
            (FORWARDED_FOR, "1.1.1.1"),
            (FORWARDED_FOR, "[2001:db8::7]:443, 10.1.1.1:80"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &split, &proxies),
            ip("2001:db8::7")
        );
        // Every hop trusted: the left-most is the client.
        let inner = headers(&[(FORWARDED_FOR, "10.9.9.9, 10.0.0.3")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &inner, &proxies), ip("10.9.9.9"));
        // Garbage behind trusted hops: the client is unknown.
        let garbage = headers(&[(FORWARDED_FOR, "203.0.113.5, nonsense, 10.0.0.3")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &garbage, &proxies), None);
        // Garbage left of the client is the client's own writing: ignored.
        let early = headers(&[(FORWARDED_FOR, "nonsense, 203.0.113.5, 10.0.0.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &early, &proxies),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn x_real_ip_is_used_without_x_forwarded_for() {
        let proxies = trusted(&["127.0.0.1/32"]);
        let real = headers(&[(REAL_IP, "203.0.113.5")]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &real, &proxies),
            ip("203.0.113.5")
        );
        let both = headers(&[(REAL_IP, "203.0.113.5"), (FORWARDED_FOR, "198.51.100.2")]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &both, &proxies),
            ip("198.51.100.2"),
            "X-Forwarded-For first"
        );
        let bad = headers(&[(REAL_IP, "not an address")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &bad, &proxies), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &proxies),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_named_header_is_the_only_one_believed() {
        let proxy = ip("127.0.0.1");
        // A proxy that sets X-Real-IP and passes the client's own
        // X-Forwarded-For through.
        let forged = headers(&[(REAL_IP, "203.0.113.5"), (FORWARDED_FOR, "198.51.100.66")]);
        let real_only = trusted(&["127.0.0.1/32"]).reading(ClientIpHeader::RealIp);
        assert_eq!(client_ip(proxy, &forged, &real_only), ip("203.0.113.5"));
        let none = headers(&[(FORWARDED_FOR, "198.51.100.66")]);
        assert_eq!(
            client_ip(proxy, &none, &real_only),
            proxy,
            "no X-Real-IP: the proxy"
        );
        let forwarded_only = trusted(&["127.0.0.1/32"]).reading(ClientIpHeader::ForwardedFor);
        assert_eq!(
            client_ip(proxy, &forged, &forwarded_only),
            ip("198.51.100.66")
        );
        let real = headers(&[(REAL_IP, "203.0.113.5")]);
        assert_eq!(
            client_ip(proxy, &real, &forwarded_only),
            proxy,
            "X-Real-IP ignored"
        );
        // A client's own X-Real-IP ahead of the proxy's is passed over.
        let appended = headers(&[(REAL_IP, "198.51.100.66"), (REAL_IP, "203.0.113.5")]);
        assert_eq!(client_ip(proxy, &appended, &real_only), ip("203.0.113.5"));
        // From a peer that is not trusted, neither is read, whichever is named.
        assert_eq!(
            client_ip(ip("192.0.2.1"), &forged, &real_only),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn the_header_setting_parses() {
        for (text, header) in [
            ("", ClientIpHeader::Either),
            ("either", ClientIpHeader::Either),
            ("X-Forwarded-For", ClientIpHeader::ForwardedFor),
            (" x-real-ip ", ClientIpHeader::RealIp),
        ] {
            assert_eq!(text.parse::<ClientIpHeader>(), Ok(header), "{text:?}");
        }
        let err = "forwarded".parse::<ClientIpHeader>().unwrap_err();
        assert!(
            err.contains("x-forwarded-for") && err.contains("x-real-ip"),
            "{err}"
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let proxies = trusted(&["127.0.0.0/8"]);
        let real = headers(&[(REAL_IP, "203.0.113.5")]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &real, &proxies),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("::ffff:198.51.100.1"), &real, &proxies),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn networks_parse() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network(" 10.1.2.3 ").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("example.com").is_err());
    }
}
