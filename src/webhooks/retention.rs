//! The retention sweep: a periodic job that deletes webhook deliveries in
//! a final state (SUCCEEDED or FAILED) last updated longer ago than
//! `AGENTKEY_WEBHOOK_RETENTION_DAYS`, with their attempts, and then the
//! events older than that which no delivery points to any more. A PENDING
//! delivery is never deleted, whatever its age, nor an event a remaining
//! delivery points to.
//!
//! Every delete is one statement of at most [`BATCH`] rows (its own short
//! transaction), repeated until it finds nothing, so no statement holds
//! locks for long. Each step's condition is final (a delivery that is
//! final and old stays so), so replicas sweeping at once only share the
//! work; a failure is logged and the next round starts over.
//!
//! "Old" is measured with the application's clock ([`Clock`]): it writes
//! the compared columns, the events' `created_at` (the change's time) and
//! the deliveries' `updated_at` (queued, redelivered, or an attempt's
//! outcome recorded by the worker).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::metrics::{Metrics, PrunedTable};
use crate::store::Store;

/// Rows one delete statement removes at most.
pub const BATCH: i64 = 1_000;
/// How long after start the first sweep runs.
pub const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(60);
/// How often the sweep runs after that.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// One step of the sweep, in the order it runs (the index of the step's
/// statement in `Backend::PRUNE_WEBHOOKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// The attempts of old final deliveries (first, so that no attempt is
    /// left without its delivery).
    Attempts = 0,
    /// Old final deliveries.
    Deliveries = 1,
    /// Old events without a delivery.
    Events = 2,
}

impl Prune {
    pub const ALL: [Prune; 3] = [Prune::Attempts, Prune::Deliveries, Prune::Events];

    fn table(self) -> PrunedTable {
        match self {
            Prune::Attempts => PrunedTable::Attempts,
            Prune::Deliveries => PrunedTable::Deliveries,
            Prune::Events => PrunedTable::Events,
        }
    }
}

/// Rows one sweep deleted, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub attempts: u64,
    pub deliveries: u64,
    pub events: u64,
}

impl Pruned {
    fn add(&mut self, what: Prune, rows: u64) {
        match what {
            Prune::Attempts => self.attempts += rows,
            Prune::Deliveries => self.deliveries += rows,
            Prune::Events => self.events += rows,
        }
    }
}

/// Deletes what is older than the retention period.
pub struct Sweeper {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// How long a final delivery (and an event without deliveries) is kept.
    pub retention: Duration,
    /// Rows per delete statement.
    pub batch: i64,
}

impl Sweeper {
    /// One sweep at the clock's now: every step, each in batches until a
    /// batch finds nothing. Rows are counted in the metrics as each batch
    /// commits; on an error the sweep stops there (what it deleted stays
    /// deleted) and the error is returned.
    pub async fn sweep(&self) -> crate::store::Result<Pruned> {
        self.sweep_while(|| true).await
    }

    /// [`Sweeper::sweep`], stopping between two batches once `go_on` says
    /// no (a shutdown): each batch is its own statement, so stopping there
    /// leaves nothing half done, and the next sweep carries on.
    async fn sweep_while(&self, go_on: impl Fn() -> bool) -> crate::store::Result<Pruned> {
        let retention = i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX);
        let before = self.clock.now().saturating_sub(retention);
        let mut pruned = Pruned::default();
        for what in Prune::ALL {
            loop {
                if !go_on() {
                    return Ok(pruned);
                }
                let rows = self.store.prune_webhooks(what, before, self.batch).await?;
                if rows == 0 {
                    break;
                }
                pruned.add(what, rows);
                self.metrics.webhook_pruned(what.table(), rows);
            }
        }
        Ok(pruned)
    }

    /// Sweeps `first_after` the start, then `every` (`serve` passes
    /// [`FIRST_SWEEP_AFTER`] and [`SWEEP_INTERVAL`]), until `stop` turns
    /// true. A sweep that fails is logged and the next one tries again.
    pub async fn run(
        self,
        first_after: Duration,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let first = tokio::time::Instant::now() + first_after;
        let mut ticker = tokio::time::interval_at(first, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            match self.sweep_while(|| !*stop.borrow()).await {
                Ok(p) if p == Pruned::default() => {}
                Ok(p) => tracing::info!(
                    webhook_attempts = p.attempts,
                    webhook_deliveries = p.deliveries,
                    webhook_events = p.events,
                    retention_days = self.retention.as_secs() / 86_400,
                    "webhook retention sweep deleted old rows"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "the webhook retention sweep failed; will retry")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// `go_on` is asked before every batch: when it says no at once,
    /// nothing is deleted and the sweep returns; when it always says yes,
    /// each step runs until a batch finds nothing.
    #[tokio::test]
    async fn a_sweep_asks_before_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let sweeper = Sweeper {
            store: crate::store::open(&url).await.unwrap(),
            clock: Arc::new(ManualClock::new(1_000_000_000)),
            metrics: Arc::new(Metrics::new()),
            retention: Duration::from_secs(86_400),
            batch: 10,
        };
        let asked = std::cell::Cell::new(0);
        let stopped = sweeper
            .sweep_while(|| {
                asked.set(asked.get() + 1);
                false
            })
            .await
            .unwrap();
        assert_eq!((stopped, asked.get()), (Pruned::default(), 1));
        asked.set(0);
        let swept = sweeper
            .sweep_while(|| {
                asked.set(asked.get() + 1);
                true
            })
            .await
            .unwrap();
        assert_eq!(swept, Pruned::default());
        assert_eq!(asked.get(), Prune::ALL.len(), "one empty batch per step");
    }
}
