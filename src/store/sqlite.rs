//! The embedded SQLite store: one file, WAL journal, full fsync on commit.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{FromRow, SqlitePool};

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

/// Appends `event` to the audit trail, inside the caller's transaction.
async fn record(tx: &mut sqlx::SqliteConnection, event: &AuditEvent) -> Result<()> {
    let sql = format!(
        "INSERT INTO audit_events ({AUDIT_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How often opening is tried when another process is creating or
/// migrating the same new file at the same moment.
const OPEN_ATTEMPTS: u32 = 20;

/// Whether a failed open is another process's concurrent set-up of the same
/// file (SQLite busy or locked, or a migration that collided), worth
/// another try. sqlx's migration lock does nothing on SQLite, and switching
/// a new file to WAL needs a lock that the busy timeout does not wait for.
fn collided(err: &StoreError) -> bool {
    let busy = |err: &sqlx::Error| match err {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    };
    match err {
        StoreError::Database(err) => busy(err),
        // A table or column that another process created a moment ago is a
        // collision too; a checksum mismatch or bad SQL is not.
        StoreError::Migration(err) => {
            let text = err.to_string();
            [
                "already exists",
                "duplicate column",
                "database is locked",
                "(code: 5)",
                "(code: 6)",
            ]
            .iter()
            .any(|sign| text.contains(sign))
        }
        _ => false,
    }
}

/// Creates a missing database file empty and readable by its owner only.
/// SQLite would create it with the umask's mode (0644 as a rule), and gives
/// the `-wal` and `-shm` files the mode of the database file. Errors are
/// left to SQLite's own open, which reports them with the path.
fn create_private(path: &std::path::Path) {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" {
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = options.open(path);
}

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file (creating it if missing) and applies every
    /// pending migration.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let mut attempt = 1;
        loop {
            match SqliteStore::try_open(url).await {
                Err(err) if attempt < OPEN_ATTEMPTS && collided(&err) => {
                    tracing::debug!(error = %err, attempt, "opening collided; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_open(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?;
        create_private(options.get_filename());
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        if let Err(err) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(err.into());
        }
        Ok(SqliteStore { pool })
    }

    /// One page of `SELECT columns FROM table WHERE filter`, with the total
    /// count read in the same transaction so both describe the same state.
    async fn page<T, R>(
        &self,
        columns: &str,
        table: &str,
        filter: &str,
        args: &[&str],
        page: &PageRequest,
    ) -> Result<Page<T>>
    where
        R: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
        T: From<R>,
    {
        let mut tx = self.pool.begin().await?;
        let count_sql = format!("SELECT COUNT(*) FROM {table} WHERE {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for arg in args {
            count = count.bind(*arg);
        }
        let total = count.fetch_one(&mut *tx).await?;
        let list_sql = format!(
            "SELECT {columns} FROM {table} WHERE {filter} ORDER BY {} LIMIT ? OFFSET ?",
            page.order_by()
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
impl Store for SqliteStore {
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
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
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
        self.page::<_, OrganizationRow>(ORGANIZATION_COLUMNS, "organizations", "1 = 1", &[], page)
            .await
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>> {
        let sql = format!("SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = ?");
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
             VALUES (?, ?, ?, ?, ?, ?)",
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
            "organization_id = ?",
            &[org],
            page,
        )
        .await
    }

    async fn get_workspace(&self, org: &str, id: &str) -> Result<Option<Workspace>> {
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE organization_id = ? AND id = ?"
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
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            "organization_id = ?",
            &[org],
            page,
        )
        .await
    }

    async fn get_deployment(&self, org: &str, id: &str) -> Result<Option<Deployment>> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE organization_id = ? AND id = ?"
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
        let digests: Vec<String> = sqlx::query_scalar(
            "DELETE FROM agent_tokens WHERE organization_id = ? AND deployment_id = ? \
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
             WHERE organization_id = ? AND scope = 'DEPLOYMENT' AND entity_id = ?)",
        )
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM api_tokens \
             WHERE organization_id = ? AND scope = 'DEPLOYMENT' AND entity_id = ?",
        )
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM api_token_roles WHERE entity_type = 'DEPLOYMENT' AND entity_id = ?",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM deployments WHERE organization_id = ? AND id = ?")
            .bind(org)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            // Nothing to delete; the transaction is rolled back on drop.
            return Ok(None);
        }
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
        // One statement: SQLite runs it atomically, so two concurrent creates
        // cannot both see room for one more token.
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO agent_tokens (id, organization_id, deployment_id, name, description, \
             short_token, secret_digest, role, expiry_period_in_days, start_at, end_at, \
             created_at, updated_at, created_by_id, created_by_type, created_by_name, \
             updated_by_id, updated_by_type, updated_by_name) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
             WHERE EXISTS (SELECT 1 FROM deployments WHERE id = ? AND organization_id = ?) \
             AND (SELECT COUNT(*) FROM agent_tokens WHERE deployment_id = ?) < ?",
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
        .bind(&t.deployment_id)
        .bind(&t.organization_id)
        .bind(&t.deployment_id)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            record(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(());
        }
        drop(tx);
        // Nothing inserted: a full deployment, or none at all.
        match self
            .get_deployment(&t.organization_id, &t.deployment_id)
            .await?
        {
            Some(_) => Err(StoreError::AgentTokenLimit { limit }),
            None => Err(StoreError::DeploymentNotFound),
        }
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
            "organization_id = ? AND deployment_id = ?",
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
             WHERE organization_id = ? AND deployment_id = ? AND id = ?"
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
            "DELETE FROM agent_tokens WHERE organization_id = ? AND deployment_id = ? AND id = ? \
             RETURNING secret_digest",
        )
        .bind(org)
        .bind(deployment)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if digest.is_some() {
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
             previous_digest = CASE WHEN ? IS NULL THEN NULL ELSE secret_digest END, \
             previous_issued_at = CASE WHEN ? IS NULL THEN NULL \
             ELSE COALESCE(last_rotated_at, start_at) END, \
             previous_valid_until = ?, secret_digest = ?, short_token = ?, \
             last_rotated_at = ?, updated_at = ?, updated_by_id = ?, \
             updated_by_type = ?, updated_by_name = ? \
             WHERE organization_id = ? AND deployment_id = ? AND id = ? \
             RETURNING {AGENT_TOKEN_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, AgentTokenRow>(&sql)
            .bind(rotation.previous_valid_until)
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
            record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(row.map(Into::into))
    }

    async fn find_agent_credential(&self, digest: &Digest) -> Result<Option<AgentCredential>> {
        let sql = format!(
            "SELECT {AGENT_CREDENTIAL_COLUMNS} FROM agent_tokens \
             WHERE secret_digest = ? OR previous_digest = ?"
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
        let mut tx = self.pool.begin().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE agent_tokens SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) \
                 WHERE id = ?",
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
             VALUES (1, ?, ?, ?) ON CONFLICT (singleton) DO NOTHING",
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

    async fn replace_root_credential(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO root_credential (singleton, id, secret_digest, created_at) \
             VALUES (1, ?, ?, ?) ON CONFLICT (singleton) DO UPDATE SET \
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

    async fn count_agent_tokens(&self, now: i64) -> Result<(i64, i64)> {
        let (active, expired): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN end_at IS NULL OR end_at > ? THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN end_at IS NULL OR end_at > ? THEN 0 ELSE 1 END), 0) \
             FROM agent_tokens",
        )
        .bind(now)
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
            format!("organization_id = ? AND created_at >= {from} AND created_at < {until}");
        let mut args = vec![org];
        if let Some(action) = &window.action {
            filter.push_str(" AND action = ?");
            args.push(action);
        }
        self.page::<_, AuditEventRow>(AUDIT_EVENT_COLUMNS, "audit_events", &filter, &args, page)
            .await
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
