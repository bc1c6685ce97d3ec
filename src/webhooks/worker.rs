//! The delivery worker: a task `serve` starts and stops. Each round it
//! leases the due deliveries (one per subject and endpoint at a time, so a
//! token's events arrive in order), sends them at once, records every
//! attempt, and schedules a retry with backoff and jitter until the
//! delivery's retry window (24 hours by default) closes; then it is FAILED.
//! A worker that dies mid-delivery leaves its lease to run out; the next
//! claim (this replica's after a restart, or another's) sends it again:
//! at least once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use super::guard::{check_url, GuardedResolver};
use super::sign::{header, WebhookKey, DELIVERY_ID_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER};
use super::{backoff, now_ms, random_unit, Attempt, Claimed, DeliveryStatus, Outcome};
use crate::clock::Clock;
use crate::metrics::{Metrics, WebhookAttempt};
use crate::store::Store;
use crate::token::id::new_ordered_id;

/// The webhook settings (`AGENTKEY_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The root of every endpoint's signing secret; `None` turns webhooks
    /// off (endpoints cannot be created, nothing is delivered or scanned).
    pub key: Option<WebhookKey>,
    /// Whether endpoints may be loopback, private or link-local.
    pub allow_private: bool,
    /// How often the worker looks for due deliveries.
    pub poll_interval: Duration,
    /// How long a claimed delivery is the claimer's alone.
    pub lease: Duration,
    /// The first retry's delay; each later one doubles it.
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_max_interval: Duration,
    /// How long after its first attempt a delivery is retried.
    pub retry_for: Duration,
    /// The whole request's time limit (connect included).
    pub timeout: Duration,
    /// How much of a response is read at most.
    pub max_response_bytes: usize,
    /// Deliveries claimed per round.
    pub batch: i64,
    /// Days before `endAt` at which `.expiring` is sent.
    pub expiry_thresholds: Vec<i64>,
    /// How often the expiry scan runs.
    pub expiry_scan_interval: Duration,
    /// How long a delivery in a final state, and an event no delivery
    /// points to, is kept (see [`super::retention`]).
    pub retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            key: None,
            allow_private: false,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            retry_base: Duration::from_secs(30),
            retry_max_interval: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
            batch: 32,
            expiry_thresholds: vec![30, 7, 1],
            expiry_scan_interval: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Sends due deliveries until stopped.
pub struct Worker {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    key: WebhookKey,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// The application's clock: it writes the deliveries' `updated_at`
    /// (seconds), like every other `updated_at`, which the retention sweep
    /// compares with the same clock. The schedule (`due_ms`, leases) is in
    /// milliseconds of the wall clock.
    clock: Arc<dyn Clock>,
    /// This worker's lease owner id: random per process start.
    owner: String,
}

impl Worker {
    /// `None` when webhooks are off (no key).
    pub fn new(
        store: Arc<dyn Store>,
        settings: WebhookSettings,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Option<Worker> {
        let key = settings.key.clone()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // No HTTP(S)_PROXY from the environment: a proxy would connect
            // to addresses the guarded resolver never sees.
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: settings.allow_private,
            }))
            .user_agent(concat!("agentkey-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Worker {
            store,
            settings,
            key,
            client,
            metrics,
            clock,
            owner: new_ordered_id(),
        })
    }

    /// Claims and sends until `stop` turns true; a round in progress
    /// finishes first (its attempts are recorded).
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let worker = Arc::new(self);
        loop {
            let sent = match worker.round().await {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(error = %err, "webhook delivery round failed; will retry");
                    0
                }
            };
            if *stop.borrow() {
                return;
            }
            if sent == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(worker.settings.poll_interval) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
            }
        }
    }

    /// One round: claim, send all at once, record every attempt in one
    /// transaction (one commit per round, not per attempt: a crash before
    /// it only means those deliveries are sent again, which at-least-once
    /// allows). Answers how many it sent.
    pub async fn round(self: &Arc<Self>) -> crate::store::Result<usize> {
        let now = now_ms();
        let lease_until = now + self.settings.lease.as_millis() as i64;
        let claimed = self
            .store
            .claim_webhook_deliveries(&self.owner, now, lease_until, self.settings.batch)
            .await?;
        let count = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for delivery in claimed {
            let worker = self.clone();
            tasks.spawn(async move { worker.deliver(delivery).await });
        }
        let mut outcomes = Vec::with_capacity(count);
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(outcome) => outcomes.push(outcome),
                Err(err) => tracing::warn!(error = %err, "a webhook attempt did not finish"),
            }
        }
        if outcomes.is_empty() {
            return Ok(count);
        }
        let held = self
            .store
            .finish_webhook_deliveries(&self.owner, &outcomes, self.clock.now())
            .await?;
        for (outcome, held) in outcomes.iter().zip(held) {
            if !held {
                tracing::warn!(
                    delivery = %outcome.attempt.delivery_id,
                    "webhook lease ran out before the attempt was recorded; another worker may send it too"
                );
            }
        }
        Ok(count)
    }

    /// Sends one delivery and decides what comes next: done, a retry when,
    /// or given up.
    async fn deliver(&self, delivery: Claimed) -> Outcome {
        let started_ms = now_ms();
        let started = Instant::now();
        let (status_code, error) = self.send(&delivery).await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let succeeded = error.is_none();
        let attempt = Attempt {
            id: new_ordered_id(),
            delivery_id: delivery.id.clone(),
            attempted_at_ms: started_ms,
            latency_ms,
            status_code,
            succeeded,
            error,
        };
        let deadline = delivery
            .deadline_ms
            .unwrap_or(started_ms + self.settings.retry_for.as_millis() as i64);
        let outcome = if succeeded {
            Outcome {
                attempt,
                status: DeliveryStatus::Succeeded,
                due_ms: started_ms,
                deadline_ms: Some(deadline),
            }
        } else {
            let attempts = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
            let wait = backoff(
                self.settings.retry_base,
                self.settings.retry_max_interval,
                attempts,
                random_unit(),
            );
            let due = now_ms() + wait.as_millis() as i64;
            Outcome {
                attempt,
                status: if due > deadline {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Pending
                },
                due_ms: due,
                deadline_ms: Some(deadline),
            }
        };
        self.metrics.webhook_attempt(match outcome.status {
            DeliveryStatus::Succeeded => WebhookAttempt::Succeeded,
            DeliveryStatus::Pending => WebhookAttempt::Retrying,
            DeliveryStatus::Failed => WebhookAttempt::Failed,
        });
        outcome
    }

    /// Sends one delivery: the receiver's status and, on failure, why.
    async fn send(&self, delivery: &Claimed) -> (Option<i64>, Option<String>) {
        let url = match check_url(&delivery.url, self.settings.allow_private) {
            Ok(url) => url,
            Err(reason) => return (None, Some(format!("refused: the URL {reason}"))),
        };
        let secret = self
            .key
            .endpoint_secret(&delivery.endpoint_id, delivery.generation);
        let t = now_ms() / 1000;
        let body = delivery.payload.clone().into_bytes();
        let signature = header(secret.expose_secret(), t, &body);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &delivery.event_id)
            .header(DELIVERY_ID_HEADER, &delivery.id)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => return (None, Some(describe(err))),
        };
        let status = response.status();
        // Read at most the limit, then let the connection go.
        let mut read = 0usize;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    if read > self.settings.max_response_bytes {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let code = Some(i64::from(status.as_u16()));
        if status.is_success() {
            (code, None)
        } else {
            (code, Some(format!("the receiver answered {status}")))
        }
    }
}

/// A failed request, without its URL (which may hold a token of the
/// receiver's) and without anything the receiver sent.
fn describe(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_redirect() {
        "redirects are not followed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text.chars().take(500).collect()
}
