//! Loading the resources a path names, with a 404 when any is missing. Ids
//! that are not even shaped like ours are a 404 without a database read.

use super::error::ApiError;
use crate::app::AppState;
use crate::authz::Resource;
use crate::model::{Deployment, Organization, Workspace};
use crate::token::id::is_id;

pub async fn organization(state: &AppState, id: &str) -> Result<Organization, ApiError> {
    if !is_id(id) {
        return Err(ApiError::not_found("organization"));
    }
    state
        .store
        .get_organization(id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))
}

/// The deployment, which must belong to the organization (checked first).
pub async fn deployment(state: &AppState, org: &str, id: &str) -> Result<Deployment, ApiError> {
    organization(state, org).await?;
    if !is_id(id) {
        return Err(ApiError::not_found("deployment"));
    }
    state
        .store
        .get_deployment(org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("deployment"))
}

/// The workspace, which must belong to the organization (checked first).
pub async fn workspace(state: &AppState, org: &str, id: &str) -> Result<Workspace, ApiError> {
    organization(state, org).await?;
    if !is_id(id) {
        return Err(ApiError::not_found("workspace"));
    }
    state
        .store
        .get_workspace(org, id)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))
}

/// A looked-up deployment as `authz` sees it: in its workspace.
pub fn in_deployment(d: &Deployment) -> Resource<'_> {
    Resource::Deployment {
        organization: &d.organization_id,
        workspace: &d.workspace_id,
        deployment: &d.id,
    }
}
