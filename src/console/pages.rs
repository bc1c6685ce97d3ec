//! The console's page handlers: each reads what it shows, and does what a
//! form asks, through [`Api`](super::api::Api), then renders a template.
//! Whether a form is offered at all is asked of the same `authz` table the
//! API enforces; the API still decides.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::session::{self, urlencode};
use super::views::*;
use super::{see_other, Console, Ctx, Posted};
use crate::authz::{self, Action, Resource};
use crate::http::audit::AuditLogsPaginated;
use crate::http::deployments::{Deployment, DeploymentsPaginated};
use crate::http::error::ApiError;
use crate::http::organizations::{Organization, OrganizationsPaginated};
use crate::http::schema::{ApiToken, ApiTokensPaginated};
use crate::http::workspaces::{Workspace, WorkspacesPaginated};
use crate::roles::Role;
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

/// Every audit action, for the audit log's filter.
pub const AUDIT_ACTIONS: &[&str] = &[
    "agentToken.create",
    "agentToken.delete",
    "agentToken.rotate",
    "apiToken.create",
    "apiToken.delete",
    "apiToken.rotate",
    "apiToken.update",
    "apiToken.updateRoles",
    "deployment.create",
    "deployment.delete",
    "organization.create",
    "workspace.create",
];

type Page = Result<Response, Response>;

// ---------------------------------------------------------------- rendering

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
        ApiError::invalid(vec![crate::token::request::FieldError::new(
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
        "already-done" => {
            "That form was already sent once; nothing was done again, and its secret is not \
             shown again."
        }
        _ => return None,
    };
    Some(text.to_string())
}

/// A fresh one-time nonce for a form that reveals a secret.
fn nonce() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    session::hex(&bytes)
}

/// Marks the form's nonce used; `false` if it was used before (a reload
/// or a second submission), or is not one of ours.
async fn first_use(ctx: &Ctx, nonce: &str) -> Result<bool, ApiError> {
    if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
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

// ------------------------------------------------------------ signing in

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
}

pub async fn sign_in_form(Query(query): Query<SignInQuery>) -> Response {
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
    let presented = form.token.trim();
    if presented.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "Enter an API token.");
    }
    let principal = match console.state.verifier.authenticate(presented).await {
        Ok(principal) => principal,
        Err(VerifyError::Refused(_)) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "This credential is invalid, expired or revoked.",
            )
        }
        Err(VerifyError::Store(err)) => return store_failure(err.into()),
    };
    let Some(kind) = session::credential_of(&principal) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "An agent token cannot sign in: it is for a deployment's gateway. Sign in with \
             the root credential or an organization API token.",
        );
    };
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
    let mut response = see_other("/console/sign-in");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

// ------------------------------------------------ organizations and places

pub async fn home(ctx: Ctx) -> Page {
    home_page(&ctx, FormState::default(), StatusCode::OK).await
}

async fn home_page(ctx: &Ctx, form: FormState, status: StatusCode) -> Page {
    let orgs: OrganizationsPaginated = ctx
        .api
        .get(&format!("/organizations?{LIST_ALL}&sorts=name:asc"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    Ok(render(
        HomePage {
            layout: layout(ctx, "Organizations", Vec::new()),
            organizations: orgs.organizations,
            may_create: may(ctx, Action::CreateOrganization, Resource::Global),
            form,
        },
        status,
    ))
}

#[derive(Deserialize, Default)]
pub struct NameForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "workspaceId")]
    workspace_id: String,
}

pub async fn create_organization(Posted { ctx, form }: Posted<NameForm>) -> Page {
    match ctx
        .api
        .post::<Organization>("/organizations", &json!({ "name": form.name }))
        .await
    {
        Ok(org) => Ok(see_other(&format!(
            "/console/organizations/{}?notice=created",
            org.id
        ))),
        Err(e) => {
            let status = e.status;
            home_page(&ctx, form_state(&[("name", &form.name)], Some(e)), status).await
        }
    }
}

pub async fn organization(
    ctx: Ctx,
    Path(org): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Page {
    let mut page =
        organization_page(&ctx, &org, FormState::default(), FormState::default()).await?;
    page.layout.notice = notice(query.notice.as_deref());
    Ok(render(page, StatusCode::OK))
}

async fn organization_page(
    ctx: &Ctx,
    org: &str,
    workspace_form: FormState,
    deployment_form: FormState,
) -> Result<OrganizationPage, Response> {
    let organization: Organization = ctx
        .api
        .get(&format!("/organizations/{org}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    // What the caller may not list is shown as empty, as the API answers.
    let workspaces = ctx
        .api
        .get::<WorkspacesPaginated>(&format!(
            "/organizations/{org}/workspaces?{LIST_ALL}&sorts=name:asc"
        ))
        .await
        .map(|w| w.workspaces)
        .unwrap_or_default();
    let deployments = ctx
        .api
        .get::<DeploymentsPaginated>(&format!(
            "/organizations/{org}/deployments?{LIST_ALL}&sorts=name:asc"
        ))
        .await
        .map(|d| d.deployments)
        .unwrap_or_default();
    let deployable = workspaces
        .iter()
        .filter(|w| {
            may(
                ctx,
                Action::CreateDeployment,
                Resource::Workspace {
                    organization: org,
                    workspace: &w.id,
                },
            )
        })
        .cloned()
        .collect();
    Ok(OrganizationPage {
        layout: layout(ctx, organization.name.clone(), vec![home_link()]),
        may_create_workspace: may(ctx, Action::CreateWorkspace, Resource::Organization(org)),
        may_see_api_tokens: may(ctx, Action::GetApiTokens, Resource::Organization(org)),
        may_see_audit: may(ctx, Action::ReadAuditLogs, Resource::Organization(org)),
        org: organization,
        workspaces,
        deployments,
        deployable,
        workspace_form,
        deployment_form,
    })
}

pub async fn create_workspace(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({ "name": form.name, "description": form.description });
    match ctx
        .api
        .post::<Workspace>(&format!("/organizations/{org}/workspaces"), &body)
        .await
    {
        Ok(ws) => Ok(see_other(&format!(
            "/console/organizations/{org}/workspaces/{}?notice=created",
            ws.id
        ))),
        Err(e) => {
            let status = e.status;
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
            ];
            let page = organization_page(
                &ctx,
                &org,
                form_state(&values, Some(e)),
                FormState::default(),
            )
            .await?;
            Ok(render(page, status))
        }
    }
}

pub async fn workspace(
    ctx: Ctx,
    Path((org, ws)): Path<(String, String)>,
    Query(query): Query<NoticeQuery>,
) -> Page {
    let page = workspace_page(&ctx, &org, &ws, notice(query.notice.as_deref())).await?;
    Ok(render(page, StatusCode::OK))
}

async fn workspace_page(
    ctx: &Ctx,
    org: &str,
    ws: &str,
    notice: Option<String>,
) -> Result<WorkspacePage, Response> {
    let organization: Organization = ctx
        .api
        .get(&format!("/organizations/{org}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let workspace: Workspace = ctx
        .api
        .get(&format!("/organizations/{org}/workspaces/{ws}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let deployments = ctx
        .api
        .get::<DeploymentsPaginated>(&format!(
            "/organizations/{org}/deployments?{LIST_ALL}&sorts=name:asc"
        ))
        .await
        .map(|d| d.deployments)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.workspace_id == workspace.id)
        .collect();
    let mut layout = layout(
        ctx,
        workspace.name.clone(),
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    Ok(WorkspacePage {
        layout,
        may_create_deployment: may(
            ctx,
            Action::CreateDeployment,
            Resource::Workspace {
                organization: org,
                workspace: ws,
            },
        ),
        org: organization,
        workspace,
        deployments,
        deployment_form: FormState::default(),
    })
}

pub async fn create_deployment(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({
        "name": form.name,
        "description": form.description,
        "workspaceId": form.workspace_id,
    });
    match ctx
        .api
        .post::<Deployment>(&format!("/organizations/{org}/deployments"), &body)
        .await
    {
        Ok(dep) => Ok(see_other(&format!(
            "/console/organizations/{org}/deployments/{}?notice=created",
            dep.id
        ))),
        Err(e) => {
            let status = e.status;
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
                ("workspaceId", &form.workspace_id),
            ];
            let page = organization_page(
                &ctx,
                &org,
                FormState::default(),
                form_state(&values, Some(e)),
            )
            .await?;
            Ok(render(page, status))
        }
    }
}

// ------------------------------------------------------------ agent tokens

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    offset: i64,
    limit: Option<i64>,
    #[serde(default)]
    sort: String,
    notice: Option<String>,
}

/// The sortable columns of the agent-token table: label and Astro field.
const TOKEN_SORTS: [(&str, &str); 3] = [
    ("Name", "name"),
    ("Description", "description"),
    ("Created", "createdAt"),
];

pub async fn deployment(
    ctx: Ctx,
    Path((org, dep)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Page {
    let notice = notice(query.notice.as_deref());
    deployment_page(&ctx, &org, &dep, &query, FormState::default(), notice).await
}

async fn deployment_page(
    ctx: &Ctx,
    org: &str,
    dep: &str,
    query: &ListQuery,
    form: FormState,
    notice: Option<String>,
) -> Page {
    let status = failed_status(&form);
    let organization: Organization = ctx
        .api
        .get(&format!("/organizations/{org}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let deployment: Deployment = ctx
        .api
        .get(&format!("/organizations/{org}/deployments/{dep}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    // Only sorts the table offers are passed on; anything else is ignored.
    let sort = TOKEN_SORTS
        .iter()
        .flat_map(|(_, f)| [format!("{f}:asc"), format!("{f}:desc")])
        .find(|s| *s == query.sort);
    let offset = query.offset.max(0);
    let limit = page_size(query.limit);
    let mut path = format!(
        "/organizations/{org}/deployments/{dep}/agent-tokens?offset={offset}&limit={limit}"
    );
    if let Some(sort) = &sort {
        path.push_str(&format!("&sorts={sort}"));
    }
    let list: ApiTokensPaginated = ctx.api.get(&path).await.map_err(|e| error_page(ctx, e))?;
    let now = ctx.console.state.clock.now();
    let here = format!("/console/organizations/{org}/deployments/{dep}");
    let tokens = list
        .tokens
        .iter()
        .map(|t| agent_token_row(t, now))
        .collect();
    let sorts = TOKEN_SORTS
        .iter()
        .map(|(label, field)| {
            let current = sort.as_deref().and_then(|s| s.strip_prefix(field));
            let (state, next) = match current {
                Some(":asc") => ("ascending", "desc"),
                Some(":desc") => ("descending", "asc"),
                _ => ("none", "asc"),
            };
            SortLink {
                label,
                href: format!("{here}?sort={field}:{next}"),
                state,
            }
        })
        .collect();
    let sort_param = sort.map(|s| format!("&sort={s}")).unwrap_or_default();
    let pager = pager(offset, limit, list.tokens.len(), list.total_count, |o| {
        format!("{here}?offset={o}&limit={limit}{sort_param}")
    });
    let resource = Resource::Deployment {
        organization: org,
        workspace: &deployment.workspace_id,
        deployment: dep,
    };
    let mut layout = layout(
        ctx,
        deployment.name.clone(),
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    Ok(render(
        DeploymentPage {
            layout,
            may_create: may(ctx, Action::CreateAgentToken, resource),
            may_rotate: may(ctx, Action::RotateAgentToken, resource),
            may_delete: may(ctx, Action::DeleteAgentToken, resource),
            org: organization,
            deployment,
            tokens,
            sorts,
            pager,
            nonce: nonce(),
            form,
        },
        status,
    ))
}

fn agent_token_row(t: &ApiToken, now: i64) -> AgentTokenRow {
    let expired = t
        .end_at
        .as_deref()
        .and_then(|end| chrono::DateTime::parse_from_rfc3339(end).ok())
        .is_some_and(|end| end.timestamp() <= now);
    let status = match (&t.previous_secret_valid_until, expired) {
        (_, true) => "Expired".to_string(),
        (Some(until), false) => format!("Active · old secret valid until {}", when(until)),
        (None, false) => "Active".to_string(),
    };
    AgentTokenRow {
        id: t.id.clone(),
        name: t.name.clone(),
        description: t.description.clone(),
        short_token: t.short_token.clone(),
        status,
        expired,
        created_at: when(&t.created_at),
        expires: t.end_at.as_deref().map_or("never".to_string(), when),
        last_used: t.last_used_at.as_deref().map_or("never".to_string(), when),
    }
}

fn pager(offset: i64, limit: i64, shown: usize, total: i64, href: impl Fn(i64) -> String) -> Pager {
    let shown = shown as i64;
    Pager {
        first: offset + 1,
        last: offset + shown,
        total,
        previous: (offset > 0).then(|| href((offset - limit).max(0))),
        next: (offset + shown < total).then(|| href(offset + limit)),
    }
}

#[derive(Deserialize, Default)]
pub struct AgentTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "tokenExpiryPeriodInDays")]
    expiry_days: String,
    #[serde(default)]
    nonce: String,
}

pub async fn create_agent_token(
    Path((org, dep)): Path<(String, String)>,
    Posted { ctx, form }: Posted<AgentTokenForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/deployments/{dep}");
    let values = [
        ("name", form.name.as_str()),
        ("description", &form.description),
        ("tokenExpiryPeriodInDays", &form.expiry_days),
    ];
    let fail = |e: ApiError| form_state(&values, Some(e));
    match first_use(&ctx, &form.nonce).await {
        Ok(true) => {}
        Ok(false) => return Ok(see_other(&format!("{here}?notice=already-done"))),
        Err(e) => return Err(error_page(&ctx, e)),
    }
    let created = async {
        let days = number(
            "tokenExpiryPeriodInDays",
            &form.expiry_days,
            "Expires in (days)",
        )?;
        let body = json!({
            "name": form.name,
            "description": form.description,
            "tokenExpiryPeriodInDays": days,
        });
        ctx.api
            .post::<ApiToken>(
                &format!("/organizations/{org}/deployments/{dep}/agent-tokens"),
                &body,
            )
            .await
    };
    match created.await {
        Ok(token) => Ok(secret_page(
            &ctx,
            "Agent token created",
            token,
            &here,
            "Back to the deployment",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            deployment_page(&ctx, &org, &dep, &ListQuery::default(), fail(e), None).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

fn secret_page(
    ctx: &Ctx,
    heading: &str,
    token: ApiToken,
    back: &str,
    back_label: &str,
) -> Response {
    let Some(secret) = token.token.as_ref() else {
        return error_page(ctx, ApiError::internal());
    };
    render(
        SecretPage {
            layout: layout(ctx, heading, vec![home_link()]),
            heading: heading.to_string(),
            name: token.name.clone(),
            secret: secret.expose().to_string(),
            back: back.to_string(),
            back_label: back_label.to_string(),
        },
        StatusCode::OK,
    )
}

pub async fn rotate_agent_token_form(
    ctx: Ctx,
    Path((org, dep, id)): Path<(String, String, String)>,
) -> Page {
    rotate_page(&ctx, &org, &dep, &id, FormState::default()).await
}

async fn rotate_page(ctx: &Ctx, org: &str, dep: &str, id: &str, form: FormState) -> Page {
    let status = failed_status(&form);
    let token: ApiToken = ctx
        .api
        .get(&format!(
            "/organizations/{org}/deployments/{dep}/agent-tokens/{id}"
        ))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let back = format!("/console/organizations/{org}/deployments/{dep}");
    Ok(render(
        RotatePage {
            layout: layout(
                ctx,
                format!("Rotate {}", token.name),
                vec![home_link(), (back.clone(), "Deployment".into())],
            ),
            name: token.name,
            short_token: token.short_token,
            action: format!("{back}/agent-tokens/{id}/rotate"),
            back,
            nonce: nonce(),
            form,
        },
        status,
    ))
}

#[derive(Deserialize, Default)]
pub struct RotateForm {
    #[serde(default, rename = "gracePeriodSeconds")]
    grace: String,
    #[serde(default)]
    nonce: String,
}

pub async fn rotate_agent_token(
    Path((org, dep, id)): Path<(String, String, String)>,
    Posted { ctx, form }: Posted<RotateForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/deployments/{dep}");
    match first_use(&ctx, &form.nonce).await {
        Ok(true) => {}
        Ok(false) => return Ok(see_other(&format!("{here}?notice=already-done"))),
        Err(e) => return Err(error_page(&ctx, e)),
    }
    let rotated = async {
        let grace = number("gracePeriodSeconds", &form.grace, "Grace period (seconds)")?;
        ctx.api
            .post::<ApiToken>(
                &format!("/organizations/{org}/deployments/{dep}/agent-tokens/{id}/rotate"),
                &json!({ "gracePeriodSeconds": grace }),
            )
            .await
    };
    match rotated.await {
        Ok(token) => Ok(secret_page(
            &ctx,
            "Agent token rotated",
            token,
            &here,
            "Back to the deployment",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let state = form_state(&[("gracePeriodSeconds", &form.grace)], Some(e));
            rotate_page(&ctx, &org, &dep, &id, state).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

pub async fn delete_agent_token_form(
    ctx: Ctx,
    Path((org, dep, id)): Path<(String, String, String)>,
) -> Page {
    let token: ApiToken = ctx
        .api
        .get(&format!(
            "/organizations/{org}/deployments/{dep}/agent-tokens/{id}"
        ))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    let back = format!("/console/organizations/{org}/deployments/{dep}");
    Ok(render(
        ConfirmPage {
            layout: layout(
                &ctx,
                "Delete agent token",
                vec![home_link(), (back.clone(), "Deployment".into())],
            ),
            question: format!("Delete the agent token {}?", token.name),
            consequence: format!(
                "The agent that uses {} (…{}) will be refused from the next request on. \
                 This cannot be undone.",
                token.name, token.short_token
            ),
            action: format!("{back}/agent-tokens/{id}/delete"),
            back,
        },
        StatusCode::OK,
    ))
}

pub async fn delete_agent_token(
    Path((org, dep, id)): Path<(String, String, String)>,
    Posted { ctx, .. }: Posted<Nothing>,
) -> Page {
    ctx.api
        .delete(&format!(
            "/organizations/{org}/deployments/{dep}/agent-tokens/{id}"
        ))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(see_other(&format!(
        "/console/organizations/{org}/deployments/{dep}?notice=deleted"
    )))
}

// -------------------------------------------------------------- API tokens

/// The roles and places an API-token form offers: only roles this
/// credential may confer somewhere it can see.
async fn role_choices(ctx: &Ctx, org: &str) -> (Vec<Choice>, Vec<Choice>) {
    let workspaces = ctx
        .api
        .get::<WorkspacesPaginated>(&format!("/organizations/{org}/workspaces?{LIST_ALL}"))
        .await
        .map(|w| w.workspaces)
        .unwrap_or_default();
    let deployments = ctx
        .api
        .get::<DeploymentsPaginated>(&format!("/organizations/{org}/deployments?{LIST_ALL}"))
        .await
        .map(|d| d.deployments)
        .unwrap_or_default();
    let mut places = vec![(
        format!("ORGANIZATION:{org}"),
        "the organization".to_string(),
        Resource::Organization(org),
    )];
    places.extend(workspaces.iter().map(|w| {
        (
            format!("WORKSPACE:{}", w.id),
            format!("workspace {}", w.name),
            Resource::Workspace {
                organization: org,
                workspace: &w.id,
            },
        )
    }));
    places.extend(deployments.iter().map(|d| {
        (
            format!("DEPLOYMENT:{}", d.id),
            format!("deployment {}", d.name),
            Resource::Deployment {
                organization: org,
                workspace: &d.workspace_id,
                deployment: &d.id,
            },
        )
    }));
    let roles = Role::ALL
        .into_iter()
        .filter(|role| {
            places
                .iter()
                .any(|(_, _, on)| authz::may_confer(&ctx.user.principal, *role, *on).is_ok())
        })
        .map(|role| Choice {
            value: role.as_str().to_string(),
            label: role.as_str().to_string(),
        })
        .collect();
    let entities = places
        .into_iter()
        .map(|(value, label, _)| Choice { value, label })
        .collect();
    (roles, entities)
}

pub async fn api_tokens(ctx: Ctx, Path(org): Path<String>, Query(query): Query<ListQuery>) -> Page {
    let notice = notice(query.notice.as_deref());
    let limit = page_size(query.limit);
    api_tokens_page(
        &ctx,
        &org,
        (query.offset, limit),
        FormState::default(),
        notice,
    )
    .await
}

async fn api_tokens_page(
    ctx: &Ctx,
    org: &str,
    (offset, limit): (i64, i64),
    form: FormState,
    notice: Option<String>,
) -> Page {
    let status = failed_status(&form);
    let organization: Organization = ctx
        .api
        .get(&format!("/organizations/{org}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let offset = offset.max(0);
    let list: ApiTokensPaginated = ctx
        .api
        .get(&format!(
            "/organizations/{org}/tokens?offset={offset}&limit={limit}"
        ))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let here = format!("/console/organizations/{org}/api-tokens");
    let pager = pager(offset, limit, list.tokens.len(), list.total_count, |o| {
        format!("{here}?offset={o}&limit={limit}")
    });
    let (roles, entities) = role_choices(ctx, org).await;
    let tokens = list
        .tokens
        .into_iter()
        .map(|token| ApiTokenRow {
            roles: roles_text(&token),
            expires: token.end_at.as_deref().map_or("never".to_string(), when),
            token,
        })
        .collect();
    let mut layout = layout(
        ctx,
        "API tokens",
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    Ok(render(
        ApiTokensPage {
            layout,
            may_create: !roles.is_empty(),
            org: organization,
            tokens,
            pager,
            roles,
            entities,
            nonce: nonce(),
            form,
        },
        status,
    ))
}

fn roles_text(token: &ApiToken) -> String {
    token
        .roles
        .iter()
        .flatten()
        .map(|r| {
            format!(
                "{} on {} {}",
                r.role,
                r.entity_type.to_lowercase(),
                r.entity_id
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Deserialize, Default)]
pub struct ApiTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    role: String,
    /// `KIND:id` of the entity the role is held on.
    #[serde(default)]
    entity: String,
    #[serde(default, rename = "tokenExpiryPeriodInDays")]
    expiry_days: String,
    #[serde(default)]
    nonce: String,
}

/// `ORGANIZATION:id` → (`ORGANIZATION`, `id`).
fn split_entity(entity: &str) -> (&str, &str) {
    entity.split_once(':').unwrap_or(("", ""))
}

pub async fn create_api_token(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<ApiTokenForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/api-tokens");
    match first_use(&ctx, &form.nonce).await {
        Ok(true) => {}
        Ok(false) => return Ok(see_other(&format!("{here}?notice=already-done"))),
        Err(e) => return Err(error_page(&ctx, e)),
    }
    let created = async {
        let days = number(
            "tokenExpiryPeriodInDays",
            &form.expiry_days,
            "Expires in (days)",
        )?;
        let (scope, entity_id) = split_entity(&form.entity);
        let body = json!({
            "name": form.name,
            "description": form.description,
            "role": form.role,
            "scope": scope,
            "entityId": entity_id,
            "tokenExpiryPeriodInDays": days,
        });
        ctx.api
            .post::<ApiToken>(&format!("/organizations/{org}/tokens"), &body)
            .await
    };
    match created.await {
        Ok(token) => Ok(secret_page(
            &ctx,
            "API token created",
            token,
            &here,
            "Back to the API tokens",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::FORBIDDEN => {
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
                ("role", &form.role),
                ("entity", &form.entity),
                ("tokenExpiryPeriodInDays", &form.expiry_days),
            ];
            api_tokens_page(
                &ctx,
                &org,
                (0, PAGE_SIZE),
                form_state(&values, Some(e)),
                None,
            )
            .await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

pub async fn api_token(
    ctx: Ctx,
    Path((org, id)): Path<(String, String)>,
    Query(query): Query<NoticeQuery>,
) -> Page {
    let notice = notice(query.notice.as_deref());
    api_token_page(&ctx, &org, &id, None, None, notice).await
}

async fn api_token_page(
    ctx: &Ctx,
    org: &str,
    id: &str,
    form: Option<FormState>,
    roles_form: Option<FormState>,
    notice: Option<String>,
) -> Page {
    let organization: Organization = ctx
        .api
        .get(&format!("/organizations/{org}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let token: ApiToken = ctx
        .api
        .get(&format!("/organizations/{org}/tokens/{id}"))
        .await
        .map_err(|e| error_page(ctx, e))?;
    let failed = form
        .as_ref()
        .or(roles_form.as_ref())
        .is_some_and(|f| !f.errors.is_empty() || f.message.is_some());
    let form = form.unwrap_or_else(|| {
        form_state(
            &[("name", &token.name), ("description", &token.description)],
            None,
        )
    });
    let first_role = token.roles.iter().flatten().next();
    let roles_form = roles_form.unwrap_or_else(|| {
        let entity = first_role
            .map(|r| format!("{}:{}", r.entity_type, r.entity_id))
            .unwrap_or_default();
        let role = first_role.map(|r| r.role.clone()).unwrap_or_default();
        form_state(&[("role", &role), ("entity", &entity)], None)
    });
    let (role_choices, entities) = role_choices(ctx, org).await;
    // The token's own place, as `authz` sees API tokens: the organization.
    let on = Resource::Organization(org);
    let mut layout = layout(
        ctx,
        token.name.clone(),
        vec![
            home_link(),
            org_link(&organization),
            (
                format!("/console/organizations/{org}/api-tokens"),
                "API tokens".to_string(),
            ),
        ],
    );
    layout.notice = notice;
    Ok(render(
        ApiTokenPage {
            layout,
            roles: roles_text(&token),
            may_update: may(ctx, Action::UpdateApiToken, on),
            may_rotate: may(ctx, Action::RotateApiToken, on),
            may_delete: may(ctx, Action::DeleteApiToken, on),
            org: organization,
            token,
            role_choices,
            entities,
            nonce: nonce(),
            form,
            roles_form,
        },
        if failed {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
    ))
}

pub async fn update_api_token(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({ "name": form.name, "description": form.description });
    match ctx
        .api
        .post::<ApiToken>(&format!("/organizations/{org}/tokens/{id}"), &body)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/api-tokens/{id}?notice=saved"
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
            ];
            api_token_page(
                &ctx,
                &org,
                &id,
                Some(form_state(&values, Some(e))),
                None,
                None,
            )
            .await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

#[derive(Deserialize, Default)]
pub struct RolesForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    entity: String,
}

pub async fn update_api_token_roles(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<RolesForm>,
) -> Page {
    let (entity_type, entity_id) = split_entity(&form.entity);
    let body = json!({ "roles": [{
        "role": form.role, "entityType": entity_type, "entityId": entity_id,
    }] });
    match ctx
        .api
        .post::<serde_json::Value>(&format!("/organizations/{org}/tokens/{id}/roles"), &body)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/api-tokens/{id}?notice=saved"
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::FORBIDDEN => {
            let values = [("role", form.role.as_str()), ("entity", &form.entity)];
            api_token_page(
                &ctx,
                &org,
                &id,
                None,
                Some(form_state(&values, Some(e))),
                None,
            )
            .await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

#[derive(Deserialize, Default)]
pub struct NonceForm {
    #[serde(default)]
    nonce: String,
}

pub async fn rotate_api_token(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NonceForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/api-tokens/{id}");
    match first_use(&ctx, &form.nonce).await {
        Ok(true) => {}
        Ok(false) => return Ok(see_other(&format!("{here}?notice=already-done"))),
        Err(e) => return Err(error_page(&ctx, e)),
    }
    let token = ctx
        .api
        .post::<ApiToken>(
            &format!("/organizations/{org}/tokens/{id}/rotate"),
            &json!({}),
        )
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(secret_page(
        &ctx,
        "API token rotated",
        token,
        &here,
        "Back to the API token",
    ))
}

pub async fn delete_api_token_form(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Page {
    let token: ApiToken = ctx
        .api
        .get(&format!("/organizations/{org}/tokens/{id}"))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    let back = format!("/console/organizations/{org}/api-tokens/{id}");
    Ok(render(
        ConfirmPage {
            layout: layout(
                &ctx,
                "Delete API token",
                vec![home_link(), (back.clone(), token.name.clone())],
            ),
            question: format!("Delete the API token {}?", token.name),
            consequence: format!(
                "Whatever uses {} (…{}) will be refused from the next request on, and console \
                 sessions signed in with it end. This cannot be undone.",
                token.name, token.short_token
            ),
            action: format!("{back}/delete"),
            back,
        },
        StatusCode::OK,
    ))
}

pub async fn delete_api_token(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, .. }: Posted<Nothing>,
) -> Page {
    ctx.api
        .delete(&format!("/organizations/{org}/tokens/{id}"))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(see_other(&format!(
        "/console/organizations/{org}/api-tokens?notice=deleted"
    )))
}

// ---------------------------------------------------------------- audit log

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    limit: Option<i64>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    offset: i64,
}

pub async fn audit_logs(
    ctx: Ctx,
    Path(org): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Page {
    let organization: Organization = ctx
        .api
        .get(&format!("/organizations/{org}"))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    let offset = query.offset.max(0);
    let limit = page_size(query.limit);
    let mut filter = BTreeMap::new();
    let mut params = String::new();
    for (field, api_field, value) in [
        ("action", "action", &query.action),
        ("from", "startDate", &query.from),
        ("until", "endDate", &query.until),
    ] {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        filter.insert(field.to_string(), value.to_string());
        // A browser's datetime-local has no zone and maybe no seconds.
        let value = match field {
            "action" => value.to_string(),
            _ if value.len() == 16 => format!("{value}:00Z"),
            _ => format!("{value}Z"),
        };
        params.push_str(&format!("&{api_field}={}", urlencode(&value)));
    }
    let shown = format!(
        "&action={}&from={}&until={}",
        urlencode(&query.action),
        urlencode(&query.from),
        urlencode(&query.until)
    );
    let here = format!("/console/organizations/{org}/audit-logs");
    let listed = ctx
        .api
        .get::<AuditLogsPaginated>(&format!(
            "/organizations/{org}/audit-logs?sorts=createdAt:desc&offset={offset}&limit={limit}{params}"
        ))
        .await;
    let mut form = FormState {
        values: filter,
        ..FormState::default()
    };
    let (events, total, status) = match listed {
        Ok(page) => (page.audit_logs, page.total_count, StatusCode::OK),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            for field in &e.field_errors {
                let name = match field.field.as_str() {
                    "startDate" => "from",
                    "endDate" => "until",
                    other => other,
                };
                let message = match name {
                    "from" => "From must be a date and time.",
                    "until" => "Until must be a date and time, not before From.",
                    _ => "Choose an action from the list.",
                };
                form.errors.insert(name.to_string(), message.to_string());
            }
            (Vec::new(), 0, StatusCode::BAD_REQUEST)
        }
        Err(e) => return Err(error_page(&ctx, e)),
    };
    let pager = pager(offset, limit, events.len(), total, |o| {
        format!("{here}?offset={o}&limit={limit}{shown}")
    });
    Ok(render(
        AuditPage {
            layout: layout(
                &ctx,
                "Audit log",
                vec![home_link(), org_link(&organization)],
            ),
            org: organization,
            events,
            actions: AUDIT_ACTIONS,
            pager,
            form,
        },
        status,
    ))
}
