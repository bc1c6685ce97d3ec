//! The PostgreSQL store, for several replicas sharing one database: every
//! limit is enforced inside a transaction that locks what it counts.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{FromRow, PgPool};

use super::revocations::{self, Revocation, RevocationSink};
use super::rows::*;
use super::sessions::{SessionCutoffs, Sessions};
use super::{AuditQuery, Page, PageRequest, Result, Store, StoreError};
use crate::model::ConsoleSession;
use crate::model::{
    AgentCredential, AgentToken, AuditEvent, Deployment, NewAgentToken, Organization,
    RootCredential, Rotation, Workspace,
};
use crate::model::{ApiCredential, ApiToken, ApiTokenChange, NewApiToken};
use crate::store::ApiTokenFilter;
use crate::token::Digest;

/// Publishes a revocation to the other replicas. Called inside the
/// transaction that makes it: PostgreSQL delivers the notification when,
/// and only if, that transaction commits.
async fn announce(tx: &mut sqlx::PgConnection, revocation: Revocation) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(revocations::CHANNEL)
        .bind(revocation.payload())
        .execute(tx)
        .await?;
    Ok(())
}

/// Appends `event` to the audit trail, inside the caller's transaction.
async fn record(tx: &mut sqlx::PgConnection, event: &AuditEvent) -> Result<()> {
    let sql = format!("INSERT INTO audit_events ({AUDIT_EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
    sqlx::query(&sql)
        .bind(&event.id)
        .bind(&event.organization_id)
        .bind(event.occurred_at)
        .bind(&event.actor.id)
        .bind(event.actor.subject_type.as_str())
        .bind(&event.actor.api_token_name)
        .bind(&event.action)
        .bind(&event.target_type)
        .bind(&event.target_id)
        .bind(&event.request_id)
        .bind(&event.source_ip)
        .execute(tx)
        .await?;
    Ok(())
}
mod api_tokens;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per replica. Several replicas share the server's
/// `max_connections` (100 by default), so this stays modest.
const MAX_CONNECTIONS: u32 = 10;
/// How long a request waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
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
        Ok(PostgresStore { pool })
    }

    /// One page of `SELECT columns FROM table WHERE filter`. `filter` uses
    /// `$1..$n` for `args`. The count and the rows are read from one
    /// snapshot (REPEATABLE READ), so both describe the same state.
    async fn page<T, R>(
        &self,
        columns: &str,
        table: &str,
        filter: &str,
        args: &[&str],
        page: &PageRequest,
    ) -> Result<Page<T>>
    where
        R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
        T: From<R>,
    {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM {table} WHERE {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for arg in args {
            count = count.bind(*arg);
        }
        let total = count.fetch_one(&mut *tx).await?;
        let n = args.len();
        let list_sql = format!(
            "SELECT {columns} FROM {table} WHERE {filter} ORDER BY {} LIMIT ${} OFFSET ${}",
            page.order_by(),
            n + 1,
            n + 2
        );
        let mut list = sqlx::query_as::<_, R>(&list_sql);
        for arg in args {
            list = list.bind(*arg);
        }
        let rows = list
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Page {
            items: rows.into_iter().map(T::from).collect(),
            total,
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_organization(&self, org: &Organization, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&org.id)
        .bind(&org.name)
        .bind(org.created_at)
        .bind(org.updated_at)
        .execute(&mut *tx)
        .await?;
        record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>> {
        self.page::<_, OrganizationRow>(ORGANIZATION_COLUMNS, "organizations", "TRUE", &[], page)
            .await
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>> {
        let sql = format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = $1");
        let row = sqlx::query_as::<_, OrganizationRow>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn create_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO workspaces (id, organization_id, name, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&ws.id)
        .bind(&ws.organization_id)
        .bind(&ws.name)
        .bind(&ws.description)
        .bind(ws.created_at)
        .bind(ws.updated_at)
        .execute(&mut *tx)
        .await?;
        record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_workspaces(&self, org: &str, page: &PageRequest) -> Result<Page<Workspace>> {
        self.page::<_, WorkspaceRow>(
            WORKSPACE_COLUMNS,
            "workspaces",
            "organization_id = $1",
            &[org],
            page,
        )
        .await
    }

    async fn get_workspace(&self, org: &str, id: &str) -> Result<Option<Workspace>> {
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE organization_id = $1 AND id = $2"
        );
        let row = sqlx::query_as::<_, WorkspaceRow>(&sql)
            .bind(org)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn create_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO deployments \
             (id, organization_id, workspace_id, name, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&dep.id)
        .bind(&dep.organization_id)
        .bind(&dep.workspace_id)
        .bind(&dep.name)
        .bind(&dep.description)
        .bind(dep.created_at)
        .bind(dep.updated_at)
        .execute(&mut *tx)
        .await?;
        record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_deployments(&self, org: &str, page: &PageRequest) -> Result<Page<Deployment>> {
        self.page::<_, DeploymentRow>(
            DEPLOYMENT_COLUMNS,
            "deployments",
            "organization_id = $1",
            &[org],
            page,
        )
        .await
    }

    async fn get_deployment(&self, org: &str, id: &str) -> Result<Option<Deployment>> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE organization_id = $1 AND id = $2"
        );
        let row = sqlx::query_as::<_, DeploymentRow>(&sql)
            .bind(org)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_deployment(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Vec<Digest>>> {
        let mut tx = self.pool.begin().await?;
        // Lock the row first: a concurrent create_agent_token (which locks it
        // too) then either commits before we collect the digests, or waits
        // and finds the deployment gone.
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM deployments WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            // Nothing to delete; the transaction is rolled back on drop.
            return Ok(None);
        }
        let digests: Vec<String> = sqlx::query_scalar(
            "DELETE FROM agent_tokens WHERE organization_id = $1 AND deployment_id = $2 \
             RETURNING secret_digest",
        )
        .bind(org)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // API tokens made for this deployment go with it, and roles that
        // other tokens held on it: none may outlive what it is about.
        sqlx::query(
            "DELETE FROM api_token_roles WHERE token_id IN (SELECT id FROM api_tokens \
             WHERE organization_id = $1 AND scope = 'DEPLOYMENT' AND entity_id = $2)",
        )
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM api_tokens \
             WHERE organization_id = $1 AND scope = 'DEPLOYMENT' AND entity_id = $2",
        )
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM api_token_roles WHERE entity_type = 'DEPLOYMENT' AND entity_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deployments WHERE organization_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        announce(&mut tx, Revocation::Deployment(id.to_string())).await?;
        record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(
            digests.iter().filter_map(|d| Digest::from_hex(d)).collect(),
        ))
    }

    async fn create_agent_token(
        &self,
        new: &NewAgentToken,
        limit: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let t = &new.token;
        let mut tx = self.pool.begin().await?;
        // Concurrent creates for one deployment, from any replica, queue on
        // this row lock; each then counts (in a fresh READ COMMITTED
        // snapshot) the tokens the ones before it committed.
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM deployments WHERE id = $1 AND organization_id = $2 FOR UPDATE",
        )
        .bind(&t.deployment_id)
        .bind(&t.organization_id)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            // No such deployment in this organization: nothing to count
            // against, so refuse rather than insert unlocked.
            return Err(StoreError::DeploymentNotFound);
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM agent_tokens WHERE deployment_id = $1")
                .bind(&t.deployment_id)
                .fetch_one(&mut *tx)
                .await?;
        if count >= limit {
            return Err(StoreError::AgentTokenLimit { limit });
        }
        sqlx::query(
            "INSERT INTO agent_tokens (id, organization_id, deployment_id, name, description, \
             short_token, secret_digest, role, expiry_period_in_days, start_at, end_at, \
             created_at, updated_at, created_by_id, created_by_type, created_by_name, \
             updated_by_id, updated_by_type, updated_by_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19)",
        )
        .bind(&t.id)
        .bind(&t.organization_id)
        .bind(&t.deployment_id)
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.short_token)
        .bind(new.secret_digest.to_hex())
        .bind(&t.role)
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
        .execute(&mut *tx)
        .await?;
        record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_agent_tokens(
        &self,
        org: &str,
        deployment: &str,
        page: &PageRequest,
    ) -> Result<Page<AgentToken>> {
        self.page::<_, AgentTokenRow>(
            AGENT_TOKEN_COLUMNS,
            "agent_tokens",
            "organization_id = $1 AND deployment_id = $2",
            &[org, deployment],
            page,
        )
        .await
    }

    async fn get_agent_token(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
    ) -> Result<Option<AgentToken>> {
        let sql = format!(
            "SELECT {AGENT_TOKEN_COLUMNS} FROM agent_tokens \
             WHERE organization_id = $1 AND deployment_id = $2 AND id = $3"
        );
        let row = sqlx::query_as::<_, AgentTokenRow>(&sql)
            .bind(org)
            .bind(deployment)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_agent_token(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Digest>> {
        let mut tx = self.pool.begin().await?;
        let digest: Option<String> = sqlx::query_scalar(
            "DELETE FROM agent_tokens \
             WHERE organization_id = $1 AND deployment_id = $2 AND id = $3 \
             RETURNING secret_digest",
        )
        .bind(org)
        .bind(deployment)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if digest.is_some() {
            announce(&mut tx, Revocation::Token(id.to_string())).await?;
            record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(digest.and_then(|d| Digest::from_hex(&d)))
    }

    async fn rotate_agent_token(
        &self,
        rotation: &Rotation,
        audit: &AuditEvent,
    ) -> Result<Option<AgentToken>> {
        // One statement, so it is atomic; SET expressions read the row as it
        // was, so previous_digest takes the secret being replaced.
        let sql = format!(
            "UPDATE agent_tokens SET \
             previous_digest = CASE WHEN $1 IS NULL THEN NULL ELSE secret_digest END, \
             previous_issued_at = CASE WHEN $2 IS NULL THEN NULL \
             ELSE COALESCE(last_rotated_at, start_at) END, \
             previous_valid_until = $2, secret_digest = $3, short_token = $4, \
             last_rotated_at = $5, updated_at = $6, updated_by_id = $7, \
             updated_by_type = $8, updated_by_name = $9 \
             WHERE organization_id = $10 AND deployment_id = $11 AND id = $12 \
             RETURNING {AGENT_TOKEN_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, AgentTokenRow>(&sql)
            .bind(rotation.previous_valid_until)
            .bind(rotation.previous_valid_until)
            .bind(rotation.secret_digest.to_hex())
            .bind(&rotation.short_token)
            .bind(rotation.at)
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
            announce(&mut tx, Revocation::Token(rotation.token_id.clone())).await?;
            record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(row.map(Into::into))
    }

    async fn find_agent_credential(&self, digest: &Digest) -> Result<Option<AgentCredential>> {
        let sql = format!(
            "SELECT {AGENT_CREDENTIAL_COLUMNS} FROM agent_tokens \
             WHERE secret_digest = $1 OR previous_digest = $2"
        );
        let hex = digest.to_hex();
        let row = sqlx::query_as::<_, AgentCredentialRow>(&sql)
            .bind(&hex)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|row| row.into_credential(digest)))
    }

    async fn record_agent_token_use(&self, uses: &[(String, i64)]) -> Result<()> {
        // The latest use of each token, in id order: replicas flushing
        // overlapping batches then lock rows in the same order and cannot
        // deadlock.
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, at) in uses {
            let seen = latest.entry(id.as_str()).or_insert(*at);
            *seen = (*seen).max(*at);
        }
        let mut tx = self.pool.begin().await?;
        for (id, at) in latest {
            sqlx::query(
                "UPDATE agent_tokens SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $1) \
                 WHERE id = $2",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn root_credential(&self) -> Result<Option<RootCredential>> {
        let row = sqlx::query_as::<_, RootCredentialRow>(
            "SELECT id, secret_digest, created_at FROM root_credential WHERE singleton = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(RootCredentialRow::into_credential))
    }

    async fn insert_root_credential_if_absent(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO root_credential (singleton, id, secret_digest, created_at) \
             VALUES (1, $1, $2, $3) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&cred.id)
        .bind(cred.secret_digest.to_hex())
        .bind(cred.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(inserted == 1)
    }

    async fn count_agent_tokens(&self, now: i64) -> Result<(i64, i64)> {
        let (active, expired): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN end_at IS NULL OR end_at > $1 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN end_at IS NULL OR end_at > $1 THEN 0 ELSE 1 END), 0) \
             FROM agent_tokens",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok((active, expired))
    }

    fn pool_status(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    async fn list_audit_events(
        &self,
        org: &str,
        window: &AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        // The bounds are integers this process parsed, never caller text.
        let from = window.from.unwrap_or(i64::MIN);
        let until = window.until.unwrap_or(i64::MAX);
        let mut filter =
            format!("organization_id = $1 AND created_at >= {from} AND created_at < {until}");
        let mut args = vec![org];
        if let Some(action) = &window.action {
            filter.push_str(" AND action = $2");
            args.push(action);
        }
        self.page::<_, AuditEventRow>(AUDIT_EVENT_COLUMNS, "audit_events", &filter, &args, page)
            .await
    }

    fn follow_revocations(
        &self,
        sink: Arc<dyn RevocationSink>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        // Nothing cached may be trusted until the listener is up.
        sink.following(false);
        Some(tokio::spawn(revocations::follow(
            self.pool.clone(),
            sink,
            stop,
        )))
    }

    async fn replace_root_credential(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO root_credential (singleton, id, secret_digest, created_at) \
             VALUES (1, $1, $2, $3) ON CONFLICT (singleton) DO UPDATE SET \
             id = excluded.id, secret_digest = excluded.secret_digest, \
             created_at = excluded.created_at",
        )
        .bind(&cred.id)
        .bind(cred.secret_digest.to_hex())
        .bind(cred.created_at)
        .execute(&mut *tx)
        .await?;
        record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api_token(&self, new: &NewApiToken, audit: &AuditEvent) -> Result<()> {
        api_tokens::create(&self.pool, new, audit).await
    }

    async fn list_api_tokens(
        &self,
        org: &str,
        filter: &ApiTokenFilter,
        page: &PageRequest,
    ) -> Result<Page<ApiToken>> {
        api_tokens::list(&self.pool, org, filter, page).await
    }

    async fn get_api_token(&self, org: &str, id: &str) -> Result<Option<ApiToken>> {
        api_tokens::get(&self.pool, org, id).await
    }

    async fn update_api_token(
        &self,
        change: &ApiTokenChange,
        audit: &AuditEvent,
    ) -> Result<Option<ApiToken>> {
        api_tokens::update(&self.pool, change, audit).await
    }

    async fn delete_api_token(&self, org: &str, id: &str, audit: &AuditEvent) -> Result<bool> {
        api_tokens::delete(&self.pool, org, id, audit).await
    }

    async fn find_api_credential(&self, digest: &Digest) -> Result<Option<ApiCredential>> {
        api_tokens::find_credential(&self.pool, digest).await
    }

    async fn create_console_session(
        &self,
        session: &ConsoleSession,
        cutoffs: SessionCutoffs,
    ) -> Result<()> {
        Sessions(&self.pool).create(session, cutoffs).await
    }

    async fn find_console_session(&self, id: &Digest) -> Result<Option<ConsoleSession>> {
        Sessions(&self.pool).find(id).await
    }

    async fn touch_console_session(&self, id: &Digest, at: i64) -> Result<()> {
        Sessions(&self.pool).touch(id, at).await
    }

    async fn delete_console_session(&self, id: &Digest) -> Result<()> {
        Sessions(&self.pool).delete(id).await
    }

    async fn use_console_nonce(&self, session: &Digest, nonce: &Digest, at: i64) -> Result<bool> {
        Sessions(&self.pool).use_nonce(session, nonce, at).await
    }
}
