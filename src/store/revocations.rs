//! Revocations across processes sharing one database.
//!
//! A replica that deletes or rotates a token (or deletes a deployment) must
//! make every other replica stop accepting the old secret. On PostgreSQL the
//! store publishes each revocation with `pg_notify` inside the transaction
//! that makes it, so it is announced exactly when it commits; every replica
//! LISTENs and forgets the affected cache entries.
//!
//! A notification can only be missed while the listening connection is
//! down, so the follower proves the connection alive with a heartbeat: each
//! replica notifies the channel every second, over the listening
//! connection itself, and counts any notification as a sign of life. After [`SILENCE_LIMIT`] without one, or on any error,
//! it reports that it is no longer following (the cache then turns itself
//! off), reconnects, and reports following again once LISTEN is back.
//!
//! The listening connection is not one of the store's pool: each listen
//! gets a one-connection pool of its own. When a listener is given up, sqlx
//! sends `UNLISTEN *` on its connection before releasing it, with no
//! timeout; on a connection whose server went silent that waits until the
//! kernel gives up on the socket. Were the connection the store's, each
//! such loss would hold one of its slots meanwhile, and a few losses would
//! leave no connection for requests (issue 11, item 2). A lost listener now
//! costs one socket until the kernel closes it, and no pool slot.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgNotification, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

/// The PostgreSQL channel revocations travel on.
pub const CHANNEL: &str = "agentkey_revocations";
/// How often each replica sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long without any notification before the listener is presumed dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// How long connecting and subscribing may take before it is retried.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Something whose cached state a revocation invalidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// A token was deleted or rotated.
    Token(String),
    /// A deployment was deleted, and with it all its tokens.
    Deployment(String),
    /// An organization's allowlist of IP address ranges changed.
    AllowList(String),
}

impl Revocation {
    pub fn payload(&self) -> String {
        match self {
            Revocation::Token(id) => format!("token:{id}"),
            Revocation::Deployment(id) => format!("deployment:{id}"),
            Revocation::AllowList(id) => format!("allowlist:{id}"),
        }
    }

    pub fn parse(payload: &str) -> Option<Revocation> {
        match payload.split_once(':')? {
            ("token", id) => Some(Revocation::Token(id.to_string())),
            ("deployment", id) => Some(Revocation::Deployment(id.to_string())),
            ("allowlist", id) => Some(Revocation::AllowList(id.to_string())),
            _ => None,
        }
    }
}

/// Where revocations made by other processes are delivered.
pub trait RevocationSink: Send + Sync + 'static {
    fn revoked(&self, revocation: Revocation);
    /// Whether revocations are being received. While `false`, cached state
    /// cannot be trusted and must not be used.
    fn following(&self, live: bool);
}

/// Follows the channel until `stop` turns true, reconnecting as needed.
pub async fn follow(pool: PgPool, sink: Arc<dyn RevocationSink>, mut stop: watch::Receiver<bool>) {
    let heartbeat = format!("heartbeat:{}", crate::token::new_id());
    let mut backoff = Duration::from_millis(250);
    while !*stop.borrow() {
        let listening = tokio::time::timeout(LISTEN_TIMEOUT, listen(&pool)).await;
        let listening = listening.unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        match listening {
            Ok(mut listener) => {
                backoff = Duration::from_millis(250);
                sink.following(true);
                tracing::info!("following revocations from other replicas");
                let reason = pump(&mut listener, &*sink, &heartbeat, &mut stop).await;
                sink.following(false);
                match reason {
                    Some(reason) => {
                        tracing::warn!(%reason, "revocation listener lost; cache off until it is back")
                    }
                    None => return,
                }
            }
            Err(err) => {
                sink.following(false);
                tracing::warn!(error = %err, "cannot listen for revocations; cache off, retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A listener on a connection of its own, made with the store pool's
/// connection options (see the module comment for why not from the pool).
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(LISTEN_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await?;
    // A lost connection must be reported (and the cache turned off) before
    // anything reconnects, not papered over by a silent reconnect.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Delivers notifications until the connection fails (answers why) or
/// `stop` turns true (answers `None`).
async fn pump(
    listener: &mut PgListener,
    sink: &dyn RevocationSink,
    heartbeat: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    enum Event {
        Received(Result<Option<PgNotification>, sqlx::Error>),
        Tick,
        Stop,
    }
    let mut ticker = tokio::time::interval(HEARTBEAT);
    let mut last_heard = Instant::now();
    loop {
        // The select only borrows the listener while it waits; each event
        // is handled after, so the heartbeat can use the listener too.
        let event = tokio::select! {
            // `try_recv` is cancel-safe: sqlx reads whole messages only.
            received = listener.try_recv() => Event::Received(received),
            _ = ticker.tick() => Event::Tick,
            () = stopped(stop) => Event::Stop,
        };
        match event {
            Event::Received(Ok(Some(notification))) => {
                last_heard = Instant::now();
                if let Some(revocation) = Revocation::parse(notification.payload()) {
                    sink.revoked(revocation);
                }
            }
            Event::Received(Ok(None)) => return Some("connection closed".into()),
            Event::Received(Err(err)) => return Some(err.to_string()),
            Event::Tick => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return Some(format!("no notification for {SILENCE_LIMIT:?}"));
                }
                // Sent on the listening connection itself: it proves that
                // very connection, and does not queue behind a busy pool.
                let sent = tokio::time::timeout(HEARTBEAT, notify(listener, heartbeat)).await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return Some(err.to_string()),
                    // Leaves the connection mid-exchange: start afresh.
                    Err(_) => return Some("heartbeat timed out".into()),
                }
            }
            Event::Stop => return None,
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn notify(listener: &mut PgListener, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(listener)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for revocation in [
            Revocation::Token("c1".into()),
            Revocation::Deployment("c2".into()),
            Revocation::AllowList("c3".into()),
        ] {
            assert_eq!(Revocation::parse(&revocation.payload()), Some(revocation));
        }
        assert_eq!(Revocation::parse("heartbeat:cabc"), None);
        assert_eq!(Revocation::parse("nonsense"), None);
    }
}
