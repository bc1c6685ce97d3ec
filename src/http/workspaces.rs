//! `/organizations/{org}/workspaces`: create, list and get workspaces.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{list_values, ListQuery, PathParams, Sortable, ValidJson};
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::clock::rfc3339;
use crate::http::request::{Description, Faults, Name};
use crate::model;
use crate::model::{AuditAction, TargetKind};
use crate::store::{PlaceFilter, SortColumn};
use crate::token::new_id;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&model::Workspace> for Workspace {
    fn from(w: &model::Workspace) -> Self {
        Workspace {
            id: w.id.clone(),
            organization_id: w.organization_id.clone(),
            name: w.name.clone(),
            description: w.description.clone(),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspacesPaginated {
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: i64,
    #[schema(minimum = 0)]
    pub offset: i64,
    pub workspaces: Vec<Workspace>,
    pub total_count: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWorkspaceRequest {
    /// 1 to 255 characters, at least one visible.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Up to 1,000 characters; absent or `null` is the empty string.
    #[schema(max_length = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Sortable for Workspace {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("name", SortColumn::Name),
        ("description", SortColumn::Description),
        ("createdAt", SortColumn::CreatedAt),
        ("updatedAt", SortColumn::UpdatedAt),
    ];
}

/// Create a workspace.
#[utoipa::path(post, path = "/organizations/{organizationId}/workspaces", tag = "Workspace", operation_id = "CreateWorkspace",
    params(("organizationId" = String, Path)),
    request_body = CreateWorkspaceRequest,
    responses((status = 200, description = "The new workspace", body = Workspace)))]
pub async fn create_workspace(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams(org): PathParams<String>,
    ValidJson(request): ValidJson<CreateWorkspaceRequest>,
) -> Result<Json<Workspace>, ApiError> {
    caller.require(Action::CreateWorkspace, Resource::Organization(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let description = faults.check(Description::parse("description", request.description));
    let (name, description) = faults
        .finish(|| Some((name?, description?)))
        .map_err(ApiError::invalid)?;
    caller
        .organization(&state, Action::CreateWorkspace, &org)
        .await?;
    let now = state.clock.now();
    let workspace = model::Workspace {
        id: new_id(),
        organization_id: org,
        name: name.into_inner(),
        description: description.into_inner(),
        created_at: now,
        updated_at: now,
    };
    let audit = origin.event(
        caller.0.subject(),
        Some(&workspace.organization_id),
        AuditAction::WorkspaceCreate,
        Target(TargetKind::Workspace, &workspace.id),
        now,
    );
    state.store.create_workspace(&workspace, &audit).await?;
    Ok(Json((&workspace).into()))
}

/// List the workspaces of an organization.
///
/// `workspaceIds` and `names` (repeated or comma-separated) narrow the list.
/// A caller without organization-wide access lists the workspaces it names,
/// where its role reaches.
#[utoipa::path(get, path = "/organizations/{organizationId}/workspaces", tag = "Workspace", operation_id = "ListWorkspaces",
    params(("organizationId" = String, Path),
           ("workspaceIds" = Option<Vec<String>>, Query, description = "Only these workspaces"),
           ("names" = Option<Vec<String>>, Query, description = "Only workspaces with one of these names (exact)"),
           ListQuery<Workspace>),
    responses((status = 200, description = "A page of workspaces", body = WorkspacesPaginated)))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    RawQuery(raw): RawQuery,
    query: ListQuery<Workspace>,
) -> Result<Json<WorkspacesPaginated>, ApiError> {
    let filter = PlaceFilter {
        ids: list_values(raw.as_deref(), "workspaceIds")?,
        names: list_values(raw.as_deref(), "names")?,
        workspaces: Vec::new(),
    };
    caller.inside(&state, Action::GetWorkspace, &org).await?;
    if authz::authorize(
        &caller.0,
        Action::ListWorkspaces,
        Resource::Organization(&org),
    )
    .is_err()
    {
        if filter.ids.is_empty() {
            caller.require(Action::ListWorkspaces, Resource::Organization(&org))?;
        }
        for ws in &filter.ids {
            caller
                .workspace(&state, Action::GetWorkspace, &org, ws)
                .await?;
        }
    }
    let page = state
        .store
        .list_workspaces(&org, &filter, &query.page)
        .await?;
    Ok(Json(WorkspacesPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        workspaces: page.items.iter().map(Workspace::from).collect(),
        total_count: page.total,
    }))
}

/// Get a workspace.
#[utoipa::path(get, path = "/organizations/{organizationId}/workspaces/{workspaceId}", tag = "Workspace", operation_id = "GetWorkspace",
    params(("organizationId" = String, Path), ("workspaceId" = String, Path)),
    responses((status = 200, description = "The workspace", body = Workspace)))]
pub async fn get_workspace(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<Json<Workspace>, ApiError> {
    let workspace = caller
        .workspace(&state, Action::GetWorkspace, &org, &id)
        .await?;
    Ok(Json((&workspace).into()))
}
