//! The log of refused requests to the verify endpoints (and to no route): a
//! summary line per interval, with counts by route and status, instead of a
//! line per request, so that a client without a credential cannot fill the
//! log. The metrics keep exact counts per request.
//!
//! Counting is one atomic increment. The line for an interval is written by
//! the first refusal after the interval ends, or by a background tick, or
//! when the log is dropped (at shutdown).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// At most one summary line per this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// The statuses counted apart; any other 4xx or 5xx counts as `other`.
const STATUSES: [u16; 9] = [400, 401, 403, 404, 405, 413, 415, 429, 431];
/// The routes counted apart.
const ROUTES: [&str; 3] = ["authorize", "introspect", "(no route)"];
const SLOTS: usize = ROUTES.len() * (STATUSES.len() + 1);

pub struct RefusalLog {
    epoch: Instant,
    interval: Duration,
    /// When the current interval began, in milliseconds since `epoch`.
    window_start: AtomicU64,
    counts: [AtomicU64; SLOTS],
}

impl RefusalLog {
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            epoch: Instant::now(),
            interval,
            window_start: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A log with the standard interval, flushed by a background tick when
    /// made inside a Tokio runtime.
    pub fn started() -> Arc<RefusalLog> {
        let log = Arc::new(RefusalLog::new(SUMMARY_INTERVAL));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<RefusalLog> = Arc::downgrade(&log);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(log) => log.flush_if_due(),
                        None => return,
                    }
                }
            });
        }
        log
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts one refused request.
    pub fn refused(&self, route: &str, status: u16) {
        let route = ROUTES
            .iter()
            .position(|r| route.ends_with(r))
            .unwrap_or(ROUTES.len() - 1);
        let status = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        self.counts[route * (STATUSES.len() + 1) + status].fetch_add(1, Ordering::Relaxed);
        self.flush_if_due();
    }

    /// Writes the summary of the interval that has ended, if one has and
    /// anything was counted in it.
    pub fn flush_if_due(&self) {
        let now = self.now_ms();
        let start = self.window_start.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(start) < interval {
            return;
        }
        // One caller wins the interval and writes its line.
        if self
            .window_start
            .compare_exchange(start, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.write(now - start);
        }
    }

    fn write(&self, window_ms: u64) {
        let mut parts = Vec::new();
        let mut total = 0;
        for (r, route) in ROUTES.iter().enumerate() {
            for s in 0..=STATUSES.len() {
                let n = self.counts[r * (STATUSES.len() + 1) + s].swap(0, Ordering::Relaxed);
                if n > 0 {
                    total += n;
                    let status = STATUSES.get(s).map_or("other".to_string(), u16::to_string);
                    parts.push(format!("{route} {status}: {n}"));
                }
            }
        }
        if total > 0 {
            tracing::info!(
                refused = total,
                window_s = window_ms / 1000,
                counts = %parts.join(", "),
                "refused verify requests (summary)"
            );
        }
    }
}

impl Drop for RefusalLog {
    fn drop(&mut self) {
        let window = self
            .now_ms()
            .saturating_sub(self.window_start.load(Ordering::Relaxed));
        self.write(window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(log: &RefusalLog) -> u64 {
        log.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    #[test]
    fn counts_until_the_interval_ends_then_starts_again() {
        let log = RefusalLog::new(Duration::from_secs(3600));
        log.refused("/v1/authorize", 401);
        log.refused("/iam/v1beta1/authorize", 401);
        log.refused("(no route)", 404);
        log.refused("/v1/introspect", 418);
        assert_eq!(
            total(&log),
            4,
            "nothing is written before the interval ends"
        );
        assert_eq!(log.counts[1].load(Ordering::Relaxed), 2, "authorize 401");
        let log = RefusalLog::new(Duration::ZERO);
        log.refused("/v1/authorize", 401);
        assert_eq!(total(&log), 0, "a due interval is written and emptied");
    }
}
