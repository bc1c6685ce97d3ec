//! Console sessions and their one-time form nonces. The statements are the
//! same on both backends (`$N` placeholders work on SQLite too), so their
//! text lives here once; each backend binds and runs them.

use sqlx::FromRow;

use super::Result;
use crate::model::{ConsoleSession, SessionCredential};
use crate::token::Digest;

pub const INSERT: &str = "INSERT INTO console_sessions \
    (id_digest, credential_kind, credential_digest, created_at, last_seen_at) \
    VALUES ($1, $2, $3, $4, $5)";

pub const SELECT: &str = "SELECT id_digest, credential_kind, credential_digest, created_at, \
    last_seen_at FROM console_sessions WHERE id_digest = $1";

/// Moves `last_seen_at` forward, never back.
pub const TOUCH: &str =
    "UPDATE console_sessions SET last_seen_at = $2 WHERE id_digest = $1 AND last_seen_at < $2";

pub const DELETE: &str = "DELETE FROM console_sessions WHERE id_digest = $1";
pub const DELETE_NONCES: &str = "DELETE FROM console_form_nonces WHERE session_digest = $1";

/// Sessions past their absolute lifetime or idle timeout.
pub const PRUNE: &str = "DELETE FROM console_sessions WHERE created_at <= $1 OR last_seen_at <= $2";
/// Nonces used before the oldest moment a live session can have started.
pub const PRUNE_NONCES: &str = "DELETE FROM console_form_nonces WHERE used_at <= $1";

/// Records a nonce as used; returns no row if it was used before.
pub const USE_NONCE: &str = "INSERT INTO console_form_nonces (session_digest, nonce_digest, \
    used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING used_at";

/// A session created at or before `created_before`, or last seen at or
/// before `seen_before`, has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCutoffs {
    pub created_before: i64,
    pub seen_before: i64,
}

#[derive(FromRow)]
pub struct SessionRow {
    id_digest: String,
    credential_kind: String,
    credential_digest: String,
    created_at: i64,
    last_seen_at: i64,
}

impl SessionRow {
    /// `None` for a row this version cannot read (it then ends the session).
    pub fn into_session(self) -> Option<ConsoleSession> {
        Some(ConsoleSession {
            id_digest: Digest::from_hex(&self.id_digest)?,
            credential: SessionCredential::parse(&self.credential_kind)?,
            credential_digest: Digest::from_hex(&self.credential_digest)?,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
        })
    }
}

/// The session statements run on one backend's pool. sqlx's bounds for
/// binding text and integers and reading a [`SessionRow`] are spelled once,
/// on the `impl` below, for SQLite and PostgreSQL alike.
pub struct Sessions<'a, DB: sqlx::Database>(pub &'a sqlx::Pool<DB>);

impl<DB: sqlx::Database> Sessions<'_, DB>
where
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> SessionRow: FromRow<'r, <DB as sqlx::Database>::Row>,
    for<'r> (i64,): FromRow<'r, <DB as sqlx::Database>::Row>,
{
    /// Stores a new session, first removing those that have ended.
    pub async fn create(&self, session: &ConsoleSession, cutoffs: SessionCutoffs) -> Result<()> {
        let mut tx = self.0.begin().await?;
        sqlx::query(PRUNE)
            .bind(cutoffs.created_before)
            .bind(cutoffs.seen_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(PRUNE_NONCES)
            .bind(cutoffs.created_before)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT)
            .bind(session.id_digest.to_hex())
            .bind(session.credential.as_str())
            .bind(session.credential_digest.to_hex())
            .bind(session.created_at)
            .bind(session.last_seen_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find(&self, id: &Digest) -> Result<Option<ConsoleSession>> {
        let row = sqlx::query_as::<_, SessionRow>(SELECT)
            .bind(id.to_hex())
            .fetch_optional(self.0)
            .await?;
        Ok(row.and_then(SessionRow::into_session))
    }

    pub async fn touch(&self, id: &Digest, at: i64) -> Result<()> {
        sqlx::query(TOUCH)
            .bind(id.to_hex())
            .bind(at)
            .execute(self.0)
            .await?;
        Ok(())
    }

    /// Ends the session and forgets its nonces, in one transaction.
    pub async fn delete(&self, id: &Digest) -> Result<()> {
        let mut tx = self.0.begin().await?;
        sqlx::query(DELETE_NONCES)
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        sqlx::query(DELETE)
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether this was the nonce's first use (it is recorded as used).
    pub async fn use_nonce(&self, session: &Digest, nonce: &Digest, at: i64) -> Result<bool> {
        let inserted = sqlx::query_scalar::<_, i64>(USE_NONCE)
            .bind(session.to_hex())
            .bind(nonce.to_hex())
            .bind(at)
            .fetch_optional(self.0)
            .await?;
        Ok(inserted.is_some())
    }
}
