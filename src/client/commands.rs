//! Client subcommands: each becomes one API request, and its answer one
//! view. [`plan`] is the pure mapping; [`run`] sends and renders. Bodies are
//! the server's own request types (`crate::http`), serialized.

use reqwest::Method;

use crate::http::agent_tokens::{CreateAgentTokenRequest, RotateAgentTokenRequest};
use crate::http::deployments::CreateDeploymentRequest;
use crate::http::organizations::CreateOrganizationRequest;
use crate::http::workspaces::CreateWorkspaceRequest;

use super::args::{
    ClientCommand, ClientOptions, DeploymentCommand, ListOptions, OrgCommand, TokenCommand,
    WebhookCommand, WorkspaceCommand,
};
use super::output::{self, View};
use super::{Client, ClientError, Request};

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
                Request::new(M::POST, &["organizations"])
                    .body(&CreateOrganizationRequest { name: Some(name) }),
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
                Request::new(M::POST, &["organizations", &org.org, "workspaces"]).body(
                    &CreateWorkspaceRequest {
                        name: Some(name),
                        description,
                        ..Default::default()
                    },
                ),
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
                Request::new(M::POST, &["organizations", &org.org, "deployments"]).body(
                    &CreateDeploymentRequest {
                        name: Some(name),
                        workspace_id: Some(workspace),
                        description,
                        ..Default::default()
                    },
                ),
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
                allowed_ip_ranges,
            } => planned(
                Request::new(M::POST, &tokens_path(&scope.org, &scope.deployment, &[])).body(
                    &CreateAgentTokenRequest {
                        name: Some(name),
                        description,
                        token_expiry_period_in_days: expiry_days,
                        allowed_ip_address_ranges: (!allowed_ip_ranges.is_empty())
                            .then_some(allowed_ip_ranges),
                    },
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
                if grace_seconds.is_some() {
                    request = request.body(&RotateAgentTokenRequest {
                        grace_period_seconds: grace_seconds,
                    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::{DeploymentScope, OrgScope};
    use serde_json::json;

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
            allowed_ip_ranges: vec![],
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
        let bound = plan(ClientCommand::Token(TokenCommand::Create {
            scope: scope(),
            name: "n".into(),
            description: None,
            expiry_days: None,
            allowed_ip_ranges: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        }));
        assert_eq!(
            bound.request.body,
            Some(json!({"name": "n", "allowedIpAddressRanges": ["10.0.0.0/8", "2001:db8::/32"]}))
        );
    }

    /// Each body is the server's request type, with the fields not given
    /// left out (not `null`), under the names the server reads.
    #[test]
    fn create_bodies_are_the_servers_request_types() {
        let bodies = [
            (
                ClientCommand::Org(OrgCommand::Create {
                    name: "acme".into(),
                }),
                json!({"name": "acme"}),
            ),
            (
                ClientCommand::Workspace(WorkspaceCommand::Create {
                    org: OrgScope { org: "o".into() },
                    name: "data".into(),
                    description: None,
                }),
                json!({"name": "data"}),
            ),
            (
                ClientCommand::Deployment(DeploymentCommand::Create {
                    org: OrgScope { org: "o".into() },
                    workspace: "w".into(),
                    name: "prod".into(),
                    description: Some("main".into()),
                }),
                json!({"name": "prod", "workspaceId": "w", "description": "main"}),
            ),
            (
                ClientCommand::Token(TokenCommand::Rotate {
                    scope: scope(),
                    id: "t".into(),
                    grace_seconds: Some(60),
                }),
                json!({"gracePeriodSeconds": 60}),
            ),
        ];
        for (command, body) in bodies {
            assert_eq!(plan(command).request.body, Some(body));
        }
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
