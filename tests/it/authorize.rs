//! `GET /v1/authorize`, the gateway's forward-auth check, and how agent
//! tokens are (not) accepted elsewhere.

use crate::common::{str_of, TestApp, START};
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn a_valid_token_answers_its_identity_in_body_and_headers(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(&t, json!({ "name": "a", "tokenExpiryPeriodInDays": 2 }))
        .await;
    let id = str_of(&created, "id");

    let reply = app.authorize(str_of(&created, "token")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "active": true,
            "tokenId": id,
            "organizationId": t.org,
            "deploymentId": t.deployment,
            "scope": "DEPLOYMENT",
            "expiresAt": agentkey::clock::rfc3339(START + 2 * 86_400),
        })
    );
    assert_eq!(reply.header("x-agentkey-token-id"), Some(id));
    assert_eq!(
        reply.header("x-agentkey-organization-id"),
        Some(t.org.as_str())
    );
    assert_eq!(
        reply.header("x-agentkey-deployment-id"),
        Some(t.deployment.as_str())
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    // The older base path answers too.
    let old = app
        .send(
            Method::GET,
            "/iam/v1beta1/authorize",
            Some(str_of(&created, "token")),
            None,
        )
        .await;
    assert_eq!(old.status, StatusCode::OK);
}

async fn a_token_that_never_expires_has_a_null_expiry(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let reply = app.authorize(str_of(&created, "token")).await;
    assert!(reply.body.get("expiresAt").is_none(), "omitted, not null");
}

async fn anything_but_a_valid_agent_token_is_401_invalid_token(app: TestApp) {
    let t = app.tenant().await;
    let good = str_of(&app.agent_token(&t, json!({ "name": "a" })).await, "token").to_string();
    let mut typo = good.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    // Well-formed (checksum and all) but never issued.
    let forged = agentkey::token::Secret::generate(agentkey::token::SecretKind::Agent);

    let cases: Vec<(&str, Option<&str>)> = vec![
        ("no header", None),
        ("empty", Some("")),
        ("garbage", Some("garbage")),
        ("truncated", Some(&good[..good.len() - 1])),
        ("typo", Some(&typo)),
        ("never issued", Some(forged.expose())),
        ("the root credential", Some(&app.root)),
    ];
    for (what, token) in cases {
        let reply = match token {
            Some(token) => {
                app.send(Method::GET, "/v1/authorize", Some(token), None)
                    .await
            }
            None => app.send(Method::GET, "/v1/authorize", None, None).await,
        };
        reply.assert_error(401);
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{what}"
        );
    }
    // Not "Bearer": refused the same way.
    let request = axum::http::Request::builder()
        .uri("/v1/authorize")
        .header("authorization", format!("Basic {good}"))
        .body(axum::body::Body::empty())
        .unwrap();
    app.raw(request).await.assert_error(401);
}

async fn deployment_id_restricts_which_tokens_pass(app: TestApp) {
    let t = app.tenant().await;
    let other = app.deployment(&t.org, &t.workspace).await;
    let token = str_of(&app.agent_token(&t, json!({ "name": "a" })).await, "token").to_string();

    let ok = app
        .send(
            Method::GET,
            &format!("/v1/authorize?deploymentId={}", t.deployment),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = app
        .send(
            Method::GET,
            &format!("/v1/authorize?deploymentId={other}"),
            Some(&token),
            None,
        )
        .await;
    refused.assert_error(403);
    // An invalid token is still a 401, whatever the deployment.
    let refused = app
        .send(
            Method::GET,
            &format!("/v1/authorize?deploymentId={other}"),
            Some("junk"),
            None,
        )
        .await;
    refused.assert_error(401);
}

async fn a_deleted_token_is_refused_on_the_very_next_request(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let token = str_of(&created, "token");
    assert_eq!(app.authorize(token).await.status, StatusCode::OK);
    app.delete(t.token_path(str_of(&created, "id"))).await;
    app.authorize(token).await.assert_error(401);
}

async fn deleting_a_deployment_revokes_its_tokens(app: TestApp) {
    let t = app.tenant().await;
    let kept = app.deployment(&t.org, &t.workspace).await;
    let doomed = str_of(&app.agent_token(&t, json!({ "name": "a" })).await, "token").to_string();
    let keeper_path = format!(
        "/v1/organizations/{}/deployments/{kept}/agent-tokens",
        t.org
    );
    let keeper = app.post(&keeper_path, json!({ "name": "b" })).await;
    let keeper = str_of(&keeper.body, "token").to_string();

    let reply = app
        .delete(format!(
            "/v1/organizations/{}/deployments/{}",
            t.org, t.deployment
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    app.authorize(&doomed).await.assert_error(401);
    assert_eq!(
        app.authorize(&keeper).await.status,
        StatusCode::OK,
        "other deployments untouched"
    );
    app.get(t.tokens_path()).await.assert_error(404);
}

async fn expiry_is_exact_to_the_second_and_expired_tokens_stay_listed(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(&t, json!({ "name": "a", "tokenExpiryPeriodInDays": 1 }))
        .await;
    let token = str_of(&created, "token");

    app.clock.advance(86_400 - 1);
    assert_eq!(
        app.authorize(token).await.status,
        StatusCode::OK,
        "one second before endAt"
    );
    app.clock.advance(1);
    app.authorize(token).await.assert_error(401);

    let listed = app.get(t.tokens_path()).await;
    assert_eq!(listed.body["totalCount"], 1);
    assert_eq!(listed.body["tokens"][0]["endAt"], created["endAt"]);
}

async fn last_used_at_is_recorded_in_batches_not_per_request(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let token = str_of(&created, "token");
    let path = t.token_path(str_of(&created, "id"));

    app.clock.advance(60);
    for _ in 0..3 {
        assert_eq!(app.authorize(token).await.status, StatusCode::OK);
    }
    assert!(
        app.get(&path).await.body.get("lastUsedAt").is_none(),
        "not written on the request path"
    );
    assert_eq!(
        app.state.usage.flush(app.store.as_ref()).await.unwrap(),
        1,
        "one write for three uses"
    );
    assert_eq!(
        app.get(&path).await.body["lastUsedAt"],
        agentkey::clock::rfc3339(START + 60)
    );
    assert_eq!(
        app.state.usage.flush(app.store.as_ref()).await.unwrap(),
        0,
        "nothing pending"
    );

    // A later use moves it forward; refused attempts do not count as use.
    app.clock.advance(60);
    app.authorize(token).await;
    app.authorize("akagt_junk").await;
    app.state.usage.flush(app.store.as_ref()).await.unwrap();
    assert_eq!(
        app.get(&path).await.body["lastUsedAt"],
        agentkey::clock::rfc3339(START + 120)
    );
}

async fn an_agent_token_cannot_call_the_management_api(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let token = str_of(&created, "token");
    let id = str_of(&created, "id");
    let calls = [
        (Method::GET, t.tokens_path(), None),
        (
            Method::POST,
            t.tokens_path(),
            Some(json!({ "name": "escalate" })),
        ),
        (Method::GET, t.token_path(id), None),
        (Method::DELETE, t.token_path(id), None),
        (Method::GET, "/v1/organizations".to_string(), None),
        (
            Method::POST,
            "/v1/organizations".to_string(),
            Some(json!({ "name": "x" })),
        ),
        (Method::GET, format!("/v1/organizations/{}", t.org), None),
        (
            Method::GET,
            format!("/v1/organizations/{}/deployments/{}", t.org, t.deployment),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/organizations/{}/deployments/{}", t.org, t.deployment),
            None,
        ),
        (
            Method::GET,
            format!("/v1/organizations/{}/workspaces", t.org),
            None,
        ),
    ];
    for (method, path, body) in calls {
        let reply = app.send(method.clone(), &path, Some(token), body).await;
        let message = reply.assert_error(403);
        assert!(
            message.contains("agent token"),
            "{method} {path}: {message}"
        );
    }
    assert_eq!(
        app.authorize(token).await.status,
        StatusCode::OK,
        "the token itself survived"
    );
}

/// With the database closed, only the cache can answer: a token verified
/// once keeps verifying (a hit), a digest seen to be unknown stays refused
/// (a negative hit), and malformed tokens are refused without any lookup.
async fn cache_hits_and_refusals_need_no_database(app: TestApp) {
    let t = app.tenant().await;
    let cached = str_of(&app.agent_token(&t, json!({ "name": "a" })).await, "token").to_string();
    let uncached = str_of(&app.agent_token(&t, json!({ "name": "b" })).await, "token").to_string();
    let unknown = agentkey::token::Secret::generate(agentkey::token::SecretKind::Agent);
    assert_eq!(app.authorize(&cached).await.status, StatusCode::OK);
    app.authorize(unknown.expose()).await.assert_error(401);
    assert_eq!(app.state.verifier.cache().len(), (1, 1));

    app.store.close().await;
    assert_eq!(app.authorize(&cached).await.status, StatusCode::OK, "hit");
    app.authorize(unknown.expose()).await.assert_error(401); // negative hit, not a 500
    app.authorize(&cached[..cached.len() - 1])
        .await
        .assert_error(401); // malformed
                            // The right shape with a wrong checksum misses the cache, and is
                            // refused before the read a miss would need.
    let last = if uncached.ends_with('A') { "B" } else { "A" };
    let typo = format!("{}{last}", &uncached[..uncached.len() - 1]);
    app.authorize(&typo).await.assert_error(401);
    app.authorize(&uncached).await.assert_error(500); // a miss must read, and cannot
}

async fn cached_entries_are_read_again_after_their_age_limit(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let token = str_of(&created, "token");
    assert_eq!(app.authorize(token).await.status, StatusCode::OK);
    // A change the cache is not told about (as if made by another process).
    let deleted = app
        .store
        .delete_agent_token(
            &t.org,
            &t.deployment,
            str_of(&created, "id"),
            &crate::common::audit(),
        )
        .await
        .unwrap();
    assert!(deleted.is_some());
    assert_eq!(
        app.authorize(token).await.status,
        StatusCode::OK,
        "still cached"
    );
    app.clock
        .advance(agentkey::cache::CacheLimits::default().positive_ttl);
    app.authorize(token).await.assert_error(401);
}

on_every_backend!(
    a_valid_token_answers_its_identity_in_body_and_headers,
    a_token_that_never_expires_has_a_null_expiry,
    anything_but_a_valid_agent_token_is_401_invalid_token,
    deployment_id_restricts_which_tokens_pass,
    a_deleted_token_is_refused_on_the_very_next_request,
    deleting_a_deployment_revokes_its_tokens,
    expiry_is_exact_to_the_second_and_expired_tokens_stay_listed,
    last_used_at_is_recorded_in_batches_not_per_request,
    an_agent_token_cannot_call_the_management_api,
    cache_hits_and_refusals_need_no_database,
    cached_entries_are_read_again_after_their_age_limit,
);

/// A client that gives up while its delete waits for the database must not
/// leave the revocation out of the cache: the write completes on its own,
/// and the token is refused at once, not after the cache's age limit.
#[tokio::test]
async fn a_revocation_survives_the_client_going_away() {
    use sqlx::{Connection, Executor};
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let secret = str_of(&created, "token").to_string();
    assert_eq!(
        app.authorize(&secret).await.status,
        StatusCode::OK,
        "now cached"
    );

    // Another connection holds SQLite's write lock, so the delete waits.
    let url = format!("sqlite://{}", app.db_path.as_ref().unwrap().display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    blocker.execute("BEGIN IMMEDIATE").await.unwrap();
    let path = t.token_path(str_of(&created, "id"));
    // A second is ample for the handler to reach the database, even on a
    // loaded machine; the lock holds the delete for up to the 5 s timeout.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        app.send(Method::DELETE, &path, Some(&app.root), None),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the client gave up before the delete finished"
    );
    blocker.execute("ROLLBACK").await.unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while app.authorize(&secret).await.status == StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted token still verifies"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.get(&path).await.assert_error(404);
}
