//! Issue 13, items 4 and 5: the organization, workspace and deployment
//! bodies Astro's clients read (`createdBy`, `updatedBy`, the CI/CD flags,
//! a deployment's `type` and `status`, the constant flags), the updates and
//! the workspace delete they call, under every base path that serves them
//! (`/v1`, `/iam/v1beta1`, `/platform/v1beta1`). Requests are written the
//! way the clients send them: `authorization: bearer ...` in lower case,
//! `description: ""`, the many cluster fields of a deployment update.

use crate::common::{str_of, Reply, TestApp};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

const BASES: [&str; 3] = ["/v1", "/iam/v1beta1", "/platform/v1beta1"];
const MISSING: &str = "c000000000000000000000000";

/// A request as the Terraform provider and the Astro CLI send it: the
/// scheme in lower case, their client header, JSON when there is a body.
pub(crate) async fn client(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("bearer {token}"))
        .header("x-astro-client-identifier", "terraform-provider-astro");
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    };
    app.raw(request.expect("request")).await
}

/// An API token of `org` with `role` on the organization: its id and secret.
async fn org_token(app: &TestApp, org: &str, name: &str, role: &str) -> (String, String) {
    let reply = app
        .post(
            format!("/v1/organizations/{org}/tokens"),
            json!({ "name": name, "scope": "ORGANIZATION", "role": role }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    (
        str_of(&reply.body, "id").to_string(),
        str_of(&reply.body, "token").to_string(),
    )
}

fn assert_by_token(profile: &Value, id: &str, name: &str) {
    assert_eq!(
        profile,
        &json!({ "id": id, "subjectType": "SERVICEKEY", "apiTokenName": name }),
    );
}

async fn bodies_carry_astro_fields_and_read_back_as_written(app: TestApp) {
    let org = app.org("acme").await;
    let (maker_id, maker) = org_token(&app, &org, "terraform", "ORGANIZATION_OWNER").await;
    for base in BASES {
        let orgs = format!("{base}/organizations/{org}");
        let got = client(&app, Method::GET, &orgs, &maker, None).await;
        assert_eq!(got.status, StatusCode::OK, "{base}: {}", got.body);
        for flag in [
            "isScimEnabled",
            "allowEnhancedSupportAccess",
            "isBlockedEnableAiFeatures",
            "shouldEnforceDedicatedClusters",
        ] {
            assert_eq!(got.body[flag], false, "{base}: {flag}");
        }
        assert_eq!(got.body["createdBy"]["subjectType"], "SERVICEKEY");
        assert_eq!(got.body["createdBy"]["apiTokenName"], "root");
        assert_eq!(got.body["updatedBy"], got.body["createdBy"]);

        // A workspace as the Terraform provider creates one.
        let created = client(
            &app,
            Method::POST,
            &format!("{orgs}/workspaces"),
            &maker,
            Some(json!({ "name": "data", "description": "", "cicdEnforcedDefault": true })),
        )
        .await;
        assert_eq!(created.status, StatusCode::OK, "{base}: {}", created.body);
        let ws = str_of(&created.body, "id").to_string();
        assert_eq!(created.body["cicdEnforcedDefault"], true);
        assert_eq!(created.body["description"], "");
        assert_eq!(created.body["organizationName"], "acme");
        assert_by_token(&created.body["createdBy"], &maker_id, "terraform");
        assert_by_token(&created.body["updatedBy"], &maker_id, "terraform");
        let read = client(
            &app,
            Method::GET,
            &format!("{orgs}/workspaces/{ws}"),
            &maker,
            None,
        )
        .await;
        assert_eq!(
            read.body, created.body,
            "{base}: reading back is what was written"
        );
        let listed = client(
            &app,
            Method::GET,
            &format!("{orgs}/workspaces?workspaceIds={ws}"),
            &maker,
            None,
        )
        .await;
        assert_eq!(listed.body["workspaces"][0], created.body);

        // A deployment without isCicdEnforced takes its workspace's default;
        // one with a type keeps it.
        let inherits = client(
            &app,
            Method::POST,
            &format!("{orgs}/deployments"),
            &maker,
            Some(json!({ "name": "prod", "workspaceId": ws, "description": "" })),
        )
        .await;
        assert_eq!(inherits.status, StatusCode::OK, "{base}: {}", inherits.body);
        assert_eq!(inherits.body["isCicdEnforced"], true);
        assert_eq!(inherits.body["type"], "STANDARD");
        assert_eq!(inherits.body["status"], "UNKNOWN");
        assert_by_token(&inherits.body["createdBy"], &maker_id, "terraform");
        let hybrid = client(
            &app,
            Method::POST,
            &format!("{orgs}/deployments"),
            &maker,
            Some(json!({ "name": "edge", "workspaceId": ws, "type": "HYBRID",
                         "isCicdEnforced": false, "clusterId": "ignored", "executor": "CELERY" })),
        )
        .await;
        assert_eq!(hybrid.status, StatusCode::OK, "{base}: {}", hybrid.body);
        assert_eq!(hybrid.body["type"], "HYBRID");
        assert_eq!(hybrid.body["isCicdEnforced"], false);
        for dep in [&inherits, &hybrid] {
            let id = str_of(&dep.body, "id");
            let read = client(
                &app,
                Method::GET,
                &format!("{orgs}/deployments/{id}"),
                &maker,
                None,
            )
            .await;
            assert_eq!(
                read.body, dep.body,
                "{base}: reading back is what was written"
            );
        }
        let listed = client(
            &app,
            Method::GET,
            &format!("{orgs}/deployments?workspaceIds={ws}&sorts=name%3Adesc"),
            &maker,
            None,
        )
        .await;
        assert_eq!(
            listed.body["deployments"],
            json!([inherits.body, hybrid.body])
        );
    }
}

async fn updates_answer_what_they_wrote(app: TestApp) {
    let org = app.org("acme").await;
    let (editor_id, editor) = org_token(&app, &org, "editor", "ORGANIZATION_OWNER").await;
    for base in BASES {
        let orgs = format!("{base}/organizations/{org}");
        let before = app.get(format!("/v1/organizations/{org}")).await.body;
        app.clock.advance(60);

        // The organization: Astro's UpdateOrganizationRequest, every
        // required field sent as the generated client does.
        let name = format!("acme {base}");
        let updated = client(
            &app,
            Method::POST,
            &orgs,
            &editor,
            Some(
                json!({ "name": name, "billingEmail": "", "isScimEnabled": false,
                         "allowEnhancedSupportAccess": false }),
            ),
        )
        .await;
        assert_eq!(updated.status, StatusCode::OK, "{base}: {}", updated.body);
        assert_eq!(updated.body["name"], name.as_str());
        assert_eq!(updated.body["createdAt"], before["createdAt"]);
        assert_eq!(updated.body["createdBy"], before["createdBy"]);
        assert_ne!(updated.body["updatedAt"], before["updatedAt"]);
        assert_by_token(&updated.body["updatedBy"], &editor_id, "editor");
        assert_eq!(
            client(&app, Method::GET, &orgs, &editor, None).await.body,
            updated.body
        );

        // A workspace, as the Terraform provider updates one.
        let ws = app
            .post(
                format!("/v1/organizations/{org}/workspaces"),
                json!({ "name": "data", "description": "team" }),
            )
            .await
            .body;
        let ws_path = format!("{orgs}/workspaces/{}", str_of(&ws, "id"));
        app.clock.advance(1);
        let updated = client(
            &app,
            Method::POST,
            &ws_path,
            &editor,
            Some(json!({ "name": "data2", "description": "", "cicdEnforcedDefault": true })),
        )
        .await;
        assert_eq!(updated.status, StatusCode::OK, "{base}: {}", updated.body);
        assert_eq!(updated.body["name"], "data2");
        assert_eq!(
            updated.body["description"], "",
            "an empty description is written"
        );
        assert_eq!(updated.body["cicdEnforcedDefault"], true);
        assert_eq!(updated.body["organizationName"], name.as_str());
        assert_eq!(updated.body["createdBy"], ws["createdBy"]);
        assert_by_token(&updated.body["updatedBy"], &editor_id, "editor");
        assert_ne!(updated.body["updatedAt"], ws["updatedAt"]);
        assert_eq!(
            client(&app, Method::GET, &ws_path, &editor, None)
                .await
                .body,
            updated.body
        );
        // Only the name: the rest is kept.
        let renamed = client(
            &app,
            Method::POST,
            &ws_path,
            &editor,
            Some(json!({ "name": "data3" })),
        )
        .await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
        assert_eq!(renamed.body["description"], "");
        assert_eq!(renamed.body["cicdEnforcedDefault"], true);

        // A deployment, with the cluster fields Astro's update carries.
        let ws_id = str_of(&ws, "id");
        let dep = app
            .post(
                format!("/v1/organizations/{org}/deployments"),
                json!({ "name": "prod", "workspaceId": ws_id, "description": "d" }),
            )
            .await
            .body;
        assert_eq!(dep["isCicdEnforced"], true, "the workspace's new default");
        let dep_path = format!("{orgs}/deployments/{}", str_of(&dep, "id"));
        app.clock.advance(1);
        let updated = client(
            &app,
            Method::POST,
            &dep_path,
            &editor,
            Some(
                json!({ "name": "prod2", "description": "", "isCicdEnforced": false,
                         "workspaceId": ws_id, "type": "STANDARD", "executor": "CELERY",
                         "schedulerSize": "SMALL", "isHighAvailability": false,
                         "isDagDeployEnabled": true, "environmentVariables": [] }),
            ),
        )
        .await;
        assert_eq!(updated.status, StatusCode::OK, "{base}: {}", updated.body);
        assert_eq!(updated.body["name"], "prod2");
        assert_eq!(updated.body["description"], "");
        assert_eq!(updated.body["isCicdEnforced"], false);
        assert_eq!(updated.body["type"], "STANDARD");
        assert_eq!(updated.body["createdAt"], dep["createdAt"]);
        assert_by_token(&updated.body["updatedBy"], &editor_id, "editor");
        assert_eq!(
            client(&app, Method::GET, &dep_path, &editor, None)
                .await
                .body,
            updated.body
        );
    }
    // Every update is in the audit trail, with its actor.
    let logs = app
        .get(format!("/v1/organizations/{org}/audit-logs?limit=1000"))
        .await
        .body;
    let mut counts = std::collections::BTreeMap::new();
    for event in logs["auditLogs"].as_array().unwrap() {
        if str_of(event, "action").ends_with(".update") {
            assert_eq!(event["actor"]["id"], editor_id.as_str());
            *counts
                .entry(str_of(event, "action").to_string())
                .or_insert(0) += 1;
        }
    }
    assert_eq!(
        counts,
        [
            ("deployment.update", 3),
            ("organization.update", 3),
            ("workspace.update", 6)
        ]
        .into_iter()
        .map(|(a, n)| (a.to_string(), n))
        .collect()
    );
}

/// What the organization holds, its audit trail included.
async fn snapshot(app: &TestApp, org: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for path in [
        format!("/v1/organizations/{org}"),
        format!("/v1/organizations/{org}/workspaces?limit=1000"),
        format!("/v1/organizations/{org}/deployments?limit=1000"),
        format!("/v1/organizations/{org}/audit-logs?limit=1000"),
    ] {
        all.push(app.get(path).await.body);
    }
    all
}

async fn bad_updates_and_creates_write_nothing(app: TestApp) {
    let org = app.org("acme").await;
    let other = app.org("other").await;
    let ws = app.workspace(&org).await;
    let ws2 = app.workspace(&org).await;
    let dep = app.deployment(&org, &ws).await;
    let before = snapshot(&app, &org).await;
    let root = app.root.clone();
    for base in BASES {
        let orgs = format!("{base}/organizations/{org}");
        let cases: Vec<(String, Value, &[&str])> = vec![
            (orgs.clone(), json!({}), &["name"]),
            (orgs.clone(), json!({ "name": " " }), &["name"]),
            (
                orgs.clone(),
                json!({ "name": "x", "isScimEnabled": true }),
                &["isScimEnabled"],
            ),
            (
                orgs.clone(),
                json!({ "name": "x", "billingEmail": "a@example.com" }),
                &["billingEmail"],
            ),
            (
                orgs.clone(),
                json!({ "name": "x", "allowEnhancedSupportAccess": true, "shouldEnforceDedicatedClusters": true }),
                &[
                    "allowEnhancedSupportAccess",
                    "shouldEnforceDedicatedClusters",
                ],
            ),
            (orgs.clone(), json!({ "name": 7 }), &["name"]),
            (
                format!("{orgs}/workspaces/{ws}"),
                json!({ "description": "x" }),
                &["name"],
            ),
            (
                format!("{orgs}/workspaces/{ws}"),
                json!({ "name": "x", "description": "d".repeat(1001) }),
                &["description"],
            ),
            (
                format!("{orgs}/workspaces/{ws}"),
                json!({ "name": "x", "defaultCloudProvider": "AWS", "defaultRegion": "us-east-1" }),
                &["defaultCloudProvider", "defaultRegion"],
            ),
            (
                format!("{orgs}/workspaces/{ws}"),
                json!({ "name": "x", "cicdEnforcedDefault": "yes" }),
                &["cicdEnforcedDefault"],
            ),
            (
                format!("{orgs}/workspaces"),
                json!({ "name": "x", "defaultClusterId": "c1" }),
                &["defaultClusterId"],
            ),
            (
                format!("{orgs}/deployments/{dep}"),
                json!({ "name": "x", "type": "SERVERLESS" }),
                &["type"],
            ),
            (
                format!("{orgs}/deployments/{dep}"),
                json!({ "name": "x", "type": "DEDICATED" }),
                &["type"],
            ),
            (
                format!("{orgs}/deployments/{dep}"),
                json!({ "name": "x", "workspaceId": ws2 }),
                &["workspaceId"],
            ),
            (
                format!("{orgs}/deployments/{dep}"),
                json!({ "description": "no name" }),
                &["name"],
            ),
            (
                format!("{orgs}/deployments"),
                json!({ "name": "x", "workspaceId": ws, "type": "standard" }),
                &["type"],
            ),
        ];
        for (path, body, fields) in cases {
            let reply = client(&app, Method::POST, &path, &root, Some(body.clone())).await;
            reply.assert_error(400);
            assert_eq!(reply.fields(), fields.to_vec(), "{path} {body}");
        }
        for path in [
            format!("{base}/organizations/{MISSING}"),
            format!("{orgs}/workspaces/{MISSING}"),
            format!("{base}/organizations/{other}/workspaces/{ws}"),
            format!("{orgs}/deployments/{MISSING}"),
            format!("{base}/organizations/{other}/deployments/{dep}"),
            format!("{orgs}/deployments/bogus"),
        ] {
            client(
                &app,
                Method::POST,
                &path,
                &root,
                Some(json!({ "name": "x" })),
            )
            .await
            .assert_error(404);
        }
    }
    assert_eq!(
        snapshot(&app, &org).await,
        before,
        "nothing was written, not even an audit event"
    );
}

async fn a_workspace_with_deployments_is_not_deleted(app: TestApp) {
    let org = app.org("acme").await;
    for base in BASES {
        let ws = app.workspace(&org).await;
        let dep = app.deployment(&org, &ws).await;
        // A token made for the workspace goes with it.
        let token = app
            .post(
                format!("/v1/organizations/{org}/tokens"),
                json!({ "name": "ws", "scope": "WORKSPACE", "entityId": ws, "role": "WORKSPACE_OWNER" }),
            )
            .await;
        let secret = str_of(&token.body, "token").to_string();
        let path = format!("{base}/organizations/{org}/workspaces/{ws}");
        let refused = client(&app, Method::DELETE, &path, &app.root, None).await;
        let message = refused.assert_error(400).to_string();
        assert!(message.contains("1 deployment"), "{message}");
        assert_eq!(
            client(&app, Method::GET, &path, &secret, None).await.status,
            StatusCode::OK,
            "refused: the workspace and its token are still there"
        );

        app.delete(format!("/v1/organizations/{org}/deployments/{dep}"))
            .await;
        let deleted = client(&app, Method::DELETE, &path, &app.root, None).await;
        assert_eq!(
            deleted.status,
            StatusCode::NO_CONTENT,
            "{base}: {}",
            deleted.body
        );
        assert!(deleted.raw.is_empty());
        client(&app, Method::DELETE, &path, &app.root, None)
            .await
            .assert_error(404);
        client(&app, Method::GET, &path, &app.root, None)
            .await
            .assert_error(404);
        assert_eq!(
            client(
                &app,
                Method::GET,
                &format!("/v1/organizations/{org}"),
                &secret,
                None
            )
            .await
            .status,
            StatusCode::UNAUTHORIZED,
            "the workspace's token is deleted with it"
        );
        app.post(
            format!("/v1/organizations/{org}/deployments"),
            json!({ "name": "late", "workspaceId": ws }),
        )
        .await
        .assert_error(400);
    }
    let logs = app
        .get(format!(
            "/v1/organizations/{org}/audit-logs?limit=1000&action=workspace.delete"
        ))
        .await;
    assert_eq!(logs.body["totalCount"], 3, "{}", logs.body);
}

/// The platform base path serves the registry, and nothing else.
async fn the_platform_base_path_serves_only_the_registry(app: TestApp) {
    let t = app.tenant().await;
    let base = "/platform/v1beta1/organizations";
    for path in [
        format!("{base}/{}/tokens", t.org),
        format!("{base}/{}/deployments/{}/agent-tokens", t.org, t.deployment),
        format!("{base}/{}/audit-logs", t.org),
        "/platform/v1beta1/introspect".to_string(),
        "/platform/v1beta1/authorize".to_string(),
    ] {
        client(&app, Method::GET, &path, &app.root, None)
            .await
            .assert_error(404);
    }
    let listed = client(
        &app,
        Method::GET,
        &format!("{base}/{}/deployments", t.org),
        &app.root,
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["totalCount"], 1);
    client(
        &app,
        Method::PUT,
        &format!("{base}/{}", t.org),
        &app.root,
        None,
    )
    .await
    .assert_error(405);
}

on_every_backend!(
    bodies_carry_astro_fields_and_read_back_as_written,
    updates_answer_what_they_wrote,
    bad_updates_and_creates_write_nothing,
    a_workspace_with_deployments_is_not_deleted,
    the_platform_base_path_serves_only_the_registry,
);

/// The new operations in `/v1/openapi.json` as item 6 of the issue wants
/// every operation: Astro's operation ids, `name` required and not
/// nullable in the update bodies, the fields always sent required.
#[tokio::test]
async fn the_openapi_document_describes_the_updates_as_they_are() {
    let doc: Value = serde_json::from_str(agentkey::http::openapi_document()).unwrap();
    let org = "/v1/organizations/{organizationId}";
    for (path, method, id) in [
        (org.to_string(), "post", "UpdateOrganization"),
        (
            format!("{org}/workspaces/{{workspaceId}}"),
            "post",
            "UpdateWorkspace",
        ),
        (
            format!("{org}/workspaces/{{workspaceId}}"),
            "delete",
            "DeleteWorkspace",
        ),
        (
            format!("{org}/deployments/{{deploymentId}}"),
            "post",
            "UpdateDeployment",
        ),
    ] {
        assert_eq!(
            doc["paths"][&path][method]["operationId"], id,
            "{method} {path}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for request in [
        "UpdateOrganizationRequest",
        "UpdateWorkspaceRequest",
        "UpdateDeploymentRequest",
    ] {
        assert_eq!(schemas[request]["required"], json!(["name"]), "{request}");
        let name = &schemas[request]["properties"]["name"];
        assert_eq!(name["type"], "string", "{request}: {name}");
    }
    for (schema, fields) in [
        (
            "Organization",
            &["createdBy", "updatedBy", "isScimEnabled"][..],
        ),
        (
            "Workspace",
            &[
                "createdBy",
                "updatedBy",
                "cicdEnforcedDefault",
                "organizationName",
            ][..],
        ),
        (
            "Deployment",
            &["createdBy", "updatedBy", "isCicdEnforced", "type", "status"][..],
        ),
    ] {
        let required = schemas[schema]["required"].as_array().unwrap();
        for field in fields {
            assert!(required.contains(&json!(field)), "{schema}.{field}");
        }
    }
}
