//! Validated role requests for API tokens: role names and scopes from the
//! wire, and the shape a token's set of roles must have for its scope.
//! Whether the entities exist, and whether the caller may confer the roles,
//! is decided later (by the handler and `authz`).

use super::request::FieldError;
use crate::roles::{EntityType, Role, RoleGrant};

/// A token's `scope` (or `entityType`): `ORGANIZATION`, `WORKSPACE` or
/// `DEPLOYMENT`.
pub fn parse_entity_type(field: &str, value: Option<&str>) -> Result<EntityType, FieldError> {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        return Err(FieldError::new(
            field,
            "required",
            format!("{field} is required: ORGANIZATION, WORKSPACE or DEPLOYMENT"),
        ));
    }
    EntityType::parse(value).ok_or_else(|| {
        FieldError::new(
            field,
            "invalid",
            format!("{field} must be ORGANIZATION, WORKSPACE or DEPLOYMENT; got {value:?}"),
        )
    })
}

/// One of Astro's role names.
pub fn parse_role(field: &str, value: Option<&str>) -> Result<Role, FieldError> {
    let value = value.unwrap_or_default();
    let names = || {
        Role::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if value.is_empty() {
        return Err(FieldError::new(
            field,
            "required",
            format!("{field} is required: one of {}", names()),
        ));
    }
    Role::parse(value).ok_or_else(|| {
        // Astro also has custom roles (deployment roles above all), named
        // by their makers. agentkey has no role editor, so a name it does
        // not know is refused as what it most likely is.
        FieldError::new(
            field,
            "not_supported",
            format!(
                "{field} {value:?} is not a built-in role, and custom roles are not supported \
                 by agentkey: use one of {}",
                names()
            ),
        )
    })
}

/// Refuses a role given at the wrong scope (a workspace role on an
/// organization token, say).
pub fn check_role_scope(field: &str, role: Role, scope: EntityType) -> Result<(), FieldError> {
    if role.entity_type() == scope {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        "wrong_scope",
        format!(
            "{role} is held on a {}, not on a {}",
            role.entity_type().as_str().to_lowercase(),
            scope.as_str().to_lowercase()
        ),
    ))
}

/// The entity a new token is created for: its own organization when the
/// scope is `ORGANIZATION` (where `entityId` may be omitted), else the
/// `entityId` given.
pub fn parse_entity_id(
    field: &str,
    value: Option<String>,
    scope: EntityType,
    organization: &str,
) -> Result<String, FieldError> {
    match (scope, value.filter(|v| !v.is_empty())) {
        (EntityType::Organization, None) => Ok(organization.to_string()),
        (EntityType::Organization, Some(id)) if id == organization => Ok(id),
        (EntityType::Organization, Some(id)) => Err(FieldError::new(
            field,
            "invalid",
            format!("{field} of an ORGANIZATION token must be this organization's id; got {id:?}"),
        )),
        (_, Some(id)) => Ok(id),
        (_, None) => Err(FieldError::new(
            field,
            "required",
            format!("{field} is required for a WORKSPACE or DEPLOYMENT token"),
        )),
    }
}

/// One entry of an update-roles request, as sent.
#[derive(Debug, Clone, Default)]
pub struct RoleEntry {
    pub entity_id: Option<String>,
    pub entity_type: Option<String>,
    pub role: Option<String>,
}

/// Parses every entry of `roles` (each fault named `roles[i].field`) and
/// checks the set against the token's scope:
///
/// - exactly one role on the entity the token was created for;
/// - an ORGANIZATION token may add workspace and deployment roles;
/// - a WORKSPACE token may add deployment roles (the handler checks that
///   the deployments are in its workspace);
/// - a DEPLOYMENT token has its one role and nothing else;
/// - at most one role per entity.
pub fn parse_role_set(
    entries: Option<Vec<RoleEntry>>,
    scope: EntityType,
    entity_id: &str,
) -> Result<Vec<RoleGrant>, Vec<FieldError>> {
    let Some(entries) = entries else {
        return Err(vec![FieldError::new(
            "roles",
            "required",
            "roles is required: the token's whole set of roles",
        )]);
    };
    let mut faults = Vec::new();
    let mut grants: Vec<RoleGrant> = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let at = |f: &str| format!("roles[{i}].{f}");
        let entity_type = parse_entity_type(&at("entityType"), entry.entity_type.as_deref());
        let role = parse_role(&at("role"), entry.role.as_deref());
        let id = entry.entity_id.filter(|id| !id.is_empty());
        let (entity_type, role) = match (entity_type, role, id) {
            (Ok(t), Ok(r), Some(id)) => match check_role_scope(&at("role"), r, t) {
                Ok(()) => (t, RoleGrant::new(r, id)),
                Err(e) => {
                    faults.push(e);
                    continue;
                }
            },
            (t, r, id) => {
                faults.extend(t.err());
                faults.extend(r.err());
                if id.is_none() {
                    faults.push(FieldError::new(
                        &at("entityId"),
                        "required",
                        format!("{} is required", at("entityId")),
                    ));
                }
                continue;
            }
        };
        let allowed = match scope {
            EntityType::Organization => true,
            EntityType::Workspace => entity_type != EntityType::Organization,
            EntityType::Deployment => entity_type == EntityType::Deployment,
        };
        let own = entity_type == scope && role.entity_id == entity_id;
        if !allowed || (entity_type == scope && !own) {
            faults.push(FieldError::new(
                &at("entityType"),
                "wrong_scope",
                format!(
                    "a {scope} token cannot hold a role on this {}",
                    entity_type.as_str().to_lowercase()
                ),
            ));
        } else if grants
            .iter()
            .any(|g| g.entity_type() == entity_type && g.entity_id == role.entity_id)
        {
            faults.push(FieldError::new(
                &at("entityId"),
                "duplicate",
                "at most one role per entity",
            ));
        } else {
            grants.push(role);
        }
    }
    if faults.is_empty()
        && !grants
            .iter()
            .any(|g| g.entity_type() == scope && g.entity_id == entity_id)
    {
        faults.push(FieldError::new(
            "roles",
            "required",
            format!("roles must include the token's own {scope} role on {entity_id}"),
        ));
    }
    if faults.is_empty() {
        Ok(grants)
    } else {
        Err(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &str, id: &str, role: &str) -> RoleEntry {
        RoleEntry {
            entity_type: Some(t.into()),
            entity_id: Some(id.into()),
            role: Some(role.into()),
        }
    }

    #[test]
    fn roles_must_match_their_scope() {
        assert!(check_role_scope("role", Role::WorkspaceOwner, EntityType::Workspace).is_ok());
        let err =
            check_role_scope("role", Role::WorkspaceOwner, EntityType::Organization).unwrap_err();
        assert_eq!(err.code, "wrong_scope");
        let custom = parse_role("role", Some("OWNER")).unwrap_err();
        assert_eq!(custom.code, "not_supported");
        assert!(custom.message.contains("custom roles are not supported"));
        assert_eq!(
            parse_role("role", Some("ORGANIZATION_OBSERVE_ADMIN")),
            Ok(Role::OrganizationObserveAdmin)
        );
        assert_eq!(parse_role("role", None).unwrap_err().code, "required");
    }

    #[test]
    fn organization_tokens_default_to_their_organization() {
        let org = EntityType::Organization;
        assert_eq!(parse_entity_id("e", None, org, "o").unwrap(), "o");
        assert!(parse_entity_id("e", Some("p".into()), org, "o").is_err());
        let ws = EntityType::Workspace;
        assert_eq!(
            parse_entity_id("e", None, ws, "o").unwrap_err().code,
            "required"
        );
    }

    #[test]
    fn role_sets_follow_the_token_scope() {
        let ok = parse_role_set(
            Some(vec![
                entry("ORGANIZATION", "o", "ORGANIZATION_MEMBER"),
                entry("WORKSPACE", "w", "WORKSPACE_OWNER"),
                entry("DEPLOYMENT", "d", "DEPLOYMENT_ADMIN"),
            ]),
            EntityType::Organization,
            "o",
        )
        .unwrap();
        assert_eq!(ok.len(), 3);
        // The token's own role is required.
        let missing = parse_role_set(
            Some(vec![entry("DEPLOYMENT", "d", "DEPLOYMENT_ADMIN")]),
            EntityType::Workspace,
            "w",
        );
        assert_eq!(missing.unwrap_err()[0].field, "roles");
        // A deployment token holds nothing else; a workspace role on it is
        // at the wrong scope.
        let errors = parse_role_set(
            Some(vec![
                entry("DEPLOYMENT", "d", "DEPLOYMENT_ADMIN"),
                entry("WORKSPACE", "w", "WORKSPACE_OWNER"),
                entry("DEPLOYMENT", "d", "WORKSPACE_OWNER"),
            ]),
            EntityType::Deployment,
            "d",
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["roles[1].entityType", "roles[2].role"]);
        // Duplicates, and another workspace for a workspace token.
        let errors = parse_role_set(
            Some(vec![
                entry("WORKSPACE", "w", "WORKSPACE_OWNER"),
                entry("WORKSPACE", "w", "WORKSPACE_MEMBER"),
                entry("WORKSPACE", "w2", "WORKSPACE_MEMBER"),
            ]),
            EntityType::Workspace,
            "w",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(parse_role_set(None, EntityType::Workspace, "w").is_err());
    }
}
