//! Prometheus metrics: one registry per process, rendered in the text
//! format at `/metrics`. Counters on the verification path are resolved
//! once, so counting costs an atomic increment; gauges that describe
//! stored state (tokens, pool) are read when scraped.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// An enum whose variants are the values of one metric label: each variant
/// and its label are written once, side by side, in a [`labels!`] list, which
/// makes the variant list (`ALL`) and the label (`as_str`) from it, so the
/// two cannot drift.
pub trait Label: Copy + 'static {
    /// Every variant, in declaration order.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    /// The variant's place in `ALL`.
    fn index(self) -> usize;
}

/// Declares a label enum: `Variant => "label"` per line.
macro_rules! labels {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl Label for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

labels! {
    /// The outcome of one agent-token verification, as counted. A token
    /// replaced by a rotation whose grace window has ended counts as
    /// `revoked`; a deleted token cannot be told from one never issued, and
    /// counts as `unknown`.
    pub enum Outcome {
        Valid => "valid",
        Expired => "expired",
        Revoked => "revoked",
        Unknown => "unknown",
        Malformed => "malformed",
        AddressNotAllowed => "address_not_allowed",
    }
}

labels! {
    /// A verification cache lookup.
    pub enum CacheLookup {
        Hit => "hit",
        Miss => "miss",
        NegativeHit => "negative_hit",
    }
}

labels! {
    /// Which check a 429 for too many failures answered.
    pub enum Check {
        Authorize => "authorize",
        Introspect => "introspect",
        Management => "management",
    }
}

labels! {
    /// A management credential lookup: read from the store, or refused as
    /// known unknown without a read.
    pub enum CredentialLookup {
        Miss => "miss",
        NegativeHit => "negative_hit",
    }
}

labels! {
    /// A cache-miss credential read that waited for its turn, or waited too
    /// long and was shed.
    pub enum ReadTurn {
        Waited => "waited",
        Shed => "shed",
    }
}

labels! {
    /// The deadline a connection was closed at.
    pub enum ConnectionTimeout {
        HeaderRead => "header_read",
        Idle => "idle",
    }
}

labels! {
    /// Stored agent tokens, by state.
    pub enum TokenState {
        Active => "active",
        Expired => "expired",
    }
}

labels! {
    /// Database pool connections, by state.
    pub enum PoolState {
        Idle => "idle",
        InUse => "in_use",
    }
}

labels! {
    /// How a webhook delivery attempt ended: delivered, failed with another
    /// attempt scheduled, or failed for good.
    pub enum WebhookAttempt {
        Succeeded => "succeeded",
        Retrying => "retrying",
        Failed => "failed",
    }
}

labels! {
    /// Webhook deliveries in the outbox, by state.
    pub enum DeliveryBacklog {
        Pending => "pending",
        Failed => "failed",
    }
}

labels! {
    /// A table the webhook retention sweep deletes from.
    pub enum PrunedTable {
        Events => "webhook_events",
        Deliveries => "webhook_deliveries",
        Attempts => "webhook_attempts",
    }
}

labels! {
    /// Verification cache entries, by kind.
    pub enum CacheEntryKind {
        Positive => "positive",
        Negative => "negative",
    }
}

/// One counter per value of the label `L`, resolved once, so counting is an
/// atomic increment and every value is exposed (at 0) from the start.
struct Counters<L> {
    by_label: Vec<IntCounter>,
    label: std::marker::PhantomData<L>,
}

impl<L: Label> Counters<L> {
    fn new(vec: &IntCounterVec) -> Counters<L> {
        Counters {
            by_label: L::ALL
                .iter()
                .map(|l| vec.with_label_values(&[l.as_str()]))
                .collect(),
            label: std::marker::PhantomData,
        }
    }

    fn inc(&self, label: L) {
        self.by_label[label.index()].inc();
    }

    fn add(&self, label: L, n: u64) {
        self.by_label[label.index()].inc_by(n);
    }
}

/// One gauge per value of the label `L`.
struct Gauges<L> {
    by_label: Vec<IntGauge>,
    label: std::marker::PhantomData<L>,
}

impl<L: Label> Gauges<L> {
    fn new(vec: &IntGaugeVec) -> Gauges<L> {
        Gauges {
            by_label: L::ALL
                .iter()
                .map(|l| vec.with_label_values(&[l.as_str()]))
                .collect(),
            label: std::marker::PhantomData,
        }
    }

    fn set(&self, label: L, value: i64) {
        self.by_label[label.index()].set(value);
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    verifications: Counters<Outcome>,
    cache: Counters<CacheLookup>,
    tokens: Gauges<TokenState>,
    pool: Gauges<PoolState>,
    cache_entries: Gauges<CacheEntryKind>,
    connections: IntGauge,
    connection_timeouts: Counters<ConnectionTimeout>,
    abuse: AbuseMetrics,
    webhook_attempts: Counters<WebhookAttempt>,
    webhook_backlog: Gauges<DeliveryBacklog>,
    webhook_pruned: Counters<PrunedTable>,
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
    /// Requests answered 429 for too many failed credential checks.
    limited: Counters<Check>,
    /// Addresses the failure limiter tracks.
    limited_clients: IntGauge,
    /// Management credential lookups.
    credential_lookups: Counters<CredentialLookup>,
    /// Cache-miss store reads that waited for a turn, and that were shed.
    read_turns: Counters<ReadTurn>,
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
            limited: Counters::new(&limited),
            limited_clients,
            credential_lookups: Counters::new(&credential_lookups),
            read_turns: Counters::new(&read_turns),
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
        let webhook_pruned = IntCounterVec::new(
            Opts::new(
                "webhook_pruned_total",
                "Webhook rows this process deleted once older than the retention period, by table",
            ),
            &["table"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(webhook_attempts.clone()),
            Box::new(webhook_backlog.clone()),
            Box::new(webhook_pruned.clone()),
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
            verifications: Counters::new(&verifications),
            cache: Counters::new(&cache),
            tokens: Gauges::new(&tokens),
            pool: Gauges::new(&pool),
            cache_entries: Gauges::new(&cache_entries),
            connection_timeouts: Counters::new(&connection_timeouts),
            registry,
            requests,
            latency,
            connections,
            abuse,
            webhook_attempts: Counters::new(&webhook_attempts),
            webhook_backlog: Gauges::new(&webhook_backlog),
            webhook_pruned: Counters::new(&webhook_pruned),
        }
    }

    /// Counts rows the webhook retention sweep deleted from `table`.
    pub fn webhook_pruned(&self, table: PrunedTable, rows: u64) {
        self.webhook_pruned.add(table, rows);
    }

    /// Counts a webhook delivery attempt by how it ended.
    pub fn webhook_attempt(&self, outcome: WebhookAttempt) {
        self.webhook_attempts.inc(outcome);
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

    /// Counts a connection closed at a deadline.
    pub fn connection_timed_out(&self, kind: ConnectionTimeout) {
        self.connection_timeouts.inc(kind);
    }

    /// Counts a 429 for too many failed credential checks.
    pub fn limited(&self, check: Check) {
        self.abuse.limited.inc(check);
    }

    /// A management credential read from the store.
    pub fn credential_lookup(&self) {
        self.abuse.credential_lookups.inc(CredentialLookup::Miss);
    }

    /// A management credential refused as known unknown, without a read.
    pub fn credential_known_unknown(&self) {
        self.abuse
            .credential_lookups
            .inc(CredentialLookup::NegativeHit);
    }

    /// A cache-miss read that had to wait for its turn.
    pub fn credential_read_waited(&self) {
        self.abuse.read_turns.inc(ReadTurn::Waited);
    }

    /// A cache-miss read that waited too long and was refused.
    pub fn credential_read_shed(&self) {
        self.abuse.read_turns.inc(ReadTurn::Shed);
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

    /// Counts a verification.
    pub fn verification(&self, outcome: Outcome) {
        self.verifications.inc(outcome);
    }

    pub fn cache_hit(&self) {
        self.cache.inc(CacheLookup::Hit);
    }

    pub fn cache_miss(&self) {
        self.cache.inc(CacheLookup::Miss);
    }

    pub fn cache_known_unknown(&self) {
        self.cache.inc(CacheLookup::NegativeHit);
    }

    /// The text exposition of every metric, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        self.tokens.set(TokenState::Active, now.active_tokens);
        self.tokens.set(TokenState::Expired, now.expired_tokens);
        let in_use = i64::from(now.pool_size) - now.pool_idle as i64;
        self.pool.set(PoolState::Idle, now.pool_idle as i64);
        self.pool.set(PoolState::InUse, in_use.max(0));
        self.cache_entries
            .set(CacheEntryKind::Positive, now.cache_entries.0 as i64);
        self.cache_entries
            .set(CacheEntryKind::Negative, now.cache_entries.1 as i64);
        self.abuse.limited_clients.set(now.limited_clients as i64);
        self.webhook_backlog
            .set(DeliveryBacklog::Pending, now.webhook_backlog.0);
        self.webhook_backlog
            .set(DeliveryBacklog::Failed, now.webhook_backlog.1);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant has exactly one label, its own, and sits at its index.
    fn labels_are_one_per_variant<L: Label + PartialEq + std::fmt::Debug>() {
        let mut seen = std::collections::HashSet::new();
        for (i, label) in L::ALL.iter().enumerate() {
            assert_eq!(label.index(), i, "{label:?} sits at its index");
            assert!(seen.insert(label.as_str()), "{label:?}: a label used twice");
            assert!(!label.as_str().is_empty());
        }
    }

    #[test]
    fn every_label_enum_maps_one_to_one() {
        labels_are_one_per_variant::<Outcome>();
        labels_are_one_per_variant::<CacheLookup>();
        labels_are_one_per_variant::<Check>();
        labels_are_one_per_variant::<CredentialLookup>();
        labels_are_one_per_variant::<ReadTurn>();
        labels_are_one_per_variant::<ConnectionTimeout>();
        labels_are_one_per_variant::<TokenState>();
        labels_are_one_per_variant::<PoolState>();
        labels_are_one_per_variant::<CacheEntryKind>();
        labels_are_one_per_variant::<WebhookAttempt>();
        labels_are_one_per_variant::<DeliveryBacklog>();
        labels_are_one_per_variant::<PrunedTable>();
    }

    /// The series `metric{label="value"}` for each value of `L`, as the
    /// text format writes it, with the value it shows.
    fn series<L: Label>(text: &str, metric: &str, label: &str) -> Vec<(String, f64)> {
        L::ALL
            .iter()
            .map(|l| {
                let name = format!("agentkey_{metric}{{{label}=\"{}\"}}", l.as_str());
                let value = text
                    .lines()
                    .find_map(|line| line.strip_prefix(name.as_str())?.strip_prefix(' '))
                    .unwrap_or_else(|| panic!("{name} is missing from\n{text}"))
                    .parse()
                    .expect("a number");
                (name, value)
            })
            .collect()
    }

    /// `/metrics` lists every value of every label from the first scrape
    /// (at 0), and a count lands on its own series and no other.
    #[test]
    fn the_exposition_lists_each_label_and_counts_land_on_theirs() {
        let metrics = Metrics::new();
        metrics.verification(Outcome::Revoked);
        metrics.cache_known_unknown();
        metrics.limited(Check::Introspect);
        metrics.credential_known_unknown();
        metrics.credential_read_shed();
        metrics.connection_timed_out(ConnectionTimeout::Idle);
        metrics.webhook_attempt(WebhookAttempt::Retrying);
        metrics.webhook_pruned(PrunedTable::Deliveries, 1);
        let text = metrics.render(Snapshot {
            active_tokens: 7,
            expired_tokens: 2,
            pool_size: 5,
            pool_idle: 3,
            cache_entries: (11, 13),
            limited_clients: 1,
            webhook_backlog: (17, 19),
        });
        let counted = |metric: &str, label: &str, all: Vec<(String, f64)>, one: &str| {
            for (name, value) in all {
                let want = if name.contains(&format!("\"{one}\"")) {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(value, want, "{name} ({metric} by {label})");
            }
        };
        let v = series::<Outcome>(&text, "verifications_total", "outcome");
        counted("verifications", "outcome", v, "revoked");
        let c = series::<CacheLookup>(&text, "cache_lookups_total", "result");
        counted("cache", "result", c, "negative_hit");
        let l = series::<Check>(&text, "auth_failures_limited_total", "check");
        counted("limited", "check", l, "introspect");
        let m = series::<CredentialLookup>(&text, "credential_lookups_total", "result");
        counted("credential lookups", "result", m, "negative_hit");
        let r = series::<ReadTurn>(&text, "credential_read_turns_total", "result");
        counted("read turns", "result", r, "shed");
        let t = series::<ConnectionTimeout>(&text, "http_connection_timeouts_total", "kind");
        counted("timeouts", "kind", t, "idle");
        let w = series::<WebhookAttempt>(&text, "webhook_attempts_total", "outcome");
        counted("webhook attempts", "outcome", w, "retrying");
        let p = series::<PrunedTable>(&text, "webhook_pruned_total", "table");
        counted("webhook rows pruned", "table", p, "webhook_deliveries");

        let gauges = |all: Vec<(String, f64)>| all.into_iter().map(|(_, v)| v).collect::<Vec<_>>();
        assert_eq!(
            gauges(series::<TokenState>(&text, "agent_tokens", "state")),
            [7.0, 2.0]
        );
        assert_eq!(
            gauges(series::<PoolState>(&text, "db_pool_connections", "state")),
            [3.0, 2.0]
        );
        assert_eq!(
            gauges(series::<CacheEntryKind>(&text, "cache_entries", "kind")),
            [11.0, 13.0]
        );
        assert_eq!(
            gauges(series::<DeliveryBacklog>(
                &text,
                "webhook_deliveries",
                "state"
            )),
            [17.0, 19.0]
        );
    }
}
