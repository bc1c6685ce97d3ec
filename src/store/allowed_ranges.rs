//! Organizations' allowlists of IP address ranges on either backend: the
//! list, the all-or-nothing bulk insert within the per-organization limit,
//! the bulk delete, each change announced to the other replicas when it
//! commits (they cache the lists, see `allowlist`).

use sqlx::Pool;

use super::backend::Backend;
use super::db::Db;
use super::revocations::Revocation;
use super::rows::*;
use super::sql::*;
use super::{LockOutGuard, Page, PageRequest, Result, StoreError};
use crate::model::{AllowedIpRange, AuditEvent};
use crate::token::id::new_ordered_id;
use crate::webhooks::Snapshot;

/// The allowlist statements on one backend's pool; the bounds are those of
/// [`Db`].
pub struct AllowedRanges<'a, DB: sqlx::Database>(pub &'a Pool<DB>);

impl<DB: Backend> AllowedRanges<'_, DB>
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
    pub async fn list(&self, org: &str, page: &PageRequest) -> Result<Page<AllowedIpRange>> {
        Db(self.0)
            .page::<AllowedIpRangeRow, _, _>(
                ALLOWED_IP_RANGE_COLUMNS,
                "allowed_ip_ranges",
                |q| {
                    q.push("organization_id = ").push_bind(org);
                },
                page,
            )
            .await
    }

    pub async fn all_of(&self, org: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(ALLOWED_IP_RANGES_OF)
            .bind(org)
            .fetch_all(self.0)
            .await?)
    }

    /// Inserts every range or none. Each insert counts the organization's
    /// ranges in the same statement, and concurrent inserts for one
    /// organization queue on its row (PostgreSQL) or on the one writer
    /// (SQLite), so the limit holds across replicas.
    pub async fn create(
        &self,
        ranges: &[AllowedIpRange],
        limit: i64,
        guard: LockOutGuard,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let Some(org) = ranges.first().map(|r| r.organization_id.clone()) else {
            return Ok(());
        };
        let mut tx = self.0.begin().await?;
        DB::lock_organization(&mut tx, &org).await?;
        let mut refused = Vec::new();
        for r in ranges {
            let inserted: Option<String> = sqlx::query_scalar(INSERT_ALLOWED_IP_RANGE_WITHIN_LIMIT)
                .bind(&r.id)
                .bind(&r.organization_id)
                .bind(&r.ip_address_range)
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(&r.created_by.id)
                .bind(r.created_by.subject_type.as_str())
                .bind(&r.created_by.api_token_name)
                .bind(&r.updated_by.id)
                .bind(r.updated_by.subject_type.as_str())
                .bind(&r.updated_by.api_token_name)
                .bind(limit)
                .fetch_optional(&mut *tx)
                .await?;
            if inserted.is_none() {
                refused.push(r.ip_address_range.clone());
            }
        }
        if refused.is_empty() {
            if !Self::still_allows(&mut tx, &org, guard).await? {
                return Err(StoreError::WouldLockOut);
            }
            for event in audit {
                Db::<DB>::record(&mut tx, event).await?;
            }
            DB::announce(&mut tx, Revocation::AllowList(org)).await?;
            tx.commit().await?;
            return Ok(());
        }
        drop(tx);
        // Nothing kept: say which were there already, else that it is full.
        let present = self.all_of(&org).await?;
        let existing: Vec<String> = refused
            .into_iter()
            .filter(|range| present.contains(range))
            .collect();
        if existing.is_empty() {
            Err(StoreError::AllowedIpRangeLimit { limit })
        } else {
            Err(StoreError::AllowedIpRangeExists(existing))
        }
    }

    /// Deletes those of `ids` that are the organization's ranges (unknown
    /// and repeated ids are passed over), in one transaction, with an audit
    /// event each: `audit` with its own id and the range as its target.
    /// Answers the deleted ranges.
    pub async fn delete(
        &self,
        org: &str,
        ids: &[String],
        guard: LockOutGuard,
        audit: &AuditEvent,
    ) -> Result<Vec<AllowedIpRange>> {
        let mut tx = self.0.begin().await?;
        DB::lock_organization(&mut tx, org).await?;
        let mut deleted = Vec::new();
        for id in ids {
            let row = sqlx::query_as::<_, AllowedIpRangeRow>(DELETE_ALLOWED_IP_RANGE)
                .bind(org)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                let range = AllowedIpRange::from(row);
                let event = AuditEvent {
                    id: new_ordered_id(),
                    target_id: range.id.clone(),
                    ..audit.clone()
                };
                // The row is gone: its event names it from what the delete
                // returned.
                let subject = Snapshot {
                    kind: event.target_type.clone(),
                    id: range.id.clone(),
                    name: Some(range.ip_address_range.clone()),
                    ..Snapshot::default()
                };
                Db::<DB>::record_with(&mut tx, &event, Some(subject)).await?;
                deleted.push(range);
            }
        }
        if !deleted.is_empty() {
            if !Self::still_allows(&mut tx, org, guard).await? {
                return Err(StoreError::WouldLockOut);
            }
            DB::announce(&mut tx, Revocation::AllowList(org.to_string())).await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    /// Whether the organization's list, as this transaction leaves it, is
    /// empty or allows what `guard` keeps.
    async fn still_allows(
        conn: &mut DB::Connection,
        org: &str,
        guard: LockOutGuard,
    ) -> Result<bool> {
        let LockOutGuard::Keep(client) = guard else {
            return Ok(true);
        };
        let ranges: Vec<String> = sqlx::query_scalar(ALLOWED_IP_RANGES_OF)
            .bind(org)
            .fetch_all(conn)
            .await?;
        let networks = crate::allowlist::networks_of(ranges.iter().map(String::as_str));
        Ok(crate::allowlist::allows(&networks, client))
    }
}
