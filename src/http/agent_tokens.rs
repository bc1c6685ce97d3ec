//! `/organizations/{org}/deployments/{dep}/agent-tokens`: the four Astro v1
//! Agent API token endpoints.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ListQuery, OptionalJson, PathParams, Sortable, ValidJson};
use super::schema::{ApiToken, ApiTokensPaginated, SecretResponse};
use crate::allowlist::{parse_range, MAX_RANGES_PER_TOKEN};
use crate::app::AppState;
use crate::authz::{Action, Resource};
use crate::http::request::{
    end_of, parse_expiry_days, parse_grace_seconds, Description, Faults, FieldError, Name,
};
use crate::model::{AgentToken, NewAgentToken, Rotation, AGENT_ROLE};
use crate::model::{AuditAction, TargetKind};
use crate::store::revocations::Revocation;
use crate::store::SortColumn;
use crate::token::id::is_id;
use crate::token::{new_id, Secret, SecretKind};

/// Astro's `CreateAgentTokenRequest`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentTokenRequest {
    /// 1 to 255 characters, at least one visible.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Up to 1,000 characters; absent or `null` is the empty string.
    #[schema(max_length = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Absent or `null` means the token never expires.
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expiry_period_in_days: Option<i64>,
    /// agentkey's own: up to 100 CIDR blocks (normalised, e.g.
    /// `10.0.0.0/8`) the token may be presented from. Absent or empty: from
    /// anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_ip_address_ranges: Option<Vec<String>>,
}

/// agentkey's rotation request (Astro has no rotation for agent tokens).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateAgentTokenRequest {
    /// Seconds the replaced secret keeps verifying (default 0).
    #[schema(minimum = 0, maximum = 86400)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
}

impl Sortable for ApiToken {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("name", SortColumn::Name),
        ("description", SortColumn::Description),
        ("createdAt", SortColumn::CreatedAt),
        ("updatedAt", SortColumn::UpdatedAt),
        ("createdById", SortColumn::CreatedById),
        ("updatedById", SortColumn::UpdatedById),
        ("tokenStartAt", SortColumn::StartAt),
    ];
}

/// List Agent API tokens.
///
/// Without `sorts`, tokens come oldest first (`createdAt:asc`), ties broken
/// by id, so pages are stable.
#[utoipa::path(get, path = "/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens",
    tag = "Agent Token", operation_id = "ListAgentTokens",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path), ListQuery<ApiToken>),
    responses((status = 200, description = "A page of agent tokens, without secrets", body = ApiTokensPaginated)))]
pub async fn list_agent_tokens(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, dep)): PathParams<(String, String)>,
    query: ListQuery<ApiToken>,
) -> Result<Json<ApiTokensPaginated>, ApiError> {
    caller
        .deployment(&state, Action::GetAgentTokens, &org, &dep)
        .await?;
    let page = state
        .store
        .list_agent_tokens(&org, &dep, &query.page)
        .await?;
    Ok(Json(ApiTokensPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        tokens: page
            .items
            .iter()
            .map(|t| ApiToken::agent(t, state.clock.now()))
            .collect(),
        total_count: page.total,
    }))
}

/// Create an Agent API token. The response carries the secret `token`, which
/// cannot be retrieved again.
#[utoipa::path(post, path = "/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens",
    tag = "Agent Token", operation_id = "CreateAgentToken",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path)),
    request_body = CreateAgentTokenRequest,
    responses((status = 200, description = "The new token, with its secret", body = ApiToken)))]
pub async fn create_agent_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, dep)): PathParams<(String, String)>,
    ValidJson(request): ValidJson<CreateAgentTokenRequest>,
) -> Result<SecretResponse<ApiToken>, ApiError> {
    caller.require(Action::CreateAgentToken, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let description = faults.check(Description::parse("description", request.description));
    let expiry = faults.check(parse_expiry_days(
        "tokenExpiryPeriodInDays",
        request.token_expiry_period_in_days,
    ));
    let ranges = faults.check(parse_token_ranges(
        "allowedIpAddressRanges",
        request.allowed_ip_address_ranges.unwrap_or_default(),
    ));
    let (name, description, expiry_days, ranges) = faults
        .finish(|| Some((name?, description?, expiry?, ranges?)))
        .map_err(ApiError::invalid)?;
    caller
        .deployment(&state, Action::CreateAgentToken, &org, &dep)
        .await?;

    let secret = Secret::generate(SecretKind::Agent);
    let now = state.clock.now();
    let actor = caller.0.subject();
    let token = AgentToken {
        id: new_id(),
        organization_id: org,
        deployment_id: dep,
        name: name.into_inner(),
        description: description.into_inner(),
        short_token: secret.short_token(),
        role: AGENT_ROLE,
        expiry_period_in_days: expiry_days,
        start_at: now,
        end_at: end_of(now, expiry_days),
        created_at: now,
        updated_at: now,
        created_by: actor.clone(),
        updated_by: actor,
        last_used_at: None,
        last_rotated_at: None,
        previous_secret_valid_until: None,
        allowed_ip_ranges: ranges,
    };
    let new = NewAgentToken {
        token,
        secret_digest: secret.digest(),
    };
    let audit = origin.event(
        caller.0.subject(),
        Some(&new.token.organization_id),
        AuditAction::AgentTokenCreate,
        Target(TargetKind::AgentToken, &new.token.id),
        now,
    );
    state
        .store
        .create_agent_token(&new, state.settings.max_agent_tokens_per_deployment, &audit)
        .await?;
    state.verifier.issued(&new.secret_digest);
    tracing::info!(token_id = %new.token.id, deployment_id = %new.token.deployment_id, "agent token created");
    Ok(SecretResponse::new(
        ApiToken::from(&new.token).revealing(&secret),
    ))
}

/// Get an Agent API token (never its secret).
#[utoipa::path(get, path = "/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}",
    tag = "Agent Token", operation_id = "GetAgentToken",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path), ("agentTokenId" = String, Path)),
    responses((status = 200, description = "The token, without its secret", body = ApiToken)))]
pub async fn get_agent_token(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, dep, id)): PathParams<(String, String, String)>,
) -> Result<Json<ApiToken>, ApiError> {
    caller
        .deployment(&state, Action::GetAgentTokens, &org, &dep)
        .await?;
    if !is_id(&id) {
        return Err(ApiError::not_found("agent token"));
    }
    let token = state
        .store
        .get_agent_token(&org, &dep, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent token"))?;
    Ok(Json(ApiToken::agent(&token, state.clock.now())))
}

/// Delete an Agent API token. It is refused from the very next verification;
/// a second delete is a 404.
#[utoipa::path(delete, path = "/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}",
    tag = "Agent Token", operation_id = "DeleteAgentToken",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path), ("agentTokenId" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_agent_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, dep, id)): PathParams<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    caller
        .deployment(&state, Action::DeleteAgentToken, &org, &dep)
        .await?;
    if !is_id(&id) {
        return Err(ApiError::not_found("agent token"));
    }
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::AgentTokenDelete,
        Target(TargetKind::AgentToken, &id),
        state.clock.now(),
    );
    let (o, d, t) = (org.clone(), dep.clone(), id.clone());
    state
        .revoking(Revocation::Token(id.clone()), |store| async move {
            store.delete_agent_token(&o, &d, &t, &audit).await
        })
        .await?
        .ok_or_else(|| ApiError::not_found("agent token"))?;
    tracing::info!(token_id = %id, deployment_id = %dep, "agent token deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an Agent API token: a new secret, answered once. The replaced
/// secret keeps verifying for `gracePeriodSeconds` (0 by default), and a
/// secret still in the grace window of an earlier rotation stops at once.
#[utoipa::path(post, path = "/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}/rotate",
    tag = "Agent Token", operation_id = "RotateAgentToken",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path), ("agentTokenId" = String, Path)),
    request_body(content = Option<RotateAgentTokenRequest>, description = "Optional; an empty body means no grace window"),
    responses((status = 200, description = "The token, with its new secret", body = ApiToken)))]
pub async fn rotate_agent_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, dep, id)): PathParams<(String, String, String)>,
    OptionalJson(request): OptionalJson<RotateAgentTokenRequest>,
) -> Result<SecretResponse<ApiToken>, ApiError> {
    caller.require(Action::RotateAgentToken, Resource::Inside(&org))?;
    let grace = parse_grace_seconds("gracePeriodSeconds", request.grace_period_seconds)
        .map_err(|e| ApiError::invalid(vec![e]))?;
    caller
        .deployment(&state, Action::RotateAgentToken, &org, &dep)
        .await?;
    if !is_id(&id) {
        return Err(ApiError::not_found("agent token"));
    }
    let secret = Secret::generate(SecretKind::Agent);
    let now = state.clock.now();
    let rotation = Rotation {
        organization_id: org,
        deployment_id: dep,
        token_id: id,
        secret_digest: secret.digest(),
        short_token: secret.short_token(),
        previous_valid_until: (grace > 0).then_some(now + grace),
        at: now,
        actor: caller.0.subject(),
    };
    let audit = origin.event(
        rotation.actor.clone(),
        Some(&rotation.organization_id),
        AuditAction::AgentTokenRotate,
        Target(TargetKind::AgentToken, &rotation.token_id),
        now,
    );
    let revocation = Revocation::Token(rotation.token_id.clone());
    let token = state
        .revoking(revocation, |store| async move {
            store.rotate_agent_token(&rotation, &audit).await
        })
        .await?
        .ok_or_else(|| ApiError::not_found("agent token"))?;
    state.verifier.issued(&secret.digest());
    tracing::info!(token_id = %token.id, grace_seconds = grace, "agent token rotated");
    Ok(SecretResponse::new(
        ApiToken::agent(&token, now).revealing(&secret),
    ))
}

/// The networks an agent token is bound to: at most
/// [`MAX_RANGES_PER_TOKEN`], each normalised (see `allowlist`), none twice.
fn parse_token_ranges(field: &str, texts: Vec<String>) -> Result<Vec<String>, FieldError> {
    if texts.len() > MAX_RANGES_PER_TOKEN {
        return Err(FieldError::new(
            field,
            "invalid",
            format!("{field} holds at most {MAX_RANGES_PER_TOKEN} CIDR blocks"),
        ));
    }
    let mut ranges: Vec<String> = Vec::with_capacity(texts.len());
    for text in texts {
        let range = parse_range(&text)
            .map_err(|message| FieldError::new(field, "invalid", message))?
            .to_string();
        if ranges.contains(&range) {
            return Err(FieldError::new(
                field,
                "duplicate",
                format!("{text:?} appears more than once"),
            ));
        }
        ranges.push(range);
    }
    Ok(ranges)
}
