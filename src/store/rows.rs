//! Row shapes shared by every backend: the columns each `SELECT` names and
//! the mapping from a row to a model record.

use std::collections::HashMap;

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, FromRow, Type};

use crate::model::ApiToken;
use crate::model::{
    AgentCredential, AgentToken, Deployment, DeploymentType, Subject, SubjectType, Workspace,
};
use crate::roles::{AgentRole, EntityType, Role, RoleGrant};
use crate::token::Digest;

/// A column that holds one of a closed set of names: read as text, then
/// parsed. Text that names none of them is a decoding error (sqlx reports the
/// column and the value), so a record with a value agentkey does not know is
/// refused where it is read instead of being taken for another.
macro_rules! name_column {
    ($ty:ty, $what:literal) => {
        impl<DB: Database> Type<DB> for $ty
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            String: Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <String as Decode<'r, DB>>::decode(value)?;
                <$ty>::parse(&text)
                    .ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), text).into())
            }
        }
    };
}

name_column!(SubjectType, "subject type");
name_column!(AgentRole, "agent token role");

/// Who created and who last changed a row: the six columns every table
/// with Astro's `createdBy` / `updatedBy` keeps.
#[derive(FromRow)]
pub struct MakersRow {
    pub created_by_id: String,
    pub created_by_type: SubjectType,
    pub created_by_name: Option<String>,
    pub updated_by_id: String,
    pub updated_by_type: SubjectType,
    pub updated_by_name: Option<String>,
}

impl MakersRow {
    /// (created by, updated by).
    pub fn into_subjects(self) -> (Subject, Subject) {
        (
            Subject::from_columns(
                self.created_by_id,
                self.created_by_type,
                self.created_by_name,
            ),
            Subject::from_columns(
                self.updated_by_id,
                self.updated_by_type,
                self.updated_by_name,
            ),
        )
    }
}

#[derive(FromRow)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub allowed_ip_range_count: i64,
    #[sqlx(flatten)]
    pub makers: MakersRow,
}

impl From<OrganizationRow> for crate::model::Organization {
    fn from(r: OrganizationRow) -> Self {
        let (created_by, updated_by) = r.makers.into_subjects();
        crate::model::Organization {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
            has_allowed_ip_ranges: r.allowed_ip_range_count > 0,
            created_by,
            updated_by,
        }
    }
}

#[derive(FromRow)]
pub struct WorkspaceRow {
    pub id: String,
    pub organization_id: String,
    pub organization_name: String,
    pub name: String,
    pub description: String,
    pub cicd_enforced_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
    #[sqlx(flatten)]
    pub makers: MakersRow,
}

impl From<WorkspaceRow> for Workspace {
    fn from(r: WorkspaceRow) -> Self {
        let (created_by, updated_by) = r.makers.into_subjects();
        Workspace {
            id: r.id,
            organization_id: r.organization_id,
            organization_name: r.organization_name,
            name: r.name,
            description: r.description,
            cicd_enforced_default: r.cicd_enforced_default,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by,
            updated_by,
        }
    }
}

#[derive(FromRow)]
pub struct DeploymentRow {
    pub id: String,
    pub organization_id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: String,
    pub deployment_type: String,
    pub is_cicd_enforced: bool,
    pub created_at: i64,
    pub updated_at: i64,
    #[sqlx(flatten)]
    pub makers: MakersRow,
}

impl From<DeploymentRow> for Deployment {
    fn from(r: DeploymentRow) -> Self {
        let (created_by, updated_by) = r.makers.into_subjects();
        Deployment {
            id: r.id,
            organization_id: r.organization_id,
            workspace_id: r.workspace_id,
            name: r.name,
            description: r.description,
            // The column's CHECK admits only the three types.
            deployment_type: DeploymentType::parse(&r.deployment_type)
                .unwrap_or(DeploymentType::Standard),
            is_cicd_enforced: r.is_cicd_enforced,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by,
            updated_by,
        }
    }
}

#[derive(FromRow)]
pub struct AgentTokenRow {
    pub id: String,
    pub organization_id: String,
    pub deployment_id: String,
    pub name: String,
    pub description: String,
    pub short_token: String,
    pub role: AgentRole,
    pub expiry_period_in_days: Option<i64>,
    pub start_at: i64,
    pub end_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by_id: String,
    pub created_by_type: SubjectType,
    pub created_by_name: Option<String>,
    pub updated_by_id: String,
    pub updated_by_type: SubjectType,
    pub updated_by_name: Option<String>,
    pub last_used_at: Option<i64>,
    pub last_rotated_at: Option<i64>,
    pub previous_valid_until: Option<i64>,
    pub allowed_ip_ranges: Option<String>,
}

impl From<AgentTokenRow> for AgentToken {
    fn from(r: AgentTokenRow) -> Self {
        AgentToken {
            id: r.id,
            organization_id: r.organization_id,
            deployment_id: r.deployment_id,
            name: r.name,
            description: r.description,
            short_token: r.short_token,
            role: r.role,
            expiry_period_in_days: r.expiry_period_in_days,
            start_at: r.start_at,
            end_at: r.end_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: Subject::from_columns(
                r.created_by_id,
                r.created_by_type,
                r.created_by_name,
            ),
            updated_by: Subject::from_columns(
                r.updated_by_id,
                r.updated_by_type,
                r.updated_by_name,
            ),
            last_used_at: r.last_used_at,
            last_rotated_at: r.last_rotated_at,
            previous_secret_valid_until: r.previous_valid_until,
            allowed_ip_ranges: split_ranges(r.allowed_ip_ranges.as_deref())
                .map(str::to_string)
                .collect(),
        }
    }
}

#[derive(FromRow)]
pub struct AgentCredentialRow {
    pub id: String,
    pub organization_id: String,
    pub deployment_id: String,
    pub name: String,
    pub end_at: Option<i64>,
    pub start_at: i64,
    pub last_rotated_at: Option<i64>,
    pub secret_digest: String,
    pub previous_digest: Option<String>,
    pub previous_valid_until: Option<i64>,
    pub previous_issued_at: Option<i64>,
    pub allowed_ip_ranges: Option<String>,
}

impl AgentCredentialRow {
    /// The credential the `presented` digest stands for: the current secret,
    /// or the previous one within its grace window. `None` if it is neither
    /// (the row was found by the other column) or a stored digest is corrupt.
    pub fn into_credential(self, presented: &Digest) -> Option<AgentCredential> {
        let current = Digest::from_hex(&self.secret_digest)?;
        let previous = self.previous_digest.as_deref().and_then(Digest::from_hex);
        let (grace_until, issued_at) = if current.ct_eq(presented) {
            (None, self.last_rotated_at.unwrap_or(self.start_at))
        } else if previous.is_some_and(|p| p.ct_eq(presented)) {
            let issued_at = self.previous_issued_at.unwrap_or(self.start_at);
            (Some(self.previous_valid_until?), issued_at)
        } else {
            return None;
        };
        Some(AgentCredential {
            secret_digest: *presented,
            token_id: self.id,
            organization_id: self.organization_id,
            deployment_id: self.deployment_id,
            name: self.name,
            end_at: self.end_at,
            grace_until,
            issued_at,
            // An entry that does not parse (a hand-edited row) binds the
            // token to nowhere, never to everywhere.
            allowed_networks: crate::allowlist::networks_of(split_ranges(
                self.allowed_ip_ranges.as_deref(),
            )),
        })
    }
}

#[derive(FromRow)]
pub struct RootCredentialRow {
    pub id: String,
    pub secret_digest: String,
    pub created_at: i64,
}

impl RootCredentialRow {
    pub fn into_credential(self) -> Option<crate::model::RootCredential> {
        Some(crate::model::RootCredential {
            secret_digest: Digest::from_hex(&self.secret_digest)?,
            id: self.id,
            created_at: self.created_at,
        })
    }
}

#[derive(FromRow)]
pub struct AuditEventRow {
    pub id: String,
    pub organization_id: Option<String>,
    pub created_at: i64,
    pub actor_id: String,
    pub actor_type: SubjectType,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

impl From<AuditEventRow> for crate::model::AuditEvent {
    fn from(r: AuditEventRow) -> Self {
        crate::model::AuditEvent {
            id: r.id,
            organization_id: r.organization_id,
            occurred_at: r.created_at,
            actor: Subject::from_columns(r.actor_id, r.actor_type, r.actor_name),
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            request_id: r.request_id,
            source_ip: r.source_ip,
        }
    }
}

#[derive(FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    pub short_token: String,
    pub scope: String,
    pub entity_id: String,
    pub expiry_period_in_days: Option<i64>,
    pub start_at: i64,
    pub end_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by_id: String,
    pub created_by_type: SubjectType,
    pub created_by_name: Option<String>,
    pub updated_by_id: String,
    pub updated_by_type: SubjectType,
    pub updated_by_name: Option<String>,
    pub last_rotated_at: Option<i64>,
}

#[derive(FromRow)]
pub struct ApiTokenRoleRow {
    pub token_id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub role: String,
}

impl ApiTokenRoleRow {
    /// The grant this row stands for. A row whose role is unknown, or does
    /// not match its entity type, grants nothing and is dropped.
    pub fn into_grant(self) -> Option<RoleGrant> {
        let role = Role::parse(&self.role)?;
        (role.entity_type().as_str() == self.entity_type)
            .then(|| RoleGrant::new(role, self.entity_id))
    }
}

/// Sorts grants by entity kind (organization, workspace, deployment), then id.
pub fn sort_grants(grants: &mut [RoleGrant]) {
    grants.sort_by(|a, b| {
        (a.entity_type(), &a.entity_id, a.role).cmp(&(b.entity_type(), &b.entity_id, b.role))
    });
}

/// Role rows grouped by token id, each group sorted.
pub fn group_grants(rows: Vec<ApiTokenRoleRow>) -> HashMap<String, Vec<RoleGrant>> {
    let mut grouped: HashMap<String, Vec<RoleGrant>> = HashMap::new();
    for row in rows {
        let token_id = row.token_id.clone();
        if let Some(grant) = row.into_grant() {
            grouped.entry(token_id).or_default().push(grant);
        }
    }
    for grants in grouped.values_mut() {
        sort_grants(grants);
    }
    grouped
}

impl ApiTokenRow {
    /// The token with its roles. `None` if the stored scope is not one
    /// agentkey knows.
    pub fn into_token(self, roles: Vec<RoleGrant>) -> Option<ApiToken> {
        Some(ApiToken {
            scope: EntityType::parse(&self.scope)?,
            id: self.id,
            organization_id: self.organization_id,
            name: self.name,
            description: self.description,
            short_token: self.short_token,
            entity_id: self.entity_id,
            roles,
            expiry_period_in_days: self.expiry_period_in_days,
            start_at: self.start_at,
            end_at: self.end_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: Subject::from_columns(
                self.created_by_id,
                self.created_by_type,
                self.created_by_name,
            ),
            updated_by: Subject::from_columns(
                self.updated_by_id,
                self.updated_by_type,
                self.updated_by_name,
            ),
            last_rotated_at: self.last_rotated_at,
        })
    }
}

/// The entries of an `allowed_ip_ranges` column (space-separated).
pub fn split_ranges(column: Option<&str>) -> impl Iterator<Item = &str> {
    column.unwrap_or_default().split_ascii_whitespace()
}

/// The column text of a token's networks: `None` when there are none.
pub fn join_ranges(ranges: &[String]) -> Option<String> {
    (!ranges.is_empty()).then(|| ranges.join(" "))
}

#[derive(FromRow)]
pub struct AllowedIpRangeRow {
    pub id: String,
    pub organization_id: String,
    pub ip_address_range: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[sqlx(flatten)]
    pub makers: MakersRow,
}

impl From<AllowedIpRangeRow> for crate::model::AllowedIpRange {
    fn from(r: AllowedIpRangeRow) -> Self {
        let (created_by, updated_by) = r.makers.into_subjects();
        crate::model::AllowedIpRange {
            id: r.id,
            organization_id: r.organization_id,
            ip_address_range: r.ip_address_range,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by,
            updated_by,
        }
    }
}
