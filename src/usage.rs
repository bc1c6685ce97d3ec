//! `lastUsedAt` bookkeeping off the request path: verification notes a use
//! in memory, and a background task writes the latest use of each token in
//! one batch per interval (and once more at shutdown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::Store;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, i64>>,
}

impl UsageRecorder {
    /// Notes that the token was used at `at` (Unix seconds).
    pub fn touch(&self, token_id: &str, at: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(token_id) {
            Some(seen) => *seen = (*seen).max(at),
            None => {
                pending.insert(token_id.to_string(), at);
            }
        }
    }

    /// Writes every pending use in one transaction. On failure the uses are
    /// kept for the next attempt, so none is lost to a passing outage.
    pub async fn flush(&self, store: &dyn Store) -> crate::store::Result<usize> {
        let batch: Vec<(String, i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_agent_token_use(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(err) => {
                for (id, at) in batch {
                    self.touch(&id, at);
                }
                Err(err)
            }
        }
    }

    /// Flushes every `interval` until `stop` turns true, then flushes once
    /// more and returns. Never interrupted mid-flush, so no use is lost.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.wait_for(|stop| *stop) => true,
            };
            if let Err(err) = self.flush(store.as_ref()).await {
                tracing::warn!(error = %err, "could not record token use; will retry");
            }
            if stopping {
                return;
            }
        }
    }
}
