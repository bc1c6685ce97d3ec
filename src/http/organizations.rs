//! `/organizations`: create, list, get and update organizations.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{list_values, ListQuery, PathParams, Sortable, ValidJson};
use super::schema::BasicSubjectProfile;
use crate::app::AppState;
use crate::authz::{Action, Resource};
use crate::clock::rfc3339;
use crate::http::request::{only_empty, only_false, Faults, Name};
use crate::model;
use crate::model::{AuditAction, TargetKind};
use crate::store::{Page, SortColumn};
use crate::token::new_id;
use crate::verify::Principal;

/// Astro's `Organization`. The flags agentkey has no feature for are
/// constant `false` (see `docs/astro-compatibility.md`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Whether the organization has allowed IP address ranges, and so
    /// answers management requests only from inside them.
    pub has_allowed_ip_address_ranges: bool,
    pub created_by: BasicSubjectProfile,
    pub updated_by: BasicSubjectProfile,
    /// Always `false`: agentkey has no SCIM provisioning.
    pub is_scim_enabled: bool,
    /// Always `false`: there is no vendor support staff to grant access to.
    pub allow_enhanced_support_access: bool,
    /// Always `false`: agentkey has no AI features to block.
    pub is_blocked_enable_ai_features: bool,
    /// Always `false`: agentkey runs no clusters.
    pub should_enforce_dedicated_clusters: bool,
}

impl From<&model::Organization> for Organization {
    fn from(o: &model::Organization) -> Self {
        Organization {
            id: o.id.clone(),
            name: o.name.clone(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            has_allowed_ip_address_ranges: o.has_allowed_ip_ranges,
            created_by: (&o.created_by).into(),
            updated_by: (&o.updated_by).into(),
            is_scim_enabled: false,
            allow_enhanced_support_access: false,
            is_blocked_enable_ai_features: false,
            should_enforce_dedicated_clusters: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationsPaginated {
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: i64,
    #[schema(minimum = 0)]
    pub offset: i64,
    pub organizations: Vec<Organization>,
    pub total_count: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrganizationRequest {
    /// 1 to 255 characters, at least one visible.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Astro's `UpdateOrganizationRequest`. agentkey keeps the name; the
/// flags it has no feature for may only be `false`, and `billingEmail`
/// only empty (a 400 otherwise, never ignored).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOrganizationRequest {
    /// 1 to 255 characters.
    #[schema(required = true, nullable = false)]
    pub name: Option<String>,
    /// Only `""` (agentkey keeps no billing).
    pub billing_email: Option<String>,
    /// Only `false`.
    pub is_scim_enabled: Option<bool>,
    /// Only `false`.
    pub allow_enhanced_support_access: Option<bool>,
    /// Only `false`.
    pub should_enforce_dedicated_clusters: Option<bool>,
}

impl Sortable for Organization {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("name", SortColumn::Name),
        ("createdAt", SortColumn::CreatedAt),
        ("updatedAt", SortColumn::UpdatedAt),
    ];
}

/// Create an organization.
#[utoipa::path(post, path = "/organizations", tag = "Organization", operation_id = "CreateOrganization",
    request_body = CreateOrganizationRequest,
    responses((status = 200, description = "The new organization", body = Organization)))]
pub async fn create_organization(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    ValidJson(request): ValidJson<CreateOrganizationRequest>,
) -> Result<Json<Organization>, ApiError> {
    caller.require(Action::CreateOrganization, Resource::Global)?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let name = faults.finish(|| name).map_err(ApiError::invalid)?;
    let now = state.clock.now();
    let actor = caller.0.subject();
    let org = model::Organization {
        id: new_id(),
        name: name.into_inner(),
        created_at: now,
        updated_at: now,
        created_by: actor.clone(),
        updated_by: actor,
        has_allowed_ip_ranges: false,
    };
    let audit = origin.event(
        caller.0.subject(),
        Some(&org.id),
        AuditAction::OrganizationCreate,
        Target(TargetKind::Organization, &org.id),
        now,
    );
    state.store.create_organization(&org, &audit).await?;
    Ok(Json((&org).into()))
}

/// List organizations.
#[utoipa::path(get, path = "/organizations", tag = "Organization",
    operation_id = "ListOrganizations", params(ListQuery<Organization>),
    responses((status = 200, description = "A page of organizations", body = OrganizationsPaginated)))]
pub async fn list_organizations(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    query: ListQuery<Organization>,
) -> Result<Json<OrganizationsPaginated>, ApiError> {
    // Astro's product filters: agentkey has no products or plans to filter
    // by, and a filter it cannot honour is refused, never ignored.
    let mut faults = Faults::default();
    for filter in ["productPlan", "astronomerProduct", "product"] {
        let given = list_values(raw.as_deref(), filter)?;
        faults.check(only_empty(
            filter,
            given.first().map(String::as_str),
            "products or product plans to filter by",
        ));
    }
    faults.finish(|| Some(())).map_err(ApiError::invalid)?;
    caller.require(Action::ListOrganizations, Resource::Global)?;
    let page = match &caller.0 {
        // An API token has roles in exactly one organization: its own.
        Principal::ApiToken(token) => {
            let own = state.store.get_organization(&token.organization_id).await?;
            let total = i64::from(own.is_some());
            let on_page = query.page.offset == 0 && query.page.limit > 0;
            Page {
                items: own.into_iter().filter(|_| on_page).collect(),
                total,
            }
        }
        _ => state.store.list_organizations(&query.page).await?,
    };
    Ok(Json(OrganizationsPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        organizations: page.items.iter().map(Organization::from).collect(),
        total_count: page.total,
    }))
}

/// Get an organization.
#[utoipa::path(get, path = "/organizations/{organizationId}", tag = "Organization", operation_id = "GetOrganization",
    params(("organizationId" = String, Path, description = "The organization's id")),
    responses((status = 200, description = "The organization", body = Organization)))]
pub async fn get_organization(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
) -> Result<Json<Organization>, ApiError> {
    let org = caller
        .organization(&state, Action::GetOrganization, &org)
        .await?;
    Ok(Json((&org).into()))
}

/// Update an organization: its name. Astro's flags for features agentkey
/// lacks are accepted only as `false`.
#[utoipa::path(post, path = "/organizations/{organizationId}", tag = "Organization",
    operation_id = "UpdateOrganization",
    params(("organizationId" = String, Path, description = "The organization's id")),
    request_body = UpdateOrganizationRequest,
    responses((status = 200, description = "The organization as it now is", body = Organization)))]
pub async fn update_organization(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams(org): PathParams<String>,
    ValidJson(request): ValidJson<UpdateOrganizationRequest>,
) -> Result<Json<Organization>, ApiError> {
    caller.require(Action::UpdateOrganization, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    faults.check(only_empty(
        "billingEmail",
        request.billing_email.as_deref(),
        "billing",
    ));
    faults.check(only_false(
        "isScimEnabled",
        request.is_scim_enabled,
        "SCIM provisioning",
    ));
    faults.check(only_false(
        "allowEnhancedSupportAccess",
        request.allow_enhanced_support_access,
        "vendor support access",
    ));
    faults.check(only_false(
        "shouldEnforceDedicatedClusters",
        request.should_enforce_dedicated_clusters,
        "clusters",
    ));
    let name = faults.finish(|| name).map_err(ApiError::invalid)?;
    let mut organization = caller
        .organization(&state, Action::UpdateOrganization, &org)
        .await?;
    let now = state.clock.now();
    organization.name = name.into_inner();
    organization.updated_at = now;
    organization.updated_by = caller.0.subject();
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::OrganizationUpdate,
        Target(TargetKind::Organization, &org),
        now,
    );
    if !state
        .store
        .update_organization(&organization, &audit)
        .await?
    {
        return Err(ApiError::not_found("organization"));
    }
    Ok(Json((&organization).into()))
}
