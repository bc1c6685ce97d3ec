//! The `Caller` extractor: authenticates the bearer credential of a
//! management request and checks its permission through `authz`. A failed
//! check counts against the client's limit (see `throttle`), through
//! [`failed`], which the verification endpoints use too.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::net::IpAddr;

use super::audit::{Origin, Target};
use super::error::ApiError;
use crate::allowlist;
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::metrics::Check;
use crate::model::{AuditAction, TargetKind};
use crate::verify::{Principal, VerifyError};

/// The authenticated caller of a management endpoint.
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses with a 403 unless the caller may perform `action` on `resource`.
    pub fn require(&self, action: Action, resource: Resource) -> Result<(), ApiError> {
        authz::authorize(&self.0, action, resource)
            .map_err(|denied| ApiError::forbidden(denied.message))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        if let Principal::ApiToken(token) = &caller.0 {
            within_allowlist(parts, state, &caller.0, &token.organization_id).await?;
        }
        Ok(caller)
    }
}

/// Refuses (403, audited) a request for organization `org` from an address
/// outside its allowed IP address ranges, if it has any. The list comes
/// from memory (`allowlist::AllowLists`), not a database read per request.
/// A refusal counts against the client's limit of failed checks, so a
/// client that keeps trying is soon answered 429 and writes no more events.
async fn within_allowlist(
    parts: &mut Parts,
    state: &AppState,
    principal: &Principal,
    org: &str,
) -> Result<(), ApiError> {
    let networks = state.verifier.organization_networks(org).await?;
    let client = super::client_ip::of(parts, state);
    if allowlist::allows(&networks, client) {
        return Ok(());
    }
    let address = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let refusal = ApiError::forbidden(format!(
        "address {address} is not allowed: organization {org} accepts management requests \
         only from its allowed IP address ranges"
    ));
    let refusal = failed(state, client, Check::Management, refusal);
    if refusal.status == axum::http::StatusCode::FORBIDDEN {
        let Ok(origin) = Origin::from_request_parts(parts, state).await;
        let event = origin.event(
            principal.subject(),
            Some(org),
            AuditAction::AllowedIpRangeRefusal,
            Target(TargetKind::Organization, org),
            state.clock.now(),
        );
        if let Err(err) = state.store.record_audit_event(&event).await {
            tracing::warn!(error = %err, "could not record a refused address in the audit trail");
        }
    }
    tracing::info!(organization_id = %org, client = %address, "management request from outside the allowlist refused");
    Err(refusal)
}

/// The caller, authenticated: attached by the console, or from the bearer
/// credential.
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    if let Some(Authenticated(principal)) = parts.extensions.get::<Authenticated>() {
        return Ok(Caller(principal.clone()));
    }
    let refused = |message: &str| {
        let client = super::client_ip::of(parts, state);
        failed(
            state,
            client,
            Check::Management,
            ApiError::unauthorized(message),
        )
    };
    let Some(presented) = bearer_token(&parts.headers) else {
        return Err(refused(
            "missing credential: send Authorization: Bearer <token>",
        ));
    };
    match state.verifier.authenticate(presented).await {
        Ok(principal) => Ok(Caller(principal)),
        Err(VerifyError::Refused(_)) => Err(refused(
            "the bearer credential is invalid, expired or revoked",
        )),
        Err(VerifyError::Busy) => Err(ApiError::busy()),
        // Management does not gate on the limit before reading: a client
        // over its limit still gets in with a valid credential (successes
        // are never limited), and cache-miss reads are bounded on their own
        // (`AGENTKEY_CREDENTIAL_READS`).
        Err(VerifyError::Limited(retry)) => Err(ApiError::too_many_failures(retry)),
        Err(VerifyError::Store(err)) => Err(err.into()),
    }
}

/// A caller this process has already authenticated: the console attaches
/// it to the API requests it makes for a signed-in session (see
/// `console::api`). Extensions exist only inside the process; nothing a
/// client sends can become one.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

/// The answer to a failed credential check by `client`: `refusal`, or a
/// 429 (counted in the metrics) once the client has failed too often.
pub fn failed(
    state: &AppState,
    client: Option<IpAddr>,
    check: Check,
    refusal: ApiError,
) -> ApiError {
    match state.auth_failures.failed(client) {
        Ok(()) => refusal,
        Err(retry) => {
            state.metrics.limited(check);
            ApiError::too_many_failures(retry)
        }
    }
}

/// The bearer credential of a request, if it has one, unverified: for the
/// verification endpoints, which answer a missing credential themselves.
pub struct PresentedToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PresentedToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PresentedToken(
            bearer_token(&parts.headers).map(str::to_string),
        ))
    }
}

/// The credential of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    // Any UTF-8 here (HeaderValue::to_str would check each byte for
    // visible ASCII, which costs more): what follows the scheme is checked
    // for the token's shape before anything else is done with it.
    let value = std::str::from_utf8(headers.get(header::AUTHORIZATION)?.as_bytes()).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parses_bearer_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }
}
