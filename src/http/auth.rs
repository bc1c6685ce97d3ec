//! The `Caller` extractor: authenticates the bearer credential of a
//! management request and checks its permission through `authz`. A failed
//! check counts against the client's limit (see `throttle`), through
//! [`failed`], which the verification endpoints use too.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::net::IpAddr;

use super::error::ApiError;
use crate::app::AppState;
use crate::authz::{self, Action, Resource};
use crate::metrics::Check;
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
            // Management does not gate on the limit before reading.
            Err(VerifyError::Limited(retry)) => Err(ApiError::too_many_failures(retry)),
            Err(VerifyError::Store(err)) => Err(err.into()),
        }
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
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
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
