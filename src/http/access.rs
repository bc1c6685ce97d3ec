//! What a caller may reach: the organization, workspace or deployment a path
//! names, loaded and checked against `authz` in one call. A handler asks
//! [`Caller::organization`], [`Caller::workspace`] or [`Caller::deployment`]
//! and gets the loaded resource or the error (403 before any read for a
//! caller with no role in the organization, then 404, then 403), so no
//! handler spells out the walk. [`Place`] names an entity by kind and id, as
//! roles and API-token scopes do. Ids not even shaped like ours are a 404
//! without a database read.

use super::auth::Caller;
use super::error::ApiError;
use crate::app::AppState;
use crate::authz::{Action, Resource};
use crate::model::{Deployment, Organization, Workspace};
use crate::roles::EntityType;
use crate::token::id::is_id;

impl Caller {
    /// The organization, if the caller has any role in it: the first step
    /// before the resource inside it that `action` is about is looked up
    /// and checked.
    pub async fn inside(
        &self,
        state: &AppState,
        action: Action,
        org: &str,
    ) -> Result<Organization, ApiError> {
        self.require(action, Resource::Inside(org))?;
        find_organization(state, org).await
    }

    /// The organization, if the caller may do `action` on it.
    pub async fn organization(
        &self,
        state: &AppState,
        action: Action,
        org: &str,
    ) -> Result<Organization, ApiError> {
        self.require(action, Resource::Organization(org))?;
        find_organization(state, org).await
    }

    /// The workspace, if it is in the organization and the caller may do
    /// `action` on it.
    pub async fn workspace(
        &self,
        state: &AppState,
        action: Action,
        org: &str,
        id: &str,
    ) -> Result<Workspace, ApiError> {
        self.require(action, Resource::Inside(org))?;
        find_organization(state, org).await?;
        let workspace = if is_id(id) {
            state.store.get_workspace(org, id).await?
        } else {
            None
        };
        let workspace = workspace.ok_or_else(|| ApiError::not_found("workspace"))?;
        self.require(action, in_workspace(&workspace))?;
        Ok(workspace)
    }

    /// The deployment, if it is in the organization and the caller may do
    /// `action` on it.
    pub async fn deployment(
        &self,
        state: &AppState,
        action: Action,
        org: &str,
        id: &str,
    ) -> Result<Deployment, ApiError> {
        self.require(action, Resource::Inside(org))?;
        find_organization(state, org).await?;
        let deployment = if is_id(id) {
            state.store.get_deployment(org, id).await?
        } else {
            None
        };
        let deployment = deployment.ok_or_else(|| ApiError::not_found("deployment"))?;
        self.require(action, in_deployment(&deployment))?;
        Ok(deployment)
    }
}

async fn find_organization(state: &AppState, id: &str) -> Result<Organization, ApiError> {
    let org = if is_id(id) {
        state.store.get_organization(id).await?
    } else {
        None
    };
    org.ok_or_else(|| ApiError::not_found("organization"))
}

/// A workspace as `authz` sees it: in its organization.
fn in_workspace(w: &Workspace) -> Resource<'_> {
    Resource::Workspace {
        organization: &w.organization_id,
        workspace: &w.id,
    }
}

/// A deployment as `authz` sees it: in its workspace.
fn in_deployment(d: &Deployment) -> Resource<'_> {
    Resource::Deployment {
        organization: &d.organization_id,
        workspace: &d.workspace_id,
        deployment: &d.id,
    }
}

/// An organization, workspace or deployment, found by kind and id (a
/// role's entity, an API token's scope) and owned, so a handler can keep
/// one while it asks `authz` about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Organization(String),
    Workspace {
        organization: String,
        workspace: String,
    },
    Deployment {
        organization: String,
        workspace: String,
        deployment: String,
    },
}

impl Place {
    /// The entity of kind `kind` with this id in organization `org`, or
    /// `None` if there is none. Checks nothing: the caller asks `authz`
    /// about [`Place::resource`] next.
    pub async fn find(
        state: &AppState,
        org: &str,
        kind: EntityType,
        id: &str,
    ) -> Result<Option<Place>, ApiError> {
        let place = match kind {
            EntityType::Organization => (id == org).then(|| Place::Organization(org.to_string())),
            _ if !is_id(id) => None,
            EntityType::Workspace => {
                state
                    .store
                    .get_workspace(org, id)
                    .await?
                    .map(|w| Place::Workspace {
                        organization: w.organization_id,
                        workspace: w.id,
                    })
            }
            EntityType::Deployment => {
                state
                    .store
                    .get_deployment(org, id)
                    .await?
                    .map(|d| Place::Deployment {
                        organization: d.organization_id,
                        workspace: d.workspace_id,
                        deployment: d.id,
                    })
            }
        };
        Ok(place)
    }

    pub fn resource(&self) -> Resource<'_> {
        match self {
            Place::Organization(org) => Resource::Organization(org),
            Place::Workspace {
                organization,
                workspace,
            } => Resource::Workspace {
                organization,
                workspace,
            },
            Place::Deployment {
                organization,
                workspace,
                deployment,
            } => Resource::Deployment {
                organization,
                workspace,
                deployment,
            },
        }
    }
}
