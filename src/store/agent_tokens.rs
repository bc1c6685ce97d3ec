//! Agent tokens on either backend: the limit per deployment, rotation with
//! a grace window, verification's lookup and the `lastUsedAt` batches.

use std::collections::BTreeMap;

use sqlx::Pool;

use super::backend::Backend;
use super::db::Db;
use super::revocations::Revocation;
use super::rows::*;
use super::sql::*;
use super::webhooks::Webhooks;
use super::{Page, PageRequest, Result, StoreError};
use crate::model::{AgentCredential, AgentToken, AuditEvent, NewAgentToken, Rotation};
use crate::token::Digest;
use crate::webhooks::{Event, EventType, Snapshot};

/// The agent-token statements on one backend's pool; the bounds are those
/// of [`Db`].
pub struct AgentTokens<'a, DB: sqlx::Database>(pub &'a Pool<DB>);

impl<DB: Backend> AgentTokens<'_, DB>
where
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    for<'r> bool: sqlx::Decode<'r, DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> &'r str: sqlx::ColumnIndex<<DB as sqlx::Database>::Row>,
    usize: sqlx::ColumnIndex<<DB as sqlx::Database>::Row>,
{
    /// Inserts the token unless its deployment already holds `limit`. The
    /// insert counts in the same statement; where the backend locks the
    /// deployment's row first, concurrent creates for it from any process
    /// queue on that lock, and each counts what those before it committed.
    pub async fn create(&self, new: &NewAgentToken, limit: i64, audit: &AuditEvent) -> Result<()> {
        let t = &new.token;
        let mut tx = self.0.begin().await?;
        if !DB::lock_deployment(&mut tx, &t.organization_id, &t.deployment_id).await? {
            return Err(StoreError::DeploymentNotFound);
        }
        let inserted: Option<String> = sqlx::query_scalar(INSERT_AGENT_TOKEN_WITHIN_LIMIT)
            .bind(&t.id)
            .bind(&t.organization_id)
            .bind(&t.deployment_id)
            .bind(&t.name)
            .bind(&t.description)
            .bind(&t.short_token)
            .bind(new.secret_digest.to_hex())
            .bind(t.role.as_str())
            .bind(t.expiry_period_in_days)
            .bind(t.start_at)
            .bind(t.end_at)
            .bind(t.created_at)
            .bind(t.updated_at)
            .bind(&t.created_by.id)
            .bind(t.created_by.subject_type.as_str())
            .bind(&t.created_by.api_token_name)
            .bind(&t.updated_by.id)
            .bind(t.updated_by.subject_type.as_str())
            .bind(&t.updated_by.api_token_name)
            .bind(&t.deployment_id)
            .bind(&t.organization_id)
            .bind(limit)
            .bind(join_ranges(&t.allowed_ip_ranges))
            .fetch_optional(&mut *tx)
            .await?;
        if inserted.is_some() {
            Db::<DB>::record(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(());
        }
        drop(tx);
        // Nothing inserted: a full deployment, or none at all.
        match Db(self.0)
            .get_deployment(&t.organization_id, &t.deployment_id)
            .await?
        {
            Some(_) => Err(StoreError::AgentTokenLimit { limit }),
            None => Err(StoreError::DeploymentNotFound),
        }
    }

    pub async fn list(
        &self,
        org: &str,
        deployment: &str,
        page: &PageRequest,
    ) -> Result<Page<AgentToken>> {
        Db(self.0)
            .page::<AgentTokenRow, _, _>(
                AGENT_TOKEN_COLUMNS,
                "agent_tokens",
                |q| {
                    q.push("organization_id = ")
                        .push_bind(org)
                        .push(" AND deployment_id = ")
                        .push_bind(deployment);
                },
                page,
            )
            .await
    }

    pub async fn get(&self, org: &str, deployment: &str, id: &str) -> Result<Option<AgentToken>> {
        let row = sqlx::query_as::<_, AgentTokenRow>(GET_AGENT_TOKEN)
            .bind(org)
            .bind(deployment)
            .bind(id)
            .fetch_optional(self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    pub async fn delete(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Digest>> {
        // The first statement writes: on SQLite a transaction that read
        // first could not wait for the write lock (it would fail at once
        // when another writer holds it), so what the event says about the
        // token comes back from the delete itself.
        let mut tx = self.0.begin().await?;
        let deleted: Option<(String, String, String, Option<i64>)> =
            sqlx::query_as(DELETE_AGENT_TOKEN)
                .bind(org)
                .bind(deployment)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((digest, name, deployment_id, end_at)) = deleted else {
            return Ok(None);
        };
        DB::announce(&mut tx, Revocation::Token(id.to_string())).await?;
        let subject = Snapshot {
            kind: "AGENT_TOKEN".into(),
            id: id.to_string(),
            name: Some(name),
            parent_id: Some(deployment_id),
            end_at,
        };
        Db::<DB>::record_with(&mut tx, audit, Some(subject)).await?;
        tx.commit().await?;
        Ok(Digest::from_hex(&digest))
    }

    /// Rotation is one statement (`ROTATE_AGENT_TOKEN`), so it
    /// is atomic.
    pub async fn rotate(
        &self,
        rotation: &Rotation,
        audit: &AuditEvent,
    ) -> Result<Option<AgentToken>> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query_as::<_, AgentTokenRow>(ROTATE_AGENT_TOKEN)
            .bind(rotation.previous_valid_until)
            .bind(rotation.secret_digest.to_hex())
            .bind(&rotation.short_token)
            .bind(rotation.at)
            .bind(&rotation.actor.id)
            .bind(rotation.actor.subject_type.as_str())
            .bind(&rotation.actor.api_token_name)
            .bind(&rotation.organization_id)
            .bind(&rotation.deployment_id)
            .bind(&rotation.token_id)
            .fetch_optional(&mut *tx)
            .await?;
        if row.is_some() {
            DB::announce(&mut tx, Revocation::Token(rotation.token_id.clone())).await?;
            Db::<DB>::record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(row.map(Into::into))
    }

    pub async fn find_credential(&self, digest: &Digest) -> Result<Option<AgentCredential>> {
        let row = sqlx::query_as::<_, AgentCredentialRow>(FIND_AGENT_CREDENTIAL)
            .bind(digest.to_hex())
            .fetch_optional(self.0)
            .await?;
        Ok(row.and_then(|row| row.into_credential(digest)))
    }

    /// Raises each token's `last_used_at`, in one transaction. Only the
    /// latest use of each token is written, in token-id order: on
    /// PostgreSQL, replicas flushing overlapping batches then lock rows in
    /// the same order and cannot deadlock (SQLite has one writer at a time).
    pub async fn record_use(&self, uses: &[(String, i64)]) -> Result<()> {
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, at) in uses {
            let seen = latest.entry(id.as_str()).or_insert(*at);
            *seen = (*seen).max(*at);
        }
        let mut tx = self.0.begin().await?;
        for (id, at) in latest {
            // A first use sets lastUsedAt from nothing and reports
            // `agent_token.first_used`, in this same transaction.
            let first: Option<(String, String, String, Option<i64>)> =
                sqlx::query_as(RECORD_FIRST_AGENT_TOKEN_USE)
                    .bind(at)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((org, name, deployment, end_at)) = first {
                let subject = Snapshot {
                    kind: "AGENT_TOKEN".into(),
                    id: id.to_string(),
                    name: Some(name),
                    parent_id: Some(deployment),
                    end_at,
                };
                let event =
                    Event::observed(EventType::AgentTokenFirstUsed, &org, at, &subject, None);
                Webhooks::<DB>::emit(&mut tx, &event).await?;
                continue;
            }
            sqlx::query(RECORD_AGENT_TOKEN_USE)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn count(&self, now: i64) -> Result<(i64, i64)> {
        let (active, expired): (i64, i64) = sqlx::query_as(COUNT_AGENT_TOKENS)
            .bind(now)
            .fetch_one(self.0)
            .await?;
        Ok((active, expired))
    }
}
