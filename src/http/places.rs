//! Organizations, workspaces and deployments as `authz` sees them: found by
//! kind and id (a role's entity, an API token's scope) and owned, so a
//! handler can keep one while it asks `authz` about it.

use super::error::ApiError;
use crate::app::AppState;
use crate::authz::Resource;
use crate::roles::EntityType;
use crate::token::id::is_id;

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
    /// `None` if there is none.
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
