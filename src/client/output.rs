//! Shows an API answer: a table for people, or the server's JSON (pretty)
//! for scripts. The only place a secret is printed: once, after a create or
//! a rotate, on a line of its own that says so.
//!
//! Answers are decoded into the server's own wire types (`crate::http`), so
//! the client and the server cannot disagree about a field's name or type.

use comfy_table::{presets, Table};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ClientError;
use crate::http::deployments::{Deployment, DeploymentsPaginated};
use crate::http::organizations::{Organization, OrganizationsPaginated};
use crate::http::schema::{ApiToken, ApiTokensPaginated};
use crate::http::webhooks::{
    Webhook, WebhookDeliveriesPaginated, WebhookDelivery, WebhooksPaginated,
};
use crate::http::workspaces::{Workspace, WorkspacesPaginated};

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and short sentences, for people.
    Table,
    /// The server's JSON, pretty-printed, for scripts.
    Json,
}

/// What kind of answer a command expects, which picks its table.
#[derive(Debug, Clone, Copy)]
pub enum View {
    Organization,
    Organizations,
    Workspace,
    Workspaces,
    Deployment,
    Deployments,
    Token,
    Tokens,
    Webhooks,
    Deliveries,
    Delivery,
    /// A 204: nothing came back; say what is gone and what follows.
    Deleted {
        what: &'static str,
        consequence: &'static str,
    },
}

/// The marker in front of a secret in table mode.
pub const SECRET_LABEL: &str = "Secret (shown once, store it now):";

/// Descriptions longer than this are cut in list tables (not in `get`).
const LIST_DESCRIPTION_CHARS: usize = 40;

/// The text to print on stdout for `body`, the answer to a command whose
/// answer is a `view` about `id` (the id the command named, if any).
pub fn render(
    format: Format,
    view: View,
    id: Option<&str>,
    body: Option<Value>,
) -> Result<String, ClientError> {
    match format {
        Format::Json => Ok(match body {
            // A delete answers 204 and prints nothing: the exit code tells.
            None => String::new(),
            Some(body) => {
                let mut text = serde_json::to_string_pretty(&body)
                    .map_err(|e| ClientError::unexpected(e.to_string()))?;
                text.push('\n');
                text
            }
        }),
        Format::Table => table(view, id, body),
    }
}

fn table(view: View, id: Option<&str>, body: Option<Value>) -> Result<String, ClientError> {
    if let View::Deleted { what, consequence } = view {
        let id = id.unwrap_or_default();
        return Ok(format!("Deleted {what} {id}; {consequence}.\n"));
    }
    let body =
        body.ok_or_else(|| ClientError::unexpected("an empty answer where a body was due"))?;
    Ok(match view {
        View::Organization => details(&organization_rows(&decode::<Organization>(body)?)),
        View::Organizations => {
            let page: Page<Organization> = decode::<OrganizationsPaginated>(body)?.into();
            list(&page, "organizations", &["ID", "NAME", "CREATED"], |o| {
                vec![o.id.clone(), o.name.clone(), o.created_at.clone()]
            })
        }
        View::Workspace => details(&workspace_rows(&decode::<Workspace>(body)?)),
        View::Workspaces => {
            let page: Page<Workspace> = decode::<WorkspacesPaginated>(body)?.into();
            list(
                &page,
                "workspaces",
                &["ID", "NAME", "DESCRIPTION", "CREATED"],
                |w| {
                    vec![
                        w.id.clone(),
                        w.name.clone(),
                        shorten(&w.description),
                        w.created_at.clone(),
                    ]
                },
            )
        }
        View::Deployment => details(&deployment_rows(&decode::<Deployment>(body)?)),
        View::Deployments => {
            let page: Page<Deployment> = decode::<DeploymentsPaginated>(body)?.into();
            list(
                &page,
                "deployments",
                &["ID", "NAME", "WORKSPACE", "DESCRIPTION", "CREATED"],
                |d| {
                    vec![
                        d.id.clone(),
                        d.name.clone(),
                        d.workspace_id.clone(),
                        shorten(&d.description),
                        d.created_at.clone(),
                    ]
                },
            )
        }
        View::Token => {
            let token = decode::<ApiToken>(body)?;
            let mut text = details(&token_rows(&token));
            if let Some(secret) = &token.token {
                text.push_str(&format!("\n{SECRET_LABEL} {}\n", secret.expose()));
            }
            text
        }
        View::Tokens => {
            let page: Page<ApiToken> = decode::<ApiTokensPaginated>(body)?.into();
            list(
                &page,
                "agent tokens",
                &[
                    "ID",
                    "NAME",
                    "SHORT TOKEN",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                ],
                |t| {
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.short_token.clone(),
                        t.created_at.clone(),
                        t.end_at.clone().unwrap_or_else(|| "never".into()),
                        t.last_used_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            )
        }
        View::Webhooks => {
            let page: Page<Webhook> = decode::<WebhooksPaginated>(body)?.into();
            list(
                &page,
                "webhook endpoints",
                &["ID", "URL", "EVENT TYPES", "CREATED"],
                |w| {
                    vec![
                        w.id.clone(),
                        w.url.clone(),
                        w.event_types.join(", "),
                        w.created_at.clone(),
                    ]
                },
            )
        }
        View::Deliveries => {
            let page: Page<WebhookDelivery> = decode::<WebhookDeliveriesPaginated>(body)?.into();
            list(
                &page,
                "deliveries",
                &[
                    "ID",
                    "EVENT",
                    "STATUS",
                    "ATTEMPTS",
                    "LAST CODE",
                    "CREATED",
                    "LAST ERROR",
                ],
                |d| {
                    vec![
                        d.id.clone(),
                        d.event_type.clone(),
                        d.status.clone(),
                        d.attempt_count.to_string(),
                        d.last_status_code
                            .map_or_else(|| "-".into(), |c| c.to_string()),
                        d.created_at.clone(),
                        shorten(d.last_error.as_deref().unwrap_or("-")),
                    ]
                },
            )
        }
        View::Delivery => {
            let d = decode::<WebhookDelivery>(body)?;
            details(&[
                ("ID", d.id.clone()),
                ("Event", d.event_type.clone()),
                ("Event id", d.event_id.clone()),
                ("Webhook", d.webhook_id.clone()),
                ("Status", d.status.clone()),
                ("Attempts", d.attempt_count.to_string()),
                ("Next attempt", or_dash(&d.next_attempt_at)),
                ("Created", d.created_at.clone()),
            ])
        }
        View::Deleted { .. } => unreachable!("handled above"),
    })
}

fn decode<T: DeserializeOwned>(body: Value) -> Result<T, ClientError> {
    serde_json::from_value(body).map_err(|e| ClientError::unexpected(e.to_string()))
}

/// A list answer; its items sit under a key of their own (`tokens`,
/// `organizations`, ...), renamed here to `items`.
struct Page<T> {
    limit: i64,
    offset: i64,
    items: Vec<T>,
    total_count: i64,
}

macro_rules! page_from {
    ($paginated:ty, $item:ty, $items:ident) => {
        impl From<$paginated> for Page<$item> {
            fn from(p: $paginated) -> Self {
                Page {
                    limit: p.limit,
                    offset: p.offset,
                    items: p.$items,
                    total_count: p.total_count,
                }
            }
        }
    };
}

page_from!(OrganizationsPaginated, Organization, organizations);
page_from!(WorkspacesPaginated, Workspace, workspaces);
page_from!(DeploymentsPaginated, Deployment, deployments);
page_from!(ApiTokensPaginated, ApiToken, tokens);
page_from!(WebhooksPaginated, Webhook, webhooks);
page_from!(WebhookDeliveriesPaginated, WebhookDelivery, deliveries);

/// A list as a table with a header row, and a line saying where the page
/// sits when it does not hold every match.
fn list<T>(
    page: &Page<T>,
    plural: &str,
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> String {
    let total = page.total_count;
    if page.items.is_empty() {
        return if total == 0 {
            format!("No {plural}.\n")
        } else {
            format!(
                "No {plural} on this page (offset {}, limit {}); {total} in all.\n",
                page.offset, page.limit
            )
        };
    }
    let mut table = new_table();
    table.set_header(header.iter().copied());
    for item in &page.items {
        table.add_row(row(item));
    }
    let mut text = finish(table);
    let shown = page.items.len() as i64;
    if page.offset > 0 || shown < total {
        let first = page.offset + 1;
        let last = page.offset + shown;
        text.push_str(&format!("{first}-{last} of {total} {plural}"));
        if last < total {
            text.push_str(&format!("; next page: --offset {last}"));
        }
        text.push('\n');
    }
    text
}

/// One resource as a two-column table of field and value.
fn details(rows: &[(&str, String)]) -> String {
    let mut table = new_table();
    for (field, value) in rows {
        table.add_row(vec![field.to_string(), value.clone()]);
    }
    finish(table)
}

fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table
}

/// The table as text: no borders, columns two spaces apart, the first one
/// flush left so it lines up with the sentences printed around it.
fn finish(mut table: Table) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    format!("{}\n", table.trim_fmt())
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= LIST_DESCRIPTION_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(LIST_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn or_dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".into())
}

fn organization_rows(o: &Organization) -> Vec<(&'static str, String)> {
    vec![
        ("ID", o.id.clone()),
        ("Name", o.name.clone()),
        ("Created", o.created_at.clone()),
        ("Updated", o.updated_at.clone()),
    ]
}

fn workspace_rows(w: &Workspace) -> Vec<(&'static str, String)> {
    vec![
        ("ID", w.id.clone()),
        ("Organization", w.organization_id.clone()),
        ("Name", w.name.clone()),
        ("Description", w.description.clone()),
        ("Created", w.created_at.clone()),
        ("Updated", w.updated_at.clone()),
    ]
}

fn deployment_rows(d: &Deployment) -> Vec<(&'static str, String)> {
    vec![
        ("ID", d.id.clone()),
        ("Organization", d.organization_id.clone()),
        ("Workspace", d.workspace_id.clone()),
        ("Name", d.name.clone()),
        ("Description", d.description.clone()),
        ("Created", d.created_at.clone()),
        ("Updated", d.updated_at.clone()),
    ]
}

fn token_rows(t: &ApiToken) -> Vec<(&'static str, String)> {
    let roles = t
        .roles
        .iter()
        .flatten()
        .map(|r| format!("{} on {} {}", r.role, r.entity_type, r.entity_id))
        .collect::<Vec<_>>()
        .join(", ");
    let created_by = t.created_by.as_ref().map(|s| match &s.api_token_name {
        Some(name) => format!("{} {name} ({})", s.subject_type, s.id),
        None => format!("{} {}", s.subject_type, s.id),
    });
    let expires = match (&t.end_at, t.expiry_period_in_days) {
        (Some(end), Some(days)) => format!("{end} ({days} days after start)"),
        (Some(end), None) => end.clone(),
        (None, _) => "never".into(),
    };
    vec![
        ("ID", t.id.clone()),
        ("Name", t.name.clone()),
        ("Description", t.description.clone()),
        ("Short token", t.short_token.clone()),
        ("Scope", t.scope.clone()),
        ("Roles", roles),
        ("Starts", t.start_at.clone()),
        ("Expires", expires),
        ("Created", t.created_at.clone()),
        ("Created by", or_dash(&created_by)),
        ("Updated", t.updated_at.clone()),
        ("Last rotated", or_dash(&t.last_rotated_at)),
        ("Last used", or_dash(&t.last_used_at)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(secret: Option<&str>) -> Value {
        let mut t = json!({
            "id": "c00000000000000000000000a", "name": "runner", "description": "",
            "shortToken": "akagt_Ba60", "kind": "STANDARD", "scope": "DEPLOYMENT", "type": "DEPLOYMENT",
            "startAt": "2022-11-22T04:37:12Z", "createdAt": "2022-11-22T04:37:12Z",
            "updatedAt": "2022-11-22T04:37:12Z",
            "roles": [{"entityId": "d", "entityType": "DEPLOYMENT", "role": "DEPLOYMENT_AGENT", "deploymentId": "d"}]
        });
        if let Some(secret) = secret {
            t["token"] = json!(secret);
        }
        t
    }

    #[test]
    fn the_secret_is_shown_once_on_its_own_marked_line() {
        let text = render(
            Format::Table,
            View::Token,
            None,
            Some(token(Some("akagt_x"))),
        )
        .unwrap();
        assert_eq!(text.matches("akagt_x").count(), 1, "{text}");
        assert!(
            text.lines()
                .any(|l| l == "Secret (shown once, store it now): akagt_x"),
            "{text}"
        );
        let text = render(Format::Table, View::Token, None, Some(token(None))).unwrap();
        assert!(!text.contains("Secret"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("Expires ") && l.ends_with(" never")),
            "{text}"
        );
    }

    #[test]
    fn json_is_the_servers_answer() {
        let body = token(Some("akagt_x"));
        let text = render(Format::Json, View::Token, None, Some(body.clone())).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), body);
        assert_eq!(
            render(
                Format::Json,
                View::Deleted {
                    what: "x",
                    consequence: "y"
                },
                None,
                None
            )
            .unwrap(),
            ""
        );
    }

    #[test]
    fn a_partial_page_says_where_it_sits() {
        let body = json!({"limit": 1, "offset": 0, "totalCount": 3, "tokens": [token(None)]});
        let text = render(Format::Table, View::Tokens, None, Some(body)).unwrap();
        assert!(text.starts_with("ID "), "{text}");
        assert!(
            text.ends_with("1-1 of 3 agent tokens; next page: --offset 1\n"),
            "{text}"
        );
        let empty = json!({"limit": 20, "offset": 0, "totalCount": 0, "tokens": []});
        assert_eq!(
            render(Format::Table, View::Tokens, None, Some(empty)).unwrap(),
            "No agent tokens.\n"
        );
    }

    #[test]
    fn a_wrong_shape_is_an_unexpected_response() {
        let err = render(
            Format::Table,
            View::Organization,
            None,
            Some(json!({"id": 1})),
        )
        .err()
        .unwrap();
        assert_eq!(err.kind.exit_code(), 7);
    }

    #[test]
    fn long_descriptions_are_cut_in_lists() {
        assert_eq!(shorten("short"), "short");
        let cut = shorten(&"x".repeat(100));
        assert_eq!(cut.chars().count(), LIST_DESCRIPTION_CHARS);
        assert!(cut.ends_with('…'));
    }
}
