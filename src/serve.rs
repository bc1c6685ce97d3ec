//! `agentkey serve`: open the store, make sure a root credential exists,
//! serve HTTP until SIGINT/SIGTERM, then finish in-flight requests and flush
//! pending `lastUsedAt` writes before exiting.

use std::sync::Arc;

use anyhow::Context;

use crate::app::AppState;
use crate::bootstrap::{
    announce_root_secret, generate_root, open, root_file_holds, root_file_path, write_root_file,
    Generated,
};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::redact_url;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let open_files = crate::transport::raise_open_file_limit();
    let limits = crate::transport::Limits {
        max_connections: crate::transport::effective_max_connections(
            config.transport.max_connections,
            open_files,
        ),
        ..config.transport
    };
    let store = open(&config.database_url).await?;
    tracing::info!(database = %redact_url(&config.database_url), "database ready");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    match config.root_token_digest() {
        Some(_) => tracing::info!("root credential: AGENTKEY_ROOT_TOKEN"),
        None => {
            // Shown first, stored second: a crash in between leaves no root
            // credential, and the next start makes another. A secret never
            // goes into a log stream: with stderr not a terminal (a pipe,
            // a file, a log collector) it goes to an owner-only file.
            let to_file = (!std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .then(|| root_file_path(&config.database_url));
            let generated = generate_root(store.as_ref(), clock.now(), |secret| {
                match &to_file {
                    None => announce_root_secret(secret, "Generated the root credential"),
                    Some(path) => {
                        write_root_file(path, secret).with_context(|| {
                            format!(
                                "cannot write the generated root credential to {}",
                                path.display()
                            )
                        })?;
                        tracing::warn!(
                            path = %path.display(),
                            "generated the root credential and wrote it to this file \
                             (mode 0600, owner only) because stderr is not a terminal; \
                             read it (`cat {0}`), keep it safe, then delete the file \
                             (`rm {0}`); it is not shown again",
                            path.display()
                        );
                    }
                }
                Ok::<(), anyhow::Error>(())
            })
            .await
            .context(
                "no root credential was stored (one shown or written above, if any, \
                 does not work)",
            )?;
            match generated {
                Generated::Existing => {
                    tracing::info!("root credential: the one stored in the database")
                }
                Generated::Stored(_) => tracing::info!("root credential: generated and stored"),
                Generated::Lost(secret) => match &to_file {
                    None => eprintln!(
                        "The credential printed above was NOT stored and does not work: another \
                         process stored its own first. Use the one that process printed.\n"
                    ),
                    Some(path) => {
                        // Remove only our own void credential, never the
                        // one the other process wrote.
                        let removed =
                            root_file_holds(path, &secret) && std::fs::remove_file(path).is_ok();
                        tracing::warn!(
                            path = %path.display(),
                            removed,
                            "the root credential this process wrote was NOT stored: another \
                             process stored its own first; use the one that process showed or \
                             wrote (if it wrote to this same file, it was overwritten: run \
                             `agentkey root-token --rotate`)"
                        );
                    }
                },
            }
        }
    }

    let state = AppState::new(
        store.clone(),
        clock,
        config.settings.clone(),
        config.root_token_digest(),
    );
    // Everything that can fail at start happens before anything is served:
    // both listeners are bound and the signal handlers installed first.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(metrics_addr) => Some(
            tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("cannot listen on {metrics_addr} for metrics"))?,
        ),
        None => None,
    };
    let signal = shutdown_signal().context("cannot install signal handlers")?;

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
    // Webhooks (when AGENTKEY_WEBHOOK_KEY is set): the delivery worker, the
    // expiry scan and the retention sweep, stopped with the server.
    let mut background = Vec::new();
    let webhooks = &config.settings.webhooks;
    if let Some(worker) = crate::webhooks::worker::Worker::new(
        store.clone(),
        webhooks.clone(),
        state.metrics.clone(),
        state.clock.clone(),
    ) {
        background.push(tokio::spawn(worker.run(stopped.clone())));
        background.push(tokio::spawn(crate::webhooks::expiry::run(
            store.clone(),
            state.clock.clone(),
            webhooks.expiry_thresholds.clone(),
            webhooks.expiry_scan_interval,
            stopped.clone(),
        )));
        let sweeper = crate::webhooks::retention::Sweeper {
            store: store.clone(),
            clock: state.clock.clone(),
            metrics: state.metrics.clone(),
            retention: webhooks.retention,
            batch: crate::webhooks::retention::BATCH,
        };
        background.push(tokio::spawn(sweeper.run(
            crate::webhooks::retention::FIRST_SWEEP_AFTER,
            crate::webhooks::retention::SWEEP_INTERVAL,
            stopped.clone(),
        )));
        tracing::info!(
            allow_private = webhooks.allow_private,
            retention_days = webhooks.retention.as_secs() / 86_400,
            "webhooks on: delivering events, scanning for expiring tokens, pruning old deliveries"
        );
    }
    let serve_until_stopped = |listener, app: crate::http::front::Front| {
        tokio::spawn(crate::transport::serve(
            listener,
            app,
            limits,
            state.metrics.clone(),
            stopped.clone(),
        ))
    };
    let mut server = serve_until_stopped(listener, state.router());
    tracing::info!(
        %addr,
        max_connections = limits.max_connections,
        header_read_timeout_s = limits.header_read_timeout.as_secs(),
        body_timeout_s = limits.body_timeout.as_secs(),
        idle_timeout_s = limits.idle_timeout.as_secs(),
        "listening"
    );
    let metrics_server = match metrics_listener {
        Some(listener) => {
            let metrics_addr = listener.local_addr()?;
            tracing::info!(addr = %metrics_addr, "serving /metrics");
            Some(serve_until_stopped(
                listener,
                crate::http::front::Front::router_only(crate::http::metrics::open_router(
                    state.clone(),
                )),
            ))
        }
        None => None,
    };

    let served = tokio::select! {
        result = &mut server => Some(result),
        () = signal => None,
    };
    let _ = stop.send(true);
    // From here on everything shares one deadline: a request, a database
    // call or a connection that does not finish by then is cut off.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
    let mut cut = false;
    let served = match served {
        Some(result) => result,
        None => match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(result) => result,
            Err(_) => {
                server.abort();
                cut = true;
                Ok(())
            }
        },
    };
    if let Some(mut metrics_server) = metrics_server {
        if tokio::time::timeout_at(deadline, &mut metrics_server)
            .await
            .is_err()
        {
            metrics_server.abort();
        }
    }
    // The flusher writes what is pending, then returns.
    let _ = stop_flusher.send(true);
    let finished = async {
        let _ = flusher.await;
        for task in background {
            let _ = task.await;
        }
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        store.close().await;
    };
    if tokio::time::timeout_at(deadline, finished).await.is_err() {
        cut = true;
    }
    if cut {
        anyhow::bail!(
            "stopped at the {}s shutdown deadline with work still running",
            SHUTDOWN_TIMEOUT.as_secs()
        );
    }
    tracing::info!("stopped");
    served.context("server task failed")
}

/// How long in-flight work may take to finish after SIGINT/SIGTERM.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
}
