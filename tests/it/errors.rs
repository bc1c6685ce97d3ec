//! What every route shares: authentication, the `Error` envelope, request
//! ids, unknown routes and methods, panics.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn management_calls_without_a_valid_credential_are_401(app: TestApp) {
    let t = app.tenant().await;
    let forged_root = agentkey::token::Secret::generate(agentkey::token::SecretKind::Root);
    for token in [
        None,
        Some("nonsense"),
        Some(forged_root.expose()),
        Some(&app.root[..app.root.len() - 2]),
    ] {
        for (method, path) in [
            (Method::GET, "/v1/organizations".to_string()),
            (Method::POST, "/v1/organizations".to_string()),
            (Method::GET, t.tokens_path()),
            (Method::POST, t.tokens_path()),
            (
                Method::DELETE,
                format!("/v1/organizations/{}/deployments/{}", t.org, t.deployment),
            ),
        ] {
            let body = (method == Method::POST).then(|| json!({ "name": "x" }));
            let reply = app.send(method.clone(), &path, token, body).await;
            reply.assert_error(401);
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "{method} {path}"
            );
        }
    }
    // Nothing was created or deleted by any of those.
    assert_eq!(app.get("/v1/organizations").await.body["totalCount"], 1);
    assert_eq!(app.get(t.tokens_path()).await.body["totalCount"], 0);
}

async fn authentication_comes_before_validation(app: TestApp) {
    let reply = app
        .send(
            Method::POST,
            "/v1/organizations",
            Some("bad"),
            Some(json!({})),
        )
        .await;
    reply.assert_error(401);
}

async fn unknown_routes_and_methods_answer_the_envelope(app: TestApp) {
    let reply = app.get("/v1/nothing-here").await;
    let message = reply.assert_error(404);
    assert!(message.contains("/v1/nothing-here"), "{message}");
    app.get("/nothing").await.assert_error(404);
    // The root leads people to the console.
    let root = app.get("/").await;
    assert_eq!(root.status.as_u16(), 303);
    assert_eq!(root.header("location"), Some("/console/"));

    let reply = app
        .send(Method::PUT, "/v1/organizations", Some(&app.root), None)
        .await;
    let message = reply.assert_error(405);
    assert!(
        message.contains("PUT") && message.contains("/v1/organizations"),
        "{message}"
    );
    assert!(reply.header("allow").is_some_and(|a| a.contains("POST")));
    let reply = app
        .send(Method::PATCH, "/iam/v1beta1/authorize", None, None)
        .await;
    reply.assert_error(405);
    app.send(Method::POST, "/healthz", None, None)
        .await
        .assert_error(405);
}

async fn request_ids_are_unique_or_taken_from_the_gateway(app: TestApp) {
    let a = app.get("/healthz").await;
    let b = app.get("/healthz").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    assert!(a.header("x-request-id").is_some());

    let with_id = |id: &str| {
        Request::builder()
            .uri("/v1/nope")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let reply = app.raw(with_id("gw-1234.abc")).await;
    assert_eq!(reply.assert_error(404), "no route for GET /v1/nope");
    assert_eq!(reply.body["requestId"], "gw-1234.abc");
    // An id that is too long or odd is replaced, not echoed.
    let reply = app.raw(with_id(&"x".repeat(200))).await;
    reply.assert_error(404);
    assert_ne!(reply.body["requestId"], "x".repeat(200));
    let reply = app.raw(with_id("<script>")).await;
    assert_ne!(reply.body["requestId"], "<script>");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_envelope() {
    async fn boom() -> &'static str {
        panic!("handler bug")
    }
    let router = agentkey::http::with_middleware(
        Router::new().route("/boom", get(boom)),
        std::sync::Arc::new(agentkey::metrics::Metrics::new()),
    );
    let response = router
        .oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["statusCode"], 500);
    assert!(
        !body["message"].as_str().unwrap().contains("handler bug"),
        "details stay in the log"
    );
    assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()));
}

async fn health_and_readiness(app: TestApp) {
    let reply = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (reply.status, reply.body.clone()),
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    let reply = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (reply.status, reply.body.clone()),
        (StatusCode::OK, json!({ "status": "ready" }))
    );

    // With the database closed, readiness fails (and says so), liveness does not.
    app.store.close().await;
    let reply = app.send(Method::GET, "/readyz", None, None).await;
    reply.assert_error(503);
    assert_eq!(
        app.send(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    // A request that needs the database is a 500 envelope, not a hang or a panic.
    app.get("/v1/organizations").await.assert_error(500);
}

async fn the_openapi_document_covers_every_route(app: TestApp) {
    let reply = app.send(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = reply.body["paths"].as_object().unwrap();
    let expected = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/openapi.json", "get"),
        ("/v1/authorize", "get"),
        ("/v1/introspect", "post"),
        ("/v1/organizations/{organizationId}/audit-logs", "get"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}/rotate", "post"),
        ("/v1/organizations", "get"),
        ("/v1/organizations", "post"),
        ("/v1/organizations/{organizationId}", "get"),
        ("/v1/organizations/{organizationId}", "post"),
        ("/v1/organizations/{organizationId}/workspaces", "get"),
        ("/v1/organizations/{organizationId}/workspaces", "post"),
        ("/v1/organizations/{organizationId}/workspaces/{workspaceId}", "get"),
        ("/v1/organizations/{organizationId}/workspaces/{workspaceId}", "post"),
        ("/v1/organizations/{organizationId}/workspaces/{workspaceId}", "delete"),
        ("/v1/organizations/{organizationId}/deployments", "get"),
        ("/v1/organizations/{organizationId}/deployments", "post"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}", "get"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}", "post"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}", "delete"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens", "get"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens", "post"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}", "get"),
        ("/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}", "delete"),
        ("/v1/organizations/{organizationId}/tokens", "get"),
        ("/v1/organizations/{organizationId}/tokens", "post"),
        ("/v1/organizations/{organizationId}/tokens/{tokenId}", "get"),
        ("/v1/organizations/{organizationId}/tokens/{tokenId}", "post"),
        ("/v1/organizations/{organizationId}/tokens/{tokenId}", "delete"),
        ("/v1/organizations/{organizationId}/tokens/{tokenId}/roles", "post"),
        ("/v1/organizations/{organizationId}/tokens/{tokenId}/rotate", "post"),
        ("/v1/organizations/{organizationId}/allowed-ip-address-ranges", "get"),
        ("/v1/organizations/{organizationId}/allowed-ip-address-ranges", "post"),
        ("/v1/organizations/{organizationId}/allowed-ip-address-ranges/bulk-create", "post"),
        ("/v1/organizations/{organizationId}/allowed-ip-address-ranges/bulk-delete", "post"),
        ("/v1/organizations/{organizationId}/allowed-ip-address-ranges/{allowedIpAddressRangeId}", "delete"),
        ("/v1/organizations/{organizationId}/webhooks", "get"),
        ("/v1/organizations/{organizationId}/webhooks", "post"),
        ("/v1/organizations/{organizationId}/webhooks/{webhookId}", "get"),
        ("/v1/organizations/{organizationId}/webhooks/{webhookId}", "delete"),
        ("/v1/organizations/{organizationId}/webhooks/{webhookId}/rotate", "post"),
        ("/v1/organizations/{organizationId}/webhooks/{webhookId}/deliveries", "get"),
        ("/v1/organizations/{organizationId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", "post"),
    ];
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "no undocumented extras: {:?}",
        paths.keys()
    );
    for (path, method) in expected {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"]["200"].is_object() || operation["responses"]["204"].is_object()
        );
        // And the router really serves it: a documented route is never 404/405.
        let concrete = path
            .replace("{organizationId}", "c000000000000000000000000")
            .replace("{deploymentId}", "c000000000000000000000000")
            .replace("{workspaceId}", "c000000000000000000000000")
            .replace("{agentTokenId}", "c000000000000000000000000")
            .replace("{tokenId}", "c000000000000000000000000");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = (method == Method::POST).then(|| json!({ "name": "x", "workspaceId": "x" }));
        let reply = app
            .send(method.clone(), &concrete, Some(&app.root), body)
            .await;
        let unrouted = reply.status == StatusCode::METHOD_NOT_ALLOWED
            || (reply.status == StatusCode::NOT_FOUND
                && reply.body["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("no route"));
        assert!(!unrouted, "{method} {concrete}: {}", reply.body);
    }
    let agent_get = &paths["/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}"]["get"];
    for status in ["400", "401", "403", "404", "500"] {
        assert!(
            agent_get["responses"][status].is_object(),
            "documents {status}"
        );
    }
    assert!(reply.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn secrets_never_reach_the_database_file() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let mut secrets = vec![app.root.clone()];
    for i in 0..5 {
        let created = app
            .agent_token(&t, json!({ "name": format!("t{i}") }))
            .await;
        secrets.push(created["token"].as_str().unwrap().to_string());
    }
    for secret in &secrets {
        assert_eq!(
            app.authorize(secret).await.status.is_success(),
            secret.starts_with("akagt_")
        );
    }
    app.state.usage.flush(app.store.as_ref()).await.unwrap();
    app.store.close().await; // checkpoints the WAL into the main file

    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = format!("{}{suffix}", app.db_path.as_ref().unwrap().display());
        if let Ok(content) = std::fs::read(&path) {
            bytes.extend(content);
        }
    }
    assert!(bytes.len() > 4096, "read the database");
    let haystack = String::from_utf8_lossy(&bytes);
    for secret in &secrets {
        // Neither the whole secret nor its random part alone.
        assert!(
            !haystack.contains(secret.as_str()),
            "plaintext secret in the database file"
        );
        let body = &secret[secret.find('_').unwrap() + 1..];
        assert!(
            !haystack.contains(&body[..20]),
            "secret entropy in the database file"
        );
        // What is there is the digest.
        let digest = agentkey::token::Digest::of(secret).to_hex();
        if secret.starts_with("akagt_") {
            assert!(haystack.contains(&digest), "the digest is what is stored");
        }
    }
}

/// Issue 11 item 10: a name that shows nothing, or that can display as
/// something else, is refused wherever a name is taken, and nothing is made.
async fn invisible_and_bidi_names_are_refused_everywhere(app: TestApp) {
    let t = app.tenant().await;
    let api_tokens = format!("/v1/organizations/{}/tokens", t.org);
    let posts = [
        ("/v1/organizations".to_string(), json!({})),
        (format!("/v1/organizations/{}/workspaces", t.org), json!({})),
        (
            format!("/v1/organizations/{}/deployments", t.org),
            json!({ "workspaceId": t.workspace }),
        ),
        (t.tokens_path(), json!({})),
        (
            api_tokens.clone(),
            json!({ "scope": "ORGANIZATION", "entityId": t.org, "role": "ORGANIZATION_MEMBER" }),
        ),
    ];
    for (name, code, says) in [
        ("\u{200B}", "required", "must contain a visible character"),
        (
            "\u{200B}\u{2060}\u{FEFF}",
            "required",
            "must contain a visible character",
        ),
        (
            "admin\u{202E}nimda",
            "invalid_characters",
            "bidirectional control characters (found U+202E)",
        ),
        (
            "\u{2066}x\u{2069}",
            "invalid_characters",
            "bidirectional control characters (found U+2066)",
        ),
    ] {
        for (path, base) in &posts {
            let mut body = base.clone();
            body["name"] = json!(name);
            let reply = app.post(path, body).await;
            let message = reply.assert_error(400);
            assert!(message.contains(says), "{path}: {message}");
            assert_eq!(reply.fields(), ["name"], "{path}");
            assert_eq!(reply.body["fieldErrors"][0]["code"], code, "{path}");
        }
    }
    // Nothing was made: still the one of each that `tenant` made.
    assert_eq!(app.get("/v1/organizations").await.body["totalCount"], 1);
    let workspaces = app
        .get(format!("/v1/organizations/{}/workspaces", t.org))
        .await;
    assert_eq!(workspaces.body["totalCount"], 1);
    assert_eq!(app.get(t.tokens_path()).await.body["totalCount"], 0);
    assert_eq!(app.get(&api_tokens).await.body["totalCount"], 0);
}

on_every_backend!(
    invisible_and_bidi_names_are_refused_everywhere,
    management_calls_without_a_valid_credential_are_401,
    authentication_comes_before_validation,
    unknown_routes_and_methods_answer_the_envelope,
    request_ids_are_unique_or_taken_from_the_gateway,
    health_and_readiness,
    the_openapi_document_covers_every_route,
);

/// `GET /docs` serves Swagger UI from files embedded in the binary, reading
/// the served OpenAPI document.
#[tokio::test]
async fn the_api_reference_is_served_from_the_binary() {
    let app = TestApp::new().await;
    let page = app.send(Method::GET, "/docs/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.raw).contains("swagger-ui"));
    let init = app
        .send(Method::GET, "/docs/swagger-initializer.js", None, None)
        .await;
    assert_eq!(init.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&init.raw).contains("\"url\": \"/v1/openapi.json\""));
    let bundle = app
        .send(Method::GET, "/docs/swagger-ui-bundle.js", None, None)
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(
        bundle.raw.len() > 100_000,
        "the bundle itself, not a link to a CDN"
    );
}
