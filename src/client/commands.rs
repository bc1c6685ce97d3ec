//! Client subcommands: each becomes one API request, and its answer one
//! view. [`plan`] is the pure mapping; [`run`] sends and renders.

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::output::{self, View};
use super::{Client, ClientError, Request};
use crate::cli::{
    ClientCommand, ClientOptions, DeploymentCommand, ListOptions, OrgCommand, TokenCommand,
    WebhookCommand, WorkspaceCommand,
};

/// Runs one client command; the text for stdout, or why it failed.
pub async fn run(options: &ClientOptions, command: ClientCommand) -> Result<String, ClientError> {
    let client = Client::from_env(&options.server)?;
    let planned = plan(command);
    let body = client.send(planned.request).await?;
    output::render(options.output, planned.view, planned.id.as_deref(), body)
}

/// What a command sends, and how its answer is shown.
pub struct Planned {
    pub request: Request,
    pub view: View,
    /// The id the command names, for the sentence after a delete.
    pub id: Option<String>,
}

fn planned(request: Request, view: View, id: Option<String>) -> Planned {
    Planned { request, view, id }
}

/// The request and view of `command`.
pub fn plan(command: ClientCommand) -> Planned {
    use Method as M;
    match command {
        ClientCommand::Org(command) => match command {
            OrgCommand::List(list) => planned(
                paged(Request::new(M::GET, &["organizations"]), list),
                View::Organizations,
                None,
            ),
            OrgCommand::Create { name } => planned(
                Request::new(M::POST, &["organizations"]).body(json!({ "name": name })),
                View::Organization,
                None,
            ),
            OrgCommand::Get { id } => planned(
                Request::new(M::GET, &["organizations", &id]),
                View::Organization,
                Some(id),
            ),
        },
        ClientCommand::Workspace(command) => match command {
            WorkspaceCommand::List { org, list } => planned(
                paged(
                    Request::new(M::GET, &["organizations", &org.org, "workspaces"]),
                    list,
                ),
                View::Workspaces,
                None,
            ),
            WorkspaceCommand::Create {
                org,
                name,
                description,
            } => planned(
                Request::new(M::POST, &["organizations", &org.org, "workspaces"]).body(object([
                    ("name", Some(json!(name))),
                    ("description", description.map(Value::from)),
                ])),
                View::Workspace,
                None,
            ),
            WorkspaceCommand::Get { org, id } => planned(
                Request::new(M::GET, &["organizations", &org.org, "workspaces", &id]),
                View::Workspace,
                Some(id),
            ),
        },
        ClientCommand::Deployment(command) => match command {
            DeploymentCommand::List { org, list } => planned(
                paged(
                    Request::new(M::GET, &["organizations", &org.org, "deployments"]),
                    list,
                ),
                View::Deployments,
                None,
            ),
            DeploymentCommand::Create {
                org,
                workspace,
                name,
                description,
            } => planned(
                Request::new(M::POST, &["organizations", &org.org, "deployments"]).body(object([
                    ("name", Some(json!(name))),
                    ("workspaceId", Some(json!(workspace))),
                    ("description", description.map(Value::from)),
                ])),
                View::Deployment,
                None,
            ),
            DeploymentCommand::Get { org, id } => planned(
                Request::new(M::GET, &["organizations", &org.org, "deployments", &id]),
                View::Deployment,
                Some(id),
            ),
            DeploymentCommand::Delete { org, id, .. } => planned(
                Request::new(M::DELETE, &["organizations", &org.org, "deployments", &id]),
                View::Deleted {
                    what: "deployment",
                    consequence: "its agent tokens no longer verify",
                },
                Some(id),
            ),
        },
        ClientCommand::Token(command) => match command {
            TokenCommand::List { scope, list } => planned(
                paged(
                    Request::new(M::GET, &tokens_path(&scope.org, &scope.deployment, &[])),
                    list,
                ),
                View::Tokens,
                None,
            ),
            TokenCommand::Create {
                scope,
                name,
                description,
                expiry_days,
            } => planned(
                Request::new(M::POST, &tokens_path(&scope.org, &scope.deployment, &[])).body(
                    object([
                        ("name", Some(json!(name))),
                        ("description", description.map(Value::from)),
                        ("tokenExpiryPeriodInDays", expiry_days.map(Value::from)),
                    ]),
                ),
                View::Token,
                None,
            ),
            TokenCommand::Get { scope, id } => planned(
                Request::new(M::GET, &tokens_path(&scope.org, &scope.deployment, &[&id])),
                View::Token,
                Some(id),
            ),
            TokenCommand::Delete { scope, id } => planned(
                Request::new(
                    M::DELETE,
                    &tokens_path(&scope.org, &scope.deployment, &[&id]),
                ),
                View::Deleted {
                    what: "agent token",
                    consequence: "it no longer verifies",
                },
                Some(id),
            ),
            TokenCommand::Rotate {
                scope,
                id,
                grace_seconds,
            } => {
                let mut request = Request::new(
                    M::POST,
                    &tokens_path(&scope.org, &scope.deployment, &[&id, "rotate"]),
                );
                if let Some(grace) = grace_seconds {
                    request = request.body(json!({ "gracePeriodSeconds": grace }));
                }
                planned(request, View::Token, Some(id))
            }
        },
        ClientCommand::Webhook(command) => match command {
            WebhookCommand::List { org, list } => planned(
                paged(
                    Request::new(M::GET, &["organizations", &org.org, "webhooks"]),
                    list,
                ),
                View::Webhooks,
                None,
            ),
            WebhookCommand::Deliveries {
                org,
                webhook,
                limit,
                offset,
            } => {
                let mut request = Request::new(
                    M::GET,
                    &[
                        "organizations",
                        &org.org,
                        "webhooks",
                        &webhook,
                        "deliveries",
                    ],
                );
                if let Some(limit) = limit {
                    request = request.query("limit", limit);
                }
                if let Some(offset) = offset {
                    request = request.query("offset", offset);
                }
                planned(request, View::Deliveries, None)
            }
            WebhookCommand::Redeliver {
                org,
                webhook,
                delivery,
            } => planned(
                Request::new(
                    M::POST,
                    &[
                        "organizations",
                        &org.org,
                        "webhooks",
                        &webhook,
                        "deliveries",
                        &delivery,
                        "redeliver",
                    ],
                ),
                View::Delivery,
                Some(delivery),
            ),
        },
    }
}

fn tokens_path<'a>(org: &'a str, dep: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut path = vec!["organizations", org, "deployments", dep, "agent-tokens"];
    path.extend_from_slice(rest);
    path
}

/// Adds the list parameters that were given; the server applies its
/// defaults (and its limits) to the rest.
fn paged(mut request: Request, list: ListOptions) -> Request {
    if let Some(limit) = list.limit {
        request = request.query("limit", limit);
    }
    if let Some(offset) = list.offset {
        request = request.query("offset", offset);
    }
    for sort in list.sort {
        request = request.query("sorts", sort);
    }
    request
}

/// A JSON object of the fields that are set.
fn object<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_string(), value?)))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{DeploymentScope, OrgScope};

    fn scope() -> DeploymentScope {
        DeploymentScope {
            org: "o".into(),
            deployment: "d".into(),
        }
    }

    #[test]
    fn token_create_sends_only_the_fields_given() {
        let p = plan(ClientCommand::Token(TokenCommand::Create {
            scope: scope(),
            name: "n".into(),
            description: None,
            expiry_days: Some(30),
        }));
        assert_eq!(p.request.method, Method::POST);
        assert_eq!(
            p.request.path,
            ["organizations", "o", "deployments", "d", "agent-tokens"]
        );
        assert_eq!(
            p.request.body,
            Some(json!({"name": "n", "tokenExpiryPeriodInDays": 30}))
        );
    }

    #[test]
    fn rotate_without_grace_sends_no_body() {
        let p = plan(ClientCommand::Token(TokenCommand::Rotate {
            scope: scope(),
            id: "t".into(),
            grace_seconds: None,
        }));
        assert_eq!(p.request.path.last().unwrap(), "rotate");
        assert!(p.request.body.is_none());
    }

    #[test]
    fn list_options_become_query_pairs() {
        let p = plan(ClientCommand::Workspace(WorkspaceCommand::List {
            org: OrgScope { org: "o".into() },
            list: ListOptions {
                limit: Some(5),
                offset: None,
                sort: vec!["name:asc".into(), "createdAt:desc".into()],
            },
        }));
        let query: Vec<(&str, &str)> = p
            .request
            .query
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(
            query,
            [
                ("limit", "5"),
                ("sorts", "name:asc"),
                ("sorts", "createdAt:desc")
            ]
        );
    }
}
