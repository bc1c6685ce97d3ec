//! The console's pages as askama templates (`templates/console/`): one
//! struct per page, checked against its template at compile time. Every
//! value is HTML-escaped by askama unless a template says otherwise (none
//! does).

use std::collections::BTreeMap;

use askama::Template;

use crate::http::audit::AuditLog;
use crate::http::deployments::Deployment;
use crate::http::organizations::Organization;
use crate::http::schema::ApiToken;
use crate::http::workspaces::Workspace;

/// What the layout around every page needs.
pub struct Layout {
    pub title: String,
    /// Who is signed in, as the header shows it; `None` on the sign-in page.
    pub who: Option<String>,
    pub csrf: String,
    /// Links from the console's start to this page.
    pub trail: Vec<(String, String)>,
    /// A one-line confirmation of what just happened.
    pub notice: Option<String>,
}

/// What a form was sent with, and what was wrong with it, field by field.
#[derive(Default)]
pub struct FormState {
    pub values: BTreeMap<String, String>,
    pub errors: BTreeMap<String, String>,
    /// A problem that is not any one field's.
    pub message: Option<String>,
}

impl FormState {
    pub fn value(&self, field: &str) -> &str {
        self.values.get(field).map_or("", String::as_str)
    }

    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    pub fn is(&self, field: &str, value: &str) -> bool {
        self.value(field) == value
    }

    /// Whether `value` is one of a field sent several times (kept
    /// comma-separated), as a checkbox of a group.
    pub fn has(&self, field: &str, value: &str) -> bool {
        self.value(field).split(',').any(|v| v == value)
    }
}

/// A column heading that sorts the table it heads.
pub struct SortLink {
    pub label: &'static str,
    pub href: String,
    /// `ascending`, `descending` or `none`, for `aria-sort`.
    pub state: &'static str,
}

/// Previous and next links of a paged table.
pub struct Pager {
    pub first: i64,
    pub last: i64,
    pub total: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
pub struct SignInPage {
    pub layout: Layout,
    pub next: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub organizations: Vec<Organization>,
    pub may_create: bool,
    pub form: FormState,
}

#[derive(Template)]
#[template(path = "console/organization.html")]
pub struct OrganizationPage {
    pub layout: Layout,
    pub org: Organization,
    pub workspaces: Vec<Workspace>,
    pub deployments: Vec<Deployment>,
    /// Workspaces the caller may create a deployment in.
    pub deployable: Vec<Workspace>,
    pub may_create_workspace: bool,
    pub may_see_api_tokens: bool,
    pub may_see_audit: bool,
    pub may_see_allowlist: bool,
    pub may_see_webhooks: bool,
    pub workspace_form: FormState,
    pub deployment_form: FormState,
}

#[derive(Template)]
#[template(path = "console/workspace.html")]
pub struct WorkspacePage {
    pub layout: Layout,
    pub org: Organization,
    pub workspace: Workspace,
    pub deployments: Vec<Deployment>,
    pub may_create_deployment: bool,
    pub deployment_form: FormState,
    pub may_edit: bool,
    /// The edit form: the workspace's own name and description, or what
    /// was sent and refused.
    pub edit_form: FormState,
}

/// One agent token as the deployment page lists it.
pub struct AgentTokenRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub short_token: String,
    pub status: String,
    pub expired: bool,
    pub created_at: String,
    pub expires: String,
    pub last_used: String,
    /// The networks the token is bound to, or "anywhere".
    pub networks: String,
}

#[derive(Template)]
#[template(path = "console/deployment.html")]
pub struct DeploymentPage {
    pub layout: Layout,
    pub org: Organization,
    pub deployment: Deployment,
    pub tokens: Vec<AgentTokenRow>,
    pub sorts: Vec<SortLink>,
    pub pager: Pager,
    pub may_create: bool,
    pub may_rotate: bool,
    pub may_delete: bool,
    pub nonce: String,
    pub form: FormState,
    pub may_edit: bool,
    /// The edit form: the deployment's own name and description, or what
    /// was sent and refused.
    pub edit_form: FormState,
}

#[derive(Template)]
#[template(path = "console/secret.html")]
pub struct SecretPage {
    pub layout: Layout,
    pub heading: String,
    pub name: String,
    pub secret: String,
    /// Why it cannot be shown again, and what to do if it is lost.
    pub lost: String,
    pub back: String,
    pub back_label: String,
}

#[derive(Template)]
#[template(path = "console/rotate.html")]
pub struct RotatePage {
    pub layout: Layout,
    pub name: String,
    pub short_token: String,
    pub action: String,
    pub back: String,
    pub nonce: String,
    pub form: FormState,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub question: String,
    pub consequence: String,
    pub action: String,
    /// The label of the button that does it.
    pub button: String,
    /// Whether it is a destructive change (a red button).
    pub danger: bool,
    /// A one-time nonce, for a form whose answer reveals a secret.
    pub nonce: Option<String>,
    pub back: String,
}

/// An option of a `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// One API token as the organization's list shows it.
pub struct ApiTokenRow {
    pub token: ApiToken,
    pub roles: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "console/api_tokens.html")]
pub struct ApiTokensPage {
    pub layout: Layout,
    pub org: Organization,
    pub tokens: Vec<ApiTokenRow>,
    pub pager: Pager,
    pub may_create: bool,
    pub roles: Vec<Choice>,
    pub entities: Vec<Choice>,
    pub nonce: String,
    pub form: FormState,
}

#[derive(Template)]
#[template(path = "console/api_token.html")]
pub struct ApiTokenPage {
    pub layout: Layout,
    pub org: Organization,
    pub token: ApiToken,
    pub roles: String,
    pub role_choices: Vec<Choice>,
    pub entities: Vec<Choice>,
    pub may_update: bool,
    pub may_rotate: bool,
    pub may_delete: bool,
    pub nonce: String,
    pub form: FormState,
    pub roles_form: FormState,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub org: Organization,
    pub events: Vec<AuditLog>,
    pub actions: [&'static str; crate::model::AuditAction::ALL.len()],
    pub pager: Pager,
    pub form: FormState,
}

#[derive(Template)]
#[template(path = "console/allowlist.html")]
pub struct AllowListPage {
    pub layout: Layout,
    pub org: Organization,
    pub ranges: Vec<crate::http::allowed_ip_ranges::AllowedIpAddressRange>,
    /// The address this request came from, as agentkey sees it.
    pub client: String,
    pub may_create: bool,
    pub may_delete: bool,
    pub form: FormState,
}

/// One webhook endpoint as the organization's list shows it.
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Its event types, or "all".
    pub event_types: String,
    pub created_at: String,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
pub struct WebhooksPage {
    pub layout: Layout,
    pub org: Organization,
    pub webhooks: Vec<WebhookRow>,
    /// Whether the server has a webhook key; without one nothing is sent
    /// and nothing can be created.
    pub enabled: bool,
    pub may_create: bool,
    pub may_rotate: bool,
    pub may_delete: bool,
    /// Every event type, for the create form's checkboxes.
    pub event_types: Vec<&'static str>,
    pub nonce: String,
    pub form: FormState,
}

/// One delivery as an endpoint's list shows it.
pub struct DeliveryRow {
    pub id: String,
    pub event_type: String,
    pub subject_id: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: String,
    pub last_error: String,
    pub created_at: String,
    /// The latest attempt's time, or when the next is due.
    pub last_attempt: String,
    pub next_attempt: String,
}

#[derive(Template)]
#[template(path = "console/webhook_deliveries.html")]
pub struct WebhookDeliveriesPage {
    pub layout: Layout,
    pub org: Organization,
    pub webhook: crate::http::webhooks::Webhook,
    pub deliveries: Vec<DeliveryRow>,
    pub pager: Pager,
    pub may_redeliver: bool,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

/// A wire time (`2024-05-01T10:00:00Z`) as a person reads it.
pub fn when(rfc3339: &str) -> String {
    rfc3339.replacen('T', " ", 1).replace('Z', " UTC")
}
