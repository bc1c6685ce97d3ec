//! Per-client limits on *failed* credential checks: a token bucket per
//! client address (the `governor` crate's GCRA), drawn from only when a
//! credential is refused, so a client that presents valid credentials is
//! never slowed, however many requests it makes.
//!
//! A client that fails more than `burst` times in a row, faster than the
//! bucket refills, gets a 429 with `Retry-After` instead of the 401 until it
//! has refilled. The handlers decide what a failure is; this module only
//! counts them: [`FailureLimiter::failed`] records one and answers whether
//! the client is over its limit, [`FailureLimiter::check`] answers that
//! without recording anything (for a sign-in form that wants to refuse
//! before it looks at a password).
//!
//! Memory is bounded: at most `max_clients` addresses are tracked. Addresses
//! whose bucket is full again are forgotten by a sweep that runs at most
//! every [`SWEEP_EVERY`] (on the failure path, no task of its own); when
//! the table is still full, new addresses share one overflow bucket. IPv6
//! clients are keyed by their /64, the block one host usually holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How often tracked addresses are swept, at most.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often a full table may be swept to make room.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The key of requests whose address is not known (in-process calls).
const UNKNOWN: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// The key every new address shares while the table is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The limit's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures a client may make in a row before it is limited.
    pub burst: u32,
    /// Failures per minute a client regains, up to `burst`.
    pub per_minute: u32,
    /// Addresses tracked at most.
    pub max_clients: usize,
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            burst: 20,
            per_minute: 60,
            max_clients: 100_000,
        }
    }
}

/// How long a limited client should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header, rounded up, at least 1.
    pub fn seconds(&self) -> u64 {
        self.0.as_secs_f64().ceil().max(1.0) as u64
    }
}

pub struct FailureLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients over their limit, until when: what `check` reads.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    max_clients: usize,
    started: Instant,
    /// Milliseconds after `started` of the last sweep.
    last_sweep: AtomicU64,
}

impl FailureLimiter {
    pub fn new(limits: FailureLimits) -> FailureLimiter {
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        let per_minute = NonZeroU32::new(limits.per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        FailureLimiter {
            limiter: RateLimiter::dashmap(quota),
            blocked: Mutex::default(),
            max_clients: limits.max_clients.max(1),
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Records a failed credential check by `client`. `Err` when the client
    /// is now over its limit: answer 429 with the wait, not 401.
    pub fn failed(&self, client: Option<IpAddr>) -> Result<(), RetryAfter> {
        self.sweep_if_due();
        let mut key = key_of(client);
        if self.limiter.len() >= self.max_clients {
            // Full: sweep at most once a second (a sweep walks every
            // entry), and meanwhile count new clients in the overflow.
            self.sweep_if_due_within(FULL_SWEEP_EVERY);
            if self.limiter.len() >= self.max_clients {
                key = OVERFLOW;
            }
        }
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                let mut blocked = lock(&self.blocked);
                if blocked.len() < self.max_clients || blocked.contains_key(&key) {
                    blocked.insert(key, Instant::now() + wait);
                }
                Err(RetryAfter(wait))
            }
        }
    }

    /// Whether `client` is over its limit now, without counting anything.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), RetryAfter> {
        let blocked = lock(&self.blocked);
        match blocked.get(&key_of(client)) {
            Some(&until) => match until.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => Err(RetryAfter(wait)),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Addresses tracked now (including the overflow bucket, if in use).
    pub fn clients(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets every address whose bucket is full again.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        let mut blocked = lock(&self.blocked);
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
        self.last_sweep
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn sweep_if_due(&self) {
        self.sweep_if_due_within(SWEEP_EVERY);
    }

    /// Sweeps if the last sweep is at least `every` ago.
    fn sweep_if_due_within(&self, every: Duration) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= every.as_millis() as u64;
        // One caller wins the sweep; the others go on.
        if due
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep();
        }
    }
}

/// The bucket of an address: IPv4 (also when mapped into IPv6) as is,
/// IPv6 by its /64.
fn key_of(client: Option<IpAddr>) -> IpAddr {
    match client {
        None => UNKNOWN,
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, max_clients: usize) -> FailureLimiter {
        // One failure regained per hour: nothing refills during a test.
        FailureLimiter {
            limiter: RateLimiter::dashmap(
                Quota::with_period(Duration::from_secs(3600))
                    .unwrap()
                    .allow_burst(NonZeroU32::new(burst).unwrap()),
            ),
            ..FailureLimiter::new(FailureLimits {
                burst,
                per_minute: 1,
                max_clients,
            })
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_client_is_limited_after_its_burst_and_others_are_not() {
        let limits = limiter(3, 100);
        for _ in 0..3 {
            assert_eq!(limits.failed(ip("10.0.0.1")), Ok(()));
            assert_eq!(limits.check(ip("10.0.0.1")), Ok(()));
        }
        let wait = limits.failed(ip("10.0.0.1")).unwrap_err();
        assert!(wait.0 > Duration::from_secs(3000), "{wait:?}");
        assert_eq!(wait.seconds(), wait.0.as_secs() + 1);
        assert!(limits.check(ip("10.0.0.1")).is_err(), "check sees it");
        assert_eq!(limits.failed(ip("10.0.0.2")), Ok(()), "another client");
        assert_eq!(limits.check(ip("10.0.0.2")), Ok(()));
    }

    #[test]
    fn check_counts_nothing() {
        let limits = limiter(1, 100);
        for _ in 0..10 {
            assert_eq!(limits.check(ip("10.0.0.1")), Ok(()));
        }
        assert_eq!(limits.failed(ip("10.0.0.1")), Ok(()));
        assert!(limits.failed(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let limits = limiter(1, 100);
        assert_eq!(limits.failed(ip("2001:db8:1:2::1")), Ok(()));
        assert!(limits.failed(ip("2001:db8:1:2:ffff::9")).is_err());
        assert_eq!(limits.failed(ip("2001:db8:1:3::1")), Ok(()));
        assert_eq!(limits.failed(ip("192.0.2.7")), Ok(()));
        assert!(limits.failed(ip("::ffff:192.0.2.7")).is_err());
    }

    #[test]
    fn memory_is_bounded_by_max_clients() {
        let limits = limiter(2, 50);
        for i in 0..5_000u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limits.failed(Some(client));
            assert!(limits.clients() <= 51, "{} after {i}", limits.clients());
        }
        assert!(lock(&limits.blocked).len() <= 50);
        // Past the bound, new addresses share one bucket: limited together.
        let late = |i: u32| Some(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)));
        assert!(limits.failed(late(1)).is_err() || limits.failed(late(2)).is_err());
    }

    #[test]
    fn full_buckets_are_swept() {
        // Refills at once: every address is forgettable right after.
        let limits = FailureLimiter::new(FailureLimits {
            burst: 5,
            per_minute: 60_000_000,
            max_clients: 1_000,
        });
        for i in 0..500u32 {
            let _ = limits.failed(Some(IpAddr::V4(Ipv4Addr::from(i))));
        }
        assert_eq!(limits.clients(), 500);
        // Each bucket is full again a microsecond after its failure.
        let started = Instant::now();
        while limits.clients() > 0 {
            assert!(started.elapsed() < Duration::from_secs(1), "not swept");
            limits.sweep();
        }
    }
}
