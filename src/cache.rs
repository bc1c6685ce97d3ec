//! The verification cache: digest → verified credential, in memory, so the
//! hot path (every request an Airflow agent makes) costs no database read.
//!
//! - Positive entries live until they are invalidated (delete, rotation,
//!   deployment delete) or reach their age limit, after which the next use
//!   re-reads the store. The age limit bounds how long a change made behind
//!   this process's back (another replica, another process on the same
//!   database) can go unseen.
//! - Negative entries remember digests the store does not know, so a flood
//!   of well-formed garbage costs one read per distinct token, not one per
//!   request. They are bounded in number and age.
//! - An epoch counter closes the race where a read that began before an
//!   invalidation would put a stale entry back after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::model::AgentCredential;
use crate::token::Digest;

/// A verified credential as the cache holds it.
#[derive(Debug)]
pub struct Cached {
    pub credential: AgentCredential,
    loaded_at: i64,
    /// The last second this entry was used, so a use is reported at most
    /// once per second per token.
    last_used: AtomicI64,
    /// An answer built from `credential` once and reused while the entry
    /// lives (the HTTP layer keeps its serialized verification answer
    /// here); the cache does not look inside.
    pub answer: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl Cached {
    /// Records a use at `now`; answers whether it is the first in this second.
    pub fn mark_used(&self, now: i64) -> bool {
        // A plain read first: most uses fall in an already-marked second,
        // and a read keeps the cache line shared between cores.
        self.last_used.load(Ordering::Relaxed) < now
            && self.last_used.fetch_max(now, Ordering::Relaxed) < now
    }
}

pub enum Lookup {
    Hit(Arc<Cached>),
    /// The store did not know this digest a moment ago.
    KnownUnknown,
    Miss,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Seconds a positive entry is trusted before it is read again.
    pub positive_ttl: i64,
    /// Seconds a digest is remembered as unknown.
    pub negative_ttl: i64,
    /// How many unknown digests are remembered at most.
    pub negative_capacity: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            positive_ttl: 30,
            negative_ttl: 30,
            negative_capacity: 10_000,
        }
    }
}

pub struct VerifyCache {
    limits: CacheLimits,
    positive: RwLock<HashMap<Digest, Arc<Cached>>>,
    negative: RwLock<HashMap<Digest, i64>>,
    epoch: AtomicU64,
    /// While false, nothing is cached (see [`VerifyCache::set_enabled`]).
    enabled: std::sync::atomic::AtomicBool,
}

impl VerifyCache {
    pub fn new(limits: CacheLimits) -> VerifyCache {
        VerifyCache {
            limits,
            positive: RwLock::default(),
            negative: RwLock::default(),
            epoch: AtomicU64::new(0),
            enabled: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Seconds a positive entry is trusted before it is read again.
    pub fn positive_ttl(&self) -> i64 {
        self.limits.positive_ttl
    }

    pub fn lookup(&self, digest: &Digest, now: i64) -> Lookup {
        if let Some(entry) = read(&self.positive).get(digest) {
            if now - entry.loaded_at < self.limits.positive_ttl {
                return Lookup::Hit(entry.clone());
            }
        }
        if let Some(&until) = read(&self.negative).get(digest) {
            if now < until {
                return Lookup::KnownUnknown;
            }
        }
        Lookup::Miss
    }

    /// Whether the store did not know `digest` a moment ago (any kind of
    /// credential: the digests of different kinds never meet).
    pub fn is_known_unknown(&self, digest: &Digest, now: i64) -> bool {
        read(&self.negative)
            .get(digest)
            .is_some_and(|&until| now < until)
    }

    /// Forgets that `digest` was unknown: it has just been issued. The
    /// epoch moves, so a read that began before cannot put it back.
    pub fn forget_unknown(&self, digest: &Digest) {
        let mut negative = write(&self.negative);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        negative.remove(digest);
    }

    /// Taken before a store read; handed back to `insert*` afterwards.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches what the store answered, unless an invalidation happened since
    /// `epoch` was taken (the answer may then be stale). Always answers an
    /// entry for the caller to use.
    pub fn insert(
        &self,
        digest: Digest,
        credential: AgentCredential,
        now: i64,
        epoch: u64,
    ) -> Arc<Cached> {
        let entry = Arc::new(Cached {
            credential,
            loaded_at: now,
            last_used: AtomicI64::new(i64::MIN),
            answer: std::sync::OnceLock::new(),
        });
        let mut positive = write(&self.positive);
        if self.epoch() == epoch && self.is_enabled() {
            positive.insert(digest, entry.clone());
        }
        entry
    }

    /// Remembers that the store does not know `digest`.
    pub fn insert_unknown(&self, digest: Digest, now: i64, epoch: u64) {
        let mut negative = write(&self.negative);
        if self.epoch() != epoch || !self.is_enabled() {
            return;
        }
        if negative.len() >= self.limits.negative_capacity {
            negative.retain(|_, until| *until > now);
            if negative.len() >= self.limits.negative_capacity {
                // Still full of live entries: a flood. Start over rather
                // than grow; the cost is one store read per new digest.
                negative.clear();
            }
        }
        negative.insert(digest, now + self.limits.negative_ttl);
    }

    /// Forgets every entry of one token, whatever its digests.
    pub fn forget_token(&self, token_id: &str) {
        let mut positive = write(&self.positive);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        positive.retain(|_, entry| entry.credential.token_id != token_id);
    }

    /// Forgets every entry of one deployment.
    pub fn forget_deployment(&self, deployment_id: &str) {
        let mut positive = write(&self.positive);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        positive.retain(|_, entry| entry.credential.deployment_id != deployment_id);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut positive = write(&self.positive);
        let mut negative = write(&self.negative);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        positive.clear();
        negative.clear();
    }

    /// Turns caching off (clearing it) or back on. Off is for when this
    /// process cannot learn of revocations made elsewhere, such as while a
    /// PostgreSQL notification listener is disconnected.
    pub fn set_enabled(&self, enabled: bool) {
        if !enabled {
            self.enabled.store(false, Ordering::SeqCst);
            self.clear();
        } else {
            // Entries cached from here on are read after the switch.
            self.clear();
            self.enabled.store(true, Ordering::SeqCst);
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// (positive, negative) entry counts.
    pub fn len(&self) -> (usize, usize) {
        (read(&self.positive).len(), read(&self.negative).len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
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

    fn credential(token: &str, deployment: &str) -> AgentCredential {
        AgentCredential {
            token_id: token.into(),
            organization_id: "o".into(),
            deployment_id: deployment.into(),
            name: "n".into(),
            end_at: None,
            grace_until: None,
            issued_at: 0,
            secret_digest: Digest::of(token),
            allowed_networks: Vec::new(),
        }
    }

    fn limits() -> CacheLimits {
        CacheLimits {
            positive_ttl: 10,
            negative_ttl: 5,
            negative_capacity: 3,
        }
    }

    #[test]
    fn hits_until_the_age_limit() {
        let cache = VerifyCache::new(limits());
        let d = Digest::of("a");
        assert!(matches!(cache.lookup(&d, 0), Lookup::Miss));
        cache.insert(d, credential("a", "x"), 0, cache.epoch());
        assert!(matches!(cache.lookup(&d, 9), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&d, 10), Lookup::Miss));
    }

    #[test]
    fn an_invalidation_during_a_read_keeps_the_stale_answer_out() {
        let cache = VerifyCache::new(limits());
        let d = Digest::of("a");
        let epoch = cache.epoch();
        cache.forget_token("a"); // a delete commits while the read is in flight
        let entry = cache.insert(d, credential("a", "x"), 0, epoch);
        assert_eq!(
            entry.credential.token_id, "a",
            "the caller still gets its answer"
        );
        assert!(
            matches!(cache.lookup(&d, 0), Lookup::Miss),
            "but it is not cached"
        );
        cache.insert_unknown(d, 0, epoch);
        assert!(matches!(cache.lookup(&d, 0), Lookup::Miss));
    }

    #[test]
    fn forgets_by_token_and_deployment() {
        let cache = VerifyCache::new(limits());
        for (t, dep) in [("a", "x"), ("b", "x"), ("c", "y")] {
            cache.insert(Digest::of(t), credential(t, dep), 0, cache.epoch());
        }
        cache.forget_token("a");
        assert_eq!(cache.len().0, 2);
        cache.forget_token("b");
        assert_eq!(cache.len().0, 1);
        cache.forget_deployment("y");
        assert!(cache.is_empty());
    }

    #[test]
    fn the_negative_cache_is_bounded_and_ages() {
        let cache = VerifyCache::new(limits());
        for i in 0..3 {
            cache.insert_unknown(Digest::of(&i.to_string()), 0, cache.epoch());
        }
        assert!(matches!(
            cache.lookup(&Digest::of("0"), 4),
            Lookup::KnownUnknown
        ));
        assert!(
            matches!(cache.lookup(&Digest::of("0"), 5), Lookup::Miss),
            "aged out"
        );
        // Full of live entries: the next one starts over.
        cache.insert_unknown(Digest::of("3"), 1, cache.epoch());
        assert_eq!(cache.len().1, 1);
        // Full of dead entries: they are swept first.
        cache.insert_unknown(Digest::of("4"), 1, cache.epoch());
        cache.insert_unknown(Digest::of("5"), 1, cache.epoch());
        cache.insert_unknown(Digest::of("6"), 100, cache.epoch());
        assert_eq!(cache.len().1, 1);
    }

    #[test]
    fn an_issued_digest_is_no_longer_unknown() {
        let cache = VerifyCache::new(limits());
        let d = Digest::of("api");
        cache.insert_unknown(d, 0, cache.epoch());
        assert!(cache.is_known_unknown(&d, 1));
        // A read that began before the secret was issued ...
        let epoch = cache.epoch();
        cache.forget_unknown(&d);
        assert!(!cache.is_known_unknown(&d, 1));
        // ... cannot put "unknown" back after it.
        cache.insert_unknown(d, 1, epoch);
        assert!(!cache.is_known_unknown(&d, 1));
        assert!(!cache.is_known_unknown(&Digest::of("other"), 1));
    }

    #[test]
    fn disabled_means_nothing_is_kept() {
        let cache = VerifyCache::new(limits());
        cache.insert(Digest::of("a"), credential("a", "x"), 0, cache.epoch());
        cache.set_enabled(false);
        assert!(cache.is_empty());
        cache.insert(Digest::of("a"), credential("a", "x"), 0, cache.epoch());
        cache.insert_unknown(Digest::of("b"), 0, cache.epoch());
        assert!(cache.is_empty());
        cache.set_enabled(true);
        cache.insert(Digest::of("a"), credential("a", "x"), 0, cache.epoch());
        assert_eq!(cache.len(), (1, 0));
    }

    #[test]
    fn a_use_is_reported_once_per_second() {
        let cache = VerifyCache::new(limits());
        let entry = cache.insert(Digest::of("a"), credential("a", "x"), 0, cache.epoch());
        assert!(entry.mark_used(5));
        assert!(!entry.mark_used(5));
        assert!(!entry.mark_used(4));
        assert!(entry.mark_used(6));
    }
}
