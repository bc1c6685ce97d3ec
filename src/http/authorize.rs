//! `GET /authorize`: forward authentication for the gateway in front of a
//! deployment (nginx `auth_request`, Traefik ForwardAuth, Caddy
//! `forward_auth`). 200 with the token's identity, or 401/403.

use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{failed, PresentedToken};
use super::client_ip::ClientIp;
use super::context::REQUEST_ID;
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
    answer(
        &state,
        client,
        presented.as_deref(),
        query.0.deployment_id.as_deref(),
    )
    .await
}

/// The answer to `presented` from `client`, for the router's handler above
/// and for the front door (`http::front`), which serves the same route
/// without the router.
pub async fn answer(
    state: &AppState,
    client: Option<IpAddr>,
    presented: Option<&str>,
    deployment_id: Option<&str>,
) -> Result<Response, ApiError> {
    let refused = || failed(state, client, Check::Authorize, invalid_token());
    let Some(presented) = presented else {
        return Err(refused());
    };
    let verified = state
        .verifier
        .verify_agent_from(presented, &state.auth_failures, client)
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
    if deployment_id.is_some_and(|wanted| wanted != credential.deployment_id) {
        return Err(ApiError::forbidden(
            "this agent token belongs to another deployment",
        ));
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

/// The deployment a gateway's request names in its query, if any.
pub fn wanted_deployment(uri: &axum::http::Uri) -> Result<Option<String>, ApiError> {
    if uri.query().is_none() {
        return Ok(None);
    }
    let axum::extract::Query(query) = axum::extract::Query::<AuthorizeQuery>::try_from_uri(uri)?;
    Ok(query.deployment_id)
}

/// A valid token's answer, serialized: the body and the headers.
struct Prepared {
    body: Bytes,
    headers: HeaderMap,
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
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in [
            (TOKEN_ID_HEADER, &credential.token_id),
            (ORGANIZATION_ID_HEADER, &credential.organization_id),
            (DEPLOYMENT_ID_HEADER, &credential.deployment_id),
        ] {
            // Shared bytes, so that each answer's copy is a reference.
            if let Ok(value) =
                HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
            {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // A place for the request id, which the request context sets on
        // every answer: with it, the copy of this map each answer gets has
        // room for the id, and setting it replaces a value instead of
        // growing the map.
        headers.insert(REQUEST_ID.clone(), HeaderValue::from_static(""));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        Prepared {
            body: Bytes::from(body),
            headers,
        }
    }

    fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.headers_mut() = self.headers.clone();
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
