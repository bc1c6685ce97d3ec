//! The expiry scan: a periodic job that finds agent and API tokens whose
//! `endAt` has come within a warning threshold (30, 7 and 1 days by
//! default) or passed, and emits `.expiring` or `.expired` through the
//! outbox. A mark row per token and threshold makes each one happen once,
//! whichever replica scans, however often it restarts; a token that crosses
//! several thresholds between two scans (created with a short life) gets
//! one event, for the nearest.

use std::sync::Arc;

use crate::clock::Clock;
use crate::store::Store;

/// Tokens that expired longer ago than this when a scan first sees them
/// get no `.expired` event: a first start does not replay the past.
pub const LOOKBACK_SECONDS: i64 = 7 * 86_400;

/// One pass at the clock's now; answers how many tokens it marked.
pub async fn scan(
    store: &dyn Store,
    clock: &dyn Clock,
    thresholds: &[i64],
) -> crate::store::Result<usize> {
    store
        .scan_token_expiry(clock.now(), thresholds, LOOKBACK_SECONDS)
        .await
}

/// Scans every `interval` until `stop` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    thresholds: Vec<i64>,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(err) = scan(store.as_ref(), clock.as_ref(), &thresholds).await {
            tracing::warn!(error = %err, "the token expiry scan failed; will retry");
        }
    }
}
