//! `agentkey serve`: open the store, make sure a root credential exists,
//! serve HTTP until SIGINT/SIGTERM, then finish in-flight requests and flush
//! pending `lastUsedAt` writes before exiting.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::AppState;
use crate::bootstrap::{announce_root_secret, ensure_generated_root, open};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::redact_url;

pub async fn serve(config: Config) -> Result<(), String> {
    let store = open(&config.database_url).await?;
    tracing::info!(database = %redact_url(&config.database_url), "database ready");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    match config.root_token_digest() {
        Some(_) => tracing::info!("root credential: AGENTKEY_ROOT_TOKEN"),
        None => {
            let generated = ensure_generated_root(store.as_ref(), clock.now())
                .await
                .map_err(|e| format!("cannot store the root credential: {e}"))?;
            match generated {
                Some(secret) => announce_root_secret(&secret, "Generated the root credential"),
                None => tracing::info!("root credential: the one stored in the database"),
            }
        }
    }

    let state = AppState::new(
        store.clone(),
        clock,
        config.settings.clone(),
        config.root_token_digest(),
    );
    let flusher = tokio::spawn(
        state
            .usage
            .clone()
            .run(store.clone(), config.settings.last_used_flush_interval),
    );

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "listening");

    let app = state.router();
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;

    flusher.abort();
    if let Err(err) = state.usage.flush(store.as_ref()).await {
        tracing::warn!(error = %err, "could not record the last token uses at shutdown");
    }
    store.close().await;
    tracing::info!("stopped");
    served.map_err(|e| format!("server error: {e}"))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
