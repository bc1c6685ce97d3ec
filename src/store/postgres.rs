//! The PostgreSQL store, for several replicas sharing one database. Its
//! statements are the shared ones (`sql.rs`, run by `backend.rs`); what is
//! PostgreSQL's own: reads of one state in a `REPEATABLE READ` snapshot,
//! the deployment row lock that the token limit and the deployment delete
//! take, `pg_notify` of revocations and the LISTEN follower, the pool and
//! the migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, FromRow, PgConnection, PgPool, Postgres, QueryBuilder};

use super::backend::{Backend, SqlStore};
use super::revocations::{self, Revocation, RevocationSink};
use super::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Locks the deployment's row for the rest of the transaction.
const LOCK_DEPLOYMENT: &str =
    "SELECT 1 FROM deployments WHERE organization_id = $1 AND id = $2 FOR UPDATE";
/// Locks the organization's row for the rest of the transaction.
const LOCK_ORGANIZATION: &str = "SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE";
/// Publishes a revocation to every replica's follower.
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

impl Backend for Postgres {
    /// The count and the page (a token and its roles) from one snapshot.
    const READ_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

    /// Replicas claiming at once skip each other's locked rows, and each
    /// row's lease is re-checked once its lock is taken.
    const CLAIM_DELIVERIES: &'static str =
        super::sql::claim_webhook_deliveries!(" FOR UPDATE OF d SKIP LOCKED");

    /// Replicas sweeping at once skip each other's locked rows (and rows a
    /// transaction still writing holds, such as an event a redelivery is
    /// pointing a new delivery at).
    const PRUNE_WEBHOOKS: [&'static str; 3] =
        super::sql::prune_webhooks!(" FOR UPDATE SKIP LOCKED");

    /// Concurrent writers to one deployment, from any replica, queue on its
    /// row; each statement after the lock (READ COMMITTED) sees what those
    /// before it committed.
    async fn lock_deployment(conn: &mut PgConnection, org: &str, id: &str) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar(LOCK_DEPLOYMENT)
            .bind(org)
            .bind(id)
            .fetch_optional(conn)
            .await?;
        Ok(found.is_some())
    }

    /// Concurrent changes to one organization's allowlist, from any
    /// replica, queue on its row.
    async fn lock_organization(conn: &mut PgConnection, org: &str) -> Result<()> {
        sqlx::query(LOCK_ORGANIZATION)
            .bind(org)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Called inside the transaction that makes the revocation: PostgreSQL
    /// delivers the notification when, and only if, that transaction
    /// commits.
    async fn announce(conn: &mut PgConnection, revocation: Revocation) -> Result<()> {
        sqlx::query(NOTIFY)
            .bind(revocations::CHANNEL)
            .bind(revocation.payload())
            .execute(conn)
            .await?;
        Ok(())
    }

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }

    async fn fetch_all<R>(
        conn: &mut PgConnection,
        mut query: QueryBuilder<'_, Postgres>,
    ) -> Result<Vec<R>>
    where
        R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(query.build_query_as::<R>().fetch_all(conn).await?)
    }

    fn follow_revocations(
        pool: &PgPool,
        sink: Arc<dyn RevocationSink>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        // Nothing cached may be trusted until the listener is up.
        sink.following(false);
        Some(tokio::spawn(revocations::follow(pool.clone(), sink, stop)))
    }
}

/// Connections per replica. Several replicas share the server's
/// `max_connections` (100 by default), so this stays modest.
const MAX_CONNECTIONS: u32 = 10;
/// How long a request waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store on a PostgreSQL database.
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to the database and applies every pending migration.
    ///
    /// Replicas starting at once against an empty database do not race:
    /// sqlx 0.8's `Migrator::run` (locking is on by default) takes the
    /// session-level `pg_advisory_lock` keyed on the database name before it
    /// reads `_sqlx_migrations`, and releases it after the last migration,
    /// so the second replica waits, then finds everything applied. Each
    /// migration runs in its own transaction.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let options = PgConnectOptions::from_str(url)?;
        // One direct connection first: the pool would retry a refused
        // connection until its acquire timeout and then say only "pool
        // timed out".
        match tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(err)) => return Err(unreachable(&options, err)),
            Err(_) => {
                return Err(StoreError::Open(format!(
                    "no answer from {} within {} s",
                    address(&options),
                    ACQUIRE_TIMEOUT.as_secs()
                )))
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        if let Err(err) = MIGRATOR.run(&pool).await {
            // A failed run returns without unlocking; closing the pool ends
            // the session and with it the advisory lock.
            pool.close().await;
            return Err(err.into());
        }
        Ok(SqlStore { pool })
    }
}

/// Where the options point: `HOST:PORT` (or the Unix socket's path).
fn address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// The first connection's failure, saying where when nothing answered;
/// what the server itself answered (bad password, no such database) stays
/// a database error with the server's words.
fn unreachable(options: &PgConnectOptions, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            StoreError::Open(format!("connection refused at {}", address(options)))
        }
        sqlx::Error::Io(io) => {
            StoreError::Open(format!("cannot connect to {}: {io}", address(options)))
        }
        other => StoreError::Database(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_host_and_port() {
        let options = PgConnectOptions::from_str("postgres://u:secret@127.0.0.1:6543/db").unwrap();
        assert_eq!(address(&options), "127.0.0.1:6543");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let message = unreachable(&options, sqlx::Error::Io(refused)).to_string();
        assert_eq!(message, "connection refused at 127.0.0.1:6543");
    }
}
