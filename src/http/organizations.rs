//! `/organizations`: create, list and get organizations.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ListQuery, PathParams, Sortable, ValidJson};
use crate::app::AppState;
use crate::authz::{Action, Resource};
use crate::clock::rfc3339;
use crate::model;
use crate::model::{AuditAction, TargetKind};
use crate::store::{Page, SortColumn};
use crate::token::new_id;
use crate::token::request::{Faults, Name};
use crate::verify::Principal;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    /// Whether the organization has allowed IP address ranges, and so
    /// answers management requests only from inside them.
    pub has_allowed_ip_address_ranges: bool,
}

impl From<&model::Organization> for Organization {
    fn from(o: &model::Organization) -> Self {
        Organization {
            id: o.id.clone(),
            name: o.name.clone(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            has_allowed_ip_address_ranges: o.has_allowed_ip_ranges,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationsPaginated {
    pub limit: i64,
    pub offset: i64,
    pub organizations: Vec<Organization>,
    pub total_count: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrganizationRequest {
    /// 1 to 255 characters.
    pub name: Option<String>,
}

impl Sortable for Organization {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("name", SortColumn::Name),
        ("createdAt", SortColumn::CreatedAt),
        ("updatedAt", SortColumn::UpdatedAt),
    ];
}

/// Create an organization.
#[utoipa::path(post, path = "/organizations", tag = "Organization",
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
    let org = model::Organization {
        id: new_id(),
        name: name.into_inner(),
        created_at: now,
        updated_at: now,
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
    params(("offset" = Option<i64>, Query, description = "Results to skip, >= 0 (default 0)"),
           ("limit" = Option<i64>, Query, description = "Results per page, 0..=1000 (default 20)"),
           ("sorts" = Option<Vec<String>>, Query, description = "`name`, `createdAt`, `updatedAt` with `:asc` or `:desc`")),
    responses((status = 200, description = "A page of organizations", body = OrganizationsPaginated)))]
pub async fn list_organizations(
    State(state): State<AppState>,
    caller: Caller,
    query: ListQuery<Organization>,
) -> Result<Json<OrganizationsPaginated>, ApiError> {
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
#[utoipa::path(get, path = "/organizations/{organizationId}", tag = "Organization",
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
