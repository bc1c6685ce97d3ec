//! The records agentkey keeps, as the store returns them. Times are Unix
//! seconds; the HTTP layer formats them for the wire.

use crate::token::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Whether its allowlist holds any range (read with the row; ignored
    /// when an organization is created).
    pub has_allowed_ip_ranges: bool,
    pub created_by: Subject,
    pub updated_by: Subject,
}

/// One range of an organization's allowlist (`allowed-ip-address-ranges`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedIpRange {
    pub id: String,
    pub organization_id: String,
    /// Normalised CIDR text (see `allowlist::parse_range`).
    pub ip_address_range: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Subject,
    pub updated_by: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub organization_id: String,
    /// The organization's name, read with the workspace (not stored twice).
    pub organization_name: String,
    pub name: String,
    pub description: String,
    /// Whether new deployments of the workspace enforce CI/CD deploys
    /// unless their create says otherwise (Astro's `cicdEnforcedDefault`).
    pub cicd_enforced_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Subject,
    pub updated_by: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub organization_id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: String,
    /// Astro's `type`, as the deployment was created.
    pub deployment_type: DeploymentType,
    /// Astro's `isCicdEnforced`.
    pub is_cicd_enforced: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Subject,
    pub updated_by: Subject,
}

/// Astro's deployment `type`. agentkey runs no clusters; it keeps the type
/// a client gave so that reading the deployment back answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentType {
    Standard,
    Dedicated,
    Hybrid,
}

impl DeploymentType {
    pub const ALL: [DeploymentType; 3] = [
        DeploymentType::Standard,
        DeploymentType::Dedicated,
        DeploymentType::Hybrid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentType::Standard => "STANDARD",
            DeploymentType::Dedicated => "DEDICATED",
            DeploymentType::Hybrid => "HYBRID",
        }
    }

    pub fn parse(s: &str) -> Option<DeploymentType> {
        DeploymentType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Astro's `subjectType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectType {
    User,
    ServiceKey,
}

impl SubjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::User => "USER",
            SubjectType::ServiceKey => "SERVICEKEY",
        }
    }

    pub const ALL: [SubjectType; 2] = [SubjectType::User, SubjectType::ServiceKey];

    /// The subject type `s` names; `None` for any other text (a stored value
    /// agentkey does not know is an error its reader reports, never taken
    /// for a service key).
    pub fn parse(s: &str) -> Option<SubjectType> {
        SubjectType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Who did something: Astro's `BasicSubjectProfile`, reduced to what
/// agentkey knows about its callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub id: String,
    pub subject_type: SubjectType,
    /// For a caller that is an API token: the token's name.
    pub api_token_name: Option<String>,
}

impl Subject {
    /// A subject as the store keeps it: id, `subjectType`, token name.
    pub fn from_columns(
        id: String,
        subject_type: SubjectType,
        api_token_name: Option<String>,
    ) -> Subject {
        Subject {
            id,
            subject_type,
            api_token_name,
        }
    }
}

/// The role every agent token carries on its deployment.
pub const AGENT_ROLE: crate::roles::AgentRole = crate::roles::AgentRole::DeploymentAgent;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentToken {
    pub id: String,
    pub organization_id: String,
    pub deployment_id: String,
    pub name: String,
    pub description: String,
    pub short_token: String,
    pub role: crate::roles::AgentRole,
    pub expiry_period_in_days: Option<i64>,
    pub start_at: i64,
    pub end_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Subject,
    pub updated_by: Subject,
    pub last_used_at: Option<i64>,
    pub last_rotated_at: Option<i64>,
    /// After a rotation with a grace window: when the replaced secret stops
    /// verifying (it may be in the past).
    pub previous_secret_valid_until: Option<i64>,
    /// The networks the token may be presented from (normalised CIDR
    /// text); empty when it is not bound to any.
    pub allowed_ip_ranges: Vec<String>,
}

/// What the store needs to insert an agent token: the record plus the digest
/// of its secret (the plaintext never reaches the store).
#[derive(Debug, Clone)]
pub struct NewAgentToken {
    pub token: AgentToken,
    pub secret_digest: Digest,
}

/// What verification needs to know about a presented agent token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCredential {
    pub token_id: String,
    pub organization_id: String,
    pub deployment_id: String,
    pub name: String,
    /// When the token expires (`endAt`), if ever.
    pub end_at: Option<i64>,
    /// Set when the presented secret is one a rotation replaced: the end of
    /// its grace window.
    pub grace_until: Option<i64>,
    /// When the presented secret was issued (creation or last rotation).
    pub issued_at: i64,
    pub secret_digest: Digest,
    /// The networks the token may be presented from, parsed once when the
    /// credential is read; empty when it is not bound.
    pub allowed_networks: Vec<ipnet::IpNet>,
}

impl AgentCredential {
    /// The first second at which this secret no longer verifies, if any.
    pub fn valid_until(&self) -> Option<i64> {
        match (self.end_at, self.grace_until) {
            (Some(end), Some(grace)) => Some(end.min(grace)),
            (end, grace) => end.or(grace),
        }
    }
}

/// A rotation: the token's new secret and how long the old one stays good.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub organization_id: String,
    pub deployment_id: String,
    pub token_id: String,
    pub secret_digest: Digest,
    pub short_token: String,
    /// End of the old secret's grace window; `None` retires it at once.
    pub previous_valid_until: Option<i64>,
    pub at: i64,
    pub actor: Subject,
}

/// One change, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    /// `None` for changes outside any organization (the root credential).
    pub organization_id: Option<String>,
    pub occurred_at: i64,
    pub actor: Subject,
    /// What was done, e.g. `agentToken.create`.
    pub action: String,
    /// What it was done to, e.g. `AGENT_TOKEN` and its id.
    pub target_type: String,
    pub target_id: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// The root credential kept in the database when none is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCredential {
    pub id: String,
    pub secret_digest: Digest,
    pub created_at: i64,
}

/// An organization API token: a management credential with roles
/// (`/organizations/{org}/tokens`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub short_token: String,
    /// `ORGANIZATION`, `WORKSPACE` or `DEPLOYMENT`: the kind of entity the
    /// token was created for.
    pub scope: crate::roles::EntityType,
    /// The organization, workspace or deployment the token was created for.
    pub entity_id: String,
    /// Every role the token holds, ordered by entity kind, then id.
    pub roles: Vec<crate::roles::RoleGrant>,
    pub expiry_period_in_days: Option<i64>,
    pub start_at: i64,
    pub end_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Subject,
    pub updated_by: Subject,
    pub last_rotated_at: Option<i64>,
}

/// What the store needs to insert an API token: the record plus the digest
/// of its secret.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub token: ApiToken,
    pub secret_digest: Digest,
}

/// What authentication needs to know about a presented API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCredential {
    pub token_id: String,
    pub organization_id: String,
    pub name: String,
    pub end_at: Option<i64>,
    pub roles: Vec<crate::roles::RoleGrant>,
}

/// A change to an API token made by `actor` at `at`.
#[derive(Debug, Clone)]
pub struct ApiTokenChange {
    pub organization_id: String,
    pub token_id: String,
    pub at: i64,
    pub actor: Subject,
    pub edit: ApiTokenEdit,
}

#[derive(Debug, Clone)]
pub enum ApiTokenEdit {
    /// New name and description.
    Rename { name: String, description: String },
    /// The token's whole set of roles, replacing the old one.
    Roles(Vec<crate::roles::RoleGrant>),
    /// A new secret; the old one stops working at once.
    Rotate {
        secret_digest: Digest,
        short_token: String,
    },
}

/// Which kind of credential signed in to a console session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCredential {
    /// The root credential (configured or generated).
    Root,
    /// An organization API token.
    ApiToken,
}

impl SessionCredential {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionCredential::Root => "ROOT",
            SessionCredential::ApiToken => "API_TOKEN",
        }
    }

    pub fn parse(s: &str) -> Option<SessionCredential> {
        match s {
            "ROOT" => Some(SessionCredential::Root),
            "API_TOKEN" => Some(SessionCredential::ApiToken),
            _ => None,
        }
    }
}

/// A signed-in console session. The browser holds the session id; the
/// store keeps only its digest, and the digest of the credential that
/// signed in, so every request can check that credential again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_digest: Digest,
    pub credential: SessionCredential,
    pub credential_digest: Digest,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// What an audit event records was done. The store and the wire keep the
/// text (`agentToken.create`); code names the variant, so an action cannot
/// be misspelt and every list of actions is this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    OrganizationCreate,
    OrganizationUpdate,
    WorkspaceCreate,
    WorkspaceUpdate,
    WorkspaceDelete,
    DeploymentCreate,
    DeploymentUpdate,
    DeploymentDelete,
    AgentTokenCreate,
    AgentTokenRotate,
    AgentTokenDelete,
    ApiTokenCreate,
    ApiTokenUpdate,
    ApiTokenUpdateRoles,
    ApiTokenRotate,
    ApiTokenDelete,
    RootCredentialCreate,
    RootCredentialRotate,
    AllowedIpRangeCreate,
    AllowedIpRangeDelete,
    /// A management request refused because the client's address is
    /// outside the organization's allowlist.
    AllowedIpRangeRefusal,
    WebhookCreate,
    WebhookRotate,
    WebhookDelete,
    WebhookRedeliver,
}

impl AuditAction {
    pub const ALL: [AuditAction; 25] = [
        AuditAction::OrganizationCreate,
        AuditAction::OrganizationUpdate,
        AuditAction::WorkspaceCreate,
        AuditAction::WorkspaceUpdate,
        AuditAction::WorkspaceDelete,
        AuditAction::DeploymentCreate,
        AuditAction::DeploymentUpdate,
        AuditAction::DeploymentDelete,
        AuditAction::AgentTokenCreate,
        AuditAction::AgentTokenRotate,
        AuditAction::AgentTokenDelete,
        AuditAction::ApiTokenCreate,
        AuditAction::ApiTokenUpdate,
        AuditAction::ApiTokenUpdateRoles,
        AuditAction::ApiTokenRotate,
        AuditAction::ApiTokenDelete,
        AuditAction::RootCredentialCreate,
        AuditAction::RootCredentialRotate,
        AuditAction::AllowedIpRangeCreate,
        AuditAction::AllowedIpRangeDelete,
        AuditAction::AllowedIpRangeRefusal,
        AuditAction::WebhookCreate,
        AuditAction::WebhookRotate,
        AuditAction::WebhookDelete,
        AuditAction::WebhookRedeliver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OrganizationCreate => "organization.create",
            AuditAction::OrganizationUpdate => "organization.update",
            AuditAction::WorkspaceCreate => "workspace.create",
            AuditAction::WorkspaceUpdate => "workspace.update",
            AuditAction::WorkspaceDelete => "workspace.delete",
            AuditAction::DeploymentCreate => "deployment.create",
            AuditAction::DeploymentUpdate => "deployment.update",
            AuditAction::DeploymentDelete => "deployment.delete",
            AuditAction::AgentTokenCreate => "agentToken.create",
            AuditAction::AgentTokenRotate => "agentToken.rotate",
            AuditAction::AgentTokenDelete => "agentToken.delete",
            AuditAction::ApiTokenCreate => "apiToken.create",
            AuditAction::ApiTokenUpdate => "apiToken.update",
            AuditAction::ApiTokenUpdateRoles => "apiToken.updateRoles",
            AuditAction::ApiTokenRotate => "apiToken.rotate",
            AuditAction::ApiTokenDelete => "apiToken.delete",
            AuditAction::RootCredentialCreate => "rootCredential.create",
            AuditAction::RootCredentialRotate => "rootCredential.rotate",
            AuditAction::AllowedIpRangeCreate => "allowedIpAddressRange.create",
            AuditAction::AllowedIpRangeDelete => "allowedIpAddressRange.delete",
            AuditAction::AllowedIpRangeRefusal => "allowedIpAddressRange.refuse",
            AuditAction::WebhookCreate => "webhook.create",
            AuditAction::WebhookRotate => "webhook.rotate",
            AuditAction::WebhookDelete => "webhook.delete",
            AuditAction::WebhookRedeliver => "webhookDelivery.redeliver",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// What kind of thing an audit event's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Organization,
    Workspace,
    Deployment,
    AgentToken,
    ApiToken,
    RootCredential,
    AllowedIpRange,
    Webhook,
    WebhookDelivery,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Organization => "ORGANIZATION",
            TargetKind::Workspace => "WORKSPACE",
            TargetKind::Deployment => "DEPLOYMENT",
            TargetKind::AgentToken => "AGENT_TOKEN",
            TargetKind::ApiToken => "API_TOKEN",
            TargetKind::RootCredential => "ROOT_CREDENTIAL",
            TargetKind::AllowedIpRange => "ALLOWED_IP_ADDRESS_RANGE",
            TargetKind::Webhook => "WEBHOOK",
            TargetKind::WebhookDelivery => "WEBHOOK_DELIVERY",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_types_round_trip_and_nothing_else_parses() {
        for t in SubjectType::ALL {
            assert_eq!(SubjectType::parse(t.as_str()), Some(t));
        }
        for other in ["", "user", "ROBOT", "SERVICE_KEY", "USER "] {
            assert_eq!(SubjectType::parse(other), None, "{other:?}");
        }
    }
}
