//! `GET /metrics` after known traffic: the names and the values.

use crate::common::{str_of, TestApp};
use axum::http::{Method, StatusCode};
use serde_json::json;

/// The value of the sample `name{labels}` in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn metrics_count_known_traffic(app: TestApp) {
    let t = app.tenant().await;
    let valid = str_of(&app.agent_token(&t, json!({ "name": "v" })).await, "token").to_string();
    let expiring = app
        .agent_token(&t, json!({ "name": "e", "tokenExpiryPeriodInDays": 1 }))
        .await;
    let rotated = app.agent_token(&t, json!({ "name": "r" })).await;
    let old = str_of(&rotated, "token").to_string();
    let rotate = format!("{}/rotate", t.token_path(str_of(&rotated, "id")));
    app.post(rotate, json!({ "gracePeriodSeconds": 10 })).await;
    let unissued = agentkey::token::Secret::generate(agentkey::token::SecretKind::Agent);

    for _ in 0..3 {
        app.authorize(&valid).await; // 1 miss, then 2 hits: 3 valid
    }
    app.clock.advance(86_400); // expiring's end, and old's grace window, have passed
    app.authorize(str_of(&expiring, "token")).await; // expired
    app.authorize(&old).await; // revoked (rotated away)
    app.authorize(unissued.expose()).await; // unknown (a miss)
    app.authorize(unissued.expose()).await; // unknown (a negative hit)
    app.authorize("akagt_nonsense").await; // malformed

    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(reply.raw.clone()).unwrap();
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));

    assert_eq!(
        value(r#"agentkey_verifications_total{outcome="valid"}"#),
        3.0
    );
    assert_eq!(
        value(r#"agentkey_verifications_total{outcome="expired"}"#),
        1.0
    );
    assert_eq!(
        value(r#"agentkey_verifications_total{outcome="revoked"}"#),
        1.0
    );
    assert_eq!(
        value(r#"agentkey_verifications_total{outcome="unknown"}"#),
        2.0
    );
    assert_eq!(
        value(r#"agentkey_verifications_total{outcome="malformed"}"#),
        1.0
    );
    assert_eq!(value(r#"agentkey_cache_lookups_total{result="hit"}"#), 2.0);
    assert_eq!(value(r#"agentkey_cache_lookups_total{result="miss"}"#), 4.0);
    assert_eq!(
        value(r#"agentkey_cache_lookups_total{result="negative_hit"}"#),
        1.0
    );
    assert_eq!(
        value(r#"agentkey_http_requests_total{method="GET",route="/v1/authorize",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(r#"agentkey_http_requests_total{method="GET",route="/v1/authorize",status="401"}"#),
        5.0
    );
    assert_eq!(
        value(
            r#"agentkey_http_request_duration_seconds_count{method="GET",route="/v1/authorize"}"#
        ),
        8.0
    );
    assert_eq!(value(r#"agentkey_agent_tokens{state="active"}"#), 2.0);
    assert_eq!(value(r#"agentkey_agent_tokens{state="expired"}"#), 1.0);
    assert!(value(r#"agentkey_db_pool_connections{state="idle"}"#) >= 0.0);
    assert!(value(r#"agentkey_db_pool_connections{state="in_use"}"#) >= 0.0);
    assert_eq!(value(r#"agentkey_cache_entries{kind="negative"}"#), 1.0);
    // Labels are route patterns, never concrete ids.
    assert!(!text.contains(&t.deployment), "an id in a label");
    assert!(text.contains(
        r#"route="/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens""#
    ));
}

async fn metrics_need_the_root_credential(app: TestApp) {
    let t = app.tenant().await;
    let agent = app.agent_token(&t, json!({ "name": "a" })).await;
    app.send(Method::GET, "/metrics", None, None)
        .await
        .assert_error(401);
    app.send(Method::GET, "/metrics", Some(str_of(&agent, "token")), None)
        .await
        .assert_error(403);
}

on_every_backend!(
    metrics_count_known_traffic,
    metrics_need_the_root_credential
);
