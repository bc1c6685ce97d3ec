//! The audit trail over HTTP: [`Origin`] tells a handler where a change
//! came from, so it can hand the store an [`AuditEvent`] to write with the
//! change; `GET /organizations/{org}/audit-logs` reads the trail back.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::context::incoming_request_id_in;
use super::error::ApiError;
use super::extract::{ListQuery, PathParams, QueryParams, Sortable};
use super::schema::{AuditActionName, BasicSubjectProfile};
use crate::app::AppState;
use crate::authz::{Action, Resource};
use crate::clock::rfc3339;
use crate::http::request::FieldError;
use crate::model::{AuditAction, AuditEvent, Subject, TargetKind};
use crate::store::{AuditQuery, SortColumn};
use crate::token::id::new_ordered_id;

/// Where a request came from: its id (as the request context set it) and
/// the client's address as `client_ip` establishes it (behind a trusted
/// proxy, the address the proxy forwarded), when known.
pub struct Origin {
    request_id: Option<String>,
    source_ip: Option<String>,
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Origin {
            request_id: incoming_request_id_in(&parts.headers),
            source_ip: super::client_ip::of(parts, state).map(|ip| ip.to_string()),
        })
    }
}

/// What a change was done to: its kind and id.
pub struct Target<'a>(pub TargetKind, pub &'a str);

impl Origin {
    /// The audit event of `actor` doing `action` to `target` at `at`.
    pub fn event(
        &self,
        actor: Subject,
        organization: Option<&str>,
        action: AuditAction,
        target: Target<'_>,
        at: i64,
    ) -> AuditEvent {
        AuditEvent {
            id: new_ordered_id(),
            organization_id: organization.map(str::to_string),
            occurred_at: at,
            actor,
            action: action.as_str().to_string(),
            target_type: target.0.as_str().to_string(),
            target_id: target.1.to_string(),
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
        }
    }
}

/// One audit event on the wire.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditLog {
    pub id: String,
    /// The organization; absent for changes outside any (the root
    /// credential's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub organization_id: Option<String>,
    /// When it happened.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub actor: BasicSubjectProfile,
    /// e.g. `agentToken.create`, `agentToken.rotate`, `deployment.delete`.
    #[schema(value_type = AuditActionName)]
    pub action: String,
    /// `ORGANIZATION`, `WORKSPACE`, `DEPLOYMENT`, `AGENT_TOKEN`, `API_TOKEN`
    /// (or `ROOT_CREDENTIAL`, outside organizations).
    pub target_type: String,
    pub target_id: String,
    /// The request that made the change; absent for changes made outside
    /// a request (the command line's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
    /// The client's address, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub source_ip: Option<String>,
}

impl From<&AuditEvent> for AuditLog {
    fn from(e: &AuditEvent) -> Self {
        AuditLog {
            id: e.id.clone(),
            organization_id: e.organization_id.clone(),
            created_at: rfc3339(e.occurred_at),
            actor: (&e.actor).into(),
            action: e.action.clone(),
            target_type: e.target_type.clone(),
            target_id: e.target_id.clone(),
            request_id: e.request_id.clone(),
            source_ip: e.source_ip.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogsPaginated {
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: i64,
    #[schema(minimum = 0)]
    pub offset: i64,
    pub audit_logs: Vec<AuditLog>,
    pub total_count: i64,
}

/// The window of the audit logs to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditWindow {
    /// RFC 3339; events at or after it.
    #[param(format = DateTime)]
    pub start_date: Option<String>,
    /// RFC 3339; events before it.
    #[param(format = DateTime)]
    pub end_date: Option<String>,
    /// Only events of this action, e.g. `agentToken.create`.
    #[param(value_type = Option<AuditActionName>, inline)]
    pub action: Option<String>,
}

impl Sortable for AuditLog {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] =
        &[("createdAt", SortColumn::CreatedAt)];
}

/// List an organization's audit logs, oldest first.
#[utoipa::path(get, path = "/organizations/{organizationId}/audit-logs", tag = "Audit", operation_id = "GetOrganizationAuditLogs",
    params(("organizationId" = String, Path), AuditWindow,
           ListQuery<AuditLog>),
    responses((status = 200, description = "A page of audit events", body = AuditLogsPaginated)))]
pub async fn list_audit_logs(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    QueryParams(window): QueryParams<AuditWindow>,
    query: ListQuery<AuditLog>,
) -> Result<Json<AuditLogsPaginated>, ApiError> {
    caller.require(Action::ReadAuditLogs, Resource::Organization(&org))?;
    let window = parse_window(window)?;
    caller
        .organization(&state, Action::ReadAuditLogs, &org)
        .await?;
    let page = state
        .store
        .list_audit_events(&org, &window, &query.page)
        .await?;
    Ok(Json(AuditLogsPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        audit_logs: page.items.iter().map(AuditLog::from).collect(),
        total_count: page.total,
    }))
}

fn parse_window(window: AuditWindow) -> Result<AuditQuery, ApiError> {
    let mut errors = Vec::new();
    let mut parse = |field: &str, value: Option<String>| {
        let value = value?;
        match DateTime::parse_from_rfc3339(&value) {
            Ok(time) => Some(time.timestamp()),
            Err(_) => {
                errors.push(FieldError::new(
                    field,
                    "invalid",
                    format!("{field} must be an RFC 3339 time such as 2024-05-01T00:00:00Z; got {value:?}"),
                ));
                None
            }
        }
    };
    let from = parse("startDate", window.start_date);
    let until = parse("endDate", window.end_date);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    if let (Some(from), Some(until)) = (from, until) {
        if from > until {
            return Err(ApiError::invalid(vec![FieldError::new(
                "endDate",
                "invalid",
                "endDate must not be before startDate",
            )]));
        }
    }
    let action = match window.action {
        Some(action) if AuditAction::parse(&action).is_none() => {
            let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            return Err(ApiError::invalid(vec![FieldError::new(
                "action",
                "invalid",
                format!("action must be one of {}; got {action:?}", known.join(", ")),
            )]));
        }
        action => action,
    };
    Ok(AuditQuery {
        from,
        until,
        action,
    })
}
