//! `/organizations/{org}/tokens`: organization API tokens, the management
//! credentials with roles. List, create, get, rename, change roles, rotate
//! and delete, with Astro's wire shapes.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::Place;
use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{list_values, ListQuery, PathParams, QueryParams, ValidJson};
use super::schema::{
    ApiToken, ApiTokenKind, ApiTokenRole, ApiTokenScope, ApiTokensPaginated, ListedKind, RoleName,
    SecretResponse,
};
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::clock::rfc3339;
use crate::http::grants::{self, RoleEntry};
use crate::http::request::{
    end_of, only_empty, parse_expiry_days, Description, Faults, FieldError, Name,
};
use crate::model::{self, ApiTokenChange, ApiTokenEdit, NewApiToken};
use crate::model::{AuditAction, TargetKind};
use crate::roles::{EntityType, RoleGrant};
use crate::store::{ApiTokenFilter, Homes};
use crate::token::id::is_id;
use crate::token::{new_id, Secret, SecretKind};

/// Astro's `CreateApiTokenRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateApiTokenRequest {
    /// 1 to 255 characters, at least one visible.
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Up to 1,000 characters; absent or `null` is the empty string.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// The token's role on the entity it is created for; it must be a role
    /// of the token's scope (`WORKSPACE_OWNER` for a `WORKSPACE` token, ...).
    #[schema(value_type = RoleName)]
    pub role: Option<String>,
    /// What the token is created for, sent as `scope` or as `type` (the
    /// `/iam/v1beta1` name): exactly one of the two.
    #[serde(alias = "type")]
    #[schema(value_type = ApiTokenScope, required = false)]
    pub scope: Option<String>,
    /// The workspace or deployment; optional for an `ORGANIZATION` token.
    pub entity_id: Option<String>,
    /// `STANDARD`, the default and the only kind agentkey issues.
    #[schema(value_type = Option<ApiTokenKind>)]
    pub kind: Option<String>,
    /// Absent or `null` means the token never expires.
    #[schema(minimum = 1, maximum = 3650)]
    pub token_expiry_period_in_days: Option<i64>,
}

/// Astro's `UpdateApiTokenRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateApiTokenRequest {
    /// 1 to 255 characters, at least one visible.
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Up to 1,000 characters; absent keeps the current description.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

/// One role in Astro's `UpdateApiTokenRolesRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenRoleRequest {
    #[schema(value_type = String, min_length = 1)]
    pub entity_id: Option<String>,
    #[schema(value_type = ApiTokenScope)]
    pub entity_type: Option<String>,
    /// A role of `entityType`'s scope.
    #[schema(value_type = RoleName)]
    pub role: Option<String>,
}

/// Astro's `UpdateApiTokenRolesRequest`: the token's whole set of roles.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateApiTokenRolesRequest {
    #[schema(value_type = Vec<ApiTokenRoleRequest>)]
    pub roles: Option<Vec<ApiTokenRoleRequest>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRole {
    pub workspace_id: String,
    #[schema(value_type = RoleName)]
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRole {
    pub deployment_id: String,
    #[schema(value_type = RoleName)]
    pub role: String,
}

/// Astro's `SubjectRoles`: what an update of roles answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRoles {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = RoleName, required = false)]
    pub organization_role: Option<String>,
    pub workspace_roles: Vec<WorkspaceRole>,
    pub deployment_roles: Vec<DeploymentRole>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ApiTokenListFilter {
    /// Only tokens holding a role on this workspace.
    pub workspace_id: Option<String>,
    /// Only tokens holding a role on this deployment.
    pub deployment_id: Option<String>,
    /// Only tokens created for the organization itself (`ORGANIZATION`
    /// scope), as the Astro CLI asks on every page of its list.
    pub include_only_organization_tokens: Option<bool>,
    /// `STANDARD` (every token agentkey issues) or `DIRECT_ACCESS` (none:
    /// agentkey issues no direct-access tokens).
    #[param(value_type = Option<ListedKind>, inline)]
    pub kind: Option<String>,
}

impl From<&model::ApiToken> for ApiToken {
    fn from(t: &model::ApiToken) -> Self {
        ApiToken {
            id: t.id.clone(),
            name: t.name.clone(),
            description: t.description.clone(),
            short_token: t.short_token.clone(),
            kind: "STANDARD".into(),
            scope: t.scope.as_str().into(),
            token_type: t.scope.as_str().into(),
            start_at: rfc3339(t.start_at),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
            created_by: Some((&t.created_by).into()),
            updated_by: Some((&t.updated_by).into()),
            end_at: t.end_at.map(rfc3339),
            expiry_period_in_days: t.expiry_period_in_days,
            last_rotated_at: t.last_rotated_at.map(rfc3339),
            last_used_at: None,
            previous_secret_valid_until: None,
            allowed_ip_address_ranges: None,
            roles: Some(t.roles.iter().map(role_entry).collect()),
            token: None,
        }
    }
}

fn role_entry(g: &RoleGrant) -> ApiTokenRole {
    ApiTokenRole {
        entity_id: g.entity_id.clone(),
        entity_type: g.entity_type().as_str().into(),
        role: g.role.as_str().into(),
        deployment_id: (g.entity_type() == EntityType::Deployment).then(|| g.entity_id.clone()),
    }
}

impl From<&[RoleGrant]> for SubjectRoles {
    fn from(grants: &[RoleGrant]) -> Self {
        let of = |t: EntityType| grants.iter().filter(move |g| g.entity_type() == t);
        SubjectRoles {
            organization_role: of(EntityType::Organization)
                .next()
                .map(|g| g.role.as_str().into()),
            workspace_roles: of(EntityType::Workspace)
                .map(|g| WorkspaceRole {
                    workspace_id: g.entity_id.clone(),
                    role: g.role.as_str().into(),
                })
                .collect(),
            deployment_roles: of(EntityType::Deployment)
                .map(|g| DeploymentRole {
                    deployment_id: g.entity_id.clone(),
                    role: g.role.as_str().into(),
                })
                .collect(),
        }
    }
}

/// List API tokens.
///
/// Without `sorts`, tokens come oldest first (`createdAt:asc`), ties broken
/// by id. `workspaceId` / `deploymentId` narrow the list to tokens with a
/// role there, and then only need permission there.
#[utoipa::path(get, path = "/organizations/{organizationId}/tokens",
    tag = "API Token", operation_id = "ListApiTokens",
    params(("organizationId" = String, Path), ApiTokenListFilter, ListQuery<ApiToken>),
    responses((status = 200, description = "A page of API tokens, without secrets", body = ApiTokensPaginated)))]
pub async fn list_api_tokens(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    query: ListQuery<ApiToken>,
    RawQuery(raw): RawQuery,
    QueryParams(filter): QueryParams<ApiTokenListFilter>,
) -> Result<Json<ApiTokensPaginated>, ApiError> {
    // Astro's DAG filters: agentkey has no roles on DAGs or DAG tags, and a
    // filter it cannot honour is refused, never ignored.
    let mut faults = Faults::default();
    for dag_filter in ["dagId", "dagTags"] {
        let given = list_values(raw.as_deref(), dag_filter)?;
        faults.check(only_empty(
            dag_filter,
            given.first().map(String::as_str),
            "roles on DAGs or DAG tags to filter by",
        ));
    }
    faults.finish(|| Some(())).map_err(ApiError::invalid)?;
    caller.inside(&state, Action::GetApiTokens, &org).await?;
    let workspace = match &filter.workspace_id {
        Some(id) => Some(existing(&state, &org, EntityType::Workspace, id).await?),
        None => None,
    };
    let deployment = match &filter.deployment_id {
        Some(id) => Some(existing(&state, &org, EntityType::Deployment, id).await?),
        None => None,
    };
    let resource = match (&deployment, &workspace) {
        (Some(place), _) | (None, Some(place)) => place.resource(),
        (None, None) => Resource::Organization(&org),
    };
    caller.require(Action::GetApiTokens, resource)?;
    // Without organization-wide access, only tokens created within the
    // reach of the caller's role are listed: the rule `GET /tokens/{id}`
    // applies to each one.
    let homes = if authz::authorize(
        &caller.0,
        Action::GetApiTokens,
        Resource::Organization(&org),
    )
    .is_ok()
    {
        None
    } else {
        match (&deployment, &workspace) {
            (
                Some(Place::Deployment {
                    workspace,
                    deployment,
                    ..
                }),
                _,
            ) => {
                let in_workspace = Resource::Workspace {
                    organization: &org,
                    workspace,
                };
                Some(
                    if authz::authorize(&caller.0, Action::GetApiTokens, in_workspace).is_ok() {
                        Homes::Workspace(workspace.clone())
                    } else {
                        Homes::Deployment(deployment.clone())
                    },
                )
            }
            (_, Some(Place::Workspace { workspace, .. })) => {
                Some(Homes::Workspace(workspace.clone()))
            }
            // The organization itself was required above.
            _ => None,
        }
    };
    let no_kind_here = match filter.kind.as_deref() {
        None | Some("STANDARD") => false,
        Some("DIRECT_ACCESS") => true,
        Some(other) => {
            return Err(ApiError::invalid(vec![FieldError::new(
                "kind",
                "invalid",
                format!("kind must be STANDARD or DIRECT_ACCESS; got {other:?}"),
            )]))
        }
    };
    let filter = ApiTokenFilter {
        workspace: filter.workspace_id,
        deployment: filter.deployment_id,
        homes,
        scope: (filter.include_only_organization_tokens == Some(true))
            .then_some(EntityType::Organization),
    };
    if no_kind_here {
        return Ok(Json(ApiTokensPaginated {
            limit: query.page.limit,
            offset: query.page.offset,
            tokens: Vec::new(),
            total_count: 0,
        }));
    }
    let page = state
        .store
        .list_api_tokens(&org, &filter, &query.page)
        .await?;
    Ok(Json(ApiTokensPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        tokens: page.items.iter().map(ApiToken::from).collect(),
        total_count: page.total,
    }))
}

/// Create an API token. The response carries the secret `token`, which
/// cannot be retrieved again.
#[utoipa::path(post, path = "/organizations/{organizationId}/tokens",
    tag = "API Token", operation_id = "CreateApiToken",
    params(("organizationId" = String, Path)),
    request_body = CreateApiTokenRequest,
    responses((status = 200, description = "The new token, with its secret", body = ApiToken)))]
pub async fn create_api_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams(org): PathParams<String>,
    ValidJson(request): ValidJson<CreateApiTokenRequest>,
) -> Result<SecretResponse<ApiToken>, ApiError> {
    caller.require(Action::CreateApiToken, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let description = faults.check(Description::parse("description", request.description));
    let scope = faults.check(grants::parse_entity_type("scope", request.scope.as_deref()));
    let role = faults.check(grants::parse_role("role", request.role.as_deref()));
    if let (Some(role), Some(scope)) = (role, scope) {
        faults.check(grants::check_role_scope("role", role, scope));
    }
    // Without a valid scope, whether entityId is needed is unknown.
    let entity_id = match scope {
        Some(scope) => faults.check(grants::parse_entity_id(
            "entityId",
            request.entity_id,
            scope,
            &org,
        )),
        None => None,
    };
    if let Some(kind) = request.kind.filter(|k| k != "STANDARD") {
        faults.check::<()>(Err(FieldError::new(
            "kind",
            "invalid",
            format!("kind must be STANDARD, the only kind agentkey issues; got {kind:?}"),
        )));
    }
    let expiry = faults.check(parse_expiry_days(
        "tokenExpiryPeriodInDays",
        request.token_expiry_period_in_days,
    ));
    let (name, description, scope, role, entity_id, expiry_days) = faults
        .finish(|| Some((name?, description?, scope?, role?, entity_id?, expiry?)))
        .map_err(ApiError::invalid)?;
    caller.inside(&state, Action::CreateApiToken, &org).await?;
    let place = Place::find(&state, &org, scope, &entity_id)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(vec![FieldError::new(
                "entityId",
                "not_found",
                format!("entityId {entity_id:?} is not a {scope} of this organization"),
            )])
        })?;
    caller.require(Action::CreateApiToken, place.resource())?;
    authz::may_confer(&caller.0, role, place.resource())
        .map_err(|denied| ApiError::forbidden(denied.message))?;

    let secret = Secret::generate(SecretKind::Api);
    let now = state.clock.now();
    let actor = caller.0.subject();
    let token = model::ApiToken {
        id: new_id(),
        organization_id: org,
        name: name.into_inner(),
        description: description.into_inner(),
        short_token: secret.short_token(),
        scope,
        roles: vec![RoleGrant::new(role, entity_id.clone())],
        entity_id,
        expiry_period_in_days: expiry_days,
        start_at: now,
        end_at: end_of(now, expiry_days),
        created_at: now,
        updated_at: now,
        created_by: actor.clone(),
        updated_by: actor,
        last_rotated_at: None,
    };
    let new = NewApiToken {
        token,
        secret_digest: secret.digest(),
    };
    let audit = origin.event(
        caller.0.subject(),
        Some(&new.token.organization_id),
        AuditAction::ApiTokenCreate,
        Target(TargetKind::ApiToken, &new.token.id),
        now,
    );
    state.store.create_api_token(&new, &audit).await?;
    state.verifier.issued(&new.secret_digest);
    tracing::info!(token_id = %new.token.id, scope = %new.token.scope, "API token created");
    Ok(SecretResponse::new(
        ApiToken::from(&new.token).revealing(&secret),
    ))
}

/// Get an API token (never its secret).
#[utoipa::path(get, path = "/organizations/{organizationId}/tokens/{tokenId}",
    tag = "API Token", operation_id = "GetApiToken",
    params(("organizationId" = String, Path), ("tokenId" = String, Path)),
    responses((status = 200, description = "The token, without its secret", body = ApiToken)))]
pub async fn get_api_token(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<Json<ApiToken>, ApiError> {
    let (token, _) = load(&state, &caller, Action::GetApiTokens, &org, &id).await?;
    Ok(Json((&token).into()))
}

/// Rename an API token or change its description.
#[utoipa::path(post, path = "/organizations/{organizationId}/tokens/{tokenId}",
    tag = "API Token", operation_id = "UpdateApiToken",
    params(("organizationId" = String, Path), ("tokenId" = String, Path)),
    request_body = UpdateApiTokenRequest,
    responses((status = 200, description = "The token as it now is", body = ApiToken)))]
pub async fn update_api_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
    ValidJson(request): ValidJson<UpdateApiTokenRequest>,
) -> Result<Json<ApiToken>, ApiError> {
    caller.require(Action::UpdateApiToken, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let given = request.description.is_some();
    let description = faults.check(Description::parse("description", request.description));
    let (name, description) = faults
        .finish(|| Some((name?, description?)))
        .map_err(ApiError::invalid)?;
    let (token, _) = load(&state, &caller, Action::UpdateApiToken, &org, &id).await?;
    let description = if given {
        description.into_inner()
    } else {
        token.description
    };
    let edit = ApiTokenEdit::Rename {
        name: name.into_inner(),
        description,
    };
    let token = change(&state, &caller, &origin, &org, &id, edit).await?;
    Ok(Json((&token).into()))
}

/// Replace an API token's roles. The set must hold the token's own role on
/// the entity it was created for; an `ORGANIZATION` token may add workspace
/// and deployment roles, a `WORKSPACE` token deployment roles in its
/// workspace. Nobody can confer a role with more power than they hold.
#[utoipa::path(post, path = "/organizations/{organizationId}/tokens/{tokenId}/roles",
    tag = "API Token", operation_id = "UpdateApiTokenRoles",
    params(("organizationId" = String, Path), ("tokenId" = String, Path)),
    request_body = UpdateApiTokenRolesRequest,
    responses((status = 200, description = "The token's roles as they now are", body = SubjectRoles)))]
pub async fn update_api_token_roles(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
    ValidJson(request): ValidJson<UpdateApiTokenRolesRequest>,
) -> Result<Json<SubjectRoles>, ApiError> {
    caller.require(Action::UpdateApiTokenRoles, Resource::Inside(&org))?;
    let entries = request.roles.map(|roles| {
        roles
            .into_iter()
            .map(|r| RoleEntry {
                entity_id: r.entity_id,
                entity_type: r.entity_type,
                role: r.role,
            })
            .collect()
    });
    let (token, home) = load(&state, &caller, Action::UpdateApiTokenRoles, &org, &id).await?;
    let new_roles = grants::parse_role_set(entries, token.scope, &token.entity_id)
        .map_err(ApiError::invalid)?;
    let mut places = Vec::with_capacity(new_roles.len());
    for (i, grant) in new_roles.iter().enumerate() {
        let place = Place::find(&state, &org, grant.entity_type(), &grant.entity_id).await?;
        let inside_home = match (&place, &home) {
            (Some(Place::Deployment { workspace, .. }), Place::Workspace { workspace: w, .. }) => {
                workspace == w
            }
            _ => true,
        };
        match place {
            Some(place) if inside_home => places.push((grant.role, place)),
            _ => {
                return Err(ApiError::invalid(vec![FieldError::new(
                    &format!("roles[{i}].entityId"),
                    "not_found",
                    format!(
                        "{:?} is not a {} this token can hold a role on",
                        grant.entity_id,
                        grant.entity_type().as_str().to_lowercase()
                    ),
                )]))
            }
        }
    }
    // Both the roles taken away and those given must be within the
    // caller's own power.
    confer_all(&state, &caller, &org, &token.roles).await?;
    for (role, place) in &places {
        authz::may_confer(&caller.0, *role, place.resource())
            .map_err(|denied| ApiError::forbidden(denied.message))?;
    }
    let token = change(
        &state,
        &caller,
        &origin,
        &org,
        &id,
        ApiTokenEdit::Roles(new_roles),
    )
    .await?;
    tracing::info!(token_id = %token.id, roles = token.roles.len(), "API token roles replaced");
    Ok(Json(SubjectRoles::from(token.roles.as_slice())))
}

/// Rotate an API token: a new secret, answered once. The old secret stops
/// working at once.
#[utoipa::path(post, path = "/organizations/{organizationId}/tokens/{tokenId}/rotate",
    tag = "API Token", operation_id = "RotateApiToken",
    params(("organizationId" = String, Path), ("tokenId" = String, Path)),
    responses((status = 200, description = "The token, with its new secret", body = ApiToken)))]
pub async fn rotate_api_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<SecretResponse<ApiToken>, ApiError> {
    let (token, _) = load(&state, &caller, Action::RotateApiToken, &org, &id).await?;
    confer_all(&state, &caller, &org, &token.roles).await?;
    let secret = Secret::generate(SecretKind::Api);
    let edit = ApiTokenEdit::Rotate {
        secret_digest: secret.digest(),
        short_token: secret.short_token(),
    };
    let token = change(&state, &caller, &origin, &org, &id, edit).await?;
    state.verifier.issued(&secret.digest());
    tracing::info!(token_id = %token.id, "API token rotated");
    Ok(SecretResponse::new(
        ApiToken::from(&token).revealing(&secret),
    ))
}

/// Delete an API token. It is refused from the very next request; a second
/// delete is a 404.
#[utoipa::path(delete, path = "/organizations/{organizationId}/tokens/{tokenId}",
    tag = "API Token", operation_id = "DeleteApiToken",
    params(("organizationId" = String, Path), ("tokenId" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_api_token(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    load(&state, &caller, Action::DeleteApiToken, &org, &id).await?;
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::ApiTokenDelete,
        Target(TargetKind::ApiToken, &id),
        state.clock.now(),
    );
    if !state.store.delete_api_token(&org, &id, &audit).await? {
        return Err(ApiError::not_found("API token"));
    }
    tracing::info!(token_id = %id, "API token deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The token the path names, once the caller is known to hold a role in
/// the organization (403 first), the token to exist (404), and the caller
/// to be allowed `action` where the token is scoped (403). Also answers
/// that place.
async fn load(
    state: &AppState,
    caller: &Caller,
    action: Action,
    org: &str,
    id: &str,
) -> Result<(model::ApiToken, Place), ApiError> {
    caller.inside(state, action, org).await?;
    if !is_id(id) {
        return Err(ApiError::not_found("API token"));
    }
    let token = state
        .store
        .get_api_token(org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API token"))?;
    // Deleting a deployment deletes the tokens scoped to it, so a missing
    // home means a delete raced this request: decide at the organization.
    let home = Place::find(state, org, token.scope, &token.entity_id)
        .await?
        .unwrap_or_else(|| Place::Organization(org.to_string()));
    caller.require(action, home.resource())?;
    Ok((token, home))
}

/// The workspace or deployment a list filter names, or a 404.
async fn existing(
    state: &AppState,
    org: &str,
    kind: EntityType,
    id: &str,
) -> Result<Place, ApiError> {
    Place::find(state, org, kind, id).await?.ok_or_else(|| {
        ApiError::not_found(match kind {
            EntityType::Workspace => "workspace",
            _ => "deployment",
        })
    })
}

/// Refuses unless the caller could confer every one of `roles` (those on
/// entities since deleted grant nothing and are skipped).
async fn confer_all(
    state: &AppState,
    caller: &Caller,
    org: &str,
    roles: &[RoleGrant],
) -> Result<(), ApiError> {
    for grant in roles {
        if let Some(place) = Place::find(state, org, grant.entity_type(), &grant.entity_id).await? {
            authz::may_confer(&caller.0, grant.role, place.resource())
                .map_err(|denied| ApiError::forbidden(denied.message))?;
        }
    }
    Ok(())
}

/// Applies one edit, recorded as made by the caller now.
async fn change(
    state: &AppState,
    caller: &Caller,
    origin: &Origin,
    org: &str,
    id: &str,
    edit: ApiTokenEdit,
) -> Result<model::ApiToken, ApiError> {
    let action = match edit {
        ApiTokenEdit::Rename { .. } => AuditAction::ApiTokenUpdate,
        ApiTokenEdit::Roles(_) => AuditAction::ApiTokenUpdateRoles,
        ApiTokenEdit::Rotate { .. } => AuditAction::ApiTokenRotate,
    };
    let change = ApiTokenChange {
        organization_id: org.to_string(),
        token_id: id.to_string(),
        at: state.clock.now(),
        actor: caller.0.subject(),
        edit,
    };
    let audit = origin.event(
        change.actor.clone(),
        Some(org),
        action,
        Target(TargetKind::ApiToken, id),
        change.at,
    );
    state
        .store
        .update_api_token(&change, &audit)
        .await?
        .ok_or_else(|| ApiError::not_found("API token"))
}
