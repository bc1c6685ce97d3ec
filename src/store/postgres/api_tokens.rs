//! API tokens in PostgreSQL: one `api_tokens` row plus one `api_token_roles`
//! row per role, always written and read together in one transaction.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use crate::model::{
    ApiCredential, ApiToken, ApiTokenChange, ApiTokenEdit, AuditEvent, NewApiToken,
};
use crate::roles::RoleGrant;
use crate::store::rows::*;
use crate::store::{ApiTokenFilter, Page, PageRequest, Result};
use crate::token::Digest;

/// Reads that must see one state (a token and its roles, a count and its
/// page) run in one snapshot.
const READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

pub async fn create(pool: &PgPool, new: &NewApiToken, audit: &AuditEvent) -> Result<()> {
    let t = &new.token;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, organization_id, name, description, short_token, \
         secret_digest, scope, entity_id, expiry_period_in_days, start_at, end_at, \
         created_at, updated_at, created_by_id, created_by_type, created_by_name, \
         updated_by_id, updated_by_type, updated_by_name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19)",
    )
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
    insert_roles(&mut tx, &t.id, &t.roles).await?;
    super::record(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list(
    pool: &PgPool,
    org: &str,
    filter: &ApiTokenFilter,
    page: &PageRequest,
) -> Result<Page<ApiToken>> {
    let mut condition = String::from("organization_id = $1");
    let mut args = vec![org];
    for (entity_type, id) in [
        ("WORKSPACE", &filter.workspace),
        ("DEPLOYMENT", &filter.deployment),
    ] {
        if let Some(id) = id {
            args.push(id);
            condition.push_str(&format!(
                " AND id IN (SELECT token_id FROM api_token_roles \
                 WHERE entity_type = '{entity_type}' AND entity_id = ${})",
                args.len()
            ));
        }
    }
    let mut tx = pool.begin_with(READ_SNAPSHOT).await?;
    let count_sql = format!("SELECT COUNT(*) FROM api_tokens WHERE {condition}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for arg in &args {
        count = count.bind(*arg);
    }
    let total = count.fetch_one(&mut *tx).await?;
    let list_sql = format!(
        "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE {condition} \
         ORDER BY {} LIMIT ${} OFFSET ${}",
        page.order_by(),
        args.len() + 1,
        args.len() + 2
    );
    let mut list = sqlx::query_as::<_, ApiTokenRow>(&list_sql);
    for arg in &args {
        list = list.bind(*arg);
    }
    let rows = list
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&mut *tx)
        .await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut roles = roles_of(&mut tx, &ids).await?;
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

pub async fn get(pool: &PgPool, org: &str, id: &str) -> Result<Option<ApiToken>> {
    let mut tx = pool.begin_with(READ_SNAPSHOT).await?;
    let token = read(&mut tx, org, id).await?;
    tx.commit().await?;
    Ok(token)
}

pub async fn update(
    pool: &PgPool,
    change: &ApiTokenChange,
    audit: &AuditEvent,
) -> Result<Option<ApiToken>> {
    let mut tx = pool.begin().await?;
    // `$n` numbering: the edit's own values come first, then the audit
    // columns, then the token's organization and id.
    let (sql, first) = match &change.edit {
        ApiTokenEdit::Rename { .. } => (
            "UPDATE api_tokens SET name = $1, description = $2,".to_string(),
            3,
        ),
        ApiTokenEdit::Roles(_) => ("UPDATE api_tokens SET".to_string(), 1),
        ApiTokenEdit::Rotate { .. } => (
            "UPDATE api_tokens SET secret_digest = $1, short_token = $2, last_rotated_at = $3,"
                .to_string(),
            4,
        ),
    };
    let n = |i: usize| first + i;
    let sql = format!(
        "{sql} updated_at = ${}, updated_by_id = ${}, updated_by_type = ${}, \
         updated_by_name = ${} WHERE organization_id = ${} AND id = ${}",
        n(0),
        n(1),
        n(2),
        n(3),
        n(4),
        n(5)
    );
    let query = sqlx::query(&sql);
    let query = match &change.edit {
        ApiTokenEdit::Rename { name, description } => query.bind(name).bind(description),
        ApiTokenEdit::Roles(_) => query,
        ApiTokenEdit::Rotate {
            secret_digest,
            short_token,
        } => query
            .bind(secret_digest.to_hex())
            .bind(short_token)
            .bind(change.at),
    };
    let updated = query
        .bind(change.at)
        .bind(&change.actor.id)
        .bind(change.actor.subject_type.as_str())
        .bind(&change.actor.api_token_name)
        .bind(&change.organization_id)
        .bind(&change.token_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if updated == 0 {
        // No such token; the transaction is rolled back on drop.
        return Ok(None);
    }
    if let ApiTokenEdit::Roles(grants) = &change.edit {
        sqlx::query("DELETE FROM api_token_roles WHERE token_id = $1")
            .bind(&change.token_id)
            .execute(&mut *tx)
            .await?;
        insert_roles(&mut tx, &change.token_id, grants).await?;
    }
    let token = read(&mut tx, &change.organization_id, &change.token_id).await?;
    super::record(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(token)
}

pub async fn delete(pool: &PgPool, org: &str, id: &str, audit: &AuditEvent) -> Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM api_token_roles WHERE token_id IN \
         (SELECT id FROM api_tokens WHERE organization_id = $1 AND id = $2)",
    )
    .bind(org)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE organization_id = $1 AND id = $2")
        .bind(org)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 1 {
        super::record(&mut tx, audit).await?;
        tx.commit().await?;
    }
    Ok(deleted == 1)
}

pub async fn find_credential(pool: &PgPool, digest: &Digest) -> Result<Option<ApiCredential>> {
    let mut tx = pool.begin_with(READ_SNAPSHOT).await?;
    let row: Option<(String, String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT id, organization_id, name, end_at, secret_digest FROM api_tokens \
         WHERE secret_digest = $1",
    )
    .bind(digest.to_hex())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((token_id, organization_id, name, end_at, stored)) = row else {
        return Ok(None);
    };
    if !Digest::from_hex(&stored).is_some_and(|d| d.ct_eq(digest)) {
        return Ok(None);
    }
    let roles = roles_of(&mut tx, &[token_id.as_str()])
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

/// The token with its roles, read on `conn` (inside the caller's transaction).
async fn read(conn: &mut PgConnection, org: &str, id: &str) -> Result<Option<ApiToken>> {
    let sql = format!(
        "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE organization_id = $1 AND id = $2"
    );
    let row = sqlx::query_as::<_, ApiTokenRow>(&sql)
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let grants = roles_of(conn, &[id]).await?.remove(id).unwrap_or_default();
    Ok(row.into_token(grants))
}

async fn roles_of(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<HashMap<String, Vec<RoleGrant>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql =
        format!("SELECT {API_TOKEN_ROLE_COLUMNS} FROM api_token_roles WHERE token_id = ANY($1)");
    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let query = sqlx::query_as::<_, ApiTokenRoleRow>(&sql).bind(ids);
    Ok(group_grants(query.fetch_all(&mut *conn).await?))
}

async fn insert_roles(conn: &mut PgConnection, token_id: &str, grants: &[RoleGrant]) -> Result<()> {
    for grant in grants {
        sqlx::query(
            "INSERT INTO api_token_roles (token_id, entity_type, entity_id, role) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_id)
        .bind(grant.entity_type().as_str())
        .bind(&grant.entity_id)
        .bind(grant.role.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
