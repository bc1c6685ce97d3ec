//! `POST /v1/introspect`, RFC 7662.

use crate::common::{str_of, Reply, TestApp, START};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

async fn introspect(app: &TestApp, caller: Option<&str>, form: &str) -> Reply {
    let mut request = Request::builder()
        .method("POST")
        .uri("/v1/introspect")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(caller) = caller {
        request = request.header("authorization", format!("Bearer {caller}"));
    }
    app.raw(request.body(Body::from(form.to_string())).unwrap())
        .await
}

fn form(token: &str) -> String {
    format!("token={token}&token_type_hint=access_token")
}

async fn a_valid_token_is_active_with_its_claims(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(&t, json!({ "name": "a", "tokenExpiryPeriodInDays": 1 }))
        .await;
    let reply = introspect(&app, Some(&app.root), &form(str_of(&created, "token"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        reply.body,
        json!({
            "active": true,
            "sub": created["id"],
            "client_id": t.deployment,
            "scope": "DEPLOYMENT",
            "exp": START + 86_400,
            "iat": START,
            "token_type": "Bearer",
            "organization_id": t.org,
            "deployment_id": t.deployment,
        })
    );
}

async fn anything_not_valid_is_just_inactive(app: TestApp) {
    let t = app.tenant().await;
    let expiring = app
        .agent_token(&t, json!({ "name": "e", "tokenExpiryPeriodInDays": 1 }))
        .await;
    let revoked = app.agent_token(&t, json!({ "name": "r" })).await;
    app.delete(t.token_path(str_of(&revoked, "id"))).await;
    app.clock.advance(86_400);
    let unissued = agentkey::token::Secret::generate(agentkey::token::SecretKind::Agent);

    for token in [
        str_of(&expiring, "token"),
        str_of(&revoked, "token"),
        unissued.expose(),
        "garbage",
        "akagt_short",
        &app.root, // a management credential is not an agent token
    ] {
        let reply = introspect(&app, Some(&app.root), &form(token)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, json!({ "active": false }), "{token}");
    }
}

async fn the_caller_must_be_a_management_credential(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let token = str_of(&created, "token");
    introspect(&app, None, &form(token)).await.assert_error(401);
    introspect(&app, Some("nonsense"), &form(token))
        .await
        .assert_error(401);
    // An agent token may not introspect, not even itself.
    introspect(&app, Some(token), &form(token))
        .await
        .assert_error(403);
}

async fn bad_requests_are_4xx(app: TestApp) {
    let reply = introspect(&app, Some(&app.root), "token_type_hint=access_token").await;
    reply.assert_error(400);
    assert_eq!(reply.fields(), ["token"]);
    introspect(&app, Some(&app.root), "token=")
        .await
        .assert_error(400);
    let json_body = Request::builder()
        .method("POST")
        .uri("/v1/introspect")
        .header("authorization", format!("Bearer {}", app.root))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"token":"x"}"#))
        .unwrap();
    app.raw(json_body).await.assert_error(415);
    let huge = format!("token={}", "a".repeat(70 * 1024));
    introspect(&app, Some(&app.root), &huge)
        .await
        .assert_error(413);
}

async fn iat_is_when_the_presented_secret_was_issued(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let path = format!("{}/rotate", t.token_path(str_of(&created, "id")));
    let grace = json!({ "gracePeriodSeconds": 3600 });
    app.clock.advance(100);
    let first = app.post(&path, grace.clone()).await;
    app.clock.advance(100);
    let second = app.post(&path, grace).await;
    let second = str_of(&second.body, "token");
    let first = str_of(&first.body, "token");
    let reply = introspect(&app, Some(&app.root), &form(second)).await;
    assert_eq!(reply.body["iat"], START + 200);
    let reply = introspect(&app, Some(&app.root), &form(first)).await;
    assert_eq!(
        reply.body["iat"],
        START + 100,
        "issued by the first rotation"
    );
}

on_every_backend!(
    a_valid_token_is_active_with_its_claims,
    anything_not_valid_is_just_inactive,
    the_caller_must_be_a_management_credential,
    bad_requests_are_4xx,
    iat_is_when_the_presented_secret_was_issued,
);
