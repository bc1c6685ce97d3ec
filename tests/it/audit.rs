//! The audit trail: every change appends an event in the same transaction,
//! readable per organization.

use crate::common::{str_of, TestApp, START};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

fn logs(reply: &crate::common::Reply) -> Vec<Value> {
    reply.body["auditLogs"]
        .as_array()
        .expect("auditLogs")
        .clone()
}

async fn full_lifecycle_is_audited(app: TestApp) {
    let org_reply = app
        .post("/v1/organizations", json!({ "name": "acme" }))
        .await;
    let org = str_of(&org_reply.body, "id").to_string();
    let ws = app.workspace(&org).await;
    let dep = app.deployment(&org, &ws).await;
    let tokens = format!("/v1/organizations/{org}/deployments/{dep}/agent-tokens");
    app.clock.advance(10);
    let created = app.post(&tokens, json!({ "name": "agent" })).await;
    let token_id = str_of(&created.body, "id").to_string();
    app.clock.advance(10);
    let rotated = app
        .post(format!("{tokens}/{token_id}/rotate"), json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    app.clock.advance(10);
    let deleted = app.delete(format!("{tokens}/{token_id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.delete(format!("/v1/organizations/{org}/deployments/{dep}"))
        .await;

    let reply = app
        .get(format!("/v1/organizations/{org}/audit-logs?limit=100"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["totalCount"], 7);
    let trail: Vec<(String, String, String)> = logs(&reply)
        .iter()
        .map(|e| {
            (
                str_of(e, "action").to_string(),
                str_of(e, "targetType").to_string(),
                str_of(e, "targetId").to_string(),
            )
        })
        .collect();
    let expect = |a: &str, t: &str, id: &str| (a.to_string(), t.to_string(), id.to_string());
    assert_eq!(
        trail,
        [
            expect("organization.create", "ORGANIZATION", &org),
            expect("workspace.create", "WORKSPACE", &ws),
            expect("deployment.create", "DEPLOYMENT", &dep),
            expect("agentToken.create", "AGENT_TOKEN", &token_id),
            expect("agentToken.rotate", "AGENT_TOKEN", &token_id),
            expect("agentToken.delete", "AGENT_TOKEN", &token_id),
            expect("deployment.delete", "DEPLOYMENT", &dep),
        ]
    );
    let first = &logs(&reply)[0];
    assert_eq!(first["organizationId"], org.as_str());
    assert_eq!(first["createdAt"], agentkey::clock::rfc3339(START));
    assert_eq!(first["actor"]["subjectType"], "SERVICEKEY");
    assert_eq!(first["actor"]["apiTokenName"], "root");
    // The event names the request that made the change.
    assert_eq!(
        first["requestId"].as_str(),
        org_reply.header("x-request-id")
    );
    assert_eq!(
        logs(&reply)[4]["requestId"].as_str(),
        rotated.header("x-request-id")
    );
    // No secret in the trail.
    let raw = String::from_utf8_lossy(&reply.raw).to_string();
    assert!(!raw.contains(str_of(&created.body, "token")));
    assert!(!raw.contains(str_of(&rotated.body, "token")));
}

async fn refused_changes_leave_no_event(app: TestApp) {
    let t = app.tenant().await;
    let path = format!("/v1/organizations/{}/audit-logs", t.org);
    let before = app.get(&path).await.body["totalCount"].clone();
    // Invalid input, a missing token, a refused caller: nothing happens,
    // nothing is recorded.
    app.post(t.tokens_path(), json!({ "name": "" }))
        .await
        .assert_error(400);
    app.delete(t.token_path("c000000000000000000000000"))
        .await
        .assert_error(404);
    let agent = app.agent_token(&t, json!({ "name": "a" })).await;
    let secret = str_of(&agent, "token");
    let reply = app
        .send(
            Method::DELETE,
            &t.token_path(str_of(&agent, "id")),
            Some(secret),
            None,
        )
        .await;
    reply.assert_error(403);
    let after = app.get(&path).await;
    assert_eq!(
        after.body["totalCount"],
        before.as_i64().unwrap() + 1,
        "only the create"
    );
}

async fn the_window_and_its_errors(app: TestApp) {
    let t = app.tenant().await; // three events at START
    app.clock.advance(3600);
    app.agent_token(&t, json!({ "name": "later" })).await; // one at START + 3600
    let path = format!("/v1/organizations/{}/audit-logs", t.org);
    let at = |offset: i64| agentkey::clock::rfc3339(START + offset);
    let app = &app;
    let count = |query: String| {
        let path = format!("{path}?{query}");
        async move { app.get(path).await.body["totalCount"].clone() }
    };
    assert_eq!(count(String::new()).await, 4);
    assert_eq!(count(format!("startDate={}", at(1))).await, 1);
    assert_eq!(count(format!("endDate={}", at(1))).await, 3);
    assert_eq!(
        count(format!("startDate={}&endDate={}", at(0), at(3600))).await,
        3,
        "end is exclusive"
    );
    assert_eq!(
        count("startDate=2022-11-22T05:37:12%2B01:00".into()).await,
        4,
        "offsets are understood"
    );
    assert_eq!(count("action=agentToken.create".into()).await, 1);
    assert_eq!(count("action=workspace.create".into()).await, 1);
    let unknown = app.get(format!("{path}?action=agentToken.explode")).await;
    let message = unknown.assert_error(400);
    assert!(
        message.contains("agentToken.rotate"),
        "names the known actions: {message}"
    );

    for (query, field) in [
        ("startDate=yesterday", "startDate"),
        ("action=", "action"),
        ("endDate=2022-13-01T00:00:00Z", "endDate"),
        (
            "startDate=2023-01-01T00:00:00Z&endDate=2022-01-01T00:00:00Z",
            "endDate",
        ),
    ] {
        let reply = app.get(format!("{path}?{query}")).await;
        reply.assert_error(400);
        assert_eq!(reply.fields(), [field], "{query}");
    }
    app.get(format!("{path}?limit=5000"))
        .await
        .assert_error(400);
    app.get("/v1/organizations/c000000000000000000000000/audit-logs")
        .await
        .assert_error(404);
    let agent = app.agent_token(&t, json!({ "name": "a" })).await;
    let reply = app
        .send(Method::GET, &path, Some(str_of(&agent, "token")), None)
        .await;
    reply.assert_error(403);
}

async fn organizations_see_only_their_own_trail(app: TestApp) {
    let a = app.tenant().await;
    let b = app.tenant().await;
    for (org, other) in [(&a, &b), (&b, &a)] {
        let reply = app
            .get(format!("/v1/organizations/{}/audit-logs", org.org))
            .await;
        assert_eq!(
            reply.body["totalCount"], 3,
            "its organization, workspace and deployment"
        );
        for event in logs(&reply) {
            assert_eq!(event["organizationId"], org.org.as_str());
            assert_ne!(event["targetId"], other.deployment.as_str());
        }
    }
}

on_every_backend!(
    full_lifecycle_is_audited,
    refused_changes_leave_no_event,
    the_window_and_its_errors,
    organizations_see_only_their_own_trail,
);
