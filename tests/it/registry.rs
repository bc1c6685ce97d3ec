//! Organizations, workspaces and deployments: the registry agent tokens
//! belong to.

use crate::common::{str_of, TestApp};
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn organizations_are_created_listed_and_fetched(app: TestApp) {
    let created = app
        .post("/v1/organizations", json!({ "name": "acme" }))
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let keys: Vec<&String> = created.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "allowEnhancedSupportAccess",
            "createdAt",
            "createdBy",
            "hasAllowedIpAddressRanges",
            "id",
            "isBlockedEnableAiFeatures",
            "isScimEnabled",
            "name",
            "shouldEnforceDedicatedClusters",
            "updatedAt",
            "updatedBy"
        ]
    );
    assert_eq!(created.body["hasAllowedIpAddressRanges"], false);
    assert_eq!(created.body["createdAt"], "2022-11-22T04:37:12Z");
    let id = str_of(&created.body, "id");

    assert_eq!(
        app.get(format!("/v1/organizations/{id}")).await.body,
        created.body
    );
    app.post("/v1/organizations", json!({ "name": "zeta" }))
        .await;
    let list = app.get("/v1/organizations?sorts=name:desc&limit=1").await;
    assert_eq!(list.body["totalCount"], 2);
    assert_eq!(list.body["limit"], 1);
    assert_eq!(list.body["organizations"][0]["name"], "zeta");
    app.get("/v1/organizations?sorts=createdById:asc")
        .await
        .assert_error(400);
    app.get("/v1/organizations/c000000000000000000000000")
        .await
        .assert_error(404);
}

async fn workspaces_belong_to_one_organization(app: TestApp) {
    let a = app.org("a").await;
    let b = app.org("b").await;
    let created = app
        .post(
            format!("/v1/organizations/{a}/workspaces"),
            json!({ "name": "data", "description": "team" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.body["organizationId"], a.as_str());
    assert_eq!(created.body["description"], "team");
    let ws = str_of(&created.body, "id");

    assert_eq!(
        app.get(format!("/v1/organizations/{a}/workspaces/{ws}"))
            .await
            .body,
        created.body
    );
    app.get(format!("/v1/organizations/{b}/workspaces/{ws}"))
        .await
        .assert_error(404);
    let list = app.get(format!("/v1/organizations/{a}/workspaces")).await;
    assert_eq!(list.body["totalCount"], 1);
    assert_eq!(list.body["workspaces"][0]["id"], ws);
    assert_eq!(
        app.get(format!("/v1/organizations/{b}/workspaces"))
            .await
            .body["totalCount"],
        0
    );

    let missing = "c000000000000000000000000";
    app.post(
        format!("/v1/organizations/{missing}/workspaces"),
        json!({ "name": "x" }),
    )
    .await
    .assert_error(404);
    app.get(format!("/v1/organizations/{missing}/workspaces"))
        .await
        .assert_error(404);
    app.get(format!("/v1/organizations/{a}/workspaces/{missing}"))
        .await
        .assert_error(404);
    let reply = app
        .post(
            format!("/v1/organizations/{a}/workspaces"),
            json!({ "description": "x".repeat(1001) }),
        )
        .await;
    reply.assert_error(400);
    assert_eq!(reply.fields(), ["name", "description"]);
}

async fn deployments_need_a_workspace_of_the_same_organization(app: TestApp) {
    let a = app.org("a").await;
    let b = app.org("b").await;
    let ws_a = app.workspace(&a).await;
    let ws_b = app.workspace(&b).await;
    let path = format!("/v1/organizations/{a}/deployments");

    // Astro clients send many more fields; they are ignored.
    let created = app
        .post(
            &path,
            json!({ "name": "prod", "workspaceId": ws_a, "description": "d",
                             "clusterId": "x", "executor": "CELERY", "isCicdEnforced": true }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.body["workspaceId"], ws_a.as_str());
    assert_eq!(created.body["organizationId"], a.as_str());
    let dep = str_of(&created.body, "id");
    assert_eq!(app.get(format!("{path}/{dep}")).await.body, created.body);
    assert_eq!(app.get(&path).await.body["deployments"][0]["id"], dep);

    for (body, field) in [
        (json!({ "name": "x" }), "workspaceId"),
        (json!({ "name": "x", "workspaceId": "" }), "workspaceId"),
        (json!({ "name": "x", "workspaceId": ws_b }), "workspaceId"),
        (
            json!({ "name": "x", "workspaceId": "nonsense" }),
            "workspaceId",
        ),
        (json!({ "workspaceId": ws_a }), "name"),
        (json!({ "name": "x", "workspaceId": 7 }), "workspaceId"),
    ] {
        let reply = app.post(&path, body.clone()).await;
        reply.assert_error(400);
        assert_eq!(reply.fields(), [field], "{body}");
    }
    assert_eq!(
        app.get(&path).await.body["totalCount"],
        1,
        "nothing written"
    );
    app.get(format!("/v1/organizations/{b}/deployments/{dep}"))
        .await
        .assert_error(404);
}

async fn deleting_a_deployment_is_204_then_404(app: TestApp) {
    let t = app.tenant().await;
    app.agent_token(&t, json!({ "name": "a" })).await;
    let path = format!("/v1/organizations/{}/deployments/{}", t.org, t.deployment);
    let other_org = app.org("other").await;
    app.delete(format!(
        "/v1/organizations/{other_org}/deployments/{}",
        t.deployment
    ))
    .await
    .assert_error(404);

    let reply = app.delete(&path).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.raw.is_empty());
    app.delete(&path).await.assert_error(404);
    app.get(&path).await.assert_error(404);
    app.delete(format!("/v1/organizations/{}/deployments/bogus", t.org))
        .await
        .assert_error(404);
}

async fn registry_lists_paginate_and_sort(app: TestApp) {
    let org = app.org("o").await;
    let ws = app.workspace(&org).await;
    for name in ["c", "a", "b"] {
        app.clock.advance(1);
        app.post(
            format!("/v1/organizations/{org}/deployments"),
            json!({ "name": name, "workspaceId": ws }),
        )
        .await;
    }
    let page = app
        .get(format!(
            "/v1/organizations/{org}/deployments?sorts=name%3Aasc&offset=1&limit=1"
        ))
        .await;
    assert_eq!(page.body["totalCount"], 3);
    assert_eq!(page.body["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["deployments"][0]["name"], "b");
    let default = app
        .get(format!("/v1/organizations/{org}/deployments"))
        .await;
    let names: Vec<&str> = default.body["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| str_of(d, "name"))
        .collect();
    assert_eq!(names, ["c", "a", "b"], "oldest first by default");
    app.get(format!("/v1/organizations/{org}/deployments?limit=-5"))
        .await
        .assert_error(400);
    app.get(format!("/v1/organizations/{org}/workspaces?offset=x"))
        .await
        .assert_error(400);
}

/// Issue 13, items 2 and 3: the list filters Astro documents, as its
/// clients send them (repeated keys, comma lists), and a workspace owner
/// listing the deployments of its workspace.
async fn list_filters_and_a_workspace_owners_deployments(app: TestApp) {
    let org = app.org("acme").await;
    let path = |p: &str| format!("/v1/organizations/{org}/{p}");
    let ws = |name: &str| {
        let app = &app;
        let url = path("workspaces");
        let body = json!({ "name": name });
        async move { str_of(&app.post(url, body).await.body, "id").to_string() }
    };
    let (data, ml) = (ws("data").await, ws("ml").await);
    let mut deployments = Vec::new();
    for (name, w) in [("prod", &data), ("dev", &data), ("prod", &ml)] {
        let reply = app
            .post(
                path("deployments"),
                json!({ "name": name, "workspaceId": w }),
            )
            .await;
        deployments.push(str_of(&reply.body, "id").to_string());
    }
    let count = |query: String| {
        let app = &app;
        let url = format!("{}?{query}", path("deployments"));
        async move {
            let reply = app.get(url).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply.body["totalCount"].as_i64().unwrap()
        }
    };
    assert_eq!(count(format!("workspaceIds={data}")).await, 2);
    assert_eq!(
        count(format!("workspaceIds={data}&workspaceIds={ml}")).await,
        3
    );
    assert_eq!(
        count(format!("workspaceIds={data},{ml}&names=prod")).await,
        2
    );
    assert_eq!(count("names=prod,dev".to_string()).await, 3);
    assert_eq!(count(format!("deploymentIds={}", deployments[2])).await, 1);
    assert_eq!(count(format!("workspaceIds={ml}&names=dev")).await, 0);
    let workspaces = app
        .get(format!(
            "{}?names=ml&sorts=name%3Aasc&sorts=createdAt%3Adesc",
            path("workspaces")
        ))
        .await;
    assert_eq!(workspaces.body["totalCount"], 1, "{}", workspaces.body);
    app.get(format!("{}?names=", path("deployments")))
        .await
        .assert_error(400);

    // A workspace owner: not the organization's list, but its workspace's.
    let owner = app
        .post(
            path("tokens"),
            json!({ "name": "o", "scope": "WORKSPACE", "entityId": data, "role": "WORKSPACE_OWNER" }),
        )
        .await;
    let owner = str_of(&owner.body, "token").to_string();
    let as_owner = |query: String| {
        let app = &app;
        let owner = owner.clone();
        let url = format!("{}?{query}", path("deployments"));
        async move { app.send(Method::GET, &url, Some(&owner), None).await }
    };
    as_owner(String::new()).await.assert_error(403);
    let own = as_owner(format!("workspaceIds={data}")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["totalCount"], 2);
    as_owner(format!("workspaceIds={ml}"))
        .await
        .assert_error(403);
    as_owner(format!("workspaceIds={data},{ml}"))
        .await
        .assert_error(403);
}

on_every_backend!(
    list_filters_and_a_workspace_owners_deployments,
    organizations_are_created_listed_and_fetched,
    workspaces_belong_to_one_organization,
    deployments_need_a_workspace_of_the_same_organization,
    deleting_a_deployment_is_204_then_404,
    registry_lists_paginate_and_sort,
);
