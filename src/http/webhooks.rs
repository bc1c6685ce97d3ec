//! `/organizations/{org}/webhooks`: webhook endpoints (create, list, get,
//! rotate the signing secret, delete), their deliveries, and redelivery.
//! Organization owners only. The signing secret is answered by create and
//! rotate only; it is derived, never stored (see `webhooks::sign`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ListQuery, PathParams, QueryParams, Sortable, ValidJson};
use super::schema::{BasicSubjectProfile, RevealedSecret, SecretResponse};
use crate::app::AppState;
use crate::authz::Action;
use crate::clock::rfc3339;
use crate::http::request::{Description, FieldError};
use crate::model::{AuditAction, TargetKind};
use crate::store::SortColumn;
use crate::token::id::is_id;
use crate::token::new_id;
use crate::webhooks::guard::check_url;
use crate::webhooks::sign::WebhookKey;
use crate::webhooks::{Attempt, Delivery, Endpoint, EventType};

/// A webhook endpoint on the wire.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub organization_id: String,
    pub url: String,
    pub description: String,
    /// The event types it receives; `["*"]` means every type.
    pub event_types: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub created_by: BasicSubjectProfile,
    /// The signing secret (`whsec_...`): only in the answer to a create or
    /// a rotation. It cannot be read again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub secret: Option<RevealedSecret>,
}

impl From<&Endpoint> for Webhook {
    fn from(e: &Endpoint) -> Self {
        let event_types = if e.event_types.is_empty() {
            vec!["*".to_string()]
        } else {
            e.event_types
                .iter()
                .map(|t| t.as_str().to_string())
                .collect()
        };
        Webhook {
            id: e.id.clone(),
            organization_id: e.organization_id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types,
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            created_by: (&e.created_by).into(),
            secret: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhooksPaginated {
    pub limit: i64,
    pub offset: i64,
    pub webhooks: Vec<Webhook>,
    pub total_count: i64,
}

impl Sortable for Webhook {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("createdAt", SortColumn::CreatedAt),
        ("updatedAt", SortColumn::UpdatedAt),
    ];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookRequest {
    /// `http://` or `https://`; loopback, private and link-local addresses
    /// are refused unless the server allows them.
    #[schema(value_type = String, min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    pub description: Option<String>,
    /// Event types to receive (see `docs/events.md`); absent, empty or
    /// `["*"]` means every type.
    pub event_types: Option<Vec<String>>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    #[schema(format = DateTime)]
    pub attempted_at: String,
    pub latency_ms: i64,
    /// The receiver's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status_code: Option<i64>,
    /// `SUCCEEDED` or `FAILED`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

impl From<&Attempt> for WebhookAttempt {
    fn from(a: &Attempt) -> Self {
        WebhookAttempt {
            attempted_at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(a.attempted_at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            latency_ms: a.latency_ms,
            status_code: a.status_code,
            outcome: if a.succeeded { "SUCCEEDED" } else { "FAILED" }.into(),
            error: a.error.clone(),
        }
    }
}

/// One event to one endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// The token, deployment or range the event is about.
    pub subject_id: String,
    /// `PENDING`, `SUCCEEDED` or `FAILED` (retries exhausted).
    pub status: String,
    pub attempt_count: i64,
    /// When the next attempt is due, while `PENDING`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_status_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The latest attempts, newest first (at most 20).
    pub attempts: Vec<WebhookAttempt>,
    /// The event, exactly as it is sent (see docs/events.md).
    #[schema(value_type = WebhookEvent)]
    pub event: serde_json::Value,
}

impl From<&Delivery> for WebhookDelivery {
    fn from(d: &Delivery) -> Self {
        let pending = d.status == crate::webhooks::DeliveryStatus::Pending;
        WebhookDelivery {
            id: d.id.clone(),
            event_id: d.event_id.clone(),
            webhook_id: d.endpoint_id.clone(),
            event_type: d.event_type.clone(),
            subject_id: d.subject_id.clone(),
            status: d.status.as_str().into(),
            attempt_count: d.attempts,
            next_attempt_at: pending.then(|| rfc3339(d.due_ms.div_euclid(1000))),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            attempts: d.attempt_log.iter().map(WebhookAttempt::from).collect(),
            event: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// The JSON body of every webhook request (docs/events.md). Described
/// here for the OpenAPI document; `webhooks::Event` writes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// The event's id, also sent as `X-Agentkey-Event-Id`.
    pub id: String,
    /// `agent_token.created`, `agent_token.rotated`, `agent_token.deleted`,
    /// `agent_token.expiring`, `agent_token.expired`, `agent_token.first_used`,
    /// `api_token.created`, `api_token.rotated`, `api_token.deleted`,
    /// `api_token.expiring`, `api_token.expired`, `deployment.deleted`,
    /// `allowed_ip_range.changed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the change happened or was noticed, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub organization_id: String,
    /// Who made the change; absent for what agentkey noticed itself
    /// (expiry, first use).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub actor: Option<WebhookEventActor>,
    /// The request that made the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
    pub data: WebhookEventData,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventActor {
    pub id: String,
    /// `USER` or `SERVICEKEY`.
    pub subject_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub api_token_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventData {
    pub object: WebhookEventObject,
    /// `.expiring` only: the threshold crossed, in days before `endAt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub threshold_days: Option<i64>,
}

/// What the event is about, as it was when the event was written. Never a
/// secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventObject {
    /// `AGENT_TOKEN`, `API_TOKEN`, `DEPLOYMENT` or `ALLOWED_IP_ADDRESS_RANGE`.
    #[serde(rename = "type")]
    pub object_type: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// An agent token's deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deployment_id: Option<String>,
    /// An API token's organization, workspace or deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub entity_id: Option<String>,
    /// A deployment's workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub workspace_id: Option<String>,
    /// A token's expiry, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveriesPaginated {
    pub limit: i64,
    pub offset: i64,
    pub deliveries: Vec<WebhookDelivery>,
    pub total_count: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Results to skip, >= 0 (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
    /// Results per page, 0..=100 (default 20).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 100)]
    pub limit: Option<String>,
}

/// The server's webhook key, or a 409 saying how to turn webhooks on.
fn key(state: &AppState) -> Result<&WebhookKey, ApiError> {
    state.settings.webhooks.key.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "webhooks are off on this server: set AGENTKEY_WEBHOOK_KEY (32+ characters) \
             to turn them on",
        )
    })
}

/// Create a webhook endpoint. The answer carries its signing secret, once.
#[utoipa::path(post, path = "/organizations/{organizationId}/webhooks", tag = "Webhook",
    operation_id = "CreateWebhook",
    params(("organizationId" = String, Path, description = "The organization's id")),
    request_body = CreateWebhookRequest,
    responses((status = 200, description = "The new endpoint, with its secret", body = Webhook),
              (status = 409, description = "Webhooks are off on this server")))]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams(org): PathParams<String>,
    ValidJson(request): ValidJson<CreateWebhookRequest>,
) -> Result<SecretResponse<Webhook>, ApiError> {
    caller
        .organization(&state, Action::CreateWebhook, &org)
        .await?;
    let key = key(&state)?;
    let mut faults = Vec::new();
    let url = match request.url.as_deref().map(str::trim) {
        None | Some("") => {
            faults.push(FieldError::new("url", "required", "url is required"));
            None
        }
        Some(text) => match check_url(text, state.settings.webhooks.allow_private) {
            Ok(_) => Some(text.to_string()),
            Err(reason) => {
                faults.push(FieldError::new("url", "invalid", format!("url {reason}")));
                None
            }
        },
    };
    let description = match Description::parse("description", request.description) {
        Ok(d) => Some(d.into_inner()),
        Err(fault) => {
            faults.push(fault);
            None
        }
    };
    let mut event_types = Vec::new();
    for text in request.event_types.unwrap_or_default() {
        if text == "*" {
            continue;
        }
        match EventType::parse(&text) {
            Some(t) if !event_types.contains(&t) => event_types.push(t),
            Some(_) => {}
            None => faults.push(FieldError::new(
                "eventTypes",
                "invalid",
                format!("{text:?} is not an event type; see docs/events.md (or use \"*\" for all)"),
            )),
        }
    }
    let (Some(url), Some(description), true) = (url, description, faults.is_empty()) else {
        return Err(ApiError::invalid(faults));
    };
    let now = state.clock.now();
    let endpoint = Endpoint {
        id: new_id(),
        organization_id: org.clone(),
        url,
        description,
        event_types,
        generation: 1,
        created_at: now,
        updated_at: now,
        created_by: caller.0.subject(),
    };
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::WebhookCreate,
        Target(TargetKind::Webhook, &endpoint.id),
        now,
    );
    state
        .store
        .create_webhook_endpoint(&endpoint, &audit)
        .await?;
    tracing::info!(webhook_id = %endpoint.id, "webhook endpoint created");
    let mut body = Webhook::from(&endpoint);
    body.secret = Some(RevealedSecret::new(
        key.endpoint_secret(&endpoint.id, endpoint.generation)
            .expose_secret(),
    ));
    Ok(SecretResponse::new(body))
}

/// List the organization's webhook endpoints.
#[utoipa::path(get, path = "/organizations/{organizationId}/webhooks", tag = "Webhook",
    operation_id = "ListWebhooks",
    params(("organizationId" = String, Path, description = "The organization's id"), ListQuery<Webhook>),
    responses((status = 200, description = "A page of endpoints", body = WebhooksPaginated)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    query: ListQuery<Webhook>,
) -> Result<Json<WebhooksPaginated>, ApiError> {
    caller
        .organization(&state, Action::GetWebhooks, &org)
        .await?;
    let page = state
        .store
        .list_webhook_endpoints(&org, &query.page)
        .await?;
    Ok(Json(WebhooksPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        webhooks: page.items.iter().map(Webhook::from).collect(),
        total_count: page.total,
    }))
}

/// The endpoint the path names, once the caller may do `action` in the
/// organization (403 first, then 404).
async fn load(
    state: &AppState,
    caller: &Caller,
    action: Action,
    org: &str,
    id: &str,
) -> Result<Endpoint, ApiError> {
    caller.organization(state, action, org).await?;
    let found = if is_id(id) {
        state.store.get_webhook_endpoint(org, id).await?
    } else {
        None
    };
    found.ok_or_else(|| ApiError::not_found("webhook"))
}

/// Get a webhook endpoint (never its secret).
#[utoipa::path(get, path = "/organizations/{organizationId}/webhooks/{webhookId}", tag = "Webhook",
    operation_id = "GetWebhook",
    params(("organizationId" = String, Path), ("webhookId" = String, Path)),
    responses((status = 200, description = "The endpoint", body = Webhook)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<Json<Webhook>, ApiError> {
    let endpoint = load(&state, &caller, Action::GetWebhooks, &org, &id).await?;
    Ok(Json(Webhook::from(&endpoint)))
}

/// Rotate a webhook endpoint's signing secret: the new one is answered
/// once, and signs every request from now on.
#[utoipa::path(post, path = "/organizations/{organizationId}/webhooks/{webhookId}/rotate",
    tag = "Webhook", operation_id = "RotateWebhookSecret",
    params(("organizationId" = String, Path), ("webhookId" = String, Path)),
    responses((status = 200, description = "The endpoint, with its new secret", body = Webhook)))]
pub async fn rotate_webhook(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<SecretResponse<Webhook>, ApiError> {
    load(&state, &caller, Action::RotateWebhook, &org, &id).await?;
    let key = key(&state)?;
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::WebhookRotate,
        Target(TargetKind::Webhook, &id),
        state.clock.now(),
    );
    let endpoint = state
        .store
        .rotate_webhook_endpoint(&org, &id, &audit)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    tracing::info!(webhook_id = %id, "webhook secret rotated");
    let mut body = Webhook::from(&endpoint);
    body.secret = Some(RevealedSecret::new(
        key.endpoint_secret(&endpoint.id, endpoint.generation)
            .expose_secret(),
    ));
    Ok(SecretResponse::new(body))
}

/// Delete a webhook endpoint and its deliveries; a second delete is a 404.
#[utoipa::path(delete, path = "/organizations/{organizationId}/webhooks/{webhookId}",
    tag = "Webhook", operation_id = "DeleteWebhook",
    params(("organizationId" = String, Path), ("webhookId" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    load(&state, &caller, Action::DeleteWebhook, &org, &id).await?;
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::WebhookDelete,
        Target(TargetKind::Webhook, &id),
        state.clock.now(),
    );
    if !state
        .store
        .delete_webhook_endpoint(&org, &id, &audit)
        .await?
    {
        return Err(ApiError::not_found("webhook"));
    }
    tracing::info!(webhook_id = %id, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The `offset` and `limit` of a deliveries list, or a 400 naming the bad one.
fn page_of(query: &DeliveriesQuery) -> Result<(i64, i64), ApiError> {
    let mut faults = Vec::new();
    let mut read = |field: &str, value: &Option<String>, default: i64, max: i64| match value {
        None => default,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) => n,
            _ => {
                faults.push(FieldError::new(
                    field,
                    "invalid",
                    format!("{field} must be an integer from 0 to {max}"),
                ));
                default
            }
        },
    };
    let offset = read("offset", &query.offset, 0, i64::MAX);
    let limit = read("limit", &query.limit, 20, 100);
    if faults.is_empty() {
        Ok((offset, limit))
    } else {
        Err(ApiError::invalid(faults))
    }
}

/// List a webhook endpoint's deliveries, newest first, each with its
/// latest attempts (status, latency, response code).
#[utoipa::path(get, path = "/organizations/{organizationId}/webhooks/{webhookId}/deliveries",
    tag = "Webhook", operation_id = "ListWebhookDeliveries",
    params(("organizationId" = String, Path), ("webhookId" = String, Path), DeliveriesQuery),
    responses((status = 200, description = "A page of deliveries", body = WebhookDeliveriesPaginated)))]
pub async fn list_webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, id)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> Result<Json<WebhookDeliveriesPaginated>, ApiError> {
    let (offset, limit) = page_of(&query)?;
    load(&state, &caller, Action::GetWebhooks, &org, &id).await?;
    let page = state
        .store
        .list_webhook_deliveries(&org, &id, offset, limit)
        .await?;
    Ok(Json(WebhookDeliveriesPaginated {
        limit,
        offset,
        deliveries: page.items.iter().map(WebhookDelivery::from).collect(),
        total_count: page.total,
    }))
}

/// Send a delivery's event again: a new delivery of the same event (same
/// `X-Agentkey-Event-Id`) to the same endpoint, queued at once.
#[utoipa::path(post,
    path = "/organizations/{organizationId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver",
    tag = "Webhook", operation_id = "RedeliverWebhook",
    params(("organizationId" = String, Path), ("webhookId" = String, Path), ("deliveryId" = String, Path)),
    responses((status = 200, description = "The new delivery", body = WebhookDelivery)))]
pub async fn redeliver_webhook(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id, delivery)): PathParams<(String, String, String)>,
) -> Result<Json<WebhookDelivery>, ApiError> {
    load(&state, &caller, Action::RedeliverWebhook, &org, &id).await?;
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::WebhookRedeliver,
        Target(TargetKind::WebhookDelivery, &delivery),
        state.clock.now(),
    );
    let created = if is_id(&delivery) {
        state
            .store
            .redeliver_webhook(&org, &id, &delivery, &audit)
            .await?
    } else {
        None
    };
    let created = created.ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    let fresh = state
        .store
        .get_webhook_delivery(&org, &id, &created)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
    tracing::info!(webhook_id = %id, delivery_id = %created, "webhook delivery queued again");
    Ok(Json(WebhookDelivery::from(&fresh)))
}
