//! The endpoint × role table of `docs/permissions.md`, run: every row is
//! sent once per column (every role, root, a token of another
//! organization, an agent token) and each status must equal its cell. The
//! table must also cover every route of the OpenAPI document.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::common::{str_of, TestApp};
use agentkey::app::Settings;
use agentkey::roles::Role;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

const DOC: &str = include_str!("../../docs/permissions.md");
const MISSING: &str = "c000000000000000000000000";
/// Where every request of the table comes from: inside `127.0.0.0/8`,
/// the one range the organization's allowlist starts with, so the whole
/// table runs with the allowlist enforced.
const PEER: &str = "127.0.0.1:40000";

struct Row {
    method: Method,
    path: String,
    body: String,
    /// Column name → expected status.
    expected: Vec<(String, u16)>,
}

/// The columns after `request` and `body`.
fn columns() -> Vec<String> {
    let mut columns = vec!["root".to_string()];
    columns.extend(
        Role::ALL
            .iter()
            .filter(|r| r.same_as().is_none())
            .map(|r| r.as_str().to_string()),
    );
    columns.extend(["other organization".into(), "agent token".into()]);
    columns
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    line.split('|').map(|c| c.trim().to_string()).collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

fn parse_table() -> Vec<Row> {
    let mut lines = DOC
        .lines()
        .skip_while(|l| !l.starts_with("| request | body |"));
    let header = cells(lines.next().expect("the endpoint table's header"));
    assert_eq!(header[..2], ["request", "body"]);
    assert_eq!(
        header[2..],
        columns(),
        "one column per role, root, other, agent"
    );
    lines.next().expect("separator");
    lines
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells = cells(line);
            assert_eq!(cells.len(), header.len(), "{line}");
            let (method, path) = unquote(&cells[0]).split_once(' ').expect("METHOD path");
            Row {
                method: Method::from_bytes(method.as_bytes()).expect("method"),
                path: path.to_string(),
                body: unquote(&cells[1]).to_string(),
                expected: header[2..]
                    .iter()
                    .zip(&cells[2..])
                    .map(|(column, cell)| (column.clone(), cell.parse().expect("a status code")))
                    .collect(),
            }
        })
        .collect()
}

/// `/v1/organizations/{org}/tokens?x={ws}` → `/v1/organizations/{}/tokens`.
fn shape(path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                out.push('{');
            }
            '}' => {
                depth -= 1;
                out.push('}');
            }
            _ if depth > 0 => {}
            c => out.push(c),
        }
    }
    out
}

struct Fixture {
    app: TestApp,
    ids: HashMap<&'static str, String>,
    /// Column name → bearer credential.
    callers: HashMap<String, String>,
    /// Numbers the ranges `{newRange}` and `{newRangeId}` stand for.
    ranges: AtomicU32,
}

impl Fixture {
    async fn new() -> Fixture {
        let app = TestApp::with_settings(Settings {
            max_agent_tokens_per_deployment: 100_000,
            webhooks: crate::webhooks::settings(),
            ..Settings::default()
        })
        .await;
        let org = app.org("acme").await;
        let ws = app.workspace(&org).await;
        let ws2 = app.workspace(&org).await;
        let dep = app.deployment(&org, &ws).await;
        let sib = app.deployment(&org, &ws).await;
        let dep2 = app.deployment(&org, &ws2).await;
        let other_org = app.org("other").await;
        let mut ids = HashMap::new();
        for (key, id) in [
            ("{org}", &org),
            ("{ws}", &ws),
            ("{ws2}", &ws2),
            ("{dep}", &dep),
            ("{sib}", &sib),
            ("{dep2}", &dep2),
        ] {
            ids.insert(key, id.clone());
        }
        let mut callers = HashMap::new();
        callers.insert("root".to_string(), app.root.clone());
        for role in Role::ALL {
            let (scope, entity) = match role.entity_type() {
                agentkey::roles::EntityType::Organization => ("ORGANIZATION", &org),
                agentkey::roles::EntityType::Workspace => ("WORKSPACE", &ws),
                agentkey::roles::EntityType::Deployment => ("DEPLOYMENT", &dep),
            };
            let created = api_token(&app, &org, scope, entity, role.as_str()).await;
            callers.insert(role.as_str().to_string(), str_of(&created, "token").into());
        }
        let other = api_token(
            &app,
            &other_org,
            "ORGANIZATION",
            &other_org,
            "ORGANIZATION_OWNER",
        )
        .await;
        callers.insert("other organization".into(), str_of(&other, "token").into());
        let agent = agent_token(&app, &org, &dep).await;
        callers.insert("agent token".into(), str_of(&agent, "token").into());
        let reply = app
            .post(
                format!("/v1/organizations/{org}/allowed-ip-address-ranges"),
                json!({ "ipAddressRange": "127.0.0.0/8" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        Fixture {
            app,
            ids,
            callers,
            ranges: AtomicU32::new(0),
        }
    }

    /// The row's path and body with every placeholder replaced; fresh
    /// targets are created by root.
    async fn resolve(&self, text: &str, path_deployment: Option<&str>) -> String {
        let mut text = text.replace("{missing}", MISSING);
        for (key, id) in &self.ids {
            text = text.replace(key, id);
        }
        let (org, ws) = (&self.ids["{org}"], &self.ids["{ws}"]);
        if text.contains("{newWs}") {
            let ws = self.app.workspace(org).await;
            text = text.replace("{newWs}", &ws);
        }
        if text.contains("{newDep}") {
            let dep = self.app.deployment(org, ws).await;
            text = text.replace("{newDep}", &dep);
        }
        if text.contains("{agentToken}") || text.contains("{agentSecret}") {
            let dep = path_deployment.unwrap_or(&self.ids["{dep}"]);
            let created = agent_token(&self.app, org, dep).await;
            text = text
                .replace("{agentToken}", str_of(&created, "id"))
                .replace("{agentSecret}", str_of(&created, "token"));
        }
        // A range never used before, and the id of one root just added.
        while text.contains("{newRange}") {
            let range = self.next_range();
            text = text.replacen("{newRange}", &range, 1);
        }
        if text.contains("{newRangeId}") {
            let reply = self
                .app
                .post(
                    format!("/v1/organizations/{org}/allowed-ip-address-ranges"),
                    json!({ "ipAddressRange": self.next_range() }),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            text = text.replace("{newRangeId}", str_of(&reply.body, "id"));
        }
        if text.contains("{webhook}") {
            // One endpoint at a time: an organization may have 20.
            let listed = self
                .app
                .get(format!("/v1/organizations/{org}/webhooks?limit=100"))
                .await;
            for old in listed.body["webhooks"].as_array().into_iter().flatten() {
                let id = str_of(old, "id");
                self.app
                    .delete(format!("/v1/organizations/{org}/webhooks/{id}"))
                    .await;
            }
            let created = self
                .app
                .post(
                    format!("/v1/organizations/{org}/webhooks"),
                    serde_json::json!({"url": "http://127.0.0.1:9/hook"}),
                )
                .await;
            let webhook = str_of(&created.body, "id").to_string();
            if text.contains("{delivery}") {
                agent_token(&self.app, org, &self.ids["{dep}"]).await;
                let listed = self
                    .app
                    .get(format!(
                        "/v1/organizations/{org}/webhooks/{webhook}/deliveries"
                    ))
                    .await;
                let delivery = str_of(&listed.body["deliveries"][0], "id").to_string();
                text = text.replace("{delivery}", &delivery);
            }
            text = text.replace("{webhook}", &webhook);
        }
        for (key, scope, entity, role) in [
            ("{orgToken}", "ORGANIZATION", "{org}", "ORGANIZATION_MEMBER"),
            ("{wsToken}", "WORKSPACE", "{ws}", "WORKSPACE_MEMBER"),
            ("{depToken}", "DEPLOYMENT", "{dep}", "DEPLOYMENT_ADMIN"),
            ("{sibToken}", "DEPLOYMENT", "{sib}", "DEPLOYMENT_ADMIN"),
        ] {
            if text.contains(key) {
                let created = api_token(&self.app, org, scope, &self.ids[entity], role).await;
                text = text.replace(key, str_of(&created, "id"));
            }
        }
        text
    }

    fn next_range(&self) -> String {
        let n = self.ranges.fetch_add(1, Ordering::Relaxed);
        format!("10.{}.{}.0/24", n / 256, n % 256)
    }

    async fn status(&self, row: &Row, caller: &str) -> u16 {
        let path_deployment = row
            .path
            .split("/deployments/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|key| self.ids.get(key).map(String::as_str));
        let path = self.resolve(&row.path, path_deployment).await;
        let body = self.resolve(&row.body, path_deployment).await;
        let mut request = Request::builder()
            .method(row.method.clone())
            .uri(&path)
            .header("authorization", format!("Bearer {caller}"));
        let request = if path == "/v1/introspect" {
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
        } else if body.is_empty() {
            request.body(Body::empty())
        } else {
            request = request.header("content-type", "application/json");
            request.body(Body::from(body))
        };
        let mut request = request.unwrap();
        let peer: SocketAddr = PEER.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        self.app.raw(request).await.status.as_u16()
    }
}

async fn api_token(app: &TestApp, org: &str, scope: &str, entity: &str, role: &str) -> Value {
    let reply = app
        .post(
            format!("/v1/organizations/{org}/tokens"),
            json!({ "name": role, "scope": scope, "entityId": entity, "role": role }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn agent_token(app: &TestApp, org: &str, dep: &str) -> Value {
    let reply = app
        .post(
            format!("/v1/organizations/{org}/deployments/{dep}/agent-tokens"),
            json!({ "name": "target" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn every_endpoint_answers_every_role_as_documented() {
    let rows = parse_table();
    let fixture = Fixture::new().await;
    let mut wrong = Vec::new();
    // A role documented as granting exactly what another grants (the
    // observe roles) answers every row as that role's column says.
    let alike: Vec<(String, String)> = Role::ALL
        .iter()
        .filter_map(|r| {
            r.same_as()
                .map(|same| (r.as_str().into(), same.as_str().into()))
        })
        .collect();
    assert!(!alike.is_empty());
    // The organization, workspace and deployment rows also run under
    // /platform/v1beta1, where those routes (and only those) are served.
    let platform: Vec<Row> = rows
        .iter()
        .filter(|row| {
            let path = row.path.split('?').next().unwrap_or_default();
            let Some(rest) = path.strip_prefix("/v1/organizations") else {
                return false;
            };
            // The organization itself, its workspaces and deployments; none
            // of what hangs below them (tokens, audit logs, allowlists, ...).
            let rest = rest.strip_prefix("/{org}").unwrap_or(rest);
            let place = rest
                .strip_prefix("/workspaces")
                .or(rest.strip_prefix("/deployments"));
            rest.is_empty()
                || place.is_some_and(|tail| {
                    tail.is_empty() || tail.strip_prefix('/').is_some_and(|id| !id.contains('/'))
                })
        })
        .map(|row| Row {
            method: row.method.clone(),
            path: row.path.replacen("/v1/", "/platform/v1beta1/", 1),
            body: row.body.clone(),
            expected: row.expected.clone(),
        })
        .collect();
    assert!(platform.len() > 20, "{} registry rows", platform.len());
    for row in rows.iter().chain(&platform) {
        let mut cells = row.expected.clone();
        for (role, same) in &alike {
            let (_, expected) = row
                .expected
                .iter()
                .find(|(column, _)| column == same)
                .expect("the column of the role it is the same as");
            cells.push((role.clone(), *expected));
        }
        for (column, expected) in &cells {
            let got = fixture.status(row, &fixture.callers[column]).await;
            if got != *expected {
                wrong.push(format!(
                    "{} {} {} as {column}: documented {expected}, got {got}",
                    row.method, row.path, row.body
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ from docs/permissions.md:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn the_table_covers_every_management_route() {
    let documented: BTreeSet<(String, String)> = parse_table()
        .iter()
        .map(|row| (row.method.to_string(), shape(&row.path)))
        .collect();
    let openapi: Value = serde_json::from_str(agentkey::http::openapi_document()).unwrap();
    let mut missing = Vec::new();
    for (path, item) in openapi["paths"].as_object().unwrap() {
        if !(path.starts_with("/v1/organizations") || path == "/v1/introspect") {
            continue; // no credential, or an agent token's own (/authorize)
        }
        for method in item.as_object().unwrap().keys() {
            let key = (method.to_uppercase(), shape(path));
            if !documented.contains(&key) {
                missing.push(format!("{} {path}", key.0));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/permissions.md: {missing:?}"
    );
}
