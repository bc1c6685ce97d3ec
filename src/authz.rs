//! Who may do what: one table of actions and the roles that grant them, one
//! function (`authorize`) deciding every management request. Verification
//! of agent tokens (the gateway path) is not an action here; it is open to
//! any holder of a valid token.
//!
//! A role grants its actions on the entity it is held on and on everything
//! inside it: an organization role on the whole organization, a workspace
//! role on the workspace and its deployments, `DEPLOYMENT_ADMIN` on its one
//! deployment. `docs/permissions.md` shows the table; a unit test below
//! keeps the two identical.

use crate::roles::{EntityType, Role, RoleGrant};
use crate::verify::Principal;

/// Every management action, with Astro's permission name where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CreateOrganization,
    ListOrganizations,
    GetOrganization,
    UpdateOrganization,
    CreateWorkspace,
    ListWorkspaces,
    GetWorkspace,
    UpdateWorkspace,
    DeleteWorkspace,
    CreateDeployment,
    ListDeployments,
    GetDeployment,
    UpdateDeployment,
    DeleteDeployment,
    GetAgentTokens,
    CreateAgentToken,
    DeleteAgentToken,
    RotateAgentToken,
    IntrospectTokens,
    ReadAuditLogs,
    ReadMetrics,
    GetApiTokens,
    CreateApiToken,
    UpdateApiToken,
    UpdateApiTokenRoles,
    RotateApiToken,
    DeleteApiToken,
    GetAllowedIpRanges,
    CreateAllowedIpRange,
    DeleteAllowedIpRange,
    GetWebhooks,
    CreateWebhook,
    RotateWebhook,
    DeleteWebhook,
    RedeliverWebhook,
}

impl Action {
    pub const ALL: [Action; 35] = [
        Action::CreateOrganization,
        Action::ListOrganizations,
        Action::GetOrganization,
        Action::UpdateOrganization,
        Action::CreateWorkspace,
        Action::ListWorkspaces,
        Action::GetWorkspace,
        Action::UpdateWorkspace,
        Action::DeleteWorkspace,
        Action::CreateDeployment,
        Action::ListDeployments,
        Action::GetDeployment,
        Action::UpdateDeployment,
        Action::DeleteDeployment,
        Action::GetAgentTokens,
        Action::CreateAgentToken,
        Action::DeleteAgentToken,
        Action::RotateAgentToken,
        Action::IntrospectTokens,
        Action::GetApiTokens,
        Action::CreateApiToken,
        Action::UpdateApiToken,
        Action::UpdateApiTokenRoles,
        Action::RotateApiToken,
        Action::DeleteApiToken,
        Action::GetAllowedIpRanges,
        Action::CreateAllowedIpRange,
        Action::DeleteAllowedIpRange,
        Action::ReadAuditLogs,
        Action::GetWebhooks,
        Action::CreateWebhook,
        Action::RotateWebhook,
        Action::DeleteWebhook,
        Action::RedeliverWebhook,
        Action::ReadMetrics,
    ];

    /// The permission's name, in Astro's vocabulary.
    pub fn permission(self) -> &'static str {
        match self {
            Action::CreateOrganization => "organization.create",
            Action::ListOrganizations | Action::GetOrganization => "organization.get",
            Action::UpdateOrganization => "organization.update",
            Action::CreateWorkspace => "organization.workspaces.create",
            Action::ListWorkspaces | Action::GetWorkspace => "workspace.get",
            Action::UpdateWorkspace => "workspace.update",
            Action::DeleteWorkspace => "workspace.delete",
            Action::CreateDeployment => "workspace.deployments.create",
            Action::ListDeployments | Action::GetDeployment => "deployment.get",
            Action::UpdateDeployment => "deployment.update",
            Action::DeleteDeployment => "deployment.delete",
            Action::GetAgentTokens => "deployment.agentTokens.get",
            Action::CreateAgentToken => "deployment.agentTokens.create",
            Action::DeleteAgentToken => "deployment.agentTokens.delete",
            // agentkey's own: Astro has neither.
            Action::RotateAgentToken => "deployment.agentTokens.rotate",
            Action::IntrospectTokens => "organization.tokens.introspect",
            Action::ReadAuditLogs => "organization.auditLogs.get",
            Action::ReadMetrics => "metrics.get",
            Action::GetApiTokens => "organization.apiTokens.get",
            Action::CreateApiToken => "organization.apiTokens.create",
            Action::UpdateApiToken | Action::UpdateApiTokenRoles => "organization.apiTokens.update",
            Action::RotateApiToken => "organization.apiTokens.rotate",
            Action::DeleteApiToken => "organization.apiTokens.delete",
            Action::GetAllowedIpRanges => "organization.allowedIpAddressRanges.get",
            Action::CreateAllowedIpRange => "organization.allowedIpAddressRanges.create",
            Action::DeleteAllowedIpRange => "organization.allowedIpAddressRanges.delete",
            // agentkey's own: Astro has no webhooks.
            Action::GetWebhooks => "organization.webhooks.get",
            Action::CreateWebhook => "organization.webhooks.create",
            Action::RotateWebhook => "organization.webhooks.rotate",
            Action::DeleteWebhook => "organization.webhooks.delete",
            Action::RedeliverWebhook => "organization.webhooks.redeliver",
        }
    }

    /// What the action is, for the documentation table.
    pub fn describe(self) -> &'static str {
        match self {
            Action::CreateOrganization => "create an organization",
            Action::ListOrganizations => "list organizations (only those the caller has a role in)",
            Action::GetOrganization => "get the organization",
            Action::UpdateOrganization => "rename the organization",
            Action::CreateWorkspace => "create a workspace",
            Action::ListWorkspaces => "list workspaces",
            Action::GetWorkspace => "get a workspace",
            Action::UpdateWorkspace => "update a workspace",
            Action::DeleteWorkspace => "delete a workspace (once it has no deployments)",
            Action::CreateDeployment => "create a deployment in a workspace",
            Action::ListDeployments => "list deployments",
            Action::GetDeployment => "get a deployment",
            Action::UpdateDeployment => "update a deployment",
            Action::DeleteDeployment => "delete a deployment",
            Action::GetAgentTokens => "list and get a deployment's agent tokens",
            Action::CreateAgentToken => "create an agent token",
            Action::DeleteAgentToken => "delete an agent token",
            Action::RotateAgentToken => "rotate an agent token",
            Action::IntrospectTokens => "introspect the organization's agent tokens",
            Action::ReadAuditLogs => "read the organization's audit logs",
            Action::ReadMetrics => "read the process's Prometheus metrics",
            Action::GetApiTokens => "list and get API tokens",
            Action::CreateApiToken => "create an API token",
            Action::UpdateApiToken => "rename an API token",
            Action::UpdateApiTokenRoles => "change an API token's roles",
            Action::RotateApiToken => "rotate an API token",
            Action::DeleteApiToken => "delete an API token",
            Action::GetAllowedIpRanges => "list the organization's allowed IP address ranges",
            Action::CreateAllowedIpRange => "add allowed IP address ranges",
            Action::DeleteAllowedIpRange => "delete allowed IP address ranges",
            Action::GetWebhooks => "list and get webhook endpoints and their deliveries",
            Action::CreateWebhook => "create a webhook endpoint",
            Action::RotateWebhook => "rotate a webhook endpoint's signing secret",
            Action::DeleteWebhook => "delete a webhook endpoint",
            Action::RedeliverWebhook => "send a webhook delivery again",
        }
    }
}

/// Who may perform an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The root credential only.
    Root,
    /// Any role anywhere in the organization.
    AnyRole,
    /// One of these roles, held on the resource or on what contains it.
    Roles(&'static [Role]),
}

use Role::*;

const OWNERS: &[Role] = &[OrganizationOwner];
const ORG_READERS: &[Role] = &[
    OrganizationOwner,
    OrganizationBillingAdmin,
    OrganizationMember,
    OrganizationObserveAdmin,
    OrganizationObserveMember,
];
const WORKSPACE_READERS: &[Role] = &[
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
];
const DEPLOYMENT_READERS: &[Role] = &[
    OrganizationOwner,
    WorkspaceOwner,
    WorkspaceOperator,
    WorkspaceAuthor,
    WorkspaceMember,
    WorkspaceAccessor,
    DeploymentAdmin,
];
const WORKSPACE_MANAGERS: &[Role] = &[OrganizationOwner, WorkspaceOwner];
const DEPLOYMENT_MANAGERS: &[Role] = &[OrganizationOwner, WorkspaceOwner, WorkspaceOperator];

/// Who manages one deployment: its settings and its agent tokens.
const AGENT_TOKEN_MANAGERS: &[Role] = &[
    OrganizationOwner,
    WorkspaceOwner,
    WorkspaceOperator,
    DeploymentAdmin,
];
const API_TOKEN_MANAGERS: &[Role] = &[OrganizationOwner, WorkspaceOwner, DeploymentAdmin];

/// The permission table.
fn rule(action: Action) -> Rule {
    match action {
        Action::CreateOrganization | Action::ReadMetrics => Rule::Root,
        Action::ListOrganizations | Action::GetOrganization => Rule::AnyRole,
        Action::UpdateOrganization
        | Action::CreateWorkspace
        | Action::DeleteWorkspace
        | Action::ListDeployments
        | Action::IntrospectTokens
        | Action::ReadAuditLogs
        | Action::GetAllowedIpRanges
        | Action::CreateAllowedIpRange
        | Action::DeleteAllowedIpRange
        | Action::GetWebhooks
        | Action::CreateWebhook
        | Action::RotateWebhook
        | Action::DeleteWebhook
        | Action::RedeliverWebhook => Rule::Roles(OWNERS),
        Action::ListWorkspaces => Rule::Roles(ORG_READERS),
        Action::GetWorkspace => Rule::Roles(WORKSPACE_READERS),
        Action::UpdateWorkspace => Rule::Roles(WORKSPACE_MANAGERS),
        Action::CreateDeployment | Action::DeleteDeployment => Rule::Roles(DEPLOYMENT_MANAGERS),
        Action::GetDeployment | Action::GetAgentTokens => Rule::Roles(DEPLOYMENT_READERS),
        Action::UpdateDeployment
        | Action::CreateAgentToken
        | Action::DeleteAgentToken
        | Action::RotateAgentToken => Rule::Roles(AGENT_TOKEN_MANAGERS),
        Action::GetApiTokens
        | Action::CreateApiToken
        | Action::UpdateApiToken
        | Action::UpdateApiTokenRoles
        | Action::RotateApiToken
        | Action::DeleteApiToken => Rule::Roles(API_TOKEN_MANAGERS),
    }
}

/// What a request acts on, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Nothing inside an organization: creating or listing organizations,
    /// introspection. For an API token this means its own organization.
    Global,
    /// Somewhere in this organization, before the workspace, deployment or
    /// token the path names has been looked up. Only refuses a caller with
    /// no role in the organization (a 403 that says nothing about whether
    /// the organization, or anything in it, exists); the handler asks again
    /// with the looked-up resource.
    Inside(&'a str),
    Organization(&'a str),
    Workspace {
        organization: &'a str,
        workspace: &'a str,
    },
    Deployment {
        organization: &'a str,
        workspace: &'a str,
        deployment: &'a str,
    },
}

impl<'a> Resource<'a> {
    fn organization(self) -> Option<&'a str> {
        match self {
            Resource::Global => None,
            Resource::Inside(org) | Resource::Organization(org) => Some(org),
            Resource::Workspace { organization, .. }
            | Resource::Deployment { organization, .. } => Some(organization),
        }
    }

    /// Whether `grant` is held on this resource or on what contains it
    /// (the organization is checked by the caller).
    fn covered_by(self, grant: &RoleGrant) -> bool {
        let id = grant.entity_id.as_str();
        match (grant.entity_type(), self) {
            (EntityType::Organization, _) => self.organization() == Some(id),
            (EntityType::Workspace, Resource::Workspace { workspace, .. })
            | (EntityType::Workspace, Resource::Deployment { workspace, .. }) => workspace == id,
            (EntityType::Deployment, Resource::Deployment { deployment, .. }) => deployment == id,
            _ => false,
        }
    }
}

/// Why a request was refused: rendered as a 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub message: String,
}

/// Decides whether `principal` may perform `action` on `resource`.
pub fn authorize(principal: &Principal, action: Action, resource: Resource) -> Result<(), Denied> {
    let token = match principal {
        Principal::Root { .. } => return Ok(()),
        Principal::Agent(_) => {
            return Err(Denied {
                message: format!(
                    "an agent token can only be verified; it does not grant {}",
                    action.permission()
                ),
            })
        }
        Principal::ApiToken(token) => token,
    };
    let own = token.organization_id.as_str();
    let resource = match resource {
        Resource::Global => Resource::Organization(own),
        other => other,
    };
    let org = resource.organization().unwrap_or(own);
    if org != own || token.roles.is_empty() {
        return Err(Denied {
            message: format!("this API token has no role in organization {org}"),
        });
    }
    if matches!(resource, Resource::Inside(_)) {
        return Ok(());
    }
    if allows(&token.roles, action, resource) {
        Ok(())
    } else {
        Err(Denied {
            message: format!(
                "this API token's roles do not grant {} here",
                action.permission()
            ),
        })
    }
}

/// Refuses to hand out `role` on `on` (by creating a token, changing its
/// roles or rotating it) unless the caller holds at least every permission
/// that role would carry there: no token can be given more power than its
/// maker has.
pub fn may_confer(principal: &Principal, role: Role, on: Resource) -> Result<(), Denied> {
    let Some(entity) = entity_of(role, on) else {
        return Err(Denied {
            message: format!("{role} cannot be held on this resource"),
        });
    };
    let conferred = [RoleGrant::new(role, entity)];
    for action in Action::ALL {
        if allows(&conferred, action, on) && authorize(principal, action, on).is_err() {
            return Err(Denied {
                message: format!(
                    "cannot confer {role}: it grants {}, which this credential does not hold there",
                    action.permission()
                ),
            });
        }
    }
    Ok(())
}

/// The id of the entity of `role`'s kind that `on` names.
fn entity_of(role: Role, on: Resource) -> Option<String> {
    let id = match (role.entity_type(), on) {
        (EntityType::Organization, on) => on.organization()?,
        (EntityType::Workspace, Resource::Workspace { workspace, .. })
        | (EntityType::Workspace, Resource::Deployment { workspace, .. }) => workspace,
        (EntityType::Deployment, Resource::Deployment { deployment, .. }) => deployment,
        _ => return None,
    };
    Some(id.to_string())
}

/// Whether any of `grants` permits `action` on `resource` (all in one
/// organization).
fn allows(grants: &[RoleGrant], action: Action, resource: Resource) -> bool {
    match rule(action) {
        Rule::Root => false,
        Rule::AnyRole => !grants.is_empty(),
        Rule::Roles(roles) => grants
            .iter()
            .any(|g| roles.contains(&g.role) && resource.covered_by(g)),
    }
}

/// Whether `role` grants `action` (on what it is held on): the cells of
/// the documented table.
pub fn role_grants(role: Role, action: Action) -> bool {
    match rule(action) {
        Rule::Root => false,
        Rule::AnyRole => true,
        Rule::Roles(roles) => roles.contains(&role),
    }
}

/// The action × role table of `docs/permissions.md`, in Markdown.
pub fn permission_table() -> String {
    let mut out = String::from("| action | permission | root |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str(" agent token |\n|---|---|---|");
    out.push_str(&"---|".repeat(Role::ALL.len() + 1));
    out.push('\n');
    for action in Action::ALL {
        out.push_str(&format!(
            "| {} | `{}` | ✓ |",
            action.describe(),
            action.permission()
        ));
        for role in Role::ALL {
            out.push_str(if role_grants(role, action) {
                " ✓ |"
            } else {
                " |"
            });
        }
        out.push_str(" |\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentCredential, ApiCredential};
    use crate::token::Digest;

    fn api(roles: Vec<RoleGrant>) -> Principal {
        Principal::ApiToken(ApiCredential {
            token_id: "t".into(),
            organization_id: "o".into(),
            name: "n".into(),
            end_at: None,
            roles,
        })
    }

    const DEP: Resource<'static> = Resource::Deployment {
        organization: "o",
        workspace: "w",
        deployment: "d",
    };
    const SIBLING: Resource<'static> = Resource::Deployment {
        organization: "o",
        workspace: "w",
        deployment: "d2",
    };
    const ELSEWHERE: Resource<'static> = Resource::Deployment {
        organization: "o",
        workspace: "w2",
        deployment: "d3",
    };

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
            allowed_networks: Vec::new(),
        });
        for action in Action::ALL {
            assert!(authorize(&root, action, Resource::Organization("o")).is_ok());
            let denied = authorize(&agent, action, Resource::Organization("o")).unwrap_err();
            assert!(denied.message.contains(action.permission()));
        }
    }

    #[test]
    fn roles_reach_down_but_not_across() {
        let ws_owner = api(vec![RoleGrant::new(WorkspaceOwner, "w")]);
        assert!(authorize(&ws_owner, Action::CreateAgentToken, DEP).is_ok());
        assert!(authorize(&ws_owner, Action::CreateAgentToken, ELSEWHERE).is_err());
        let admin = api(vec![RoleGrant::new(DeploymentAdmin, "d")]);
        assert!(authorize(&admin, Action::CreateAgentToken, DEP).is_ok());
        assert!(authorize(&admin, Action::CreateAgentToken, SIBLING).is_err());
        assert!(authorize(&admin, Action::GetOrganization, Resource::Organization("o")).is_ok());
        assert!(authorize(&admin, Action::ListWorkspaces, Resource::Organization("o")).is_err());
    }

    #[test]
    fn another_organization_is_refused_before_anything_else() {
        let owner = api(vec![RoleGrant::new(OrganizationOwner, "o")]);
        for resource in [
            Resource::Inside("p"),
            Resource::Organization("p"),
            Resource::Deployment {
                organization: "p",
                workspace: "w",
                deployment: "d",
            },
        ] {
            let denied = authorize(&owner, Action::GetOrganization, resource).unwrap_err();
            assert!(denied.message.contains("no role in organization p"));
        }
        assert!(authorize(&owner, Action::CreateOrganization, Resource::Global).is_err());
        assert!(authorize(&owner, Action::IntrospectTokens, Resource::Global).is_ok());
    }

    #[test]
    fn nobody_confers_more_than_they_hold() {
        let member = api(vec![RoleGrant::new(WorkspaceMember, "w")]);
        let ws = Resource::Workspace {
            organization: "o",
            workspace: "w",
        };
        assert!(may_confer(&member, WorkspaceOwner, ws).is_err());
        assert!(may_confer(&member, WorkspaceMember, ws).is_ok());
        let admin = api(vec![RoleGrant::new(DeploymentAdmin, "d")]);
        assert!(may_confer(&admin, DeploymentAdmin, DEP).is_ok());
        assert!(may_confer(&admin, DeploymentAdmin, SIBLING).is_err());
        let operator = api(vec![RoleGrant::new(WorkspaceOperator, "w")]);
        assert!(
            may_confer(&operator, DeploymentAdmin, DEP).is_err(),
            "an operator cannot manage API tokens, so cannot mint a role that can"
        );
        let owner = api(vec![RoleGrant::new(OrganizationOwner, "o")]);
        assert!(may_confer(&owner, DeploymentAdmin, DEP).is_ok());
        assert!(may_confer(&owner, WorkspaceOwner, ws).is_ok());
        assert!(may_confer(&owner, OrganizationOwner, Resource::Organization("o")).is_ok());
    }

    #[test]
    fn roles_documented_as_another_grant_exactly_what_it_grants() {
        for role in Role::ALL {
            if let Some(same) = role.same_as() {
                for action in Action::ALL {
                    assert_eq!(
                        role_grants(role, action),
                        role_grants(same, action),
                        "{role} and {same} differ on {action:?}"
                    );
                }
            }
        }
    }

    /// `docs/permissions.md` holds the table between two markers; this
    /// fails, printing the current table, when they differ.
    #[test]
    fn the_documented_table_is_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/permissions.md");
        let doc = std::fs::read_to_string(path).expect("docs/permissions.md");
        let begin = "<!-- BEGIN actions table: generated from src/authz.rs -->\n";
        let end = "<!-- END actions table -->";
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let table = permission_table();
        assert!(
            doc[start..stop] == table,
            "docs/permissions.md is out of date; the table is now:\n{table}"
        );
    }
}
