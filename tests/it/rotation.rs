//! Rotation with a grace window, on a manual clock.

use crate::common::{str_of, TestApp, START};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn rotate(app: &TestApp, path: &str, body: Option<Value>) -> crate::common::Reply {
    app.send(
        Method::POST,
        &format!("{path}/rotate"),
        Some(&app.root),
        body,
    )
    .await
}

async fn rotation_answers_a_new_secret_once_and_records_when(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(&t, json!({ "name": "a", "tokenExpiryPeriodInDays": 10 }))
        .await;
    let path = t.token_path(str_of(&created, "id"));
    app.clock.advance(100);

    let rotated = rotate(&app, &path, None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    let new_secret = str_of(&rotated.body, "token");
    assert!(new_secret.starts_with("akagt_"));
    assert_ne!(new_secret, str_of(&created, "token"));
    assert_eq!(rotated.body["id"], created["id"]);
    assert_eq!(
        rotated.body["lastRotatedAt"],
        agentkey::clock::rfc3339(START + 100)
    );
    assert_eq!(
        rotated.body["updatedAt"],
        agentkey::clock::rfc3339(START + 100)
    );
    assert_eq!(rotated.body["createdAt"], created["createdAt"]);
    assert_eq!(
        rotated.body["endAt"], created["endAt"],
        "rotation does not extend expiry"
    );
    assert!(new_secret.starts_with(str_of(&rotated.body, "shortToken")));

    let got = app.get(&path).await;
    assert!(got.body.get("token").is_none());
    assert_eq!(got.body["lastRotatedAt"], rotated.body["lastRotatedAt"]);
    assert_eq!(got.body["shortToken"], rotated.body["shortToken"]);

    // No grace asked for: the old secret stops at once, the new one works.
    app.authorize(str_of(&created, "token"))
        .await
        .assert_error(401);
    assert_eq!(app.authorize(new_secret).await.status, StatusCode::OK);
}

async fn the_old_secret_verifies_until_the_grace_window_ends(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let old = str_of(&created, "token").to_string();
    let path = t.token_path(str_of(&created, "id"));
    assert_eq!(
        app.authorize(&old).await.status,
        StatusCode::OK,
        "cached before the rotation"
    );

    let rotated = rotate(&app, &path, Some(json!({ "gracePeriodSeconds": 60 }))).await;
    let new = str_of(&rotated.body, "token").to_string();

    let during = app.authorize(&old).await;
    assert_eq!(during.status, StatusCode::OK);
    assert_eq!(
        during.body["expiresAt"],
        agentkey::clock::rfc3339(START + 60),
        "reports the window's end"
    );
    assert_eq!(during.body["tokenId"], created["id"]);
    assert!(app.authorize(&new).await.body.get("expiresAt").is_none());

    app.clock.advance(59);
    assert_eq!(
        app.authorize(&old).await.status,
        StatusCode::OK,
        "last second of grace"
    );
    app.clock.advance(1);
    app.authorize(&old).await.assert_error(401);
    assert_eq!(app.authorize(&new).await.status, StatusCode::OK);
}

async fn rotating_again_ends_the_earlier_window_at_once(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let first = str_of(&created, "token").to_string();
    let path = t.token_path(str_of(&created, "id"));

    let second = rotate(&app, &path, Some(json!({ "gracePeriodSeconds": 3600 }))).await;
    let second = str_of(&second.body, "token").to_string();
    assert_eq!(app.authorize(&first).await.status, StatusCode::OK);

    let third = rotate(&app, &path, Some(json!({ "gracePeriodSeconds": 3600 }))).await;
    let third = str_of(&third.body, "token").to_string();
    app.authorize(&first).await.assert_error(401);
    assert_eq!(
        app.authorize(&second).await.status,
        StatusCode::OK,
        "now in its own window"
    );
    assert_eq!(app.authorize(&third).await.status, StatusCode::OK);
}

async fn deleting_a_token_in_its_grace_window_revokes_both_secrets(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let old = str_of(&created, "token").to_string();
    let path = t.token_path(str_of(&created, "id"));
    let rotated = rotate(&app, &path, Some(json!({ "gracePeriodSeconds": 3600 }))).await;
    let new = str_of(&rotated.body, "token").to_string();
    assert_eq!(app.authorize(&old).await.status, StatusCode::OK);
    assert_eq!(app.authorize(&new).await.status, StatusCode::OK);

    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    app.authorize(&old).await.assert_error(401);
    app.authorize(&new).await.assert_error(401);
}

async fn bad_rotations_are_refused_and_change_nothing(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let secret = str_of(&created, "token");
    let path = t.token_path(str_of(&created, "id"));

    for (body, field) in [
        (json!({ "gracePeriodSeconds": -1 }), "gracePeriodSeconds"),
        (
            json!({ "gracePeriodSeconds": 86_401 }),
            "gracePeriodSeconds",
        ),
        (json!({ "gracePeriodSeconds": "60" }), "gracePeriodSeconds"),
    ] {
        let reply = rotate(&app, &path, Some(body)).await;
        reply.assert_error(400);
        assert_eq!(reply.fields(), [field]);
    }
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(format!("{path}/rotate"))
        .header("authorization", format!("Bearer {}", app.root))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("60"))
        .unwrap();
    app.raw(request).await.assert_error(415);
    rotate(&app, &t.token_path("c000000000000000000000000"), None)
        .await
        .assert_error(404);
    let other = app.tenant().await;
    rotate(&app, &other.token_path(str_of(&created, "id")), None)
        .await
        .assert_error(404);
    let agent = app
        .send(Method::POST, &format!("{path}/rotate"), Some(secret), None)
        .await;
    agent.assert_error(403);

    assert_eq!(
        app.authorize(secret).await.status,
        StatusCode::OK,
        "still the same secret"
    );
    assert!(app.get(&path).await.body.get("lastRotatedAt").is_none());
    // An empty body means no options, whatever the content type says; an
    // untyped body that is not empty is refused.
    for content_type in [Some("application/json"), None] {
        let mut request = axum::http::Request::builder()
            .method(Method::POST)
            .uri(format!("{path}/rotate"))
            .header("authorization", format!("Bearer {}", app.root));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = app
            .raw(request.body(axum::body::Body::empty()).unwrap())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{content_type:?}: {}",
            reply.body
        );
    }
    let untyped = axum::http::Request::builder()
        .method(Method::POST)
        .uri(format!("{path}/rotate"))
        .header("authorization", format!("Bearer {}", app.root))
        .body(axum::body::Body::from(r#"{"gracePeriodSeconds":5}"#))
        .unwrap();
    app.raw(untyped).await.assert_error(415);
    // The largest grace window is accepted.
    let reply = rotate(&app, &path, Some(json!({ "gracePeriodSeconds": 86_400 }))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

on_every_backend!(
    rotation_answers_a_new_secret_once_and_records_when,
    the_old_secret_verifies_until_the_grace_window_ends,
    rotating_again_ends_the_earlier_window_at_once,
    deleting_a_token_in_its_grace_window_revokes_both_secrets,
    bad_rotations_are_refused_and_change_nothing,
);
