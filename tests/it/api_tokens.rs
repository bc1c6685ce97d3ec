//! `/v1/organizations/{org}/tokens`: organization API tokens, their wire
//! shape, their life cycle, and the refusals that keep them from escalating.

use crate::common::{str_of, Reply, Tenant, TestApp, START};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

fn tokens_path(org: &str) -> String {
    format!("/v1/organizations/{org}/tokens")
}

/// Creates an API token as root; answers the whole create response.
async fn api_token(app: &TestApp, org: &str, body: Value) -> Value {
    let reply = app.post(tokens_path(org), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

async fn deployment_admin(app: &TestApp, t: &Tenant) -> Value {
    api_token(
        app,
        &t.org,
        json!({ "name": "ci", "scope": "DEPLOYMENT", "entityId": t.deployment, "role": "DEPLOYMENT_ADMIN" }),
    )
    .await
}

async fn as_token(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    app.send(method, path, Some(token), body).await
}

#[tokio::test]
async fn create_answers_the_astro_api_token_shape_with_the_secret_once() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let created = api_token(
        &app,
        &t.org,
        json!({ "name": "ci", "description": "pipeline", "scope": "WORKSPACE",
                "entityId": t.workspace, "role": "WORKSPACE_OWNER", "tokenExpiryPeriodInDays": 30 }),
    )
    .await;
    let secret = str_of(&created, "token");
    assert!(secret.starts_with("akapi_"), "{secret}");
    assert!(secret.starts_with(str_of(&created, "shortToken")));
    assert_eq!(created["scope"], "WORKSPACE");
    assert_eq!(created["kind"], "STANDARD");
    assert_eq!(created["expiryPeriodInDays"], 30);
    assert_eq!(
        created["endAt"],
        agentkey::clock::rfc3339(START + 30 * 86_400)
    );
    assert_eq!(
        created["roles"],
        json!([{ "entityId": t.workspace, "entityType": "WORKSPACE", "role": "WORKSPACE_OWNER" }])
    );
    assert_eq!(created["createdBy"]["apiTokenName"], "root");

    let id = str_of(&created, "id");
    let got = app.get(format!("{}/{id}", tokens_path(&t.org))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.get("token").is_none(), "the secret is shown once");
    assert_eq!(got.body["roles"], created["roles"]);
    // The older base path serves the same tokens.
    let old = app
        .get(format!("/iam/v1beta1/organizations/{}/tokens/{id}", t.org))
        .await;
    assert_eq!(old.body, got.body);
    // `type`, as older clients send it, stands for `scope`.
    let typed = api_token(
        &app,
        &t.org,
        json!({ "name": "tf", "type": "ORGANIZATION", "role": "ORGANIZATION_MEMBER" }),
    )
    .await;
    assert_eq!(typed["roles"][0]["entityId"], t.org);
}

#[tokio::test]
async fn the_acting_api_token_is_named_in_created_by_and_updated_by() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let ci = deployment_admin(&app, &t).await;
    let secret = str_of(&ci, "token");
    let agent = as_token(
        &app,
        secret,
        Method::POST,
        &t.tokens_path(),
        Some(json!({ "name": "w" })),
    )
    .await;
    assert_eq!(agent.status, StatusCode::OK, "{}", agent.body);
    let by = json!({ "id": ci["id"], "subjectType": "SERVICEKEY", "apiTokenName": "ci" });
    assert_eq!(agent.body["createdBy"], by);
    assert_eq!(agent.body["updatedBy"], by);
    // The agent token works at the gateway.
    assert_eq!(
        app.authorize(str_of(&agent.body, "token")).await.status,
        StatusCode::OK
    );

    let renamed = as_token(
        &app,
        secret,
        Method::POST,
        &format!("{}/{}", tokens_path(&t.org), str_of(&ci, "id")),
        Some(json!({ "name": "ci-renamed" })),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "ci-renamed");
    assert_eq!(
        renamed.body["description"], "",
        "absent keeps the description"
    );
    assert_eq!(renamed.body["updatedBy"], by);
    assert_eq!(renamed.body["createdBy"]["apiTokenName"], "root");
}

#[tokio::test]
async fn deleted_rotated_and_expired_tokens_are_401_at_once() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let list = tokens_path(&t.org);

    let doomed = deployment_admin(&app, &t).await;
    let secret = str_of(&doomed, "token");
    assert_eq!(
        as_token(&app, secret, Method::GET, &t.tokens_path(), None)
            .await
            .status,
        StatusCode::OK
    );
    let path = format!("{list}/{}", str_of(&doomed, "id"));
    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    as_token(&app, secret, Method::GET, &t.tokens_path(), None)
        .await
        .assert_error(401);
    app.delete(&path).await.assert_error(404);
    app.get(&path).await.assert_error(404);

    let rotated = deployment_admin(&app, &t).await;
    let old = str_of(&rotated, "token");
    let reply = app
        .send(
            Method::POST,
            &format!("{list}/{}/rotate", str_of(&rotated, "id")),
            Some(&app.root),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let new = str_of(&reply.body, "token");
    assert_ne!(new, old);
    assert_eq!(reply.body["lastRotatedAt"], agentkey::clock::rfc3339(START));
    as_token(&app, old, Method::GET, &t.tokens_path(), None)
        .await
        .assert_error(401);
    assert_eq!(
        as_token(&app, new, Method::GET, &t.tokens_path(), None)
            .await
            .status,
        StatusCode::OK
    );

    let expiring = api_token(
        &app,
        &t.org,
        json!({ "name": "e", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER", "tokenExpiryPeriodInDays": 1 }),
    )
    .await;
    let secret = str_of(&expiring, "token");
    assert_eq!(
        as_token(&app, secret, Method::GET, &list, None)
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(86_400);
    as_token(&app, secret, Method::GET, &list, None)
        .await
        .assert_error(401);
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let token = api_token(
        &app,
        &t.org,
        json!({ "name": "ws", "scope": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_MEMBER" }),
    )
    .await;
    let secret = str_of(&token, "token");
    let path = t.tokens_path();
    let create = || {
        as_token(
            &app,
            secret,
            Method::POST,
            &path,
            Some(json!({ "name": "a" })),
        )
    };
    create().await.assert_error(403);
    let roles = format!("{}/{}/roles", tokens_path(&t.org), str_of(&token, "id"));
    let reply = app
        .post(
            &roles,
            json!({ "roles": [
                { "entityType": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_OPERATOR" },
                { "entityType": "DEPLOYMENT", "entityId": t.deployment, "role": "DEPLOYMENT_ADMIN" },
            ]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "workspaceRoles": [{ "workspaceId": t.workspace, "role": "WORKSPACE_OPERATOR" }],
            "deploymentRoles": [{ "deploymentId": t.deployment, "role": "DEPLOYMENT_ADMIN" }],
        })
    );
    assert_eq!(create().await.status, StatusCode::OK);
}

#[tokio::test]
async fn lists_paginate_sort_and_filter_by_role() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let other_ws = app.workspace(&t.org).await;
    for (name, scope, entity, role) in [
        ("b", "DEPLOYMENT", t.deployment.as_str(), "DEPLOYMENT_ADMIN"),
        ("a", "WORKSPACE", t.workspace.as_str(), "WORKSPACE_AUTHOR"),
        ("c", "WORKSPACE", other_ws.as_str(), "WORKSPACE_OWNER"),
    ] {
        api_token(
            &app,
            &t.org,
            json!({ "name": name, "scope": scope, "entityId": entity, "role": role }),
        )
        .await;
    }
    let names = |reply: &Reply| -> Vec<String> {
        reply.body["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| str_of(t, "name").to_string())
            .collect()
    };
    let list = tokens_path(&t.org);
    let all = app.get(format!("{list}?sorts=name:asc")).await;
    assert_eq!(
        (names(&all), all.body["totalCount"].clone()),
        (vec!["a".into(), "b".into(), "c".into()], json!(3))
    );
    let page = app.get(format!("{list}?limit=1&offset=1")).await;
    assert_eq!(
        (names(&page), page.body["limit"].clone()),
        (vec!["a".into()], json!(1))
    );
    assert_eq!(
        names(&app.get(format!("{list}?workspaceId={}", t.workspace)).await),
        ["a"]
    );
    assert_eq!(
        names(
            &app.get(format!("{list}?deploymentId={}", t.deployment))
                .await
        ),
        ["b"]
    );
    app.get(format!("{list}?deploymentId=c000000000000000000000000"))
        .await
        .assert_error(404);
    let bad = app.get(format!("{list}?sorts=role:asc&limit=x")).await;
    bad.assert_error(400);
    assert_eq!(bad.fields(), ["sorts", "limit"]);
}

#[tokio::test]
async fn bad_creates_are_400_and_write_nothing() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let list = tokens_path(&t.org);
    for (body, fields) in [
        (json!({}), vec!["name", "scope", "role"]),
        (
            json!({ "name": "x", "scope": "ORGANIZATION", "role": "WORKSPACE_OWNER" }),
            vec!["role"],
        ),
        (
            json!({ "name": "x", "scope": "WORKSPACE", "role": "WORKSPACE_OWNER" }),
            vec!["entityId"],
        ),
        (
            json!({ "name": "x", "scope": "TEAM", "role": "OWNER" }),
            vec!["scope", "role"],
        ),
        (
            json!({ "name": "x", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER", "entityId": "c000000000000000000000000" }),
            vec!["entityId"],
        ),
        (
            json!({ "name": "x", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER", "kind": "DIRECT_ACCESS" }),
            vec!["kind"],
        ),
        (
            json!({ "name": "x", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER", "tokenExpiryPeriodInDays": 0 }),
            vec!["tokenExpiryPeriodInDays"],
        ),
        (
            json!({ "name": "x", "scope": "DEPLOYMENT", "role": "DEPLOYMENT_ADMIN", "entityId": t.workspace }),
            vec!["entityId"],
        ),
        (json!({ "name": 5 }), vec!["name"]),
    ] {
        let reply = app.post(&list, body.clone()).await;
        reply.assert_error(400);
        assert_eq!(reply.fields(), fields, "{body}");
    }
    let roles = format!(
        "{list}/{}/roles",
        str_of(&deployment_admin(&app, &t).await, "id")
    );
    for body in [
        json!({}),
        json!({ "roles": [] }),
        json!({ "roles": [{ "entityType": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_OWNER" }] }),
        json!({ "roles": [{ "entityType": "DEPLOYMENT", "entityId": t.deployment, "role": "WORKSPACE_OWNER" }] }),
        json!({ "roles": "x" }),
    ] {
        app.post(&roles, body).await.assert_error(400);
    }
    assert_eq!(app.get(&list).await.body["totalCount"], 1);
}

/// A workspace member cannot mint a workspace owner token (nor any token).
#[tokio::test]
async fn a_workspace_member_cannot_create_an_owner_token() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let member = api_token(
        &app,
        &t.org,
        json!({ "name": "m", "scope": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_MEMBER" }),
    )
    .await;
    let reply = as_token(
        &app,
        str_of(&member, "token"),
        Method::POST,
        &tokens_path(&t.org),
        Some(json!({ "name": "up", "scope": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_OWNER" })),
    )
    .await;
    reply.assert_error(403);
    // Nor raise its own role.
    let reply = as_token(
        &app,
        str_of(&member, "token"),
        Method::POST,
        &format!("{}/{}/roles", tokens_path(&t.org), str_of(&member, "id")),
        Some(json!({ "roles": [{ "entityType": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_OWNER" }] })),
    )
    .await;
    reply.assert_error(403);
    // And a workspace owner can create members but not an organization token.
    let owner = api_token(
        &app,
        &t.org,
        json!({ "name": "o", "scope": "WORKSPACE", "entityId": t.workspace, "role": "WORKSPACE_OWNER" }),
    )
    .await;
    let org_token = as_token(
        &app,
        str_of(&owner, "token"),
        Method::POST,
        &tokens_path(&t.org),
        Some(json!({ "name": "org", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER" })),
    )
    .await;
    org_token.assert_error(403);
    assert_eq!(app.get(tokens_path(&t.org)).await.body["totalCount"], 2);
}

/// An organization A token can touch nothing of organization B, and the
/// 403 is the same whether B exists or not.
#[tokio::test]
async fn an_organization_token_cannot_touch_another_organization() {
    let app = TestApp::new().await;
    let a = app.tenant().await;
    let b = app.tenant().await;
    let owner = api_token(
        &app,
        &a.org,
        json!({ "name": "a", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER" }),
    )
    .await;
    let secret = str_of(&owner, "token");
    let b_token = deployment_admin(&app, &b).await;
    let missing = "c000000000000000000000000";
    let mut messages = Vec::new();
    for org in [b.org.as_str(), missing] {
        for (method, path, body) in [
            (Method::GET, format!("/v1/organizations/{org}"), None),
            (
                Method::GET,
                format!(
                    "/v1/organizations/{org}/deployments/{}/agent-tokens",
                    b.deployment
                ),
                None,
            ),
            (
                Method::POST,
                format!(
                    "/v1/organizations/{org}/deployments/{}/agent-tokens",
                    b.deployment
                ),
                Some(json!({ "name": "x" })),
            ),
            (
                Method::GET,
                format!("/v1/organizations/{org}/tokens/{}", str_of(&b_token, "id")),
                None,
            ),
            (
                Method::DELETE,
                format!("/v1/organizations/{org}/tokens/{}", str_of(&b_token, "id")),
                None,
            ),
            (
                Method::POST,
                format!("/v1/organizations/{org}/workspaces"),
                Some(json!({ "name": "x" })),
            ),
        ] {
            let reply = as_token(&app, secret, method, &path, body).await;
            let message = reply.assert_error(403).replace(org, "{org}");
            messages.push(message);
        }
    }
    assert_eq!(
        messages[..6],
        messages[6..],
        "nothing tells an existing organization from a missing one"
    );
    // Listing organizations shows only its own.
    let list = as_token(&app, secret, Method::GET, "/v1/organizations", None).await;
    assert_eq!(list.body["totalCount"], 1);
    assert_eq!(list.body["organizations"][0]["id"], a.org);
    // A's token in the path of A cannot name B's deployment either.
    let cross = format!(
        "/v1/organizations/{}/deployments/{}/agent-tokens",
        a.org, b.deployment
    );
    as_token(&app, secret, Method::GET, &cross, None)
        .await
        .assert_error(404);
    // B's token still works.
    assert_eq!(
        as_token(
            &app,
            str_of(&b_token, "token"),
            Method::GET,
            &b.tokens_path(),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
}

/// A deployment admin manages its one deployment, not a sibling.
#[tokio::test]
async fn a_deployment_admin_cannot_reach_a_sibling_deployment() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let sibling = Tenant {
        org: t.org.clone(),
        workspace: t.workspace.clone(),
        deployment: app.deployment(&t.org, &t.workspace).await,
    };
    let admin = deployment_admin(&app, &t).await;
    let secret = str_of(&admin, "token");
    let theirs = app.agent_token(&sibling, json!({ "name": "theirs" })).await;
    let theirs_id = str_of(&theirs, "id");
    for (method, path, body) in [
        (Method::GET, sibling.tokens_path(), None),
        (
            Method::POST,
            sibling.tokens_path(),
            Some(json!({ "name": "x" })),
        ),
        (Method::GET, sibling.token_path(theirs_id), None),
        (Method::DELETE, sibling.token_path(theirs_id), None),
        (
            Method::POST,
            format!("{}/rotate", sibling.token_path(theirs_id)),
            None,
        ),
        (
            Method::GET,
            format!(
                "/v1/organizations/{}/deployments/{}",
                t.org, sibling.deployment
            ),
            None,
        ),
        (
            Method::POST,
            tokens_path(&t.org),
            Some(
                json!({ "name": "x", "scope": "DEPLOYMENT", "entityId": sibling.deployment, "role": "DEPLOYMENT_ADMIN" }),
            ),
        ),
        (
            Method::POST,
            format!("{}/{}/roles", tokens_path(&t.org), str_of(&admin, "id")),
            Some(
                json!({ "roles": [{ "entityType": "DEPLOYMENT", "entityId": sibling.deployment, "role": "DEPLOYMENT_ADMIN" }] }),
            ),
        ),
    ] {
        let reply = as_token(&app, secret, method.clone(), &path, body).await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 403),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
    assert_eq!(
        app.authorize(str_of(&theirs, "token")).await.status,
        StatusCode::OK,
        "untouched"
    );
    // Its own deployment is fine.
    let mine = as_token(
        &app,
        secret,
        Method::POST,
        &t.tokens_path(),
        Some(json!({ "name": "mine" })),
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK);
}

#[tokio::test]
async fn introspection_is_for_organization_owners_of_the_token_organization() {
    let app = TestApp::new().await;
    let a = app.tenant().await;
    let b = app.tenant().await;
    let agent = str_of(&app.agent_token(&a, json!({ "name": "a" })).await, "token").to_string();
    let introspect = |caller: String| {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/introspect")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Bearer {caller}"))
            .body(axum::body::Body::from(format!("token={agent}")))
            .unwrap();
        app.raw(request)
    };
    let owner_body = json!({ "name": "o", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER" });
    let a_owner = str_of(&api_token(&app, &a.org, owner_body.clone()).await, "token").to_string();
    let b_owner = str_of(&api_token(&app, &b.org, owner_body).await, "token").to_string();
    assert_eq!(introspect(a_owner).await.body["active"], true);
    assert_eq!(introspect(b_owner).await.body, json!({ "active": false }));
    let member = api_token(
        &app,
        &a.org,
        json!({ "name": "m", "scope": "ORGANIZATION", "role": "ORGANIZATION_MEMBER" }),
    )
    .await;
    introspect(str_of(&member, "token").to_string())
        .await
        .assert_error(403);
}

#[tokio::test]
async fn deleting_a_deployment_takes_its_api_tokens_and_roles_with_it() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let scoped = deployment_admin(&app, &t).await;
    let org_token = api_token(
        &app,
        &t.org,
        json!({ "name": "org", "scope": "ORGANIZATION", "role": "ORGANIZATION_MEMBER" }),
    )
    .await;
    let roles = format!("{}/{}/roles", tokens_path(&t.org), str_of(&org_token, "id"));
    let reply = app
        .post(
            &roles,
            json!({ "roles": [
                { "entityType": "ORGANIZATION", "entityId": t.org, "role": "ORGANIZATION_MEMBER" },
                { "entityType": "DEPLOYMENT", "entityId": t.deployment, "role": "DEPLOYMENT_ADMIN" },
            ]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let org_path = format!("/v1/organizations/{}", t.org);
    let scoped_secret = str_of(&scoped, "token");
    let before = as_token(&app, scoped_secret, Method::GET, &org_path, None).await;
    assert_eq!(before.status, StatusCode::OK);

    let path = format!("/v1/organizations/{}/deployments/{}", t.org, t.deployment);
    assert_eq!(app.delete(path).await.status, StatusCode::NO_CONTENT);

    // The token made for the deployment is gone: refused, and not found.
    as_token(&app, scoped_secret, Method::GET, &org_path, None)
        .await
        .assert_error(401);
    app.get(format!("{}/{}", tokens_path(&t.org), str_of(&scoped, "id")))
        .await
        .assert_error(404);
    // The organization token stays, without its role on the deployment.
    let kept = app
        .get(format!(
            "{}/{}",
            tokens_path(&t.org),
            str_of(&org_token, "id")
        ))
        .await;
    assert_eq!(kept.status, StatusCode::OK);
    let roles = kept.body["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{}", kept.body);
    assert_eq!(roles[0]["entityType"], "ORGANIZATION");
}

/// The Astro Terraform provider's IAM client (base path `/iam/v1beta1`)
/// sends `type` instead of `scope`, a lower-case `bearer`, and reads
/// `ApiToken.type` back as required.
#[tokio::test]
async fn iam_clients_send_and_read_type() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let path = format!("/iam/v1beta1/organizations/{}/tokens", t.org);
    let request = axum::http::Request::post(&path)
        .header("authorization", format!("bearer {}", app.root))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "name": "tf", "description": "", "type": "WORKSPACE",
                    "entityId": t.workspace, "role": "WORKSPACE_OPERATOR" })
            .to_string(),
        ))
        .unwrap();
    let created = app.raw(request).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.body["type"], "WORKSPACE");
    assert_eq!(created.body["scope"], "WORKSPACE");
    let id = str_of(&created.body, "id");
    let read = app.get(format!("{path}/{id}")).await;
    assert_eq!(read.body["type"], "WORKSPACE", "{}", read.body);
    let listed = app.get(&path).await;
    assert_eq!(listed.body["tokens"][0]["type"], "WORKSPACE");
    // Agent tokens carry it too, on both base paths.
    let agent = app.agent_token(&t, json!({ "name": "gw" })).await;
    assert_eq!(agent["type"], "DEPLOYMENT");
    let iam = app
        .get(format!(
            "/iam/v1beta1/organizations/{}/deployments/{}/agent-tokens/{}",
            t.org,
            t.deployment,
            str_of(&agent, "id")
        ))
        .await;
    assert_eq!(iam.body["type"], "DEPLOYMENT", "{}", iam.body);
}

/// Issue 11, item 9: a list obeys the rule of a get. A deployment admin may
/// not read an organization owner's token, not even when that token also
/// holds a role on the admin's deployment and the list is filtered by it.
#[tokio::test]
async fn a_list_shows_only_tokens_their_caller_could_get() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let owner = api_token(
        &app,
        &t.org,
        json!({ "name": "owner", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER" }),
    )
    .await;
    let owner_id = str_of(&owner, "id");
    let roles = app
        .post(
            format!("{}/{owner_id}/roles", tokens_path(&t.org)),
            json!({ "roles": [
                { "entityType": "ORGANIZATION", "entityId": t.org, "role": "ORGANIZATION_OWNER" },
                { "entityType": "DEPLOYMENT", "entityId": t.deployment, "role": "DEPLOYMENT_ADMIN" },
            ] }),
        )
        .await;
    assert_eq!(roles.status, StatusCode::OK, "{}", roles.body);
    let admin = deployment_admin(&app, &t).await;
    let admin_secret = str_of(&admin, "token");
    let get = as_token(
        &app,
        admin_secret,
        Method::GET,
        &format!("{}/{owner_id}", tokens_path(&t.org)),
        None,
    )
    .await;
    get.assert_error(403);
    let listed = as_token(
        &app,
        admin_secret,
        Method::GET,
        &format!("{}?deploymentId={}", tokens_path(&t.org), t.deployment),
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let names: Vec<&str> = listed.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci"], "only the admin's own token");
    assert_eq!(listed.body["totalCount"], 1);
    // Root, with organization-wide access, sees both.
    let all = app
        .get(format!(
            "{}?deploymentId={}",
            tokens_path(&t.org),
            t.deployment
        ))
        .await;
    assert_eq!(all.body["totalCount"], 2, "{}", all.body);
}

/// Issue 13, item 2: the Astro CLI lists organization tokens with
/// `includeOnlyOrganizationTokens=true` on every page; `kind` is honoured
/// (agentkey issues only STANDARD tokens) or refused, never ignored.
#[tokio::test]
async fn list_filters_of_the_astro_cli_are_honoured() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    api_token(
        &app,
        &t.org,
        json!({ "name": "org", "scope": "ORGANIZATION", "role": "ORGANIZATION_MEMBER" }),
    )
    .await;
    deployment_admin(&app, &t).await;
    let path = tokens_path(&t.org);
    let all = app.get(&path).await;
    assert_eq!(all.body["totalCount"], 2);
    let only = app
        .get(format!(
            "{path}?includeOnlyOrganizationTokens=true&limit=20&offset=0"
        ))
        .await;
    assert_eq!(only.body["totalCount"], 1, "{}", only.body);
    assert_eq!(only.body["tokens"][0]["type"], "ORGANIZATION");
    let not_only = app
        .get(format!("{path}?includeOnlyOrganizationTokens=false"))
        .await;
    assert_eq!(not_only.body["totalCount"], 2);
    let standard = app.get(format!("{path}?kind=STANDARD")).await;
    assert_eq!(standard.body["totalCount"], 2);
    let direct = app.get(format!("{path}?kind=DIRECT_ACCESS")).await;
    assert_eq!(direct.status, StatusCode::OK);
    assert_eq!(direct.body["totalCount"], 0);
    let bogus = app.get(format!("{path}?kind=SUPER")).await;
    assert!(bogus
        .assert_error(400)
        .contains("STANDARD or DIRECT_ACCESS"));
    let not_a_bool = app
        .get(format!("{path}?includeOnlyOrganizationTokens=yes"))
        .await;
    not_a_bool.assert_error(400);
}

/// Issue 13, item 8: Astro's observe roles are accepted and read-only;
/// a custom role name is a 400 that says custom roles are not supported.
/// Sent the Terraform provider's way: `/iam/v1beta1`, `type` for the
/// scope, `authorization: bearer` in lower case, `description: ""`.
#[tokio::test]
async fn observe_roles_read_and_custom_roles_are_refused() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let tf = |method: Method, path: String, token: String, body: Option<Value>| {
        let app = &app;
        async move {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("bearer {token}"));
            let request = match body {
                Some(body) => request
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_string())),
                None => request.body(axum::body::Body::empty()),
            };
            app.raw(request.unwrap()).await
        }
    };
    let tokens = format!("/iam/v1beta1/organizations/{}/tokens", t.org);
    let mut observers = Vec::new();
    for role in ["ORGANIZATION_OBSERVE_MEMBER", "ORGANIZATION_OBSERVE_ADMIN"] {
        let created = tf(
            Method::POST,
            tokens.clone(),
            app.root.clone(),
            Some(json!({ "name": role, "description": "", "type": "ORGANIZATION", "role": role })),
        )
        .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.body);
        assert_eq!(created.body["type"], "ORGANIZATION");
        assert_eq!(created.body["roles"][0]["role"], role);
        let id = str_of(&created.body, "id");
        let read = tf(
            Method::GET,
            format!("{tokens}/{id}"),
            app.root.clone(),
            None,
        )
        .await;
        assert_eq!(
            read.body["roles"], created.body["roles"],
            "read back as written"
        );
        observers.push(str_of(&created.body, "token").to_string());
    }
    let org = format!("/v1/organizations/{}", t.org);
    for observer in &observers {
        let reads = [
            org.clone(),
            format!("{org}/workspaces"),
            format!("{org}/workspaces/{}", t.workspace),
        ];
        for path in reads {
            let reply = tf(Method::GET, path.clone(), observer.clone(), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        }
        for (method, path, body) in [
            (Method::POST, org.clone(), Some(json!({ "name": "x" }))),
            (
                Method::POST,
                format!("{org}/workspaces"),
                Some(json!({ "name": "x" })),
            ),
            (
                Method::GET,
                format!("{org}/deployments/{}", t.deployment),
                None,
            ),
            (Method::GET, format!("{org}/tokens"), None),
            (Method::GET, t.tokens_path(), None),
        ] {
            tf(method, path, observer.clone(), body)
                .await
                .assert_error(403);
        }
    }

    // Custom roles: on create and on a change of roles, never written.
    let before = app.get(tokens_path(&t.org)).await.body;
    for (scope, entity, role) in [
        (
            "DEPLOYMENT",
            t.deployment.as_str(),
            "DEPLOYMENT_VIEWER_CUSTOM",
        ),
        ("WORKSPACE", t.workspace.as_str(), "MY_WORKSPACE_ROLE"),
        ("ORGANIZATION", t.org.as_str(), "organization_owner"),
    ] {
        let reply = tf(
            Method::POST,
            tokens.clone(),
            app.root.clone(),
            Some(json!({ "name": "c", "type": scope, "entityId": entity, "role": role })),
        )
        .await;
        let message = reply.assert_error(400).to_string();
        assert_eq!(reply.fields(), ["role"]);
        assert_eq!(reply.body["fieldErrors"][0]["code"], "not_supported");
        assert!(
            message.contains("custom roles are not supported"),
            "{message}"
        );
        assert!(message.contains(role), "{message}");
    }
    let admin = deployment_admin(&app, &t).await;
    let admin_id = str_of(&admin, "id");
    let reply = tf(
        Method::POST,
        format!("{tokens}/{admin_id}/roles"),
        app.root.clone(),
        Some(json!({ "roles": [{ "entityType": "DEPLOYMENT", "entityId": t.deployment, "role": "CUSTOM_DEPLOYER" }] })),
    )
    .await;
    reply.assert_error(400);
    assert_eq!(reply.fields(), ["roles[0].role"]);
    let read = app.get(format!("{}/{admin_id}", tokens_path(&t.org))).await;
    assert_eq!(read.body["roles"], admin["roles"], "roles unchanged");
    let after = app.get(tokens_path(&t.org)).await.body;
    assert_eq!(
        after["totalCount"],
        before["totalCount"].as_i64().unwrap() + 1,
        "only the deployment admin was written"
    );
}
