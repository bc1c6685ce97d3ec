//! Wire shapes shared by several resources, with Astro's field names:
//! `ApiToken`, `BasicSubjectProfile`, `ApiTokenRole`; and the enums of the
//! OpenAPI document (`ApiTokenScope`, `RoleName`, ...), built from the same
//! lists the server parses and answers with, so the document cannot drift.

use std::borrow::Cow;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::clock::rfc3339;
use crate::model::{self, AgentToken};
use crate::roles::{AgentRole, EntityType, Role};

/// A string schema allowing exactly `values`.
pub fn string_enum<'a>(
    description: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

/// Declares a schema-only type: a named string enum of the OpenAPI
/// document, whose values come from the code's own list.
macro_rules! string_enum_schema {
    ($(#[$doc:meta])* $name:ident, $description:expr, $values:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_enum($description, $values)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_enum_schema!(
    /// `scope` (and `type`) of an API token, `entityType` of a role.
    ApiTokenScope,
    "The kind of entity a token is created for or a role is held on.",
    EntityType::ALL.map(EntityType::as_str)
);

string_enum_schema!(
    /// `kind` of a token: agentkey issues standard tokens only.
    ApiTokenKind,
    "The kind of token; agentkey issues `STANDARD` tokens only.",
    ["STANDARD"]
);

string_enum_schema!(
    /// The `kind` filter of the API-token list.
    ListedKind,
    "`STANDARD` lists every token; `DIRECT_ACCESS` none (agentkey issues none).",
    ["STANDARD", "DIRECT_ACCESS"]
);

string_enum_schema!(
    /// A role a request may name.
    RoleName,
    "A role of one scope (see the API reference for which).",
    Role::ALL.map(Role::as_str)
);

string_enum_schema!(
    /// A role a response may name: the roles of API tokens and the one role
    /// of every agent token.
    GrantedRole,
    "A role of an API token, or `DEPLOYMENT_AGENT`, the role of every agent token.",
    Role::ALL
        .map(Role::as_str)
        .into_iter()
        .chain(AgentRole::ALL.map(AgentRole::as_str))
);

string_enum_schema!(
    /// A deployment's `type`.
    DeploymentTypeName,
    "The deployment's type, kept as the client gave it; agentkey runs no clusters.",
    model::DeploymentType::ALL.map(model::DeploymentType::as_str)
);

string_enum_schema!(
    /// A deployment's `status`: agentkey answers one value.
    DeploymentStatus,
    "Always `UNKNOWN`: agentkey registers deployments, it does not run them.",
    [crate::http::deployments::DEPLOYMENT_STATUS]
);

string_enum_schema!(
    /// What an audit event records was done.
    AuditActionName,
    "What was done, e.g. `agentToken.create`.",
    model::AuditAction::ALL.map(model::AuditAction::as_str)
);

string_enum_schema!(
    /// `subjectType` of a `BasicSubjectProfile`.
    SubjectType,
    "`SERVICEKEY` for an API token or the root credential.",
    [model::SubjectType::User, model::SubjectType::ServiceKey].map(model::SubjectType::as_str)
);

/// Astro's `BasicSubjectProfile`: who created or last changed something.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicSubjectProfile {
    pub id: String,
    #[schema(value_type = SubjectType)]
    pub subject_type: String,
    /// For an API token (or the root credential, `root`): its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub api_token_name: Option<String>,
}

impl From<&model::Subject> for BasicSubjectProfile {
    fn from(s: &model::Subject) -> Self {
        BasicSubjectProfile {
            id: s.id.clone(),
            subject_type: s.subject_type.as_str().to_string(),
            api_token_name: s.api_token_name.clone(),
        }
    }
}

/// One role of a token on an entity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenRole {
    pub entity_id: String,
    #[schema(value_type = ApiTokenScope)]
    pub entity_type: String,
    #[schema(value_type = GrantedRole)]
    pub role: String,
    /// The deployment, for a role on a deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deployment_id: Option<String>,
}

/// Astro's `ApiToken`. Optional fields are omitted, not `null`, when unset:
/// a token that never expires has neither `endAt` nor `expiryPeriodInDays`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub description: String,
    /// A non-secret fragment of the token, to recognise it by.
    pub short_token: String,
    #[schema(value_type = ApiTokenKind)]
    pub kind: String,
    #[schema(value_type = ApiTokenScope)]
    pub scope: String,
    /// The same as `scope`, under the name the `/iam/v1beta1` clients (the
    /// Astro Terraform provider's `ApiToken.type`) read. Sent on every base
    /// path.
    #[serde(rename = "type")]
    #[schema(value_type = ApiTokenScope)]
    pub token_type: String,
    #[schema(format = DateTime)]
    pub start_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub created_by: Option<BasicSubjectProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub updated_by: Option<BasicSubjectProfile>,
    /// When the token expires; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub end_at: Option<String>,
    /// Absent if the token never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1, maximum = 3650)]
    pub expiry_period_in_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub last_rotated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub last_used_at: Option<String>,
    /// agentkey's own, agent tokens only: while a rotation's grace window
    /// is open, when the replaced secret stops verifying. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub previous_secret_valid_until: Option<String>,
    /// agentkey's own, agent tokens only: the networks the token may be
    /// presented from (`/v1/authorize` and `/v1/introspect` refuse it from
    /// anywhere else). Absent when the token is not bound to any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub allowed_ip_address_ranges: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub roles: Option<Vec<ApiTokenRole>>,
    /// The secret. Present only in the response that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub token: Option<RevealedSecret>,
}

impl ApiToken {
    /// An agent token as the wire shows it at `now`: with the end of its
    /// rotation grace window while that window is open.
    pub fn agent(token: &AgentToken, now: i64) -> ApiToken {
        ApiToken {
            previous_secret_valid_until: token
                .previous_secret_valid_until
                .filter(|until| *until > now)
                .map(rfc3339),
            ..ApiToken::from(token)
        }
    }

    /// This token with its secret, for the one response that reveals it.
    pub fn revealing(mut self, secret: &crate::token::Secret) -> ApiToken {
        self.token = Some(RevealedSecret(secret.expose().to_string()));
        self
    }
}

/// A secret on its way into a response body: serialized as a plain string,
/// never shown by `Debug`.
pub struct RevealedSecret(String);

impl Serialize for RevealedSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RevealedSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(RevealedSecret)
    }
}

impl RevealedSecret {
    /// Wraps a secret that a response is about to show, once.
    pub fn new(secret: impl Into<String>) -> RevealedSecret {
        RevealedSecret(secret.into())
    }

    /// The secret, for the one page that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A JSON response that carries a secret: marked `Cache-Control: no-store`
/// so no cache between here and the client keeps a copy.
pub struct SecretResponse<T>(Json<T>);

impl<T> SecretResponse<T> {
    pub fn new(body: T) -> SecretResponse<T> {
        SecretResponse(Json(body))
    }
}

impl<T: Serialize> IntoResponse for SecretResponse<T> {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<&AgentToken> for ApiToken {
    fn from(t: &AgentToken) -> Self {
        ApiToken {
            id: t.id.clone(),
            name: t.name.clone(),
            description: t.description.clone(),
            short_token: t.short_token.clone(),
            kind: "STANDARD".into(),
            scope: "DEPLOYMENT".into(),
            token_type: "DEPLOYMENT".into(),
            start_at: rfc3339(t.start_at),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
            created_by: Some((&t.created_by).into()),
            updated_by: Some((&t.updated_by).into()),
            end_at: t.end_at.map(rfc3339),
            expiry_period_in_days: t.expiry_period_in_days,
            last_rotated_at: t.last_rotated_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            previous_secret_valid_until: None,
            allowed_ip_address_ranges: (!t.allowed_ip_ranges.is_empty())
                .then(|| t.allowed_ip_ranges.clone()),
            roles: Some(vec![ApiTokenRole {
                entity_id: t.deployment_id.clone(),
                entity_type: t.role.entity_type().as_str().into(),
                role: t.role.as_str().into(),
                deployment_id: Some(t.deployment_id.clone()),
            }]),
            token: None,
        }
    }
}

/// Astro's `ApiTokensPaginated`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokensPaginated {
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: i64,
    #[schema(minimum = 0)]
    pub offset: i64,
    pub tokens: Vec<ApiToken>,
    pub total_count: i64,
}
