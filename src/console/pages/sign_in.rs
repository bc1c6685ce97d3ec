//! Signing in and out of the console.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::*;

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
}

pub async fn sign_in_form(Q(query): Q<SignInQuery>) -> Response {
    render(
        SignInPage {
            layout: signed_out_layout("Sign in"),
            next: safe_next(&query.next).to_string(),
            error: None,
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

pub async fn sign_in(
    State(console): State<Console>,
    ClientOf(client): ClientOf,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !session::same_origin(&headers, &console.state.settings.console) {
        return forbidden_form();
    }
    let next = safe_next(&form.next).to_string();
    let refuse = |status: StatusCode, message: &str| {
        render(
            SignInPage {
                layout: signed_out_layout("Sign in"),
                next: next.clone(),
                error: Some(message.to_string()),
            },
            status,
        )
    };
    // Failed sign-ins count against the address like any failed credential
    // check; over the limit, nothing is read until the wait is over.
    let limited = |error: ApiError| {
        let mut page = refuse(error.status, &error.message);
        if let Some(seconds) = error.retry_after {
            page.headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        page
    };
    if let Err(retry) = console.state.auth_failures.check(client) {
        return limited(ApiError::too_many_failures(retry));
    }
    let presented = form.token.trim();
    if presented.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "Enter an API token.");
    }
    // An agent token is refused by its shape, before verification would
    // count it as used.
    if crate::token::secret::parse_kind(presented) == Some(crate::token::SecretKind::Agent) {
        return refuse(
            StatusCode::FORBIDDEN,
            "An agent token cannot sign in: it is for a deployment's gateway. Sign in with \
             the root credential or an organization API token.",
        );
    }
    let principal = match console.state.verifier.authenticate(presented).await {
        Ok(principal) => principal,
        Err(VerifyError::Refused(_)) => {
            return limited(crate::http::auth::failed(
                &console.state,
                client,
                crate::metrics::Check::Management,
                ApiError::unauthorized("This credential is invalid, expired or revoked."),
            ))
        }
        Err(VerifyError::Busy) => return limited(ApiError::busy()),
        Err(VerifyError::Limited(retry)) => return limited(ApiError::too_many_failures(retry)),
        Err(VerifyError::Store(err)) => return store_failure(err.into()),
    };
    let Some(kind) = session::credential_of(&principal) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "An agent token cannot sign in: it is for a deployment's gateway. Sign in with \
             the root credential or an organization API token.",
        );
    };
    // A session this browser already had ends: one browser, one session.
    session::end(&console, &headers).await;
    let cookie = match session::start(&console, kind, Digest::of(presented)).await {
        Ok(cookie) => cookie,
        Err(err) => return store_failure(err.into()),
    };
    tracing::info!(subject = %principal.subject().id, "console sign-in");
    let mut response = see_other(&next);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Where to go after signing in: a console path, never another site.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with("/console/")
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if local {
        next
    } else {
        "/console/"
    }
}

#[derive(Deserialize, Default)]
pub struct Nothing {}

pub async fn sign_out(
    State(console): State<Console>,
    headers: HeaderMap,
    _: Posted<Nothing>,
) -> Response {
    let cookie = session::end(&console, &headers).await;
    tracing::info!("console sign-out");
    let mut response = see_other("/console/sign-in");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}
