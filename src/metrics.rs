//! Prometheus metrics: one registry per process, rendered in the text
//! format at `/metrics`. Counters on the verification path are resolved
//! once, so counting costs an atomic increment; gauges that describe
//! stored state (tokens, pool) are read when scraped.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::verify::Refusal;

/// The outcome of one agent-token verification, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    Refused(Refusal),
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    verifications: [IntCounter; 5],
    cache_hit: IntCounter,
    cache_miss: IntCounter,
    cache_known_unknown: IntCounter,
    tokens: IntGaugeVec,
    pool: IntGaugeVec,
    cache_entries: IntGaugeVec,
    connections: IntGauge,
    connection_timeouts: IntCounterVec,
    abuse: AbuseMetrics,
    webhook_attempts: IntCounterVec,
    webhook_backlog: IntGaugeVec,
}

/// The counter and histogram of one (method, route, status), resolved once
/// and kept by the caller, so that counting a request needs no label lookup.
#[derive(Clone)]
pub struct RequestHandles {
    count: IntCounter,
    latency: Histogram,
}

impl RequestHandles {
    pub fn observe(&self, took: Duration) {
        self.count.inc();
        self.latency.observe(took.as_secs_f64());
    }
}

/// Counts an open connection down when dropped.
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What shows the limits against clients without a credential at work.
struct AbuseMetrics {
    /// Requests answered 429 for too many failed credential checks, by
    /// check: authorize, introspect, management.
    limited: [IntCounter; 3],
    /// Addresses the failure limiter tracks.
    limited_clients: IntGauge,
    /// Management credential lookups: miss (read), negative_hit.
    credential_lookups: [IntCounter; 2],
    /// Cache-miss store reads that waited for a turn, and that were shed.
    read_turns: [IntCounter; 2],
}

/// Which check a 429 for too many failures answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Authorize,
    Introspect,
    Management,
}

/// What a scrape reads from the store and the cache.
pub struct Snapshot {
    pub active_tokens: i64,
    pub expired_tokens: i64,
    pub pool_size: u32,
    pub pool_idle: usize,
    pub cache_entries: (usize, usize),
    /// Addresses the failure limiter tracks.
    pub limited_clients: usize,
    /// Webhook deliveries (pending, failed).
    pub webhook_backlog: (i64, i64),
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("agentkey".into()), None).expect("a valid metric prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to its answer, by route",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let verifications = IntCounterVec::new(
            Opts::new(
                "verifications_total",
                "Agent-token verifications (authorize and introspect), by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "cache_lookups_total",
                "Verification cache lookups: hit, miss (read from the store), negative_hit (known unknown)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let tokens = IntGaugeVec::new(
            Opts::new("agent_tokens", "Stored agent tokens, by state"),
            &["state"],
        )
        .expect("valid metric");
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections, by state"),
            &["state"],
        )
        .expect("valid metric");
        let cache_entries = IntGaugeVec::new(
            Opts::new("cache_entries", "Verification cache entries, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let connections =
            IntGauge::new("http_connections", "HTTP connections open now").expect("valid metric");
        let connection_timeouts = IntCounterVec::new(
            Opts::new(
                "http_connection_timeouts_total",
                "Connections closed at a deadline: header_read (a request head took too long) or idle (keep-alive)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let limited = IntCounterVec::new(
            Opts::new(
                "auth_failures_limited_total",
                "Requests answered 429 because their client failed too many credential checks, by check",
            ),
            &["check"],
        )
        .expect("valid metric");
        let limited_clients = IntGauge::new(
            "auth_failure_clients",
            "Client addresses the failed-credential limiter is tracking",
        )
        .expect("valid metric");
        let credential_lookups = IntCounterVec::new(
            Opts::new(
                "credential_lookups_total",
                "Management credential (API token, root) lookups: miss (read from the store), negative_hit (known unknown)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let read_turns = IntCounterVec::new(
            Opts::new(
                "credential_read_turns_total",
                "Cache-miss credential reads that had to wait for a turn (waited) and that waited too long and were answered 503 (shed)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(limited.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(limited_clients.clone()),
            Box::new(credential_lookups.clone()),
            Box::new(read_turns.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        let abuse = AbuseMetrics {
            limited: ["authorize", "introspect", "management"]
                .map(|check| limited.with_label_values(&[check])),
            limited_clients,
            credential_lookups: ["miss", "negative_hit"]
                .map(|result| credential_lookups.with_label_values(&[result])),
            read_turns: ["waited", "shed"].map(|result| read_turns.with_label_values(&[result])),
        };
        let webhook_attempts = IntCounterVec::new(
            Opts::new(
                "webhook_attempts_total",
                "Webhook delivery attempts by this process, by outcome: succeeded, retrying (failed, another attempt is scheduled), failed (failed, no more attempts)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let webhook_backlog = IntGaugeVec::new(
            Opts::new(
                "webhook_deliveries",
                "Webhook deliveries in the outbox, by state: pending (not yet delivered), failed (given up)",
            ),
            &["state"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(webhook_attempts.clone()),
            Box::new(webhook_backlog.clone()),
            Box::new(latency.clone()),
            Box::new(verifications.clone()),
            Box::new(cache.clone()),
            Box::new(tokens.clone()),
            Box::new(pool.clone()),
            Box::new(cache_entries.clone()),
            Box::new(connections.clone()),
            Box::new(connection_timeouts.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            verifications: ["valid", "expired", "revoked", "unknown", "malformed"]
                .map(|outcome| verifications.with_label_values(&[outcome])),
            cache_hit: cache.with_label_values(&["hit"]),
            cache_miss: cache.with_label_values(&["miss"]),
            cache_known_unknown: cache.with_label_values(&["negative_hit"]),
            registry,
            requests,
            latency,
            tokens,
            pool,
            cache_entries,
            connections,
            connection_timeouts,
            abuse,
            webhook_attempts,
            webhook_backlog,
        }
    }

    /// Counts a webhook attempt: `succeeded`, `retrying` or `failed`.
    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts.with_label_values(&[outcome]).inc();
    }

    /// The handles that count and time requests of one method, route and
    /// status (the method folded as in [`Metrics::request`]).
    pub fn request_handles(&self, method: &str, route: &str, status: u16) -> RequestHandles {
        let method = fold_method(method);
        let status = status.to_string();
        RequestHandles {
            count: self
                .requests
                .with_label_values(&[method, route, status.as_str()]),
            latency: self.latency.with_label_values(&[method, route]),
        }
    }

    /// Counts a connection as open until the answer is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// Counts a connection closed at a deadline (`header_read` or `idle`).
    pub fn connection_timed_out(&self, kind: &str) {
        self.connection_timeouts.with_label_values(&[kind]).inc();
    }

    /// Counts a 429 for too many failed credential checks.
    pub fn limited(&self, check: Check) {
        let i = match check {
            Check::Authorize => 0,
            Check::Introspect => 1,
            Check::Management => 2,
        };
        self.abuse.limited[i].inc();
    }

    /// A management credential read from the store.
    pub fn credential_lookup(&self) {
        self.abuse.credential_lookups[0].inc();
    }

    /// A management credential refused as known unknown, without a read.
    pub fn credential_known_unknown(&self) {
        self.abuse.credential_lookups[1].inc();
    }

    /// A cache-miss read that had to wait for its turn.
    pub fn credential_read_waited(&self) {
        self.abuse.read_turns[0].inc();
    }

    /// A cache-miss read that waited too long and was refused.
    pub fn credential_read_shed(&self) {
        self.abuse.read_turns[1].inc();
    }

    /// Counts and times one request. `method` is folded onto the standard
    /// methods (anything else is `OTHER`) so that no client can mint new
    /// series.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = fold_method(method);
        let status = status.to_string();
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// Counts a verification. A token replaced by a rotation whose grace
    /// window has ended counts as `revoked`; a deleted token cannot be told
    /// from one never issued, and counts as `unknown`.
    pub fn verification(&self, outcome: Outcome) {
        let i = match outcome {
            Outcome::Valid => 0,
            Outcome::Refused(Refusal::Expired) => 1,
            Outcome::Refused(Refusal::Superseded) => 2,
            Outcome::Refused(Refusal::Unknown) => 3,
            Outcome::Refused(Refusal::Malformed) => 4,
        };
        self.verifications[i].inc();
    }

    pub fn cache_hit(&self) {
        self.cache_hit.inc();
    }

    pub fn cache_miss(&self) {
        self.cache_miss.inc();
    }

    pub fn cache_known_unknown(&self) {
        self.cache_known_unknown.inc();
    }

    /// The text exposition of every metric, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        self.tokens
            .with_label_values(&["active"])
            .set(now.active_tokens);
        self.tokens
            .with_label_values(&["expired"])
            .set(now.expired_tokens);
        let in_use = i64::from(now.pool_size) - now.pool_idle as i64;
        self.pool
            .with_label_values(&["idle"])
            .set(now.pool_idle as i64);
        self.pool.with_label_values(&["in_use"]).set(in_use.max(0));
        self.cache_entries
            .with_label_values(&["positive"])
            .set(now.cache_entries.0 as i64);
        self.cache_entries
            .with_label_values(&["negative"])
            .set(now.cache_entries.1 as i64);
        self.abuse.limited_clients.set(now.limited_clients as i64);
        self.webhook_backlog
            .with_label_values(&["pending"])
            .set(now.webhook_backlog.0);
        self.webhook_backlog
            .with_label_values(&["failed"])
            .set(now.webhook_backlog.1);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// A method as a label: the standard ones, anything else `OTHER`.
fn fold_method(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
