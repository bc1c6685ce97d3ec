//! `GET /authorize`: forward authentication for the gateway in front of a
//! deployment (nginx `auth_request`, Traefik ForwardAuth, Caddy
//! `forward_auth`). 200 with the token's identity, or 401/403.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{failed, PresentedToken};
use super::client_ip::ClientIp;
use super::error::ApiError;
use super::schema::ApiTokenScope;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::metrics::Check;
use crate::model::AgentCredential;
use crate::verify::VerifyError;

pub const TOKEN_ID_HEADER: &str = "x-agentkey-token-id";
pub const ORGANIZATION_ID_HEADER: &str = "x-agentkey-organization-id";
pub const DEPLOYMENT_ID_HEADER: &str = "x-agentkey-deployment-id";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// When set, a valid token of any other deployment is a 403.
    pub deployment_id: Option<String>,
}

/// The identity of a valid agent token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub active: bool,
    pub token_id: String,
    pub organization_id: String,
    pub deployment_id: String,
    /// Always `DEPLOYMENT` for an agent token.
    #[schema(value_type = ApiTokenScope)]
    pub scope: String,
    /// When this secret stops verifying (its `endAt`, or the end of its grace
    /// window after a rotation); absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub expires_at: Option<String>,
}

/// Verify an agent token (forward auth).
#[utoipa::path(get, path = "/authorize", tag = "Verification", operation_id = "AuthorizeAgentToken",
    params(AuthorizeQuery),
    responses((status = 200, description = "Valid; the ids are also in X-Agentkey-* headers", body = Authorization),
              (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = super::error::ErrorBody),
              (status = 403, description = "Valid, but for another deployment than `deploymentId`", body = super::error::ErrorBody),
              (status = 429, description = "The client failed too many checks; see Retry-After", body = super::error::ErrorBody)))]
pub async fn authorize(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    PresentedToken(presented): PresentedToken,
    query: super::extract::QueryParams<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let refused = || failed(&state, client, Check::Authorize, invalid_token());
    let Some(presented) = presented else {
        return Err(refused());
    };
    let verified = state
        .verifier
        .verify_agent_from(&presented, &state.auth_failures, client)
        .await;
    let entry = match verified {
        Ok(entry) => entry,
        Err(VerifyError::Refused(refusal)) => {
            tracing::debug!(?refusal, "agent token refused");
            return Err(refused());
        }
        Err(VerifyError::Limited(retry)) => {
            state.metrics.limited(Check::Authorize);
            return Err(ApiError::too_many_failures(retry));
        }
        Err(VerifyError::Busy) => return Err(ApiError::busy()),
        Err(VerifyError::Store(err)) => return Err(err.into()),
    };
    let credential = &entry.credential;
    if let Some(wanted) = &query.0.deployment_id {
        if *wanted != credential.deployment_id {
            return Err(ApiError::forbidden(
                "this agent token belongs to another deployment",
            ));
        }
    }
    // The answer depends on the credential alone: built once per cache
    // entry, then each request shares its bytes.
    let answer = entry
        .answer
        .get_or_init(|| Box::new(Prepared::new(credential)));
    let built;
    let answer = match answer.downcast_ref::<Prepared>() {
        Some(answer) => answer,
        None => {
            built = Prepared::new(credential);
            &built
        }
    };
    Ok(answer.response())
}

/// A valid token's answer, serialized: the body and the id headers.
struct Prepared {
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Prepared {
    fn new(credential: &AgentCredential) -> Prepared {
        let body = serde_json::to_vec(&Authorization {
            active: true,
            token_id: credential.token_id.clone(),
            organization_id: credential.organization_id.clone(),
            deployment_id: credential.deployment_id.clone(),
            scope: "DEPLOYMENT".into(),
            expires_at: credential.valid_until().map(rfc3339),
        })
        .unwrap_or_default();
        let headers = [
            (TOKEN_ID_HEADER, &credential.token_id),
            (ORGANIZATION_ID_HEADER, &credential.organization_id),
            (DEPLOYMENT_ID_HEADER, &credential.deployment_id),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            // Shared bytes, so that each answer's copy is a reference.
            let value = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()));
            Some((HeaderName::from_static(name), value.ok()?))
        })
        .collect();
        Prepared {
            body: Bytes::from(body),
            headers,
        }
    }

    fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// RFC 6750's answer to a bad bearer token.
fn invalid_token() -> ApiError {
    ApiError {
        challenge: Some(r#"Bearer error="invalid_token""#),
        ..ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the agent token is missing, malformed, unknown, revoked or expired",
        )
    }
}
