//! API tokens, on either backend: one `api_tokens` row plus one
//! `api_token_roles` row per role, always written and read together in one
//! transaction.

use std::collections::HashMap;

use sqlx::{Pool, QueryBuilder};

use super::backend::Backend;
use super::db::Db;
use super::rows::*;
use super::sql::*;
use super::webhooks::Webhooks;
use super::{ApiTokenFilter, Homes, Page, PageRequest, Result};
use crate::model::{
    ApiCredential, ApiToken, ApiTokenChange, ApiTokenEdit, AuditEvent, NewApiToken,
};
use crate::roles::{EntityType, RoleGrant};
use crate::token::Digest;

/// The API-token statements on one backend's pool; the bounds are those of
/// [`Db`].
pub struct ApiTokens<'a, DB: sqlx::Database>(pub &'a Pool<DB>);

impl<DB: Backend> ApiTokens<'_, DB>
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
    /// Inserts the token and its roles.
    pub async fn create(&self, new: &NewApiToken, audit: &AuditEvent) -> Result<()> {
        let t = &new.token;
        let mut tx = self.0.begin().await?;
        sqlx::query(INSERT_API_TOKEN)
            .bind(&t.id)
            .bind(&t.organization_id)
            .bind(&t.name)
            .bind(&t.description)
            .bind(&t.short_token)
            .bind(new.secret_digest.to_hex())
            .bind(t.scope.as_str())
            .bind(&t.entity_id)
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
        Self::insert_roles(&mut tx, &t.id, &t.roles).await?;
        Db::<DB>::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of the organization's tokens, narrowed by `filter` to those
    /// holding a role on its workspace and/or deployment.
    pub async fn list(
        &self,
        org: &str,
        filter: &ApiTokenFilter,
        page: &PageRequest,
    ) -> Result<Page<ApiToken>> {
        let mut tx = self.0.begin_with(DB::READ_SNAPSHOT).await?;
        let (rows, total) = Db::<DB>::page_rows::<ApiTokenRow, _>(
            &mut tx,
            API_TOKEN_COLUMNS,
            "api_tokens",
            |q| push_api_token_filter(q, org, filter),
            page,
        )
        .await?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut roles = Self::roles_of(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(Page {
            items: rows
                .into_iter()
                .filter_map(|row| {
                    let grants = roles.remove(&row.id).unwrap_or_default();
                    row.into_token(grants)
                })
                .collect(),
            total,
        })
    }

    pub async fn get(&self, org: &str, id: &str) -> Result<Option<ApiToken>> {
        let mut tx = self.0.begin_with(DB::READ_SNAPSHOT).await?;
        let token = Self::read(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Applies the change; answers the token as it now is, or `None` if
    /// there is no such token.
    pub async fn update(
        &self,
        change: &ApiTokenChange,
        audit: &AuditEvent,
    ) -> Result<Option<ApiToken>> {
        let mut update = QueryBuilder::<DB>::new("UPDATE api_tokens SET ");
        match &change.edit {
            ApiTokenEdit::Rename { name, description } => {
                update
                    .push("name = ")
                    .push_bind(name.as_str())
                    .push(", description = ")
                    .push_bind(description.as_str())
                    .push(", ");
            }
            ApiTokenEdit::Roles(_) => {}
            ApiTokenEdit::Rotate {
                secret_digest,
                short_token,
            } => {
                update
                    .push("secret_digest = ")
                    .push_bind(secret_digest.to_hex())
                    .push(", short_token = ")
                    .push_bind(short_token.as_str())
                    .push(", last_rotated_at = ")
                    .push_bind(change.at)
                    .push(", ");
            }
        }
        update
            .push("updated_at = ")
            .push_bind(change.at)
            .push(", updated_by_id = ")
            .push_bind(change.actor.id.as_str())
            .push(", updated_by_type = ")
            .push_bind(change.actor.subject_type.as_str())
            .push(", updated_by_name = ")
            .push_bind(&change.actor.api_token_name)
            .push(" WHERE organization_id = ")
            .push_bind(change.organization_id.as_str())
            .push(" AND id = ")
            .push_bind(change.token_id.as_str())
            .push(" RETURNING id");
        let mut tx = self.0.begin().await?;
        let updated: Vec<(String,)> = DB::fetch_all(&mut *tx, update).await?;
        if updated.is_empty() {
            // No such token; the transaction is rolled back on drop.
            return Ok(None);
        }
        if let ApiTokenEdit::Roles(grants) = &change.edit {
            sqlx::query(CLEAR_API_TOKEN_ROLES)
                .bind(&change.token_id)
                .execute(&mut *tx)
                .await?;
            Self::insert_roles(&mut tx, &change.token_id, grants).await?;
        }
        let token = Self::read(&mut tx, &change.organization_id, &change.token_id).await?;
        Db::<DB>::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Deletes the token and its roles; answers whether there was one.
    pub async fn delete(&self, org: &str, id: &str, audit: &AuditEvent) -> Result<bool> {
        let mut tx = self.0.begin().await?;
        // A write first (see `AgentTokens::delete`), then what the event
        // says about the token, read before the token itself goes.
        sqlx::query(DELETE_API_TOKEN_ROLES)
            .bind(org)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let subject = Webhooks::<DB>::snapshot(&mut tx, "API_TOKEN", id).await?;
        let deleted: Option<String> = sqlx::query_scalar(DELETE_API_TOKEN)
            .bind(org)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if deleted.is_some() {
            Db::<DB>::record_with(&mut tx, audit, Some(subject)).await?;
            tx.commit().await?;
        }
        Ok(deleted.is_some())
    }

    /// The token whose current secret has this digest, with its roles.
    pub async fn find_credential(&self, digest: &Digest) -> Result<Option<ApiCredential>> {
        let mut tx = self.0.begin_with(DB::READ_SNAPSHOT).await?;
        let row: Option<(String, String, String, Option<i64>, String)> =
            sqlx::query_as(FIND_API_CREDENTIAL)
                .bind(digest.to_hex())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((token_id, organization_id, name, end_at, stored)) = row else {
            return Ok(None);
        };
        if !Digest::from_hex(&stored).is_some_and(|d| d.ct_eq(digest)) {
            return Ok(None);
        }
        let roles = Self::roles_of(&mut tx, &[token_id.as_str()])
            .await?
            .remove(&token_id)
            .unwrap_or_default();
        tx.commit().await?;
        Ok(Some(ApiCredential {
            token_id,
            organization_id,
            name,
            end_at,
            roles,
        }))
    }

    /// The token with its roles, read on `conn` (inside the caller's
    /// transaction).
    async fn read(conn: &mut DB::Connection, org: &str, id: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query_as::<_, ApiTokenRow>(GET_API_TOKEN)
            .bind(org)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let grants = Self::roles_of(conn, &[id])
            .await?
            .remove(id)
            .unwrap_or_default();
        Ok(row.into_token(grants))
    }

    /// The roles of the tokens `ids`, grouped by token.
    async fn roles_of(
        conn: &mut DB::Connection,
        ids: &[&str],
    ) -> Result<HashMap<String, Vec<RoleGrant>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut query = QueryBuilder::<DB>::new(format!(
            "SELECT {API_TOKEN_ROLE_COLUMNS} FROM api_token_roles WHERE token_id IN ("
        ));
        let mut each = query.separated(", ");
        for id in ids {
            each.push_bind(*id);
        }
        query.push(")");
        let rows = DB::fetch_all(&mut *conn, query).await?;
        Ok(group_grants(rows))
    }

    async fn insert_roles(
        conn: &mut DB::Connection,
        token_id: &str,
        grants: &[RoleGrant],
    ) -> Result<()> {
        for grant in grants {
            sqlx::query(INSERT_API_TOKEN_ROLE)
                .bind(token_id)
                .bind(grant.entity_type().as_str())
                .bind(&grant.entity_id)
                .bind(grant.role.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// The condition of an API-token list: the organization, and a role on the
/// filter's workspace and/or deployment, every value bound.
fn push_api_token_filter<'q, DB: sqlx::Database>(
    q: &mut QueryBuilder<'q, DB>,
    org: &'q str,
    filter: &'q ApiTokenFilter,
) where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.push("organization_id = ").push_bind(org);
    for (entity_type, id) in [
        (EntityType::Workspace, &filter.workspace),
        (EntityType::Deployment, &filter.deployment),
    ] {
        if let Some(id) = id {
            q.push(" AND id IN (SELECT token_id FROM api_token_roles WHERE entity_type = ")
                .push_bind(entity_type.as_str())
                .push(" AND entity_id = ")
                .push_bind(id.as_str())
                .push(")");
        }
    }
    if let Some(scope) = filter.scope {
        q.push(" AND scope = ").push_bind(scope.as_str());
    }
    match &filter.homes {
        None => {}
        Some(Homes::Deployment(deployment)) => {
            q.push(" AND scope = ")
                .push_bind(EntityType::Deployment.as_str())
                .push(" AND entity_id = ")
                .push_bind(deployment.as_str());
        }
        Some(Homes::Workspace(workspace)) => {
            q.push(" AND ((scope = ")
                .push_bind(EntityType::Workspace.as_str())
                .push(" AND entity_id = ")
                .push_bind(workspace.as_str())
                .push(") OR (scope = ")
                .push_bind(EntityType::Deployment.as_str())
                .push(" AND entity_id IN (SELECT id FROM deployments WHERE organization_id = ")
                .push_bind(org)
                .push(" AND workspace_id = ")
                .push_bind(workspace.as_str())
                .push(")))");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_token_filter_binds_every_value() {
        let filter = ApiTokenFilter {
            workspace: Some("ws' OR '1' = '1".into()),
            deployment: Some("dep-1".into()),
            homes: None,
            scope: None,
        };
        let mut q = QueryBuilder::<sqlx::Postgres>::new("");
        push_api_token_filter(&mut q, "org-1", &filter);
        assert_eq!(
            q.sql(),
            "organization_id = $1 \
             AND id IN (SELECT token_id FROM api_token_roles WHERE entity_type = $2 AND entity_id = $3) \
             AND id IN (SELECT token_id FROM api_token_roles WHERE entity_type = $4 AND entity_id = $5)"
        );
        let none = ApiTokenFilter::default();
        let mut q = QueryBuilder::<sqlx::Sqlite>::new("");
        push_api_token_filter(&mut q, "org-1", &none);
        assert_eq!(q.sql(), "organization_id = ?");
    }
}
