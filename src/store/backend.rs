//! The one `Store` implementation, generic over the sqlx database: each
//! method hands over to `db.rs`, `agent_tokens.rs`, `api_tokens.rs` or
//! `sessions.rs`, which bind and run the statements of `sql.rs`.
//! [`Backend`] is what `sqlite.rs` and `postgres.rs` each do their own way.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{FromRow, Pool, QueryBuilder};

use super::agent_tokens::AgentTokens;
use super::allowed_ranges::AllowedRanges;
use super::api_tokens::ApiTokens;
use super::db::Db;
use super::revocations::{Revocation, RevocationSink};
use super::sessions::{SessionCutoffs, Sessions};
use super::webhooks::Webhooks;
use super::{
    ApiTokenFilter, AuditQuery, LockOutGuard, Page, PageRequest, PlaceFilter, Result, Store,
    WorkspaceDeletion,
};
use crate::model::{
    AgentCredential, AgentToken, AllowedIpRange, ApiCredential, ApiToken, ApiTokenChange,
    AuditEvent, ConsoleSession, Deployment, NewAgentToken, NewApiToken, Organization,
    RootCredential, Rotation, Workspace,
};
use crate::token::Digest;
use crate::webhooks::retention::Prune;
use crate::webhooks::{Claimed, Delivery, Endpoint, Outcome};

/// What one backend does its own way, around statements that are the same.
pub trait Backend: sqlx::Database {
    /// Begins a read-only transaction whose statements all see one state
    /// (a count and its page, a token and its roles).
    const READ_SNAPSHOT: &'static str;

    /// Leases due webhook deliveries (see `sql::claim_webhook_deliveries`):
    /// where replicas share the database, each row to one of them.
    const CLAIM_DELIVERIES: &'static str;

    /// The retention sweep's deletes (see `sql::prune_webhooks`), indexed
    /// by `webhooks::retention::Prune`.
    const PRUNE_WEBHOOKS: [&'static str; 3];

    /// Locks the deployment's row until the transaction ends, where the
    /// backend needs a lock for it; answers `false` only when it found that
    /// there is no such deployment.
    fn lock_deployment(
        conn: &mut Self::Connection,
        org: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Locks the organization's row until the transaction ends, where the
    /// backend needs a lock for it (its allowlist's limit).
    fn lock_organization(
        conn: &mut Self::Connection,
        org: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Tells the other processes sharing the database, when and only when
    /// the transaction commits, that a secret stopped being valid.
    fn announce(
        conn: &mut Self::Connection,
        revocation: Revocation,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Runs a statement built with `sqlx::QueryBuilder` and reads its rows.
    /// It takes the builder whole because sqlx ties the builder's bound
    /// values to the borrow that runs it, a borrow that only a concrete
    /// backend's types (by their variance) can let end before the builder
    /// is dropped.
    fn fetch_all<R>(
        conn: &mut Self::Connection,
        query: QueryBuilder<'_, Self>,
    ) -> impl Future<Output = Result<Vec<R>>> + Send
    where
        R: for<'r> FromRow<'r, Self::Row> + Send + Unpin;

    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// Starts delivering revocations made by other processes on the same
    /// database; see [`Store::follow_revocations`].
    fn follow_revocations(
        _pool: &Pool<Self>,
        _sink: Arc<dyn RevocationSink>,
        _stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

/// A store on one backend's connection pool ([`super::SqliteStore`] or
/// [`super::PostgresStore`]; each opens its own in its module).
pub struct SqlStore<DB: sqlx::Database> {
    pub(super) pool: Pool<DB>,
}

#[async_trait]
impl<DB: Backend> Store for SqlStore<DB>
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
    async fn ping(&self) -> Result<()> {
        Db(&self.pool).ping().await
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_organization(&self, org: &Organization, audit: &AuditEvent) -> Result<()> {
        Db(&self.pool).create_organization(org, audit).await
    }

    async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>> {
        Db(&self.pool).list_organizations(page).await
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>> {
        Db(&self.pool).get_organization(id).await
    }

    async fn update_organization(&self, org: &Organization, audit: &AuditEvent) -> Result<bool> {
        Db(&self.pool).update_organization(org, audit).await
    }

    async fn update_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<bool> {
        Db(&self.pool).update_workspace(ws, audit).await
    }

    async fn delete_workspace(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<WorkspaceDeletion> {
        Db(&self.pool).delete_workspace(org, id, audit).await
    }

    async fn update_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<bool> {
        Db(&self.pool).update_deployment(dep, audit).await
    }

    async fn create_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<()> {
        Db(&self.pool).create_workspace(ws, audit).await
    }

    async fn list_workspaces(
        &self,
        org: &str,
        filter: &PlaceFilter,
        page: &PageRequest,
    ) -> Result<Page<Workspace>> {
        Db(&self.pool).list_workspaces(org, filter, page).await
    }

    async fn get_workspace(&self, org: &str, id: &str) -> Result<Option<Workspace>> {
        Db(&self.pool).get_workspace(org, id).await
    }

    async fn create_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<()> {
        Db(&self.pool).create_deployment(dep, audit).await
    }

    async fn list_deployments(
        &self,
        org: &str,
        filter: &PlaceFilter,
        page: &PageRequest,
    ) -> Result<Page<Deployment>> {
        Db(&self.pool).list_deployments(org, filter, page).await
    }

    async fn get_deployment(&self, org: &str, id: &str) -> Result<Option<Deployment>> {
        Db(&self.pool).get_deployment(org, id).await
    }

    async fn delete_deployment(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Vec<Digest>>> {
        Db(&self.pool).delete_deployment(org, id, audit).await
    }

    async fn create_agent_token(
        &self,
        new: &NewAgentToken,
        limit: i64,
        audit: &AuditEvent,
    ) -> Result<()> {
        AgentTokens(&self.pool).create(new, limit, audit).await
    }

    async fn list_agent_tokens(
        &self,
        org: &str,
        deployment: &str,
        page: &PageRequest,
    ) -> Result<Page<AgentToken>> {
        AgentTokens(&self.pool).list(org, deployment, page).await
    }

    async fn get_agent_token(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
    ) -> Result<Option<AgentToken>> {
        AgentTokens(&self.pool).get(org, deployment, id).await
    }

    async fn delete_agent_token(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Digest>> {
        AgentTokens(&self.pool)
            .delete(org, deployment, id, audit)
            .await
    }

    async fn rotate_agent_token(
        &self,
        rotation: &Rotation,
        audit: &AuditEvent,
    ) -> Result<Option<AgentToken>> {
        AgentTokens(&self.pool).rotate(rotation, audit).await
    }

    async fn find_agent_credential(&self, digest: &Digest) -> Result<Option<AgentCredential>> {
        AgentTokens(&self.pool).find_credential(digest).await
    }

    async fn record_agent_token_use(&self, uses: &[(String, i64)]) -> Result<()> {
        AgentTokens(&self.pool).record_use(uses).await
    }

    async fn root_credential(&self) -> Result<Option<RootCredential>> {
        Db(&self.pool).root_credential().await
    }

    async fn insert_root_credential_if_absent(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<bool> {
        Db(&self.pool)
            .insert_root_credential_if_absent(cred, audit)
            .await
    }

    async fn replace_root_credential(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<()> {
        Db(&self.pool).replace_root_credential(cred, audit).await
    }

    async fn count_agent_tokens(&self, now: i64) -> Result<(i64, i64)> {
        AgentTokens(&self.pool).count(now).await
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
        Db(&self.pool).list_audit_events(org, window, page).await
    }

    fn follow_revocations(
        &self,
        sink: Arc<dyn RevocationSink>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        DB::follow_revocations(&self.pool, sink, stop)
    }
    async fn list_allowed_ip_ranges(
        &self,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<AllowedIpRange>> {
        AllowedRanges(&self.pool).list(org, page).await
    }

    async fn allowed_ip_ranges_of(&self, org: &str) -> Result<Vec<String>> {
        AllowedRanges(&self.pool).all_of(org).await
    }

    async fn create_allowed_ip_ranges(
        &self,
        ranges: &[AllowedIpRange],
        limit: i64,
        guard: LockOutGuard,
        audit: &[AuditEvent],
    ) -> Result<()> {
        AllowedRanges(&self.pool)
            .create(ranges, limit, guard, audit)
            .await
    }

    async fn delete_allowed_ip_ranges(
        &self,
        org: &str,
        ids: &[String],
        guard: LockOutGuard,
        audit: &AuditEvent,
    ) -> Result<Vec<AllowedIpRange>> {
        AllowedRanges(&self.pool)
            .delete(org, ids, guard, audit)
            .await
    }

    async fn record_audit_event(&self, event: &AuditEvent) -> Result<()> {
        // One transaction: the audit row and any event it reports are
        // written together or not at all.
        let mut tx = self.pool.begin().await?;
        Db::<DB>::record(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api_token(&self, new: &NewApiToken, audit: &AuditEvent) -> Result<()> {
        ApiTokens(&self.pool).create(new, audit).await
    }

    async fn list_api_tokens(
        &self,
        org: &str,
        filter: &ApiTokenFilter,
        page: &PageRequest,
    ) -> Result<Page<ApiToken>> {
        ApiTokens(&self.pool).list(org, filter, page).await
    }

    async fn get_api_token(&self, org: &str, id: &str) -> Result<Option<ApiToken>> {
        ApiTokens(&self.pool).get(org, id).await
    }

    async fn update_api_token(
        &self,
        change: &ApiTokenChange,
        audit: &AuditEvent,
    ) -> Result<Option<ApiToken>> {
        ApiTokens(&self.pool).update(change, audit).await
    }

    async fn delete_api_token(&self, org: &str, id: &str, audit: &AuditEvent) -> Result<bool> {
        ApiTokens(&self.pool).delete(org, id, audit).await
    }

    async fn find_api_credential(&self, digest: &Digest) -> Result<Option<ApiCredential>> {
        ApiTokens(&self.pool).find_credential(digest).await
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

    async fn create_webhook_endpoint(&self, endpoint: &Endpoint, audit: &AuditEvent) -> Result<()> {
        Webhooks(&self.pool).create_endpoint(endpoint, audit).await
    }

    async fn list_webhook_endpoints(
        &self,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>> {
        Webhooks(&self.pool).list_endpoints(org, page).await
    }

    async fn get_webhook_endpoint(&self, org: &str, id: &str) -> Result<Option<Endpoint>> {
        Webhooks(&self.pool).get_endpoint(org, id).await
    }

    async fn rotate_webhook_endpoint(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Endpoint>> {
        Webhooks(&self.pool).rotate_endpoint(org, id, audit).await
    }

    async fn delete_webhook_endpoint(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        Webhooks(&self.pool).delete_endpoint(org, id, audit).await
    }

    async fn list_webhook_deliveries(
        &self,
        org: &str,
        endpoint: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Page<Delivery>> {
        Webhooks(&self.pool)
            .list_deliveries(org, endpoint, offset, limit)
            .await
    }

    async fn get_webhook_delivery(
        &self,
        org: &str,
        endpoint: &str,
        id: &str,
    ) -> Result<Option<Delivery>> {
        Webhooks(&self.pool).get_delivery(org, endpoint, id).await
    }

    async fn redeliver_webhook(
        &self,
        org: &str,
        endpoint: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<String>> {
        Webhooks(&self.pool)
            .redeliver(org, endpoint, id, audit)
            .await
    }

    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        Webhooks(&self.pool)
            .claim(owner, now_ms, lease_until_ms, limit)
            .await
    }

    async fn finish_webhook_deliveries(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        at: i64,
    ) -> Result<Vec<bool>> {
        Webhooks(&self.pool).finish(owner, outcomes, at).await
    }

    async fn webhook_backlog(&self) -> Result<(i64, i64)> {
        Webhooks(&self.pool).backlog().await
    }

    async fn prune_webhooks(&self, what: Prune, before: i64, limit: i64) -> Result<u64> {
        Webhooks(&self.pool).prune(what, before, limit).await
    }

    async fn scan_token_expiry(
        &self,
        now: i64,
        thresholds: &[i64],
        lookback: i64,
    ) -> Result<usize> {
        Webhooks(&self.pool)
            .scan_expiry(now, thresholds, lookback)
            .await
    }
}
