//! What a webhook may reach. By default nothing on the network agentkey
//! runs in: an endpoint URL whose host is, or resolves to, a loopback,
//! private, link-local, shared or otherwise non-public address is refused,
//! so the feature cannot probe that network. The address is checked after
//! resolution, by the resolver the HTTP client connects through, so a
//! name that resolves to a private address is refused too.
//! `AGENTKEY_WEBHOOK_ALLOW_PRIVATE=true` lifts the rule.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The longest endpoint URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// Whether `ip` is anything but a public unicast address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            let first = s[0];
            // An IPv4 address carried inside: 6to4 (2002:a.b.c.d::/48) and
            // IPv4-translated (::ffff:0:a.b.c.d) reach it.
            let embedded = |high: u16, low: u16| {
                is_private_v4(Ipv4Addr::new(
                    (high >> 8) as u8,
                    high as u8,
                    (low >> 8) as u8,
                    low as u8,
                ))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || first == 0x2001 && s[1] == 0x0db8 // documentation
                || first == 0x2001 && s[1] == 0 // Teredo 2001::/32
                || first == 0x0064 && s[1] == 0xff9b // NAT64, 64:ff9b::/96 and 64:ff9b:1::/48
                || first == 0x0100 && s[1..4] == [0, 0, 0] // discard-only 100::/64
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 // IPv4-translated
                || first == 0x2002 && embedded(s[1], s[2]) // 6to4 of a private IPv4
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // shared address space 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || a >= 240 // reserved
}

/// Checks an endpoint URL as given: `http` or `https`, a host, no
/// credentials, not too long, and (unless `allow_private`) not a literal
/// non-public address. A host name is checked when it is resolved.
pub fn check_url(text: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("must name a host".into());
    };
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if let Some(ip) = ip {
        if !allow_private && is_private(ip) {
            return Err(format!(
                "names {ip}, a loopback, private or link-local address; these are refused \
                 unless AGENTKEY_WEBHOOK_ALLOW_PRIVATE=true"
            ));
        }
    }
    Ok(url)
}

/// The HTTP client's resolver: the system's, minus every address
/// [`is_private`] refuses (unless allowed).
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| allow_private || !is_private(addr.ip()))
                .collect();
            if allowed.is_empty() {
                // One answer whether the name has no address or only
                // private ones, so deliveries cannot map the internal DNS.
                return Err(format!(
                    "{host} has no public address (loopback, private and link-local \
                     addresses are refused unless AGENTKEY_WEBHOOK_ALLOW_PRIVATE=true)"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_non_public_literal() {
        for text in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "100::1",
            "::ffff:0:7f00:1",
            "2002:0a00:0001::1",
            "2002:a9fe:a9fe::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(is_private(ip), "{text} must be refused");
        }
        for text in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "2002:5db8:d822::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!is_private(ip), "{text} is public");
        }
    }

    #[test]
    fn checks_urls_without_connecting() {
        assert!(check_url("http://127.0.0.1:9/x", false)
            .unwrap_err()
            .contains("AGENTKEY_WEBHOOK_ALLOW_PRIVATE"));
        assert!(check_url("http://[::1]:9/x", false).is_err());
        assert!(check_url("http://169.254.169.254/latest", false).is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_url("https://hooks.example.com/a", false).is_ok());
        assert!(check_url("ftp://hooks.example.com/a", false).is_err());
        assert!(check_url("https://u:p@hooks.example.com/a", false).is_err());
        assert!(check_url("not a url", false).is_err());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(check_url(&long, false).is_err());
    }

    /// `localhost` resolves from the hosts file, to loopback only: refused
    /// unless allowed, and nothing is connected to either way.
    #[tokio::test]
    async fn the_resolver_drops_private_addresses() {
        use reqwest::dns::Resolve;
        let name = |text: &str| text.parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve(name("localhost"))
        .await;
        let reason = refused.err().expect("refused").to_string();
        assert!(
            reason.contains("AGENTKEY_WEBHOOK_ALLOW_PRIVATE"),
            "{reason}"
        );
        let allowed: Vec<SocketAddr> = GuardedResolver {
            allow_private: true,
        }
        .resolve(name("localhost"))
        .await
        .expect("resolves")
        .collect();
        assert!(!allowed.is_empty());
        assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");
    }
}
