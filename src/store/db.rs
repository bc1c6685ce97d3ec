//! Organizations, workspaces, deployments, the root credential and the
//! audit trail, and the helpers every table uses (the audit record, a
//! page of a list): the statements of `sql.rs`, bound and run
//! the same way on both backends. Where the backends differ (a read
//! snapshot, a row lock, a notification) [`Backend`] says how.

use sqlx::{FromRow, Pool, QueryBuilder};

use super::backend::Backend;
use super::revocations::Revocation;
use super::rows::*;
use super::sql::*;
use super::webhooks::Webhooks;
use super::{AuditQuery, Page, PageRequest, PlaceFilter, Result, WorkspaceDeletion};
use crate::model::{AuditEvent, Deployment, Organization, RootCredential, Subject, Workspace};
use crate::token::Digest;
use crate::webhooks::Snapshot;

/// The statements on one backend's pool. sqlx's bounds for binding text
/// and integers and reading rows are spelled once, on the `impl` below.
pub struct Db<'a, DB: sqlx::Database>(pub &'a Pool<DB>);

impl<DB: Backend> Db<'_, DB>
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
    pub async fn ping(&self) -> Result<()> {
        sqlx::query(PING).execute(self.0).await?;
        Ok(())
    }

    /// Appends `event` to the audit trail, inside the caller's transaction,
    /// and the webhook event it reports, if any, to the outbox (so that an
    /// event exists if and only if its change commits).
    pub async fn record(conn: &mut DB::Connection, event: &AuditEvent) -> Result<()> {
        Self::record_with(conn, event, None).await
    }

    /// [`Db::record`] with the target as read before the change: what a
    /// delete reports about what it deleted.
    pub async fn record_with(
        conn: &mut DB::Connection,
        event: &AuditEvent,
        subject: Option<Snapshot>,
    ) -> Result<()> {
        sqlx::query(INSERT_AUDIT_EVENT)
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
            .execute(&mut *conn)
            .await?;
        Webhooks::<DB>::emit_for_audit(conn, event, subject).await
    }

    /// One page of `SELECT columns FROM table WHERE filter`, and how many
    /// rows the filter matches, on `conn` (the caller's read snapshot).
    /// `filter` writes the condition into each of the two statements, with
    /// every value bound.
    pub async fn page_rows<'q, R, F>(
        conn: &mut DB::Connection,
        columns: &'static str,
        table: &'static str,
        filter: F,
        page: &PageRequest,
    ) -> Result<(Vec<R>, i64)>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
        F: Fn(&mut QueryBuilder<'q, DB>),
    {
        let mut count = QueryBuilder::new(format!("SELECT COUNT(*) FROM {table} WHERE "));
        filter(&mut count);
        let total: Vec<(i64,)> = DB::fetch_all(&mut *conn, count).await?;
        let total = total.first().map_or(0, |(n,)| *n);
        let mut list = QueryBuilder::new(format!("SELECT {columns} FROM {table} WHERE "));
        filter(&mut list);
        list.push(" ORDER BY ")
            .push(page.order_by())
            .push(" LIMIT ")
            .push_bind(page.limit)
            .push(" OFFSET ")
            .push_bind(page.offset);
        let rows = DB::fetch_all(&mut *conn, list).await?;
        Ok((rows, total))
    }

    /// [`Db::page_rows`] in a read snapshot of its own, mapped to records.
    pub async fn page<'q, R, T, F>(
        &self,
        columns: &'static str,
        table: &'static str,
        filter: F,
        page: &PageRequest,
    ) -> Result<Page<T>>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
        T: From<R>,
        F: Fn(&mut QueryBuilder<'q, DB>),
    {
        let mut tx = self.0.begin_with(DB::READ_SNAPSHOT).await?;
        let (rows, total) = Self::page_rows::<R, F>(&mut tx, columns, table, filter, page).await?;
        tx.commit().await?;
        Ok(Page {
            items: rows.into_iter().map(T::from).collect(),
            total,
        })
    }

    pub async fn create_organization(&self, org: &Organization, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let query = sqlx::query(INSERT_ORGANIZATION)
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_at)
            .bind(org.updated_at);
        bind_makers(query, &org.created_by, &org.updated_by)
            .execute(&mut *tx)
            .await?;
        Self::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>> {
        self.page::<OrganizationRow, _, _>(
            ORGANIZATION_COLUMNS,
            "organizations",
            |q| {
                q.push("1 = 1");
            },
            page,
        )
        .await
    }

    pub async fn get_organization(&self, id: &str) -> Result<Option<Organization>> {
        let row = sqlx::query_as::<_, OrganizationRow>(GET_ORGANIZATION)
            .bind(id)
            .fetch_optional(self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    pub async fn create_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let query = sqlx::query(INSERT_WORKSPACE)
            .bind(&ws.id)
            .bind(&ws.organization_id)
            .bind(&ws.name)
            .bind(&ws.description)
            .bind(ws.cicd_enforced_default)
            .bind(ws.created_at)
            .bind(ws.updated_at);
        bind_makers(query, &ws.created_by, &ws.updated_by)
            .execute(&mut *tx)
            .await?;
        Self::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_workspaces(
        &self,
        org: &str,
        filter: &PlaceFilter,
        page: &PageRequest,
    ) -> Result<Page<Workspace>> {
        self.page::<WorkspaceRow, _, _>(
            WORKSPACE_COLUMNS,
            "workspaces",
            |q| push_place_filter(q, org, filter),
            page,
        )
        .await
    }

    pub async fn get_workspace(&self, org: &str, id: &str) -> Result<Option<Workspace>> {
        let row = sqlx::query_as::<_, WorkspaceRow>(GET_WORKSPACE)
            .bind(org)
            .bind(id)
            .fetch_optional(self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    pub async fn create_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let query = sqlx::query(INSERT_DEPLOYMENT)
            .bind(&dep.id)
            .bind(&dep.organization_id)
            .bind(&dep.workspace_id)
            .bind(&dep.name)
            .bind(&dep.description)
            .bind(dep.deployment_type.as_str())
            .bind(dep.is_cicd_enforced)
            .bind(dep.created_at)
            .bind(dep.updated_at);
        match bind_makers(query, &dep.created_by, &dep.updated_by)
            .execute(&mut *tx)
            .await
        {
            Ok(_) => {}
            // The workspace was deleted since the caller looked it up.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(super::StoreError::WorkspaceNotFound);
            }
            Err(e) => return Err(e.into()),
        }
        Self::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_deployments(
        &self,
        org: &str,
        filter: &PlaceFilter,
        page: &PageRequest,
    ) -> Result<Page<Deployment>> {
        self.page::<DeploymentRow, _, _>(
            DEPLOYMENT_COLUMNS,
            "deployments",
            |q| push_place_filter(q, org, filter),
            page,
        )
        .await
    }

    pub async fn get_deployment(&self, org: &str, id: &str) -> Result<Option<Deployment>> {
        let row = sqlx::query_as::<_, DeploymentRow>(GET_DEPLOYMENT)
            .bind(org)
            .bind(id)
            .fetch_optional(self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    /// Deletes the deployment, and in the same transaction its agent
    /// tokens, the API tokens made for it and every role on it.
    pub async fn delete_deployment(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Vec<Digest>>> {
        let mut tx = self.0.begin().await?;
        // Where the backend locks, a concurrent create_agent_token (which
        // locks the row too) either commits before the digests are
        // collected, or waits and then finds the deployment gone.
        if !DB::lock_deployment(&mut tx, org, id).await? {
            // Nothing to delete; the transaction is rolled back on drop.
            return Ok(None);
        }
        let digests: Vec<String> = sqlx::query_scalar(DELETE_DEPLOYMENT_AGENT_TOKENS)
            .bind(org)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        // After a write (see `AgentTokens::delete`), before the deployment
        // itself goes: what the `deployment.deleted` event says about it.
        let subject = Webhooks::<DB>::snapshot(&mut tx, "DEPLOYMENT", id).await?;
        for statement in [
            DELETE_DEPLOYMENT_API_TOKEN_ROLES,
            DELETE_DEPLOYMENT_API_TOKENS,
        ] {
            sqlx::query(statement)
                .bind(org)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(DELETE_ROLES_ON_DEPLOYMENT)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted: Option<String> = sqlx::query_scalar(DELETE_DEPLOYMENT)
            .bind(org)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if deleted.is_none() {
            return Ok(None);
        }
        DB::announce(&mut tx, Revocation::Deployment(id.to_string())).await?;
        Self::record_with(&mut tx, audit, Some(subject)).await?;
        tx.commit().await?;
        Ok(Some(
            digests.iter().filter_map(|d| Digest::from_hex(d)).collect(),
        ))
    }

    /// Writes the organization's name and who changed it when, from `org`
    /// as it now is; answers whether there was such an organization.
    pub async fn update_organization(
        &self,
        org: &Organization,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let query = sqlx::query_scalar(UPDATE_ORGANIZATION)
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.updated_at);
        self.write_audited(bind_subject(query, &org.updated_by), audit)
            .await
    }

    /// Writes the workspace's name, description and CI/CD default and who
    /// changed them when, from `ws` as it now is; answers whether there
    /// was such a workspace.
    pub async fn update_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<bool> {
        let query = sqlx::query_scalar(UPDATE_WORKSPACE)
            .bind(&ws.organization_id)
            .bind(&ws.id)
            .bind(&ws.name)
            .bind(&ws.description)
            .bind(ws.cicd_enforced_default)
            .bind(ws.updated_at);
        self.write_audited(bind_subject(query, &ws.updated_by), audit)
            .await
    }

    /// Writes the deployment's name, description and CI/CD enforcement and
    /// who changed them when, from `dep` as it now is; answers whether
    /// there was such a deployment.
    pub async fn update_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<bool> {
        let query = sqlx::query_scalar(UPDATE_DEPLOYMENT)
            .bind(&dep.organization_id)
            .bind(&dep.id)
            .bind(&dep.name)
            .bind(&dep.description)
            .bind(dep.is_cicd_enforced)
            .bind(dep.updated_at);
        self.write_audited(bind_subject(query, &dep.updated_by), audit)
            .await
    }

    /// Runs an update answering `RETURNING id` and, when it changed a row,
    /// records `audit` in the same transaction.
    async fn write_audited<'q>(
        &self,
        query: sqlx::query::QueryScalar<'q, DB, String, <DB as sqlx::Database>::Arguments<'q>>,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let mut tx = self.0.begin().await?;
        let written: Option<String> = query.fetch_optional(&mut *tx).await?;
        if written.is_some() {
            Self::record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(written.is_some())
    }

    /// Deletes the workspace, with the API tokens made for it and every
    /// role on it, in one transaction, unless a deployment is in it.
    pub async fn delete_workspace(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<WorkspaceDeletion> {
        let mut tx = self.0.begin().await?;
        for statement in [
            DELETE_WORKSPACE_API_TOKEN_ROLES,
            DELETE_WORKSPACE_API_TOKENS,
        ] {
            sqlx::query(statement)
                .bind(org)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(DELETE_ROLES_ON_WORKSPACE)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query_scalar::<_, String>(DELETE_EMPTY_WORKSPACE)
            .bind(org)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await;
        let deleted = match deleted {
            Ok(deleted) => deleted,
            // PostgreSQL: a deployment created in the workspace meanwhile,
            // committed after this statement's snapshot; its foreign key
            // keeps the workspace. The failed transaction is rolled back,
            // and the deployments are counted as they now are.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                drop(tx);
                let count: i64 = sqlx::query_scalar(COUNT_WORKSPACE_DEPLOYMENTS)
                    .bind(org)
                    .bind(id)
                    .fetch_one(self.0)
                    .await?;
                return Ok(WorkspaceDeletion::HasDeployments(count));
            }
            Err(e) => return Err(e.into()),
        };
        if deleted.is_none() {
            // Nothing deleted: the workspace is missing or not empty. The
            // transaction (with its deletes) is rolled back on drop.
            let count: i64 = sqlx::query_scalar(COUNT_WORKSPACE_DEPLOYMENTS)
                .bind(org)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            return Ok(if count > 0 {
                WorkspaceDeletion::HasDeployments(count)
            } else {
                WorkspaceDeletion::NotFound
            });
        }
        Self::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(WorkspaceDeletion::Deleted)
    }

    pub async fn root_credential(&self) -> Result<Option<RootCredential>> {
        let row = sqlx::query_as::<_, RootCredentialRow>(GET_ROOT_CREDENTIAL)
            .fetch_optional(self.0)
            .await?;
        Ok(row.and_then(RootCredentialRow::into_credential))
    }

    /// Runs the root credential statement `statement`; answers whether it
    /// wrote a row (then the audit event is recorded and committed).
    async fn write_root_credential(
        &self,
        statement: &'static str,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let mut tx = self.0.begin().await?;
        let written: Option<String> = sqlx::query_scalar(statement)
            .bind(&cred.id)
            .bind(cred.secret_digest.to_hex())
            .bind(cred.created_at)
            .fetch_optional(&mut *tx)
            .await?;
        if written.is_some() {
            Self::record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(written.is_some())
    }

    pub async fn insert_root_credential_if_absent(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<bool> {
        self.write_root_credential(INSERT_ROOT_CREDENTIAL_IF_ABSENT, cred, audit)
            .await
    }

    pub async fn replace_root_credential(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<()> {
        self.write_root_credential(REPLACE_ROOT_CREDENTIAL, cred, audit)
            .await?;
        Ok(())
    }

    pub async fn list_audit_events(
        &self,
        org: &str,
        window: &AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        self.page::<AuditEventRow, _, _>(
            AUDIT_EVENT_COLUMNS,
            "audit_events",
            |q| push_audit_filter(q, org, window),
            page,
        )
        .await
    }
}

/// Binds who created and who last changed a row, after the values already
/// bound (the order of `INSERT_*`'s `created_by_*, updated_by_*`).
fn bind_makers<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    created_by: &'q Subject,
    updated_by: &'q Subject,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = query;
    for s in [created_by, updated_by] {
        query = query
            .bind(s.id.as_str())
            .bind(s.subject_type.as_str())
            .bind(s.api_token_name.clone());
    }
    query
}

/// Binds one subject (id, type, token name) after the values already bound.
fn bind_subject<'q, DB: sqlx::Database, O>(
    query: sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    subject: &'q Subject,
) -> sqlx::query::QueryScalar<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(subject.id.as_str())
        .bind(subject.subject_type.as_str())
        .bind(subject.api_token_name.clone())
}

/// The condition of an audit list: the organization, the window and the
/// action, every value bound.
fn push_audit_filter<'q, DB: sqlx::Database>(
    q: &mut QueryBuilder<'q, DB>,
    org: &'q str,
    window: &'q AuditQuery,
) where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.push("organization_id = ").push_bind(org);
    if let Some(from) = window.from {
        q.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(until) = window.until {
        q.push(" AND created_at < ").push_bind(until);
    }
    if let Some(action) = &window.action {
        q.push(" AND action = ").push_bind(action.as_str());
    }
}

/// The condition of a workspace or deployment list: the organization, and
/// each non-empty list of the filter as an `IN`, every value bound.
fn push_place_filter<'q, DB: sqlx::Database>(
    q: &mut QueryBuilder<'q, DB>,
    org: &'q str,
    filter: &'q PlaceFilter,
) where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.push("organization_id = ").push_bind(org);
    for (column, values) in [
        ("id", &filter.ids),
        ("name", &filter.names),
        ("workspace_id", &filter.workspaces),
    ] {
        if values.is_empty() {
            continue;
        }
        q.push(" AND ").push(column).push(" IN (");
        let mut each = q.separated(", ");
        for value in values {
            each.push_bind(value.as_str());
        }
        q.push(")");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_filter_binds_every_value() {
        let window = AuditQuery {
            from: Some(1_700_000_123),
            until: Some(1_700_000_456),
            action: Some("agentToken.create' OR '1' = '1".into()),
        };
        let mut sqlite = QueryBuilder::<sqlx::Sqlite>::new("");
        push_audit_filter(&mut sqlite, "org-1", &window);
        assert_eq!(
            sqlite.sql(),
            "organization_id = ? AND created_at >= ? AND created_at < ? AND action = ?"
        );
        let everything = AuditQuery::default();
        let mut postgres = QueryBuilder::<sqlx::Postgres>::new("");
        push_audit_filter(&mut postgres, "org-1", &everything);
        assert_eq!(postgres.sql(), "organization_id = $1");
    }
}
