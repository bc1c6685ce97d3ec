//! Who may do what: one table of actions, one function deciding every
//! management request. Verification of agent tokens (the gateway path) is
//! not an action here; it is open to any holder of a valid token.

use crate::verify::Principal;

/// Every management action, with Astro's permission name where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CreateOrganization,
    ListOrganizations,
    GetOrganization,
    CreateWorkspace,
    ListWorkspaces,
    GetWorkspace,
    CreateDeployment,
    ListDeployments,
    GetDeployment,
    DeleteDeployment,
    GetAgentTokens,
    CreateAgentToken,
    DeleteAgentToken,
    RotateAgentToken,
    IntrospectTokens,
    ReadAuditLogs,
}

impl Action {
    /// The permission's name, in Astro's vocabulary.
    pub fn permission(self) -> &'static str {
        match self {
            Action::CreateOrganization => "organization.create",
            Action::ListOrganizations | Action::GetOrganization => "organization.get",
            Action::CreateWorkspace => "organization.workspaces.create",
            Action::ListWorkspaces | Action::GetWorkspace => "workspace.get",
            Action::CreateDeployment => "workspace.deployments.create",
            Action::ListDeployments | Action::GetDeployment => "deployment.get",
            Action::DeleteDeployment => "deployment.delete",
            Action::GetAgentTokens => "deployment.agentTokens.get",
            Action::CreateAgentToken => "deployment.agentTokens.create",
            Action::DeleteAgentToken => "deployment.agentTokens.delete",
            // agentkey's own: Astro has neither.
            Action::RotateAgentToken => "deployment.agentTokens.rotate",
            Action::IntrospectTokens => "organization.tokens.introspect",
            Action::ReadAuditLogs => "organization.auditLogs.get",
        }
    }
}

/// Why a request was refused: rendered as a 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub message: String,
}

/// Decides whether `principal` may perform `action` in `organization`.
pub fn authorize(
    principal: &Principal,
    action: Action,
    _organization: Option<&str>,
) -> Result<(), Denied> {
    match principal {
        Principal::Root { .. } => Ok(()),
        Principal::Agent(_) => Err(Denied {
            message: format!(
                "an agent token can only be verified; it does not grant {}",
                action.permission()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AgentCredential;
    use crate::token::Digest;

    const ALL: [Action; 16] = [
        Action::CreateOrganization,
        Action::ListOrganizations,
        Action::GetOrganization,
        Action::CreateWorkspace,
        Action::ListWorkspaces,
        Action::GetWorkspace,
        Action::CreateDeployment,
        Action::ListDeployments,
        Action::GetDeployment,
        Action::DeleteDeployment,
        Action::GetAgentTokens,
        Action::CreateAgentToken,
        Action::DeleteAgentToken,
        Action::RotateAgentToken,
        Action::IntrospectTokens,
        Action::ReadAuditLogs,
    ];

    #[test]
    fn root_may_do_everything_and_agents_nothing() {
        let root = Principal::Root { id: "r".into() };
        let agent = Principal::Agent(AgentCredential {
            token_id: "t".into(),
            organization_id: "o".into(),
            deployment_id: "d".into(),
            name: "n".into(),
            end_at: None,
            grace_until: None,
            issued_at: 0,
            secret_digest: Digest::of("x"),
        });
        for action in ALL {
            assert!(authorize(&root, action, Some("o")).is_ok());
            let denied = authorize(&agent, action, Some("o")).unwrap_err();
            assert!(denied.message.contains(action.permission()));
        }
    }
}
