//! `/organizations/{org}/deployments`: create, list, get, update and delete
//! deployments. Deleting a deployment revokes every agent token of it.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{list_values, ListQuery, PathParams, Sortable, ValidJson};
use super::schema::{BasicSubjectProfile, DeploymentStatus, DeploymentTypeName};
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::clock::rfc3339;
use crate::http::request::{parse_reference, Description, Faults, FieldError, Name};
use crate::model;
use crate::model::{AuditAction, DeploymentType, TargetKind};
use crate::store::revocations::Revocation;
use crate::store::{PlaceFilter, SortColumn};
use crate::token::id::is_id;
use crate::token::new_id;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub organization_id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: String,
    /// `STANDARD`, `DEDICATED` or `HYBRID`, as the deployment was created.
    #[serde(rename = "type")]
    #[schema(value_type = DeploymentTypeName)]
    pub deployment_type: String,
    /// Whether the deployment requires that all deploys are made through
    /// CI/CD.
    pub is_cicd_enforced: bool,
    /// Always `UNKNOWN`: agentkey registers deployments, it does not run
    /// them, so it cannot know their health.
    #[schema(value_type = DeploymentStatus)]
    pub status: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub created_by: BasicSubjectProfile,
    pub updated_by: BasicSubjectProfile,
}

/// What agentkey answers for a deployment's `status`.
pub const DEPLOYMENT_STATUS: &str = "UNKNOWN";

impl From<&model::Deployment> for Deployment {
    fn from(d: &model::Deployment) -> Self {
        Deployment {
            id: d.id.clone(),
            organization_id: d.organization_id.clone(),
            workspace_id: d.workspace_id.clone(),
            name: d.name.clone(),
            description: d.description.clone(),
            deployment_type: d.deployment_type.as_str().into(),
            is_cicd_enforced: d.is_cicd_enforced,
            status: DEPLOYMENT_STATUS.into(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            created_by: (&d.created_by).into(),
            updated_by: (&d.updated_by).into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentsPaginated {
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: i64,
    #[schema(minimum = 0)]
    pub offset: i64,
    pub deployments: Vec<Deployment>,
    pub total_count: i64,
}

/// The fields agentkey uses of Astro's `CreateDeploymentRequest`; the many
/// cluster fields Astro clients also send are accepted and ignored.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeploymentRequest {
    /// 1 to 255 characters, at least one visible.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A workspace of the same organization.
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// Up to 1,000 characters; absent or `null` is the empty string.
    #[schema(max_length = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `STANDARD` (the default), `DEDICATED` or `HYBRID`; kept and answered,
    /// it changes nothing else.
    #[serde(rename = "type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DeploymentTypeName>)]
    pub deployment_type: Option<String>,
    /// Default: the workspace's `cicdEnforcedDefault`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_cicd_enforced: Option<bool>,
}

/// The fields agentkey uses of Astro's `UpdateDeploymentRequest`; the
/// cluster fields are accepted and ignored, as on create. A field left out
/// keeps its value. `workspaceId` and `type`, which Astro's clients always
/// send, must name what the deployment already is: moving a deployment or
/// changing its type is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDeploymentRequest {
    /// 1 to 255 characters.
    #[schema(required = true, nullable = false)]
    pub name: Option<String>,
    /// Up to 1,000 characters; absent keeps the current description.
    pub description: Option<String>,
    /// Absent keeps the current value.
    pub is_cicd_enforced: Option<bool>,
    /// The deployment's own workspace, if given.
    pub workspace_id: Option<String>,
    /// The deployment's own type, if given.
    #[serde(rename = "type")]
    #[schema(value_type = Option<DeploymentTypeName>)]
    pub deployment_type: Option<String>,
}

/// A deployment `type` from a request: absent is `STANDARD`.
fn parse_type(value: Option<&str>) -> Result<Option<DeploymentType>, FieldError> {
    match value {
        None => Ok(None),
        Some(text) => DeploymentType::parse(text).map(Some).ok_or_else(|| {
            FieldError::new(
                "type",
                "invalid",
                format!("type must be STANDARD, DEDICATED or HYBRID; got {text:?}"),
            )
        }),
    }
}

impl Sortable for Deployment {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("name", SortColumn::Name),
        ("description", SortColumn::Description),
        ("createdAt", SortColumn::CreatedAt),
        ("updatedAt", SortColumn::UpdatedAt),
    ];
}

/// Create a deployment.
#[utoipa::path(post, path = "/organizations/{organizationId}/deployments", tag = "Deployment", operation_id = "CreateDeployment",
    params(("organizationId" = String, Path)),
    request_body = CreateDeploymentRequest,
    responses((status = 200, description = "The new deployment", body = Deployment)))]
pub async fn create_deployment(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams(org): PathParams<String>,
    ValidJson(request): ValidJson<CreateDeploymentRequest>,
) -> Result<Json<Deployment>, ApiError> {
    caller.require(Action::CreateDeployment, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let workspace_id = faults.check(parse_reference("workspaceId", request.workspace_id));
    let description = faults.check(Description::parse("description", request.description));
    let deployment_type = faults.check(parse_type(request.deployment_type.as_deref()));
    let (name, workspace_id, description, deployment_type) = faults
        .finish(|| Some((name?, workspace_id?, description?, deployment_type?)))
        .map_err(ApiError::invalid)?;
    caller
        .inside(&state, Action::CreateDeployment, &org)
        .await?;
    let workspace = if is_id(&workspace_id) {
        state.store.get_workspace(&org, &workspace_id).await?
    } else {
        None
    };
    let Some(workspace) = workspace else {
        return Err(ApiError::invalid(vec![FieldError::new(
            "workspaceId",
            "not_found",
            format!("workspaceId {workspace_id:?} is not a workspace of this organization"),
        )]));
    };
    caller.require(
        Action::CreateDeployment,
        Resource::Workspace {
            organization: &org,
            workspace: &workspace_id,
        },
    )?;
    let now = state.clock.now();
    let actor = caller.0.subject();
    let deployment = model::Deployment {
        id: new_id(),
        organization_id: org,
        workspace_id,
        name: name.into_inner(),
        description: description.into_inner(),
        deployment_type: deployment_type.unwrap_or(DeploymentType::Standard),
        is_cicd_enforced: request
            .is_cicd_enforced
            .unwrap_or(workspace.cicd_enforced_default),
        created_at: now,
        updated_at: now,
        created_by: actor.clone(),
        updated_by: actor,
    };
    let audit = origin.event(
        caller.0.subject(),
        Some(&deployment.organization_id),
        AuditAction::DeploymentCreate,
        Target(TargetKind::Deployment, &deployment.id),
        now,
    );
    state.store.create_deployment(&deployment, &audit).await?;
    Ok(Json((&deployment).into()))
}

/// List the deployments of an organization.
///
/// `workspaceIds`, `deploymentIds` and `names` (repeated or comma-separated)
/// narrow the list. A caller without organization-wide access lists the
/// deployments of the workspaces (or the deployments) it names, where its
/// role reaches.
#[utoipa::path(get, path = "/organizations/{organizationId}/deployments", tag = "Deployment", operation_id = "ListDeployments",
    params(("organizationId" = String, Path),
           ("workspaceIds" = Option<Vec<String>>, Query, description = "Only deployments of these workspaces"),
           ("deploymentIds" = Option<Vec<String>>, Query, description = "Only these deployments"),
           ("names" = Option<Vec<String>>, Query, description = "Only deployments with one of these names (exact)"),
           ListQuery<Deployment>),
    responses((status = 200, description = "A page of deployments", body = DeploymentsPaginated)))]
pub async fn list_deployments(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    RawQuery(raw): RawQuery,
    query: ListQuery<Deployment>,
) -> Result<Json<DeploymentsPaginated>, ApiError> {
    let filter = PlaceFilter {
        workspaces: list_values(raw.as_deref(), "workspaceIds")?,
        ids: list_values(raw.as_deref(), "deploymentIds")?,
        names: list_values(raw.as_deref(), "names")?,
    };
    caller.inside(&state, Action::GetDeployment, &org).await?;
    if authz::authorize(
        &caller.0,
        Action::ListDeployments,
        Resource::Organization(&org),
    )
    .is_err()
    {
        // Without the organization's list, the caller lists what it may
        // get: the deployments of each workspace it names, or each
        // deployment it names, where its role reaches (403 otherwise).
        if !filter.workspaces.is_empty() {
            for ws in &filter.workspaces {
                let workspace = caller
                    .workspace(&state, Action::GetWorkspace, &org, ws)
                    .await?;
                caller.require(
                    Action::GetDeployment,
                    Resource::Workspace {
                        organization: &org,
                        workspace: &workspace.id,
                    },
                )?;
            }
        } else if !filter.ids.is_empty() {
            for id in &filter.ids {
                caller
                    .deployment(&state, Action::GetDeployment, &org, id)
                    .await?;
            }
        } else {
            caller.require(Action::ListDeployments, Resource::Organization(&org))?;
        }
    }
    let page = state
        .store
        .list_deployments(&org, &filter, &query.page)
        .await?;
    Ok(Json(DeploymentsPaginated {
        limit: query.page.limit,
        offset: query.page.offset,
        deployments: page.items.iter().map(Deployment::from).collect(),
        total_count: page.total,
    }))
}

/// Get a deployment.
#[utoipa::path(get, path = "/organizations/{organizationId}/deployments/{deploymentId}", tag = "Deployment", operation_id = "GetDeployment",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path)),
    responses((status = 200, description = "The deployment", body = Deployment)))]
pub async fn get_deployment(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<Json<Deployment>, ApiError> {
    let deployment = caller
        .deployment(&state, Action::GetDeployment, &org, &id)
        .await?;
    Ok(Json((&deployment).into()))
}

/// Update a deployment: its name, description and CI/CD enforcement. A
/// field left out keeps its value; `workspaceId` and `type` may only
/// repeat what the deployment is.
#[utoipa::path(post, path = "/organizations/{organizationId}/deployments/{deploymentId}", tag = "Deployment",
    operation_id = "UpdateDeployment",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path)),
    request_body = UpdateDeploymentRequest,
    responses((status = 200, description = "The deployment as it now is", body = Deployment)))]
pub async fn update_deployment(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
    ValidJson(request): ValidJson<UpdateDeploymentRequest>,
) -> Result<Json<Deployment>, ApiError> {
    caller.require(Action::UpdateDeployment, Resource::Inside(&org))?;
    let mut faults = Faults::default();
    let name = faults.check(Name::parse("name", request.name));
    let given = request.description.is_some();
    let description = faults.check(Description::parse("description", request.description));
    let deployment_type = faults.check(parse_type(request.deployment_type.as_deref()));
    let (name, description, deployment_type) = faults
        .finish(|| Some((name?, description?, deployment_type?)))
        .map_err(ApiError::invalid)?;
    let mut deployment = caller
        .deployment(&state, Action::UpdateDeployment, &org, &id)
        .await?;
    let mut faults = Faults::default();
    if let Some(ws) = request
        .workspace_id
        .filter(|ws| *ws != deployment.workspace_id)
    {
        faults.check::<()>(Err(FieldError::new(
            "workspaceId",
            "not_supported",
            format!(
                "workspaceId {ws:?} is not the deployment's workspace: agentkey does not move deployments between workspaces"
            ),
        )));
    }
    if let Some(t) = deployment_type.filter(|t| *t != deployment.deployment_type) {
        faults.check::<()>(Err(FieldError::new(
            "type",
            "not_supported",
            format!(
                "the deployment is {}; its type cannot be changed to {}",
                deployment.deployment_type.as_str(),
                t.as_str()
            ),
        )));
    }
    faults.finish(|| Some(())).map_err(ApiError::invalid)?;
    let now = state.clock.now();
    deployment.name = name.into_inner();
    if given {
        deployment.description = description.into_inner();
    }
    if let Some(enforced) = request.is_cicd_enforced {
        deployment.is_cicd_enforced = enforced;
    }
    deployment.updated_at = now;
    deployment.updated_by = caller.0.subject();
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::DeploymentUpdate,
        Target(TargetKind::Deployment, &id),
        now,
    );
    if !state.store.update_deployment(&deployment, &audit).await? {
        return Err(ApiError::not_found("deployment"));
    }
    Ok(Json((&deployment).into()))
}

/// Delete a deployment and revoke every agent token of it.
#[utoipa::path(delete, path = "/organizations/{organizationId}/deployments/{deploymentId}", tag = "Deployment", operation_id = "DeleteDeployment",
    params(("organizationId" = String, Path), ("deploymentId" = String, Path)),
    responses((status = 204, description = "Deleted; its agent tokens no longer verify")))]
pub async fn delete_deployment(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    PathParams((org, id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller
        .deployment(&state, Action::DeleteDeployment, &org, &id)
        .await?;
    let audit = origin.event(
        caller.0.subject(),
        Some(&org),
        AuditAction::DeploymentDelete,
        Target(TargetKind::Deployment, &id),
        state.clock.now(),
    );
    let (o, d) = (org.clone(), id.clone());
    let revoked = state
        .revoking(Revocation::Deployment(id.clone()), |store| async move {
            store.delete_deployment(&o, &d, &audit).await
        })
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))?;
    tracing::info!(deployment_id = %id, revoked_tokens = revoked.len(), "deployment deleted");
    Ok(StatusCode::NO_CONTENT)
}
