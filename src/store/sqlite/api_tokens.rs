//! API tokens in SQLite: one `api_tokens` row plus one `api_token_roles`
//! row per role, always written and read together in one transaction.

use std::collections::HashMap;

use sqlx::{SqliteConnection, SqlitePool};

use crate::model::{
    ApiCredential, ApiToken, ApiTokenChange, ApiTokenEdit, AuditEvent, NewApiToken,
};
use crate::roles::RoleGrant;
use crate::store::rows::*;
use crate::store::{ApiTokenFilter, Page, PageRequest, Result};
use crate::token::Digest;

pub async fn create(pool: &SqlitePool, new: &NewApiToken, audit: &AuditEvent) -> Result<()> {
    let t = &new.token;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, organization_id, name, description, short_token, \
         secret_digest, scope, entity_id, expiry_period_in_days, start_at, end_at, \
         created_at, updated_at, created_by_id, created_by_type, created_by_name, \
         updated_by_id, updated_by_type, updated_by_name) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    pool: &SqlitePool,
    org: &str,
    filter: &ApiTokenFilter,
    page: &PageRequest,
) -> Result<Page<ApiToken>> {
    let mut condition = String::from("organization_id = ?");
    let mut args = vec![org];
    for (entity_type, id) in [
        ("WORKSPACE", &filter.workspace),
        ("DEPLOYMENT", &filter.deployment),
    ] {
        if let Some(id) = id {
            condition.push_str(&format!(
                " AND id IN (SELECT token_id FROM api_token_roles \
                 WHERE entity_type = '{entity_type}' AND entity_id = ?)"
            ));
            args.push(id);
        }
    }
    let mut tx = pool.begin().await?;
    let count_sql = format!("SELECT COUNT(*) FROM api_tokens WHERE {condition}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for arg in &args {
        count = count.bind(*arg);
    }
    let total = count.fetch_one(&mut *tx).await?;
    let list_sql = format!(
        "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE {condition} \
         ORDER BY {} LIMIT ? OFFSET ?",
        page.order_by()
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

pub async fn get(pool: &SqlitePool, org: &str, id: &str) -> Result<Option<ApiToken>> {
    let mut tx = pool.begin().await?;
    let token = read(&mut tx, org, id).await?;
    tx.commit().await?;
    Ok(token)
}

pub async fn update(
    pool: &SqlitePool,
    change: &ApiTokenChange,
    audit: &AuditEvent,
) -> Result<Option<ApiToken>> {
    let mut tx = pool.begin().await?;
    let stamp = "updated_at = ?, updated_by_id = ?, updated_by_type = ?, updated_by_name = ?";
    let scope = "WHERE organization_id = ? AND id = ?";
    let sql = match &change.edit {
        ApiTokenEdit::Rename { .. } => {
            format!("UPDATE api_tokens SET name = ?, description = ?, {stamp} {scope}")
        }
        ApiTokenEdit::Roles(_) => format!("UPDATE api_tokens SET {stamp} {scope}"),
        ApiTokenEdit::Rotate { .. } => format!(
            "UPDATE api_tokens SET secret_digest = ?, short_token = ?, \
             last_rotated_at = ?, {stamp} {scope}"
        ),
    };
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
        sqlx::query("DELETE FROM api_token_roles WHERE token_id = ?")
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

pub async fn delete(pool: &SqlitePool, org: &str, id: &str, audit: &AuditEvent) -> Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM api_token_roles WHERE token_id IN \
         (SELECT id FROM api_tokens WHERE organization_id = ? AND id = ?)",
    )
    .bind(org)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE organization_id = ? AND id = ?")
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

pub async fn find_credential(pool: &SqlitePool, digest: &Digest) -> Result<Option<ApiCredential>> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT id, organization_id, name, end_at, secret_digest FROM api_tokens \
         WHERE secret_digest = ?",
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
async fn read(conn: &mut SqliteConnection, org: &str, id: &str) -> Result<Option<ApiToken>> {
    let sql =
        format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE organization_id = ? AND id = ?");
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
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashMap<String, Vec<RoleGrant>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    let sql = format!(
        "SELECT {API_TOKEN_ROLE_COLUMNS} FROM api_token_roles WHERE token_id IN ({placeholders})"
    );
    let mut query = sqlx::query_as::<_, ApiTokenRoleRow>(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    Ok(group_grants(query.fetch_all(&mut *conn).await?))
}

async fn insert_roles(
    conn: &mut SqliteConnection,
    token_id: &str,
    grants: &[RoleGrant],
) -> Result<()> {
    for grant in grants {
        sqlx::query(
            "INSERT INTO api_token_roles (token_id, entity_type, entity_id, role) \
             VALUES (?, ?, ?, ?)",
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
