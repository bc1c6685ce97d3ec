//! `POST /introspect`: RFC 7662 token introspection, for resource servers
//! that prefer asking about a token to forwarding the request.
//!
//! The caller authenticates with a management credential. Anything that is
//! not a valid agent token the caller may introspect answers
//! `{"active": false}`, with no hint as to why.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::client_ip::ClientIp;
use super::error::ApiError;
use super::extract::ValidForm;
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::http::request::FieldError;
use crate::metrics::Check;
use crate::verify::VerifyError;

/// The form an introspection request sends (RFC 7662 section 2.1). No
/// `Debug`: it holds the token being asked about.
#[derive(Deserialize, ToSchema)]
pub struct IntrospectionRequest {
    /// The token to ask about.
    #[schema(value_type = String, min_length = 1)]
    pub token: Option<String>,
    /// Accepted and ignored: agentkey knows one kind of token to introspect.
    #[schema(nullable = false)]
    pub token_type_hint: Option<String>,
}

/// RFC 7662 section 2.2. Only `active` is present for an inactive token.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    /// The agent token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sub: Option<String>,
    /// The deployment the token belongs to (its OAuth client).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    /// Always `DEPLOYMENT` for an agent token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub scope: Option<String>,
    /// When this secret stops verifying (expiry or end of a rotation's grace
    /// window), in Unix seconds; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub exp: Option<i64>,
    /// When this secret was issued (created or rotated), in Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deployment_id: Option<String>,
}

/// Introspect a token (RFC 7662).
#[utoipa::path(post, path = "/introspect", tag = "Verification", operation_id = "IntrospectToken",
    request_body(content = IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Whether the token is active, and if so what it is", body = Introspection),
               (status = 429, description = "The client failed too many checks; see Retry-After", body = super::error::ErrorBody)))]
pub async fn introspect(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    caller: Caller,
    ValidForm(request): ValidForm<IntrospectionRequest>,
) -> Result<Response, ApiError> {
    caller.require(Action::IntrospectTokens, Resource::Global)?;
    let Some(token) = request.token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::invalid(vec![FieldError::new(
            "token",
            "required",
            "token is required",
        )]));
    };
    let verified = state
        .verifier
        .verify_agent_from(&token, &state.auth_failures, client)
        .await;
    let answer = match verified {
        Ok(entry) => {
            let c = &entry.credential;
            let allowed = authz::authorize(
                &caller.0,
                Action::IntrospectTokens,
                Resource::Organization(&c.organization_id),
            );
            match allowed {
                Ok(()) => Introspection {
                    active: true,
                    sub: Some(c.token_id.clone()),
                    client_id: Some(c.deployment_id.clone()),
                    scope: Some("DEPLOYMENT".into()),
                    exp: c.valid_until(),
                    iat: Some(c.issued_at),
                    token_type: Some("Bearer".into()),
                    organization_id: Some(c.organization_id.clone()),
                    deployment_id: Some(c.deployment_id.clone()),
                },
                Err(_) => Introspection::default(),
            }
        }
        // An inactive token counts against the client's limit, as a
        // failed authorization does.
        Err(VerifyError::Refused(_)) => {
            if let Err(retry) = state.auth_failures.failed(client) {
                state.metrics.limited(Check::Introspect);
                return Err(ApiError::too_many_failures(retry));
            }
            Introspection::default()
        }
        Err(VerifyError::Limited(retry)) => {
            state.metrics.limited(Check::Introspect);
            return Err(ApiError::too_many_failures(retry));
        }
        Err(VerifyError::Busy) => return Err(ApiError::busy()),
        Err(VerifyError::Store(err)) => return Err(err.into()),
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
