//! `/organizations/{org}/workspaces`: create, list, get, update and delete
//! workspaces. A workspace with deployments in it cannot be deleted.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{list_values, ListQuery, PathParams, Sortable, ValidJson};
use super::schema::BasicSubjectProfile;
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::clock::rfc3339;
use crate::http::request::{only_empty, Description, Faults, Name};
use crate::model;
use crate::model::{AuditAction, TargetKind};
use crate::store::{PlaceFilter, SortColumn, WorkspaceDeletion};
use crate::token::new_id;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    pub organization_id: String,
    pub organization_name: String,
    pub name: String,
    pub description: String,
    /// Whether new deployments of this workspace enforce CI/CD deploys
    /// unless their create says otherwise.
    pub cicd_enforced_default: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub created_by: BasicSubjectProfile,
    pub updated_by: BasicSubjectProfile,
}

impl From<&model::Workspace> for Workspace {
    fn from(w: &model::Workspace) -> Self {
        Workspace {
            id: w.id.clone(),
            organization_id: w.organization_id.clone(),
            organization_name: w.organization_name.clone(),
            name: w.name.clone(),
            description: w.description.clone(),
            cicd_enforced_default: w.cicd_enforced_default,
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
            created_by: (&w.created_by).into(),
            updated_by: (&w.updated_by).into(),
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

/// Astro's `CreateWorkspaceRequest`. agentkey runs no clusters, so the
/// cluster defaults may only be absent (or `null`/`""`).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
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
    /// Default `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cicd_enforced_default: Option<bool>,
    /// Not supported: absent, `null` or `""` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_cloud_provider: Option<String>,
    /// Not supported: absent, `null` or `""` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_cluster_id: Option<String>,
    /// Not supported: absent, `null` or `""` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
}

/// Astro's `UpdateWorkspaceRequest`. A field left out keeps its value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWorkspaceRequest {
    /// 1 to 255 characters.
    #[schema(required = true, nullable = false)]
    pub name: Option<String>,
    /// Up to 1,000 characters; absent keeps the current description.
    pub description: Option<String>,
    /// Absent keeps the current value.
    pub cicd_enforced_default: Option<bool>,
    /// Not supported: absent, `null` or `""` only.
    pub default_cloud_provider: Option<String>,
    /// Not supported: absent, `null` or `""` only.
    pub default_cluster_id: Option<String>,
    /// Not supported: absent, `null` or `""` only.
    pub default_region: Option<String>,
}

/// Refuses Astro's cluster defaults of a workspace: agentkey has none.
fn no_cluster_defaults(faults: &mut Faults, fields: [(&str, Option<&str>); 3]) {
    for (field, value) in fields {
        faults.check(only_empty(field, value, "clusters or cloud regions"));
    }
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
    no_cluster_defaults(
        &mut faults,
        [
            (
                "defaultCloudProvider",
                request.default_cloud_provider.as_deref(),
            ),
            ("defaultClusterId", request.default_cluster_id.as_deref()),
            ("defaultRegion", request.default_region.as_deref()),
        ],
    );
    let (name, description) = faults
        .finish(|| Some((name?, description?)))
        .map_err(ApiError::invalid)?;
    let organization = caller
        .organization(&state, Action::CreateWorkspace, &org)
        .await?;
    let now = state.clock.now();
    let actor = caller.0.subject();
    let workspace = model::Workspace {
        id: new_id(),
        organization_id: org,
        organization_name: organization.name,
        name: name.into_inner(),
        description: description.into_inner(),
        cicd_enforced_default: request.cicd_enforced_default.unwrap_or(false),
        created_at: now,
        updated_at: now,
        created_by: actor.clone(),
        updated_by: actor,
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

/// Update a workspace: its name, description and CI/CD default. A field
/// left out keeps its value.
#[utoipa::path(post, path = "/organizations/{organizationId}/workspaces/{workspaceId}", tag = "Workspace",
    operation_id = "UpdateWorkspace",
    params(("organizationId" = String, Path), ("workspaceId" = String, Path)),
    request_body = UpdateWorkspaceRequest,
    responses((status = 200, description = "The workspace as it now is", body = Workspace)))]
pub async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
    ValidJson(request): ValidJson<UpdateWorkspaceRequest>,
) -> Result<Json<Workspace>, ApiError> {
    caller.require(Action::UpdateWorkspace, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let given = request.description.is_some();
    let description = faults.check(Description::parse("description", request.description));
    no_cluster_defaults(
        &mut faults,
        [
            (
                "defaultCloudProvider",
                request.default_cloud_provider.as_deref(),
            ),
            ("defaultClusterId", request.default_cluster_id.as_deref()),
            ("defaultRegion", request.default_region.as_deref()),
        ],
    );
    let (name, description) = faults
        .finish(|| Some((name?, description?)))
        .map_err(ApiError::invalid)?;
    let mut workspace = caller
        .workspace(&state, Action::UpdateWorkspace, &org, &id)
        .await?;
    let now = state.clock.now();
    workspace.name = name.into_inner();
    if given {
        workspace.description = description.into_inner();
    }
    if let Some(default) = request.cicd_enforced_default {
        workspace.cicd_enforced_default = default;
    }
    workspace.updated_at = now;
    workspace.updated_by = caller.0.subject();
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::WorkspaceUpdate,
        Target(TargetKind::Workspace, &id),
        now,
    );
    if !state.store.update_workspace(&workspace, &audit).await? {
        return Err(ApiError::not_found("workspace"));
    }
    Ok(Json((&workspace).into()))
}

/// Delete a workspace, with the API tokens made for it and every role on
/// it. A workspace that still has deployments is refused with a 400:
/// delete them first.
#[utoipa::path(delete, path = "/organizations/{organizationId}/workspaces/{workspaceId}", tag = "Workspace",
    operation_id = "DeleteWorkspace",
    params(("organizationId" = String, Path), ("workspaceId" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_workspace(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller
        .workspace(&state, Action::DeleteWorkspace, &org, &id)
        .await?;
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::WorkspaceDelete,
        Target(TargetKind::Workspace, &id),
        state.clock.now(),
    );
    match state.store.delete_workspace(&org, &id, &audit).await? {
        WorkspaceDeletion::Deleted => {
            tracing::info!(workspace_id = %id, "workspace deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        WorkspaceDeletion::NotFound => Err(ApiError::not_found("workspace")),
        WorkspaceDeletion::HasDeployments(count) => Err(ApiError::bad_request(format!(
            "the workspace still has {count} deployment(s); delete them before the workspace"
        ))),
    }
}
