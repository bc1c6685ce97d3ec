//! Issue 13, item 7: edge semantics that generated tests against Astro's
//! schema send, through the real router under every base path of each
//! list: a sort field repeated is valid and the first occurrence decides;
//! an empty `sorts` value is not a sort (400); `"tokenExpiryPeriodInDays":
//! null` means the field is not set. Requests are the clients' own: the
//! colon of a sort percent-encoded, repeated keys, `bearer` in lower case.

use crate::common::{str_of, TestApp};
use crate::registry_updates::client;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

/// Every list with three items named `b`, `a`, `c` (in that order of
/// creation): (path under a base, the key of its items, its base paths).
async fn three_of_each(app: &TestApp) -> Vec<(String, &'static str, Vec<&'static str>)> {
    let all = vec!["/v1", "/iam/v1beta1", "/platform/v1beta1"];
    let both = vec!["/v1", "/iam/v1beta1"];
    let mut orgs = Vec::new();
    for name in ["b", "a", "c"] {
        app.clock.advance(1);
        orgs.push(app.org(name).await);
    }
    let org = &orgs[0];
    let mut workspaces = Vec::new();
    let mut deployments = Vec::new();
    for name in ["b", "a", "c"] {
        app.clock.advance(1);
        let ws = app
            .post(
                format!("/v1/organizations/{org}/workspaces"),
                json!({ "name": name }),
            )
            .await;
        workspaces.push(str_of(&ws.body, "id").to_string());
        let dep = app
            .post(
                format!("/v1/organizations/{org}/deployments"),
                json!({ "name": name, "workspaceId": workspaces[0] }),
            )
            .await;
        assert_eq!(dep.status, StatusCode::OK, "{}", dep.body);
        deployments.push(str_of(&dep.body, "id").to_string());
    }
    let dep = &deployments[0];
    for name in ["b", "a", "c"] {
        app.clock.advance(1);
        let agent = app
            .post(
                format!("/v1/organizations/{org}/deployments/{dep}/agent-tokens"),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(agent.status, StatusCode::OK, "{}", agent.body);
        let api = app
            .post(
                format!("/v1/organizations/{org}/tokens"),
                json!({ "name": name, "scope": "ORGANIZATION", "role": "ORGANIZATION_MEMBER" }),
            )
            .await;
        assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    }
    vec![
        ("/organizations".to_string(), "organizations", all.clone()),
        (
            format!("/organizations/{org}/workspaces"),
            "workspaces",
            all.clone(),
        ),
        (
            format!("/organizations/{org}/deployments"),
            "deployments",
            all,
        ),
        (
            format!("/organizations/{org}/deployments/{dep}/agent-tokens"),
            "tokens",
            both.clone(),
        ),
        (format!("/organizations/{org}/tokens"), "tokens", both),
    ]
}

fn names(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {body}"))
        .iter()
        .map(|item| str_of(item, "name").to_string())
        .collect()
}

async fn a_repeated_sort_field_takes_the_first(app: TestApp) {
    let lists = three_of_each(&app).await;
    for (path, key, bases) in &lists {
        for base in bases {
            for (query, expected) in [
                ("sorts=name%3Adesc&sorts=name%3Aasc", ["c", "b", "a"]),
                ("sorts=name%3Aasc&sorts=name%3Adesc", ["a", "b", "c"]),
                ("sorts=name%3Adesc,name%3Aasc", ["c", "b", "a"]),
                // The repeat comes after another field: still ignored.
                (
                    "sorts=createdAt%3Adesc&sorts=name%3Aasc&sorts=createdAt%3Aasc",
                    ["c", "a", "b"],
                ),
            ] {
                let url = format!("{base}{path}?{query}");
                let reply = client(&app, Method::GET, &url, &app.root, None).await;
                assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.body);
                assert_eq!(names(&reply.body, key), expected, "{url}");
                assert_eq!(reply.body["totalCount"], 3, "{url}");
            }
        }
    }
}

async fn an_empty_sort_is_a_400(app: TestApp) {
    let lists = three_of_each(&app).await;
    for (path, _, bases) in &lists {
        for base in bases {
            for query in [
                "sorts=",
                "sorts=name%3Aasc&sorts=",
                "sorts=name%3Aasc,",
                "limit=5&sorts=&offset=0",
            ] {
                let url = format!("{base}{path}?{query}");
                let reply = client(&app, Method::GET, &url, &app.root, None).await;
                let message = reply.assert_error(400).to_string();
                assert_eq!(reply.fields(), ["sorts"], "{url}");
                assert!(
                    reply.body["fieldErrors"][0]["message"]
                        .as_str()
                        .unwrap()
                        .contains("empty sort"),
                    "{url}: {message}"
                );
            }
        }
    }
}

async fn a_null_expiry_means_not_set(app: TestApp) {
    let t = app.tenant().await;
    for base in ["/v1", "/iam/v1beta1"] {
        let org = format!("{base}/organizations/{}", t.org);
        for (path, body) in [
            (
                format!("{org}/deployments/{}/agent-tokens", t.deployment),
                json!({ "name": "agent", "description": "", "tokenExpiryPeriodInDays": null }),
            ),
            (
                format!("{org}/tokens"),
                json!({ "name": "ci", "description": "", "type": "DEPLOYMENT",
                        "entityId": t.deployment, "role": "DEPLOYMENT_ADMIN",
                        "tokenExpiryPeriodInDays": null }),
            ),
        ] {
            let created = client(&app, Method::POST, &path, &app.root, Some(body.clone())).await;
            assert_eq!(created.status, StatusCode::OK, "{path}: {}", created.body);
            for absent in ["endAt", "expiryPeriodInDays"] {
                assert!(
                    created.body.get(absent).is_none(),
                    "{path}: a null expiry is a token that never expires: {}",
                    created.body
                );
            }
            let id = str_of(&created.body, "id");
            let read = client(&app, Method::GET, &format!("{path}/{id}"), &app.root, None).await;
            assert_eq!(read.status, StatusCode::OK);
            assert!(read.body.get("endAt").is_none(), "{}", read.body);
            assert!(read.body.get("expiryPeriodInDays").is_none());
            // Set, it is still checked: null is "absent", not "anything".
            let mut bad = body.clone();
            bad["tokenExpiryPeriodInDays"] = json!(0);
            let reply = client(&app, Method::POST, &path, &app.root, Some(bad)).await;
            reply.assert_error(400);
            assert_eq!(reply.fields(), ["tokenExpiryPeriodInDays"]);
        }
    }
}

/// ListOrganizations' product filters name products agentkey does not
/// have: a 400 naming each, never a list that ignored them.
async fn organization_product_filters_are_refused(app: TestApp) {
    app.org("acme").await;
    for base in ["/v1", "/iam/v1beta1", "/platform/v1beta1"] {
        for (query, fields) in [
            ("product=HOSTED", vec!["product"]),
            ("productPlan=c1&limit=5", vec!["productPlan"]),
            (
                "astronomerProduct=ASTRO&productPlan=x",
                vec!["productPlan", "astronomerProduct"],
            ),
        ] {
            let url = format!("{base}/organizations?{query}");
            let reply = client(&app, Method::GET, &url, &app.root, None).await;
            reply.assert_error(400);
            assert_eq!(reply.fields(), fields, "{url}");
        }
        let plain = client(
            &app,
            Method::GET,
            &format!("{base}/organizations"),
            &app.root,
            None,
        )
        .await;
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(plain.body["totalCount"], 1);
    }
}

/// ListApiTokens' DAG filters name roles agentkey does not have.
async fn api_token_dag_filters_are_refused(app: TestApp) {
    let t = app.tenant().await;
    for base in ["/v1", "/iam/v1beta1"] {
        let tokens = format!("{base}/organizations/{}/tokens", t.org);
        for (query, fields) in [
            ("dagId=etl", vec!["dagId"]),
            ("dagTags=a&dagTags=b&limit=100", vec!["dagTags"]),
            ("dagId=etl&dagTags=a", vec!["dagId", "dagTags"]),
        ] {
            let url = format!("{tokens}?{query}");
            let reply = client(&app, Method::GET, &url, &app.root, None).await;
            reply.assert_error(400);
            assert_eq!(reply.fields(), fields, "{url}");
        }
        let plain = client(
            &app,
            Method::GET,
            &format!("{tokens}?includeOnlyOrganizationTokens=true&offset=0&limit=100"),
            &app.root,
            None,
        )
        .await;
        assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    }
}

on_every_backend!(
    api_token_dag_filters_are_refused,
    organization_product_filters_are_refused,
    a_repeated_sort_field_takes_the_first,
    an_empty_sort_is_a_400,
    a_null_expiry_means_not_set,
);
