//! The console's page handlers, one file per area: each reads what it
//! shows, and does what a
//! form asks, through [`Api`](super::api::Api), then renders a template.
//! Whether a form is offered at all is asked of the same `authz` table the
//! API enforces; the API still decides.

use std::collections::BTreeMap;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::session::{self, urlencode};
use super::views::*;
use super::{see_other, ClientOf, Console, Ctx, Posted, Q};
use crate::authz::{self, Action, Resource};
use crate::http::audit::AuditLogsPaginated;
use crate::http::deployments::{Deployment, DeploymentsPaginated};
use crate::http::error::ApiError;
use crate::http::organizations::{Organization, OrganizationsPaginated};
use crate::http::schema::{ApiToken, ApiTokensPaginated, RevealedSecret};
use crate::http::workspaces::{Workspace, WorkspacesPaginated};
use crate::roles::Role;
use crate::token::secret::hex;
use crate::token::Digest;
use crate::verify::{Principal, VerifyError};

/// Rows per page of the console's tables, unless `?limit=` (up to
/// [`MAX_PAGE_SIZE`]) says otherwise: a deployment's 50 agent tokens (the
/// default cap) fit on one page.
const PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 100;

/// The page size a table was asked for, within bounds.
fn page_size(asked: Option<i64>) -> i64 {
    asked.unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE)
}
/// The most workspaces or deployments a page lists (the API's own cap).
const LIST_ALL: &str = "limit=1000";

type Page = Result<Response, Response>;

mod agent_tokens;
mod allowlist;
mod api_tokens;
mod audit;
mod places;
mod sign_in;
mod webhooks;

pub use agent_tokens::*;
pub use allowlist::*;
pub use api_tokens::*;
pub use audit::*;
pub use places::*;
pub use sign_in::*;
pub use webhooks::*;

fn render(template: impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a console template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn layout(ctx: &Ctx, title: impl Into<String>, trail: Vec<(String, String)>) -> Layout {
    let who = match &ctx.user.principal {
        Principal::Root { .. } => "root".to_string(),
        Principal::ApiToken(token) => format!("{} (API token)", token.name),
        Principal::Agent(agent) => agent.name.clone(),
    };
    Layout {
        title: title.into(),
        who: Some(who),
        csrf: ctx.user.csrf.clone(),
        trail,
        notice: None,
    }
}

fn signed_out_layout(title: &str) -> Layout {
    Layout {
        title: title.to_string(),
        who: None,
        csrf: String::new(),
        trail: Vec::new(),
        notice: None,
    }
}

/// An error the API answered, as a page: the same status and message.
fn error_page(ctx: &Ctx, error: ApiError) -> Response {
    if let Some(detail) = &error.detail {
        tracing::error!(detail = %detail, "console request failed");
    }
    let title = match error.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    render(
        ErrorPage {
            layout: layout(ctx, title, vec![home_link()]),
            status: error.status.as_u16(),
            message: error.message,
        },
        error.status,
    )
}

impl Ctx {
    /// What the API answers at `path`, or the page of its error (the same
    /// status and message as the API's).
    async fn read<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Response> {
        self.api.get(path).await.map_err(|e| error_page(self, e))
    }

    /// The organization's workspaces by name (its first 1,000); none when
    /// the caller may not list them, as the API answers.
    async fn workspaces(&self, org: &str) -> Vec<Workspace> {
        let path = format!("/organizations/{org}/workspaces?{LIST_ALL}&sorts=name:asc");
        self.api
            .get::<WorkspacesPaginated>(&path)
            .await
            .map(|w| w.workspaces)
            .unwrap_or_default()
    }

    /// The organization's deployments by name (its first 1,000); none when
    /// the caller may not list them.
    async fn deployments(&self, org: &str) -> Vec<Deployment> {
        let path = format!("/organizations/{org}/deployments?{LIST_ALL}&sorts=name:asc");
        self.api
            .get::<DeploymentsPaginated>(&path)
            .await
            .map(|d| d.deployments)
            .unwrap_or_default()
    }

    /// The organization the path names, as the caller may see it.
    async fn organization(&self, org: &str) -> Result<Organization, Response> {
        self.read(&format!("/organizations/{org}")).await
    }
}

/// A failure reading the session itself.
pub fn store_failure(error: ApiError) -> Response {
    if let Some(detail) = &error.detail {
        tracing::error!(detail = %detail, "console session lookup failed");
    }
    plain_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "internal error; try again, and look at the server log if it persists",
    )
}

fn plain_error(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        ErrorPage {
            layout: signed_out_layout(title),
            status: status.as_u16(),
            message: message.to_string(),
        },
        status,
    )
}

/// A form that did not come from this session's own pages.
pub fn forbidden_form() -> Response {
    plain_error(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "this form did not come from this console session (it may be stale, or sent by \
         another site); nothing was changed. Reload the page and try again.",
    )
}

/// Too many failed credential checks from this address: the console's page
/// for the API's 429, with its `Retry-After`.
pub fn too_many(retry: crate::throttle::RetryAfter) -> Response {
    let error = ApiError::too_many_failures(retry);
    let mut page = plain_error(error.status, "Too many attempts", &error.message);
    if let Some(seconds) = error.retry_after {
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    page
}

/// Credential checks are queued up: try again in a moment.
pub fn busy() -> Response {
    let mut page = plain_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Busy",
        "agentkey is checking many credentials at the moment; reload this page in a second",
    );
    page.headers_mut()
        .insert(axum::http::header::RETRY_AFTER, 1.into());
    page
}

pub fn bad_query() -> Response {
    plain_error(
        StatusCode::BAD_REQUEST,
        "That did not work",
        "the address has a value this page cannot use (a page number that is not a number?)",
    )
}

pub fn bad_form() -> Response {
    plain_error(
        StatusCode::BAD_REQUEST,
        "That did not work",
        "the form could not be read; nothing was changed",
    )
}

pub async fn not_found() -> Response {
    plain_error(
        StatusCode::NOT_FOUND,
        "Not found",
        "there is no such page in the console",
    )
}

/// What was typed into a form, with the API's answer placed next to the
/// fields it names. Secrets are never kept.
fn form_state(values: &[(&str, &str)], error: Option<ApiError>) -> FormState {
    let mut state = FormState {
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..FormState::default()
    };
    if let Some(error) = error {
        for field in &error.field_errors {
            state
                .errors
                .entry(field.field.clone())
                .or_insert_with(|| field.message.clone());
        }
        if state.errors.is_empty() {
            state.message = Some(error.message);
        }
    }
    state
}

/// A page re-shown with what was wrong in its form is a 400.
fn failed_status(form: &FormState) -> StatusCode {
    if form.errors.is_empty() && form.message.is_none() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// An optional whole number typed into a form: empty is `None`.
fn number(field: &str, text: &str, what: &str) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::invalid(vec![crate::http::request::FieldError::new(
            field,
            "invalid",
            format!("{what} must be a whole number; got {text:?}"),
        )])
    })
}

fn may(ctx: &Ctx, action: Action, resource: Resource) -> bool {
    authz::authorize(&ctx.user.principal, action, resource).is_ok()
}

fn home_link() -> (String, String) {
    ("/console/".to_string(), "Organizations".to_string())
}

fn org_link(org: &Organization) -> (String, String) {
    (
        format!("/console/organizations/{}", org.id),
        org.name.clone(),
    )
}

fn notice(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "deleted" => "Deleted. The token is refused from now on.",
        "saved" => "Saved.",
        "created" => "Created.",
        "range-added" => "Added. The organization's API now answers only from its allowed ranges.",
        "range-deleted" => "Deleted.",
        "webhook-deleted" => "Deleted. Nothing more is sent to that endpoint.",
        "redelivered" => "Queued again: the event is sent once more, with the same event id.",
        "already-done" => {
            "That form was already sent once; nothing was done again, and its secret is not \
             shown again."
        }
        _ => return None,
    };
    Some(text.to_string())
}

/// A fresh one-time nonce for a form that reveals a secret.
///
/// It is 128 random bits and a tag derived from them and the session's
/// CSRF token, so only nonces this server issued to this session are ever
/// recorded as used.
fn nonce(ctx: &Ctx) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let random = hex(&bytes);
    let tag = nonce_tag(ctx, &random);
    format!("{random}{tag}")
}

fn nonce_tag(ctx: &Ctx, random: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"agentkey console nonce\0");
    hash.update(ctx.user.csrf.as_bytes());
    hash.update(random.as_bytes());
    hex(&hash.finalize()[..16])
}

/// Spends a secret-revealing form's nonce before the form does anything;
/// a nonce already spent (a reload, a second submission) or not this
/// session's sends the browser back to `here` with a notice instead.
async fn spend_nonce(ctx: &Ctx, nonce: &str, here: &str) -> Result<(), Response> {
    match first_use(ctx, nonce).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(see_other(&format!("{here}?notice=already-done"))),
        Err(e) => Err(error_page(ctx, e)),
    }
}

/// Marks the form's nonce used; `false` if it was used before (a reload
/// or a second submission), or is not one this session was given.
async fn first_use(ctx: &Ctx, nonce: &str) -> Result<bool, ApiError> {
    use subtle::ConstantTimeEq;
    if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let (random, tag) = nonce.split_at(32);
    if !bool::from(nonce_tag(ctx, random).as_bytes().ct_eq(tag.as_bytes())) {
        return Ok(false);
    }
    let now = ctx.console.state.clock.now();
    Ok(ctx
        .console
        .state
        .store
        .use_console_nonce(&ctx.user.session, &Digest::of(nonce), now)
        .await?)
}

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

fn pager(offset: i64, limit: i64, shown: usize, total: i64, href: impl Fn(i64) -> String) -> Pager {
    let shown = shown as i64;
    Pager {
        first: offset.saturating_add(1),
        last: offset.saturating_add(shown),
        total,
        previous: (offset > 0).then(|| href(offset.saturating_sub(limit).max(0))),
        next: (offset.saturating_add(shown) < total).then(|| href(offset.saturating_add(limit))),
    }
}

/// What a lost token's secret page says: only its digest is kept.
const LOST_TOKEN: &str =
    "agentkey keeps only a digest of it, so it cannot be shown again. If it is lost, rotate the token.";

fn secret_page(
    ctx: &Ctx,
    heading: &str,
    token: ApiToken,
    back: &str,
    back_label: &str,
) -> Response {
    show_secret(
        ctx,
        heading,
        (&token.name, token.token.as_ref()),
        LOST_TOKEN,
        back,
        back_label,
    )
}

/// The one page that shows a new secret: `named` is what it belongs to,
/// `lost` says what to do if it is lost.
fn show_secret(
    ctx: &Ctx,
    heading: &str,
    (name, secret): (&str, Option<&RevealedSecret>),
    lost: &str,
    back: &str,
    back_label: &str,
) -> Response {
    let Some(secret) = secret else {
        return error_page(ctx, ApiError::internal());
    };
    render(
        SecretPage {
            layout: layout(ctx, heading, vec![home_link()]),
            heading: heading.to_string(),
            name: name.to_string(),
            secret: secret.expose().to_string(),
            lost: lost.to_string(),
            back: back.to_string(),
            back_label: back_label.to_string(),
        },
        StatusCode::OK,
    )
}
