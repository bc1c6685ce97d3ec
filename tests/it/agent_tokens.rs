//! The four Astro v1 Agent API token endpoints through the real router.

use crate::common::{str_of, TestApp, START};
use agentkey::app::Settings;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn create_answers_the_astro_api_token_shape_with_the_secret_once(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(
            &t,
            json!({ "name": "agent-1", "description": "runs dags", "tokenExpiryPeriodInDays": 30 }),
        )
        .await;

    let id = str_of(&created, "id");
    assert_eq!(id.len(), 25);
    assert!(
        id.starts_with('c')
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    assert_eq!(created["name"], "agent-1");
    assert_eq!(created["description"], "runs dags");
    assert_eq!(created["kind"], "STANDARD");
    assert_eq!(created["scope"], "DEPLOYMENT");
    assert_eq!(created["startAt"], "2022-11-22T04:37:12Z");
    assert_eq!(created["createdAt"], "2022-11-22T04:37:12Z");
    assert_eq!(created["updatedAt"], "2022-11-22T04:37:12Z");
    assert_eq!(created["endAt"], "2022-12-22T04:37:12Z");
    assert_eq!(created["expiryPeriodInDays"], 30);
    assert_eq!(
        created["roles"],
        json!([{ "entityId": t.deployment, "entityType": "DEPLOYMENT", "role": "DEPLOYMENT_AGENT", "deploymentId": t.deployment }])
    );
    assert_eq!(created["createdBy"]["subjectType"], "SERVICEKEY");
    assert_eq!(created["createdBy"]["apiTokenName"], "root");
    assert_eq!(created["updatedBy"], created["createdBy"]);
    let secret = str_of(&created, "token");
    assert!(secret.starts_with("akagt_"));
    let short = str_of(&created, "shortToken");
    assert!(secret.starts_with(short) && short.len() < secret.len() / 2);

    // Never again: not in get, not in list.
    let got = app.get(&t.token_path(id)).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.get("token").is_none());
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("token");
    assert_eq!(
        got.body, expected,
        "get answers what create did, less the secret"
    );
    let listed = app.get(&t.tokens_path()).await;
    assert_eq!(listed.body["tokens"][0], expected);
    for reply in [&got, &listed] {
        assert!(!String::from_utf8_lossy(&reply.raw).contains(secret));
    }
}

async fn a_token_that_never_expires_omits_end_and_period(app: TestApp) {
    let t = app.tenant().await;
    // The Terraform provider sends "" for an unset description.
    let created = app
        .agent_token(&t, json!({ "name": "forever", "description": "" }))
        .await;
    assert!(created.get("endAt").is_none(), "{created}");
    assert!(created.get("expiryPeriodInDays").is_none(), "{created}");
    assert!(created.get("lastUsedAt").is_none());
    assert!(created.get("lastRotatedAt").is_none());
    assert_eq!(created["description"], "");
    let got = app.get(&t.token_path(str_of(&created, "id"))).await;
    assert!(got.body.get("endAt").is_none() && got.body.get("expiryPeriodInDays").is_none());
}

async fn delete_is_204_with_an_empty_body_and_a_second_delete_is_404(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let path = t.token_path(str_of(&created, "id"));

    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());
    app.delete(&path).await.assert_error(404);
    app.get(&path).await.assert_error(404);
    assert_eq!(app.get(&t.tokens_path()).await.body["totalCount"], 0);
}

async fn the_older_base_path_serves_the_same_api(app: TestApp) {
    let t = app.tenant().await;
    let created = app.agent_token(&t, json!({ "name": "a" })).await;
    let old = t
        .token_path(str_of(&created, "id"))
        .replacen("/v1/", "/iam/v1beta1/", 1);
    assert_eq!(app.get(&old).await.body["id"], created["id"]);
    let created = app
        .post(
            &t.tokens_path().replacen("/v1/", "/iam/v1beta1/", 1),
            json!({ "name": "b" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(app.delete(&old).await.status, StatusCode::NO_CONTENT);
}

async fn unknown_or_foreign_ids_are_404(app: TestApp) {
    let a = app.tenant().await;
    let b = app.tenant().await;
    let token = app.agent_token(&a, json!({ "name": "a" })).await;
    let id = str_of(&token, "id");
    let missing = "c000000000000000000000000";

    // The token exists, but under another deployment or organization.
    app.get(&b.token_path(id)).await.assert_error(404);
    app.delete(&b.token_path(id)).await.assert_error(404);
    let wrong_org = format!(
        "/v1/organizations/{}/deployments/{}/agent-tokens/{id}",
        b.org, a.deployment
    );
    app.get(&wrong_org).await.assert_error(404);
    app.delete(&wrong_org).await.assert_error(404);
    let wrong_org_list = format!(
        "/v1/organizations/{}/deployments/{}/agent-tokens",
        b.org, a.deployment
    );
    app.get(&wrong_org_list).await.assert_error(404);
    let create = app.post(&wrong_org_list, json!({ "name": "x" })).await;
    create.assert_error(404);

    // Unknown organization, deployment, token; and ids of the wrong shape.
    app.get(&format!(
        "/v1/organizations/{missing}/deployments/{}/agent-tokens",
        a.deployment
    ))
    .await
    .assert_error(404);
    app.get(&format!(
        "/v1/organizations/{}/deployments/{missing}/agent-tokens",
        a.org
    ))
    .await
    .assert_error(404);
    app.get(&a.token_path(missing)).await.assert_error(404);
    app.get(&a.token_path("not-an-id")).await.assert_error(404);
    app.get(&a.token_path(&"c".repeat(5000)))
        .await
        .assert_error(404);

    // And the token is untouched.
    assert_eq!(app.get(&a.token_path(id)).await.status, StatusCode::OK);
}

async fn the_51st_token_is_refused_and_deleting_one_makes_room(app: TestApp) {
    let t = app.tenant().await;
    let mut last = Value::Null;
    for i in 0..50 {
        last = app
            .agent_token(&t, json!({ "name": format!("agent-{i}") }))
            .await;
    }
    let refused = app
        .post(&t.tokens_path(), json!({ "name": "one-too-many" }))
        .await;
    let message = refused.assert_error(400);
    assert!(message.contains("50"), "{message}");
    assert!(message.contains("maximum"), "{message}");
    assert_eq!(
        app.get(&t.tokens_path()).await.body["totalCount"],
        50,
        "nothing written"
    );

    app.delete(&t.token_path(str_of(&last, "id"))).await;
    assert_eq!(
        app.post(&t.tokens_path(), json!({ "name": "fits" }))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_limit_is_a_setting() {
    let app = TestApp::with_settings(Settings {
        max_agent_tokens_per_deployment: 2,
        ..Settings::default()
    })
    .await;
    let t = app.tenant().await;
    app.agent_token(&t, json!({ "name": "1" })).await;
    app.agent_token(&t, json!({ "name": "2" })).await;
    let message = app
        .post(&t.tokens_path(), json!({ "name": "3" }))
        .await
        .assert_error(400)
        .to_string();
    assert!(message.contains(" 2 "), "{message}");
    // The limit is per deployment.
    let other = app.deployment(&t.org, &t.workspace).await;
    let path = format!(
        "/v1/organizations/{}/deployments/{other}/agent-tokens",
        t.org
    );
    assert_eq!(
        app.post(&path, json!({ "name": "1" })).await.status,
        StatusCode::OK
    );
}

async fn bad_create_requests_are_400_with_field_errors_and_write_nothing(app: TestApp) {
    let t = app.tenant().await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["name"]),
        (json!({ "name": "" }), vec!["name"]),
        (json!({ "name": "   " }), vec!["name"]),
        (json!({ "name": null }), vec!["name"]),
        (json!({ "name": "x".repeat(256) }), vec!["name"]),
        (
            json!({ "name": "a", "description": "d".repeat(1001) }),
            vec!["description"],
        ),
        (
            json!({ "name": "a", "tokenExpiryPeriodInDays": 0 }),
            vec!["tokenExpiryPeriodInDays"],
        ),
        (
            json!({ "name": "a", "tokenExpiryPeriodInDays": 3651 }),
            vec!["tokenExpiryPeriodInDays"],
        ),
        (
            json!({ "name": "a", "tokenExpiryPeriodInDays": -1 }),
            vec!["tokenExpiryPeriodInDays"],
        ),
        (
            json!({ "name": "a", "tokenExpiryPeriodInDays": 1.5 }),
            vec!["tokenExpiryPeriodInDays"],
        ),
        (
            json!({ "name": "a", "tokenExpiryPeriodInDays": "30" }),
            vec!["tokenExpiryPeriodInDays"],
        ),
        (json!({ "name": 5 }), vec!["name"]),
        (json!({ "name": "nul\u{0}byte" }), vec!["name"]),
        (
            json!({ "name": "a", "description": "bell\u{7}" }),
            vec!["description"],
        ),
        (json!({ "name": ["a"] }), vec!["name"]),
        (
            json!({ "name": "", "description": "d".repeat(1001), "tokenExpiryPeriodInDays": 0 }),
            vec!["name", "description", "tokenExpiryPeriodInDays"],
        ),
    ];
    for (body, fields) in cases {
        let reply = app.post(&t.tokens_path(), body.clone()).await;
        reply.assert_error(400);
        assert_eq!(reply.fields(), fields, "for {body}");
    }
    // The limits themselves are accepted.
    let edge = json!({ "name": "n".repeat(255), "description": "d".repeat(1000), "tokenExpiryPeriodInDays": 3650 });
    assert_eq!(
        app.post(&t.tokens_path(), edge).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&t.tokens_path()).await.body["totalCount"],
        1,
        "only the valid one was written"
    );
}

async fn malformed_bodies_are_clear_4xx(app: TestApp) {
    let t = app.tenant().await;
    let path = t.tokens_path();
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = axum::http::Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header("authorization", format!("Bearer {}", app.root));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        app.raw(request.body(axum::body::Body::from(body)).unwrap())
    };
    send("{\"name\":", Some("application/json"))
        .await
        .assert_error(400);
    send("not json", Some("application/json"))
        .await
        .assert_error(400);
    send("", Some("application/json")).await.assert_error(400);
    send("[1,2]", Some("application/json"))
        .await
        .assert_error(400);
    send("{\"name\":\"a\"} trailing", Some("application/json"))
        .await
        .assert_error(400);
    send("{\"name\":\"a\"}", Some("text/plain"))
        .await
        .assert_error(415);
    send("{\"name\":\"a\"}", None).await.assert_error(415);
    assert_eq!(
        send("{\"name\":\"a\"}", Some("application/json; charset=utf-8"))
            .await
            .status,
        StatusCode::OK
    );

    let big = format!(
        "{{\"name\":\"a\",\"description\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(&path)
        .header("authorization", format!("Bearer {}", app.root))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(big))
        .unwrap();
    app.raw(request).await.assert_error(413);
    assert_eq!(app.get(&path).await.body["totalCount"], 1);
}

async fn pagination_counts_everything_and_pages_are_stable(app: TestApp) {
    let t = app.tenant().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        // Same second for all: order falls back to id, still deterministic.
        ids.push(
            str_of(
                &app.agent_token(&t, json!({ "name": format!("t{i}") }))
                    .await,
                "id",
            )
            .to_string(),
        );
    }
    let page = |q: &str| app.get(format!("{}?{q}", t.tokens_path()));

    let all = page("").await;
    assert_eq!(all.body["limit"], 20);
    assert_eq!(all.body["offset"], 0);
    assert_eq!(all.body["totalCount"], 7);
    let all_ids: Vec<&str> = all.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| str_of(t, "id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(all_ids, sorted, "default order: createdAt, then id");

    let mut paged = Vec::new();
    for offset in (0..7).step_by(3) {
        let reply = page(&format!("offset={offset}&limit=3")).await;
        assert_eq!(reply.body["totalCount"], 7);
        assert_eq!(reply.body["offset"], offset);
        assert_eq!(reply.body["limit"], 3);
        for token in reply.body["tokens"].as_array().unwrap() {
            paged.push(str_of(token, "id").to_string());
        }
    }
    assert_eq!(paged, sorted, "pages tile the list exactly");

    let empty = page("limit=0").await;
    assert_eq!(empty.body["tokens"], json!([]));
    assert_eq!(empty.body["totalCount"], 7);
    let beyond = page("offset=100").await;
    assert_eq!(beyond.body["tokens"], json!([]));
    assert_eq!(beyond.body["totalCount"], 7);
    assert_eq!(
        page("limit=1000").await.body["tokens"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

async fn an_empty_list_has_all_four_keys(app: TestApp) {
    let t = app.tenant().await;
    let reply = app.get(&t.tokens_path()).await;
    assert_eq!(
        reply.body,
        json!({ "limit": 20, "offset": 0, "tokens": [], "totalCount": 0 })
    );
}

async fn bad_list_queries_are_400_naming_the_field(app: TestApp) {
    let t = app.tenant().await;
    for (query, field) in [
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=1e3", "offset"),
        ("sorts=bogus:asc", "sorts"),
        ("sorts=name", "sorts"),
        ("sorts=name:sideways", "sorts"),
        ("sorts=name%3Aasc&sorts=token%3Adesc", "sorts"),
    ] {
        let reply = app.get(&format!("{}?{query}", t.tokens_path())).await;
        let message = reply.assert_error(400).to_string();
        assert_eq!(reply.fields(), vec![field], "{query}");
        if query.starts_with("sorts=bogus") {
            assert!(message.contains("bogus"), "names the bad value: {message}");
        }
    }
}

/// Creates tokens whose every sortable field differs, then checks each sort
/// field in both directions against the order computed here.
async fn every_sort_field_orders_both_ways(app: TestApp) {
    let t = app.tenant().await;
    let specs = [
        ("bravo", "3"),
        ("alpha", "1"),
        ("delta", "4"),
        ("charlie", "2"),
    ];
    for (i, (name, description)) in specs.iter().enumerate() {
        app.clock.advance(10 * (4 - i as i64)); // creation order differs from name order
        app.agent_token(&t, json!({ "name": name, "description": description }))
            .await;
    }
    let all = app
        .get(&format!("{}?limit=100", t.tokens_path()))
        .await
        .body["tokens"]
        .clone();
    let tokens: Vec<Value> = all.as_array().unwrap().clone();

    for (field, key) in [
        ("name", "name"),
        ("description", "description"),
        ("createdAt", "createdAt"),
        ("updatedAt", "updatedAt"),
        ("tokenStartAt", "startAt"),
        ("createdById", "createdBy"),
        ("updatedById", "updatedBy"),
    ] {
        for direction in ["asc", "desc"] {
            let reply = app
                .get(&format!("{}?sorts={field}%3A{direction}", t.tokens_path()))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{field}:{direction}");
            let got: Vec<&str> = reply.body["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| str_of(t, "id"))
                .collect();
            let mut expected = tokens.clone();
            let sort_key = |t: &Value| match key {
                "createdBy" | "updatedBy" => t[key]["id"].as_str().unwrap().to_string(),
                _ => t[key].as_str().unwrap().to_string(),
            };
            // Stable sort on the key, ties in default order (createdAt, id).
            expected.sort_by(|a, b| {
                let ord = sort_key(a).cmp(&sort_key(b));
                if direction == "desc" {
                    ord.reverse()
                } else {
                    ord
                }
            });
            let expected: Vec<&str> = expected.iter().map(|t| str_of(t, "id")).collect();
            assert_eq!(got, expected, "{field}:{direction}");
        }
    }
    // The name sort is not the default order, so the test above can fail.
    let by_name = app
        .get(&format!("{}?sorts=name:asc", t.tokens_path()))
        .await;
    let names: Vec<&str> = by_name.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| str_of(t, "name"))
        .collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta"]);
    let default: Vec<&str> = tokens.iter().map(|t| str_of(t, "name")).collect();
    assert_eq!(default, ["bravo", "alpha", "delta", "charlie"]);
}

async fn several_sorts_apply_in_order(app: TestApp) {
    let t = app.tenant().await;
    for (name, description) in [("b", "x"), ("a", "y"), ("a", "x")] {
        app.clock.advance(1);
        app.agent_token(&t, json!({ "name": name, "description": description }))
            .await;
    }
    for query in [
        "sorts=name%3Aasc&sorts=description%3Adesc",
        "sorts=name:asc,description:desc",
    ] {
        let reply = app.get(&format!("{}?{query}", t.tokens_path())).await;
        let got: Vec<(String, String)> = reply.body["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    str_of(t, "name").to_string(),
                    str_of(t, "description").to_string(),
                )
            })
            .collect();
        let expected =
            [("a", "y"), ("a", "x"), ("b", "x")].map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(got, expected, "{query}");
    }
}

async fn expiry_is_computed_from_the_creation_time(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(&t, json!({ "name": "a", "tokenExpiryPeriodInDays": 1 }))
        .await;
    assert_eq!(created["endAt"], agentkey::clock::rfc3339(START + 86_400));
}

on_every_backend!(
    create_answers_the_astro_api_token_shape_with_the_secret_once,
    a_token_that_never_expires_omits_end_and_period,
    delete_is_204_with_an_empty_body_and_a_second_delete_is_404,
    the_older_base_path_serves_the_same_api,
    unknown_or_foreign_ids_are_404,
    the_51st_token_is_refused_and_deleting_one_makes_room,
    bad_create_requests_are_400_with_field_errors_and_write_nothing,
    malformed_bodies_are_clear_4xx,
    pagination_counts_everything_and_pages_are_stable,
    an_empty_list_has_all_four_keys,
    bad_list_queries_are_400_naming_the_field,
    every_sort_field_orders_both_ways,
    several_sorts_apply_in_order,
    expiry_is_computed_from_the_creation_time,
);
