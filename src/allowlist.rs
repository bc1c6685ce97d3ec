//! Allowed IP address ranges: which networks may use a credential.
//!
//! - An organization's allowlist (`/organizations/{org}/allowed-ip-address-ranges`)
//!   limits where its management API may be called from; the root
//!   credential is exempt (see `http::auth`).
//! - An agent token may be bound to networks of its own
//!   (`allowedIpAddressRanges` on create); `/v1/authorize` and
//!   `/v1/introspect` refuse it from anywhere else (see `verify`).
//!
//! A range is accepted only in its normalised form, the form it is stored
//! and listed in: a CIDR block with no bits set past its prefix, IPv6 in
//! its canonical text (`10.0.0.0/8`, `192.0.2.7/32`, `2001:db8::/32`).
//! `10.1.2.3/8` is refused (it names `10.0.0.0/8`, and may be a typo for
//! `10.1.2.3/32`), and so are a bare address and `2001:DB8::/32`; the
//! message says what to write. So what a client sends is exactly what it
//! reads back, and Terraform's plans stay quiet.
//!
//! [`AllowLists`] caches each organization's list in memory, so checking
//! a management request costs no database read. A change made here
//! forgets the list at once; one made by another replica arrives as a
//! [`Revocation::AllowList`](crate::store::revocations::Revocation)
//! over the same channel as token revocations, and while that channel is
//! down nothing is cached (the same rule as the verification cache). An
//! entry is also re-read after the verification cache's age limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::http::client_ip::{canonical, parse_network};
use crate::store::{Store, StoreError};

/// At most this many ranges in one organization's allowlist.
pub const MAX_RANGES_PER_ORGANIZATION: i64 = 1000;
/// At most this many ranges in one bulk request.
pub const MAX_RANGES_PER_REQUEST: usize = 1000;
/// At most this many ranges bound to one agent token.
pub const MAX_RANGES_PER_TOKEN: usize = 100;

/// Parses a range as a client sends it; refuses anything but the
/// normalised form (see the module), with a message that names the entry
/// and, where there is one, the form to write.
pub fn parse_range(text: &str) -> Result<IpNet, String> {
    let net = parse_network(text)
        .map_err(|_| format!("{text:?} is not a CIDR block (e.g. 10.0.0.0/8 or 2001:db8::/32)"))?;
    let written = IpNet::from_str(text).ok();
    if written.is_some_and(|w| w.addr() != net.addr()) {
        return Err(format!(
            "{text:?} has bits set past its /{} prefix: write {net} for the whole network, \
             or the address with /{} for one host",
            net.prefix_len(),
            net.max_prefix_len()
        ));
    }
    if text != net.to_string() {
        return Err(format!("{text:?} is not in normalised form: write {net}"));
    }
    Ok(net)
}

/// A network no client comes from, standing in for a stored entry that no
/// longer parses (a hand-edited row): a token bound to it is bound to
/// nowhere rather than to everywhere. `100::/64` is IPv6's discard-only
/// prefix (RFC 6666); this is one address of it.
pub fn nowhere() -> IpNet {
    IpNet::from(IpAddr::from([0x100, 0, 0, 0, 0, 0, 0, 0xdead]))
}

/// Whether `client` may use something restricted to `networks`: always
/// when the list is empty, never when the client is unknown.
pub fn allows(networks: &[IpNet], client: Option<IpAddr>) -> bool {
    if networks.is_empty() {
        return true;
    }
    let Some(client) = client.map(canonical) else {
        return false;
    };
    networks.iter().any(|net| net.contains(&client))
}

/// The parsed networks of stored range texts (see [`nowhere`]).
pub fn networks_of<'a>(ranges: impl IntoIterator<Item = &'a str>) -> Vec<IpNet> {
    ranges
        .into_iter()
        .map(|text| text.parse().unwrap_or_else(|_| nowhere()))
        .collect()
}

struct Entry {
    networks: Arc<[IpNet]>,
    loaded_at: i64,
}

/// Each organization's allowlist, parsed, in memory (see the module).
pub struct AllowLists {
    /// Seconds an entry is trusted before it is read again.
    ttl: i64,
    entries: RwLock<HashMap<String, Entry>>,
    /// Moves on every invalidation, so a read that began before one cannot
    /// put its stale answer back after it.
    epoch: AtomicU64,
    enabled: AtomicBool,
}

impl AllowLists {
    pub fn new(ttl: i64) -> AllowLists {
        AllowLists {
            ttl,
            entries: RwLock::default(),
            epoch: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
        }
    }

    /// The organization's networks (empty: no restriction), from memory
    /// when they are there and fresh, else from `store`.
    pub async fn networks(
        &self,
        store: &dyn Store,
        org: &str,
        now: i64,
    ) -> Result<Arc<[IpNet]>, StoreError> {
        if let Some(entry) = read(&self.entries).get(org) {
            if now - entry.loaded_at < self.ttl {
                return Ok(entry.networks.clone());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let ranges = store.allowed_ip_ranges_of(org).await?;
        let networks: Arc<[IpNet]> = networks_of(ranges.iter().map(String::as_str)).into();
        let mut entries = write(&self.entries);
        if self.epoch.load(Ordering::SeqCst) == epoch && self.enabled.load(Ordering::SeqCst) {
            entries.insert(
                org.to_string(),
                Entry {
                    networks: networks.clone(),
                    loaded_at: now,
                },
            );
        }
        Ok(networks)
    }

    /// The organization's list changed: read it again on next use.
    pub fn forget(&self, org: &str) {
        let mut entries = write(&self.entries);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.remove(org);
    }

    /// Turns caching off (forgetting everything) or back on; off while
    /// changes made by other replicas cannot be heard of.
    pub fn set_enabled(&self, enabled: bool) {
        let mut entries = write(&self.entries);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.clear();
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    /// How many organizations' lists are in memory.
    pub fn len(&self) -> usize {
        read(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_normalised_form_is_accepted() {
        for good in [
            "10.0.0.0/8",
            "192.0.2.7/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::1/128",
        ] {
            assert_eq!(parse_range(good).unwrap().to_string(), good);
        }
        let host_bits = parse_range("10.1.2.3/8").unwrap_err();
        assert!(host_bits.contains("10.0.0.0/8"), "{host_bits}");
        assert!(host_bits.contains("\"10.1.2.3/8\""), "{host_bits}");
        assert!(parse_range("10.1.2.3").unwrap_err().contains("10.1.2.3/32"));
        assert!(parse_range("2001:DB8::/32")
            .unwrap_err()
            .contains("2001:db8::/32"));
        assert!(parse_range(" 10.0.0.0/8").is_err());
        assert!(parse_range("10.0.0.0/33").is_err());
        assert!(parse_range("example.com").is_err());
        assert!(parse_range("").is_err());
    }

    #[test]
    fn membership() {
        let nets = networks_of(["10.0.0.0/8", "2001:db8::/32"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(allows(&nets, ip("10.200.0.1")));
        assert!(allows(&nets, ip("::ffff:10.0.0.1")), "mapped IPv4 is IPv4");
        assert!(allows(&nets, ip("2001:db8::5")));
        assert!(!allows(&nets, ip("11.0.0.1")));
        assert!(!allows(&nets, ip("2001:db9::5")));
        assert!(!allows(&nets, None), "an unknown client is outside");
        assert!(allows(&[], None), "an empty list allows everyone");
        assert!(!allows(&networks_of(["garbage"]), ip("10.0.0.1")));
    }
}
