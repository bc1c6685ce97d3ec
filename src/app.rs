//! The application's shared state and its construction: one store, one
//! clock, one verifier, built once and handed to every handler.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheLimits, VerifyCache};
use crate::clock::Clock;
use crate::console::session::SessionSettings;
use crate::http::client_ip::TrustedProxies;
use crate::metrics::{Metrics, Snapshot};
use crate::store::revocations::{Revocation, RevocationSink};
use crate::store::Store;
use crate::throttle::{FailureLimiter, FailureLimits};
use crate::token::Digest;
use crate::usage::UsageRecorder;
use crate::verify::Verifier;

/// Limits and behaviour the handlers need, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_agent_tokens_per_deployment: i64,
    pub last_used_flush_interval: Duration,
    pub cache: CacheLimits,
    pub console: SessionSettings,
    /// Peers whose forwarded client address is believed.
    pub trusted_proxies: TrustedProxies,
    /// Per-client limits on failed credential checks.
    pub auth_failures: FailureLimits,
    /// Cache-miss credential reads at once, per lane (see `verify`).
    pub credential_reads: usize,
    /// Signed event webhooks and the expiry scan.
    pub webhooks: crate::webhooks::worker::WebhookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_agent_tokens_per_deployment: 50,
            last_used_flush_interval: Duration::from_secs(5),
            cache: CacheLimits::default(),
            console: SessionSettings::default(),
            trusted_proxies: TrustedProxies::default(),
            auth_failures: FailureLimits::default(),
            credential_reads: crate::verify::DEFAULT_CREDENTIAL_READS,
            webhooks: Default::default(),
        }
    }
}

/// Everything a handler needs, behind one `Arc`: axum clones the state for
/// every request, and one reference count is cheaper than five.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<Verifier>,
    pub usage: Arc<UsageRecorder>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Failed credential checks per client: `failed(ip)` after a refusal
    /// (answer 429 when it is `Err`), `check(ip)` to ask without counting.
    pub auth_failures: Arc<FailureLimiter>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// `configured_root` is the digest of `AGENTKEY_ROOT_TOKEN`, if set.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        configured_root: Option<Digest>,
    ) -> AppState {
        let usage = Arc::new(UsageRecorder::default());
        let cache = Arc::new(VerifyCache::new(settings.cache));
        let metrics = Arc::new(Metrics::new());
        let verifier = Arc::new(
            Verifier::new(
                store.clone(),
                clock.clone(),
                usage.clone(),
                cache,
                metrics.clone(),
                configured_root,
            )
            .with_credential_reads(settings.credential_reads),
        );
        let auth_failures = Arc::new(FailureLimiter::new(settings.auth_failures));
        AppState(Arc::new(Shared {
            store,
            clock,
            verifier,
            usage,
            metrics,
            settings,
            auth_failures,
        }))
    }

    /// The whole HTTP application (see `http::front`).
    pub fn router(&self) -> crate::http::front::Front {
        crate::http::router(self.clone(), crate::console::router(self.clone()))
    }

    /// Runs `change`, a write that revokes credentials, and then tells the
    /// verifier, in a task of its own: if the client goes away mid-request
    /// the handler is dropped, but a committed revocation must still reach
    /// the cache. `change` answers `None` when there was nothing to revoke.
    pub async fn revoking<T, F, Fut>(
        &self,
        revocation: Revocation,
        change: F,
    ) -> crate::store::Result<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = crate::store::Result<Option<T>>> + Send + 'static,
    {
        let done = change(self.store.clone());
        let verifier = self.verifier.clone();
        let task = tokio::spawn(async move {
            let result = done.await;
            if matches!(result, Ok(Some(_))) {
                verifier.revoked(revocation);
            }
            result
        });
        match task.await {
            Ok(result) => result,
            Err(failure) => std::panic::resume_unwind(failure.into_panic()),
        }
    }

    /// Every metric in Prometheus' text format, with the gauges read now.
    pub async fn render_metrics(&self) -> crate::store::Result<String> {
        let (active_tokens, expired_tokens) =
            self.store.count_agent_tokens(self.clock.now()).await?;
        let (pool_size, pool_idle) = self.store.pool_status();
        Ok(self.metrics.render(Snapshot {
            active_tokens,
            expired_tokens,
            pool_size,
            pool_idle,
            cache_entries: self.verifier.cache().len(),
            limited_clients: self.auth_failures.clients(),
            webhook_backlog: self.store.webhook_backlog().await?,
        }))
    }
}
