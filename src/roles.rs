//! Astro's role names, the kind of entity each one is granted on, and a
//! grant of one role on one entity, as API tokens carry them.

use std::fmt;

/// The kinds of entity a role is granted on (Astro's `entityType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityType {
    Organization,
    Workspace,
    Deployment,
}

impl EntityType {
    pub const ALL: [EntityType; 3] = [
        EntityType::Organization,
        EntityType::Workspace,
        EntityType::Deployment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Organization => "ORGANIZATION",
            EntityType::Workspace => "WORKSPACE",
            EntityType::Deployment => "DEPLOYMENT",
        }
    }

    pub fn parse(s: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Astro's role names. What each one permits is in `authz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    OrganizationOwner,
    OrganizationBillingAdmin,
    OrganizationMember,
    OrganizationObserveAdmin,
    OrganizationObserveMember,
    WorkspaceOwner,
    WorkspaceOperator,
    WorkspaceAuthor,
    WorkspaceMember,
    WorkspaceAccessor,
    DeploymentAdmin,
}

impl Role {
    pub const ALL: [Role; 11] = [
        Role::OrganizationOwner,
        Role::OrganizationBillingAdmin,
        Role::OrganizationMember,
        Role::OrganizationObserveAdmin,
        Role::OrganizationObserveMember,
        Role::WorkspaceOwner,
        Role::WorkspaceOperator,
        Role::WorkspaceAuthor,
        Role::WorkspaceMember,
        Role::WorkspaceAccessor,
        Role::DeploymentAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::OrganizationOwner => "ORGANIZATION_OWNER",
            Role::OrganizationBillingAdmin => "ORGANIZATION_BILLING_ADMIN",
            Role::OrganizationMember => "ORGANIZATION_MEMBER",
            Role::OrganizationObserveAdmin => "ORGANIZATION_OBSERVE_ADMIN",
            Role::OrganizationObserveMember => "ORGANIZATION_OBSERVE_MEMBER",
            Role::WorkspaceOwner => "WORKSPACE_OWNER",
            Role::WorkspaceOperator => "WORKSPACE_OPERATOR",
            Role::WorkspaceAuthor => "WORKSPACE_AUTHOR",
            Role::WorkspaceMember => "WORKSPACE_MEMBER",
            Role::WorkspaceAccessor => "WORKSPACE_ACCESSOR",
            Role::DeploymentAdmin => "DEPLOYMENT_ADMIN",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Roles that grant exactly what another role grants, and are
    /// documented as such rather than as columns of their own:
    /// Astro's observability roles are read-only organization access here,
    /// what `ORGANIZATION_MEMBER` grants (agentkey has no Astro Observe).
    pub fn same_as(self) -> Option<Role> {
        match self {
            Role::OrganizationObserveAdmin | Role::OrganizationObserveMember => {
                Some(Role::OrganizationMember)
            }
            _ => None,
        }
    }

    /// The kind of entity this role is granted on; granting it on another
    /// kind is refused.
    pub fn entity_type(self) -> EntityType {
        match self {
            Role::OrganizationOwner
            | Role::OrganizationBillingAdmin
            | Role::OrganizationMember
            | Role::OrganizationObserveAdmin
            | Role::OrganizationObserveMember => EntityType::Organization,
            Role::WorkspaceOwner
            | Role::WorkspaceOperator
            | Role::WorkspaceAuthor
            | Role::WorkspaceMember
            | Role::WorkspaceAccessor => EntityType::Workspace,
            Role::DeploymentAdmin => EntityType::Deployment,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role an agent token holds on its deployment. It is not one of the
/// [`Role`]s an API token can be granted (`Role::parse` refuses its name),
/// and it permits nothing in `authz`: an agent token is not a management
/// credential. Stored per token, so a later name would not rewrite old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentRole {
    DeploymentAgent,
}

impl AgentRole {
    pub const ALL: [AgentRole; 1] = [AgentRole::DeploymentAgent];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::DeploymentAgent => "DEPLOYMENT_AGENT",
        }
    }

    pub fn parse(s: &str) -> Option<AgentRole> {
        AgentRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The kind of entity the role is held on.
    pub fn entity_type(self) -> EntityType {
        match self {
            AgentRole::DeploymentAgent => EntityType::Deployment,
        }
    }
}

impl fmt::Display for AgentRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role on one entity. An entity holds at most one role per token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleGrant {
    pub role: Role,
    /// The organization, workspace or deployment id (of the kind
    /// `role.entity_type()` names).
    pub entity_id: String,
}

impl RoleGrant {
    pub fn new(role: Role, entity_id: impl Into<String>) -> RoleGrant {
        RoleGrant {
            role,
            entity_id: entity_id.into(),
        }
    }

    pub fn entity_type(&self) -> EntityType {
        self.role.entity_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for t in EntityType::ALL {
            assert_eq!(EntityType::parse(t.as_str()), Some(t));
        }
        assert_eq!(Role::parse("workspace_owner"), None);
        assert_eq!(Role::parse("DEPLOYMENT_AGENT"), None);
        for role in AgentRole::ALL {
            assert_eq!(AgentRole::parse(role.as_str()), Some(role));
            assert_eq!(Role::parse(role.as_str()), None, "not grantable");
        }
        assert_eq!(AgentRole::parse("DEPLOYMENT_ADMIN"), None);
    }
}
