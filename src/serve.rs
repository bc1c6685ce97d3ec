//! `agentkey serve`: open the store, make sure a root credential exists,
//! serve HTTP until SIGINT/SIGTERM, then finish in-flight requests and flush
//! pending `lastUsedAt` writes before exiting.

use std::future::IntoFuture;
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The flusher stops only after the server has finished its last
    // request, so that request's use is in its final write.
    let (stop_flusher, flusher_stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(state.usage.clone().run(
        store.clone(),
        config.settings.last_used_flush_interval,
        flusher_stopped,
    ));
    let follower = store.follow_revocations(state.verifier.clone(), stopped.clone());
    let mut graceful = stopped;
    let mut server = tokio::spawn(
        axum::serve(
            listener,
            state
                .router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = graceful.wait_for(|stop| *stop).await;
        })
        .into_future(),
    );
    tracing::info!(%addr, "listening");
    let metrics_server = match config.metrics_listen {
        Some(metrics_addr) => {
            let listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .map_err(|e| format!("cannot listen on {metrics_addr} for metrics: {e}"))?;
            let metrics_addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(addr = %metrics_addr, "serving /metrics");
            let mut graceful = stop.subscribe();
            Some(tokio::spawn(
                axum::serve(listener, crate::http::metrics::open_router(state.clone()))
                    .with_graceful_shutdown(async move {
                        let _ = graceful.wait_for(|stop| *stop).await;
                    })
                    .into_future(),
            ))
        }
        None => None,
    };

    let served = tokio::select! {
        result = &mut server => Some(result),
        () = shutdown_signal() => None,
    };
    let _ = stop.send(true);
    let served = match served {
        Some(result) => result,
        None => match tokio::time::timeout(SHUTDOWN_TIMEOUT, server).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_seconds = SHUTDOWN_TIMEOUT.as_secs(),
                    "requests still running at the shutdown deadline; exiting anyway"
                );
                Ok(Ok(()))
            }
        },
    };
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    // The flusher writes what is pending, then returns.
    let _ = stop_flusher.send(true);
    let _ = flusher.await;
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    store.close().await;
    tracing::info!("stopped");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("server error: {err}")),
        Err(err) => Err(format!("server task failed: {err}")),
    }
}

/// How long in-flight requests may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
