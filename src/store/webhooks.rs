//! Webhooks on either backend: endpoints, the outbox written inside the
//! transaction of each change ([`Webhooks::emit`]), the delivery queue
//! with its leases, and the expiry marks. The claim statement is the one
//! thing the backends say differently ([`super::backend::Backend::CLAIM_DELIVERIES`]).

use sqlx::{FromRow, Pool};

use super::backend::Backend;
use super::sql::*;
use super::{Page, Result, StoreError};
use crate::model::{AuditEvent, Subject, SubjectType};
use crate::token::id::new_ordered_id;
use crate::webhooks::retention::Prune;
use crate::webhooks::{
    event_types_column, event_types_of_column, Attempt, Claimed, Delivery, DeliveryStatus,
    Endpoint, Event, EventType, Outcome, Snapshot,
};

/// The most webhook endpoints one organization may have: each event fans
/// out to every endpoint that wants it, on the shared worker and database.
pub const MAX_WEBHOOKS_PER_ORGANIZATION: i64 = 20;

#[derive(FromRow)]
struct EndpointRow {
    id: String,
    organization_id: String,
    url: String,
    description: String,
    event_types: String,
    generation: i64,
    created_at: i64,
    updated_at: i64,
    created_by_id: String,
    created_by_type: SubjectType,
    created_by_name: Option<String>,
}

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id,
            organization_id: r.organization_id,
            url: r.url,
            description: r.description,
            event_types: event_types_of_column(&r.event_types),
            generation: r.generation,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: Subject::from_columns(
                r.created_by_id,
                r.created_by_type,
                r.created_by_name,
            ),
        }
    }
}

#[derive(FromRow)]
struct DeliveryRow {
    id: String,
    event_id: String,
    endpoint_id: String,
    event_type: String,
    subject_id: String,
    status: String,
    attempts: i64,
    due_ms: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    payload: String,
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        Delivery {
            id: r.id,
            event_id: r.event_id,
            endpoint_id: r.endpoint_id,
            event_type: r.event_type,
            subject_id: r.subject_id,
            status: DeliveryStatus::parse(&r.status),
            attempts: r.attempts,
            due_ms: r.due_ms,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            payload: r.payload,
            attempt_log: Vec::new(),
        }
    }
}

#[derive(FromRow)]
struct AttemptRow {
    id: String,
    delivery_id: String,
    attempted_at: i64,
    latency_ms: i64,
    status_code: Option<i64>,
    outcome: String,
    error: Option<String>,
}

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Self {
        Attempt {
            id: r.id,
            delivery_id: r.delivery_id,
            attempted_at_ms: r.attempted_at,
            latency_ms: r.latency_ms,
            status_code: r.status_code,
            succeeded: r.outcome == DeliveryStatus::Succeeded.as_str(),
            error: r.error,
        }
    }
}

#[derive(FromRow)]
struct ClaimedRow {
    id: String,
    event_id: String,
    endpoint_id: String,
    attempts: i64,
    deadline_ms: Option<i64>,
    url: String,
    generation: i64,
    payload: String,
}

/// A token the expiry scan looks at.
struct CandidateRow {
    id: String,
    organization_id: String,
    name: String,
    parent: String,
    end_at: i64,
}

/// The webhook statements on one backend's pool; the bounds are those of
/// [`super::db::Db`].
pub struct Webhooks<'a, DB: sqlx::Database>(pub &'a Pool<DB>);

impl<DB: Backend> Webhooks<'_, DB>
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
    /// What the event of an audited change says about its target, read in
    /// the change's transaction. Deletes read it before they delete.
    pub async fn snapshot(
        conn: &mut DB::Connection,
        target_type: &str,
        target_id: &str,
    ) -> Result<Snapshot> {
        let statement = match target_type {
            "AGENT_TOKEN" => Some(SNAPSHOT_AGENT_TOKEN),
            "API_TOKEN" => Some(SNAPSHOT_API_TOKEN),
            "DEPLOYMENT" => Some(SNAPSHOT_DEPLOYMENT),
            "ALLOWED_IP_ADDRESS_RANGE" => Some(SNAPSHOT_ALLOWED_IP_RANGE),
            _ => None,
        };
        let mut snapshot = Snapshot {
            kind: target_type.to_string(),
            id: target_id.to_string(),
            ..Snapshot::default()
        };
        if let Some(statement) = statement {
            let row: Option<(String, String, Option<i64>)> = sqlx::query_as(statement)
                .bind(target_id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some((name, parent, end_at)) = row {
                snapshot.name = Some(name);
                snapshot.parent_id = Some(parent);
                snapshot.end_at = end_at;
            }
        }
        Ok(snapshot)
    }

    /// The outbox half of [`super::db::Db::record`]: if the audited change
    /// reports an event and an endpoint of its organization wants it, the
    /// event and a delivery per endpoint, in the change's transaction.
    /// `subject` is the target as read before the change (for deletes);
    /// otherwise it is read now.
    pub async fn emit_for_audit(
        conn: &mut DB::Connection,
        audit: &AuditEvent,
        subject: Option<Snapshot>,
    ) -> Result<()> {
        let (Some(kind), Some(org)) = (
            EventType::of_audit(&audit.action),
            audit.organization_id.as_deref(),
        ) else {
            return Ok(());
        };
        let endpoints = Self::endpoints_for(conn, org, kind).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        let subject = match subject {
            Some(s) => s,
            None => Self::snapshot(conn, &audit.target_type, &audit.target_id).await?,
        };
        let event = Event::of_change(kind, audit, org, &subject);
        Self::write(conn, &event, &endpoints).await
    }

    /// Writes `event` for every endpoint of its organization that wants it,
    /// in the caller's transaction (an event agentkey noticed itself).
    pub async fn emit(conn: &mut DB::Connection, event: &Event) -> Result<()> {
        let endpoints = Self::endpoints_for(conn, &event.organization_id, event.event_type).await?;
        if endpoints.is_empty() {
            return Ok(());
        }
        Self::write(conn, event, &endpoints).await
    }

    async fn endpoints_for(
        conn: &mut DB::Connection,
        org: &str,
        kind: EventType,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(WEBHOOK_ENDPOINTS_FOR)
            .bind(org)
            .bind(format!("%,{},%", kind.as_str()))
            .fetch_all(&mut *conn)
            .await?)
    }

    async fn write(conn: &mut DB::Connection, event: &Event, endpoints: &[String]) -> Result<()> {
        sqlx::query(INSERT_WEBHOOK_EVENT)
            .bind(&event.id)
            .bind(&event.organization_id)
            .bind(event.event_type.as_str())
            .bind(&event.subject_id)
            .bind(&event.payload)
            .bind(event.created_at)
            .execute(&mut *conn)
            .await?;
        for endpoint in endpoints {
            sqlx::query(INSERT_WEBHOOK_DELIVERY)
                .bind(new_ordered_id())
                .bind(&event.id)
                .bind(endpoint)
                .bind(&event.organization_id)
                .bind(&event.subject_id)
                .bind(0_i64)
                .bind(event.created_at)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    pub async fn create_endpoint(&self, e: &Endpoint, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        // PostgreSQL: replicas creating at once count one after the other.
        DB::lock_organization(&mut tx, &e.organization_id).await?;
        let inserted: Option<String> = sqlx::query_scalar(INSERT_WEBHOOK_ENDPOINT)
            .bind(&e.id)
            .bind(&e.organization_id)
            .bind(&e.url)
            .bind(&e.description)
            .bind(event_types_column(&e.event_types))
            .bind(e.generation)
            .bind(e.created_at)
            .bind(e.updated_at)
            .bind(&e.created_by.id)
            .bind(e.created_by.subject_type.as_str())
            .bind(&e.created_by.api_token_name)
            .bind(MAX_WEBHOOKS_PER_ORGANIZATION)
            .fetch_optional(&mut *tx)
            .await?;
        if inserted.is_none() {
            return Err(StoreError::WebhookLimit {
                limit: MAX_WEBHOOKS_PER_ORGANIZATION,
            });
        }
        super::db::Db::<DB>::record(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_endpoints(
        &self,
        org: &str,
        page: &super::PageRequest,
    ) -> Result<Page<Endpoint>> {
        super::db::Db(self.0)
            .page::<EndpointRow, _, _>(
                WEBHOOK_ENDPOINT_COLUMNS,
                "webhook_endpoints",
                |q| {
                    q.push("organization_id = ").push_bind(org);
                },
                page,
            )
            .await
    }

    pub async fn get_endpoint(&self, org: &str, id: &str) -> Result<Option<Endpoint>> {
        let row = sqlx::query_as::<_, EndpointRow>(GET_WEBHOOK_ENDPOINT)
            .bind(org)
            .bind(id)
            .fetch_optional(self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    pub async fn rotate_endpoint(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Endpoint>> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query_as::<_, EndpointRow>(ROTATE_WEBHOOK_ENDPOINT)
            .bind(org)
            .bind(id)
            .bind(audit.occurred_at)
            .fetch_optional(&mut *tx)
            .await?;
        if row.is_some() {
            super::db::Db::<DB>::record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(row.map(Into::into))
    }

    pub async fn delete_endpoint(&self, org: &str, id: &str, audit: &AuditEvent) -> Result<bool> {
        let mut tx = self.0.begin().await?;
        for statement in [DELETE_WEBHOOK_ATTEMPTS, DELETE_WEBHOOK_DELIVERIES] {
            sqlx::query(statement)
                .bind(org)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let deleted: Option<String> = sqlx::query_scalar(DELETE_WEBHOOK_ENDPOINT)
            .bind(org)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if deleted.is_some() {
            super::db::Db::<DB>::record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(deleted.is_some())
    }

    /// An endpoint's deliveries, newest first, each with its latest attempts.
    pub async fn list_deliveries(
        &self,
        org: &str,
        endpoint: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Page<Delivery>> {
        let mut tx = self.0.begin_with(DB::READ_SNAPSHOT).await?;
        let total: i64 = sqlx::query_scalar(COUNT_WEBHOOK_DELIVERIES)
            .bind(org)
            .bind(endpoint)
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query_as::<_, DeliveryRow>(LIST_WEBHOOK_DELIVERIES)
            .bind(org)
            .bind(endpoint)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let mut delivery = Delivery::from(row);
            delivery.attempt_log = Self::attempts(&mut tx, &delivery.id).await?;
            items.push(delivery);
        }
        tx.commit().await?;
        Ok(Page { items, total })
    }

    pub async fn get_delivery(
        &self,
        org: &str,
        endpoint: &str,
        id: &str,
    ) -> Result<Option<Delivery>> {
        let mut tx = self.0.begin_with(DB::READ_SNAPSHOT).await?;
        let row = sqlx::query_as::<_, DeliveryRow>(GET_WEBHOOK_DELIVERY)
            .bind(org)
            .bind(endpoint)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let delivery = match row {
            Some(row) => {
                let mut delivery = Delivery::from(row);
                delivery.attempt_log = Self::attempts(&mut tx, &delivery.id).await?;
                Some(delivery)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(delivery)
    }

    async fn attempts(conn: &mut DB::Connection, delivery: &str) -> Result<Vec<Attempt>> {
        let rows = sqlx::query_as::<_, AttemptRow>(LIST_WEBHOOK_ATTEMPTS)
            .bind(delivery)
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Queues the delivery's event once more for its endpoint; answers the
    /// new delivery's id, or `None` if there is no such delivery.
    pub async fn redeliver(
        &self,
        org: &str,
        endpoint: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<String>> {
        let mut tx = self.0.begin().await?;
        let created: Option<String> = match sqlx::query_scalar(REDELIVER_WEBHOOK)
            .bind(new_ordered_id())
            .bind(audit.occurred_at)
            .bind(org)
            .bind(endpoint)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
        {
            Ok(created) => created,
            // PostgreSQL: the retention sweep deleted the delivery and then
            // its event after this statement read the delivery; the event's
            // foreign key refuses the new row. The delivery is gone: none.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => None,
            Err(e) => return Err(e.into()),
        };
        if created.is_some() {
            super::db::Db::<DB>::record(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(created)
    }

    /// Leases up to `limit` due deliveries to `owner` until `lease_until`
    /// and answers what sending them needs.
    pub async fn claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        let mut tx = self.0.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(DB::CLAIM_DELIVERIES)
            .bind(owner)
            .bind(lease_until_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query_as::<_, ClaimedRow>(CLAIMED_WEBHOOK_DELIVERY)
                .bind(&id)
                .bind(owner)
                .fetch_optional(self.0)
                .await?;
            if let Some(r) = row {
                claimed.push(Claimed {
                    id: r.id,
                    event_id: r.event_id,
                    endpoint_id: r.endpoint_id,
                    attempts: r.attempts,
                    deadline_ms: r.deadline_ms,
                    url: r.url,
                    generation: r.generation,
                    payload: r.payload,
                });
            }
        }
        Ok(claimed)
    }

    /// Records attempts and their outcomes, all in one transaction (one
    /// commit for a worker's whole round); answers, for each, whether
    /// `owner` still held the lease. An attempt is recorded either way: it
    /// happened.
    pub async fn finish(&self, owner: &str, outcomes: &[Outcome], at: i64) -> Result<Vec<bool>> {
        let mut tx = self.0.begin().await?;
        let mut held_all = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let a = &outcome.attempt;
            sqlx::query(INSERT_WEBHOOK_ATTEMPT)
                .bind(&a.id)
                .bind(&a.delivery_id)
                .bind(a.attempted_at_ms)
                .bind(a.latency_ms)
                .bind(a.status_code)
                .bind(if a.succeeded {
                    DeliveryStatus::Succeeded.as_str()
                } else {
                    DeliveryStatus::Failed.as_str()
                })
                .bind(&a.error)
                .execute(&mut *tx)
                .await?;
            let held: Option<String> = sqlx::query_scalar(FINISH_WEBHOOK_DELIVERY)
                .bind(&a.delivery_id)
                .bind(owner)
                .bind(outcome.status.as_str())
                .bind(outcome.due_ms)
                .bind(outcome.deadline_ms)
                .bind(a.status_code)
                .bind(&a.error)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
            held_all.push(held.is_some());
        }
        tx.commit().await?;
        Ok(held_all)
    }

    /// (pending, failed) deliveries.
    pub async fn backlog(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(COUNT_WEBHOOK_BACKLOG)
            .fetch_one(self.0)
            .await?)
    }

    /// One statement of the retention sweep: at most `limit` rows of
    /// `what` older than `before`.
    pub async fn prune(&self, what: Prune, before: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(DB::PRUNE_WEBHOOKS[what as usize])
            .bind(before)
            .bind(limit)
            .execute(self.0)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    /// One pass of the expiry scan at `now`: for each token whose `endAt`
    /// is within the largest threshold (or passed within `lookback`
    /// seconds), marks every threshold it has crossed and emits, for the
    /// marks this pass made first, `.expired` or the `.expiring` of the
    /// nearest threshold. Answers how many events it emitted.
    pub async fn scan_expiry(&self, now: i64, thresholds: &[i64], lookback: i64) -> Result<usize> {
        let horizon = now + thresholds.iter().copied().max().unwrap_or(0) * 86_400;
        let mut emitted = 0;
        for (kind, candidates_sql, marks_sql, expiring, expired) in [
            (
                "AGENT_TOKEN",
                EXPIRY_CANDIDATE_AGENT_TOKENS,
                EXPIRY_MARKS_AGENT_TOKENS,
                EventType::AgentTokenExpiring,
                EventType::AgentTokenExpired,
            ),
            (
                "API_TOKEN",
                EXPIRY_CANDIDATE_API_TOKENS,
                EXPIRY_MARKS_API_TOKENS,
                EventType::ApiTokenExpiring,
                EventType::ApiTokenExpired,
            ),
        ] {
            let candidates: Vec<(String, String, String, String, i64)> =
                sqlx::query_as(candidates_sql)
                    .bind(horizon)
                    .bind(now - lookback)
                    .fetch_all(self.0)
                    .await?;
            if candidates.is_empty() {
                continue;
            }
            let marks: Vec<(String, i64)> = sqlx::query_as(marks_sql)
                .bind(horizon)
                .bind(now - lookback)
                .fetch_all(self.0)
                .await?;
            let marked: std::collections::HashSet<(String, i64)> = marks.into_iter().collect();
            for (id, org, name, parent, end_at) in candidates {
                let token = CandidateRow {
                    id,
                    organization_id: org,
                    name,
                    parent,
                    end_at,
                };
                let due = crossed(token.end_at, now, thresholds);
                if due
                    .iter()
                    .all(|days| marked.contains(&(token.id.clone(), *days)))
                {
                    continue;
                }
                emitted += self
                    .mark_token(kind, &token, now, &due, expiring, expired)
                    .await?;
            }
        }
        Ok(emitted)
    }

    /// Marks the thresholds `crossed` (nearest last) of one token, in one
    /// transaction, and emits the event of the nearest this pass marked
    /// first, if any.
    async fn mark_token(
        &self,
        kind: &str,
        token: &CandidateRow,
        now: i64,
        crossed: &[i64],
        expiring: EventType,
        expired: EventType,
    ) -> Result<usize> {
        if crossed.is_empty() {
            return Ok(0);
        }
        let mut tx = self.0.begin().await?;
        let mut newest = None;
        for &days in crossed {
            let marked: Option<String> = sqlx::query_scalar(INSERT_EXPIRY_MARK)
                .bind(kind)
                .bind(&token.id)
                .bind(days)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if marked.is_some() {
                newest = Some(days);
            }
        }
        let Some(days) = newest else {
            return Ok(0);
        };
        let subject = Snapshot {
            kind: kind.to_string(),
            id: token.id.clone(),
            name: Some(token.name.clone()),
            parent_id: Some(token.parent.clone()),
            end_at: Some(token.end_at),
        };
        let event = if days == 0 {
            Event::observed(expired, &token.organization_id, now, &subject, None)
        } else {
            Event::observed(expiring, &token.organization_id, now, &subject, Some(days))
        };
        Self::emit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(1)
    }
}

/// The thresholds (days before `end_at`) a token has crossed at `now`,
/// largest first, then 0 if it has expired (every threshold counts as
/// crossed then).
fn crossed(end_at: i64, now: i64, thresholds: &[i64]) -> Vec<i64> {
    let is_expired = end_at <= now;
    let mut crossed: Vec<i64> = thresholds
        .iter()
        .copied()
        .filter(|days| is_expired || end_at - days * 86_400 <= now)
        .collect();
    crossed.sort_unstable_by(|a, b| b.cmp(a));
    crossed.dedup();
    if is_expired {
        crossed.push(0);
    }
    crossed
}

#[cfg(test)]
mod tests {
    use super::crossed;

    #[test]
    fn thresholds_crossed_nearest_last() {
        let day = 86_400;
        let end = 100 * day;
        assert!(crossed(end, end - 31 * day, &[30, 7, 1]).is_empty());
        assert_eq!(crossed(end, end - 30 * day, &[1, 30, 7]), vec![30]);
        assert_eq!(crossed(end, end - day, &[30, 7, 1]), vec![30, 7, 1]);
        assert_eq!(crossed(end, end, &[30, 7, 1]), vec![30, 7, 1, 0]);
        assert_eq!(crossed(end, end + 5, &[]), vec![0]);
    }
}
