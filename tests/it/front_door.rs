//! The front door (`http::front`) answers `GET /authorize` without the
//! router: every answer it gives must be the one the router's handler gives,
//! with the same request context (id, envelope, metrics), and everything
//! else must still reach the router.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::common::{Reply, TestApp};

/// A GET of `path` with these headers, as a gateway would send it.
fn request(path: &str, headers: &[(&str, String)]) -> Request<Body> {
    let mut request = Request::builder().method(Method::GET).uri(path);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.body(Body::empty()).unwrap()
}

/// What must be equal between the two paths: status, body and headers,
/// the request id included (each request names its own).
fn comparable(reply: &Reply) -> (StatusCode, Value, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    (reply.status, reply.body.clone(), headers)
}

/// What a case is called, its query, and its headers.
type Case<'a> = (&'a str, String, Vec<(&'a str, String)>);

#[tokio::test]
async fn the_front_door_answers_as_the_router_does() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let token = app.agent_token(&t, json!({ "name": "gw" })).await;
    let valid = token["token"].as_str().unwrap().to_string();
    let deleted = app.agent_token(&t, json!({ "name": "gone" })).await;
    let gone = deleted["token"].as_str().unwrap().to_string();
    let reply = app
        .delete(t.token_path(deleted["id"].as_str().unwrap()))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    // Well-formed (checksum and all) but never issued.
    let forged = agentkey::token::Secret::generate(agentkey::token::SecretKind::Agent);
    let never_issued = forged.expose().to_string();
    let bearer = |token: &str| ("authorization", format!("Bearer {token}"));
    let many_headers: Vec<(&str, String)> = (0..70)
        .map(|i| ("x-filler", format!("{i}")))
        .chain([bearer(&valid)])
        .collect();
    let cases: Vec<Case> = vec![
        ("valid", String::new(), vec![bearer(&valid)]),
        (
            "valid, its deployment",
            format!("?deploymentId={}", t.deployment),
            vec![bearer(&valid)],
        ),
        (
            "valid, another deployment",
            "?deploymentId=elsewhere".into(),
            vec![bearer(&valid)],
        ),
        (
            "a bad query",
            "?deploymentId=a&deploymentId=b".into(),
            vec![bearer(&valid)],
        ),
        (
            "an unknown parameter",
            "?other=1".into(),
            vec![bearer(&valid)],
        ),
        ("deleted", String::new(), vec![bearer(&gone)]),
        ("never issued", String::new(), vec![bearer(&never_issued)]),
        ("malformed", String::new(), vec![bearer("akagt_nope")]),
        ("no credential", String::new(), vec![]),
        (
            "not bearer",
            String::new(),
            vec![("authorization", format!("Basic {valid}"))],
        ),
        ("too many headers", String::new(), many_headers),
    ];
    let mut statuses = Vec::new();
    for base in ["/v1", "/iam/v1beta1"] {
        for (n, (what, query, headers)) in cases.iter().enumerate() {
            let path = format!("{base}/authorize{query}");
            let mut headers = headers.clone();
            headers.push(("x-request-id", format!("case-{n}")));
            let front = app.raw(request(&path, &headers)).await;
            let router =
                TestApp::reply_of(app.router.without_door(), request(&path, &headers)).await;
            assert_eq!(comparable(&front), comparable(&router), "{what} at {path}");
            assert_eq!(
                front.header("x-request-id"),
                Some(format!("case-{n}").as_str())
            );
            if front.status != StatusCode::OK {
                front.assert_error(front.status.as_u16());
            }
            statuses.push((*what, front.status.as_u16()));
        }
    }
    // The cases mean what they say: each status is the expected one.
    let expected = [200, 200, 403, 400, 200, 401, 401, 401, 401, 401, 431];
    for (i, (what, status)) in statuses.iter().enumerate() {
        assert_eq!(*status, expected[i % expected.len()], "{what}");
    }
}

#[tokio::test]
async fn the_front_door_makes_an_id_when_the_gateway_sends_none() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let token = app.agent_token(&t, json!({ "name": "gw" })).await;
    let valid = token["token"].as_str().unwrap();
    let first = app.authorize(valid).await;
    let second = app.authorize(valid).await;
    let (a, b) = (first.header("x-request-id"), second.header("x-request-id"));
    assert!(a.is_some_and(|id| !id.is_empty()), "{:?}", first.headers);
    assert_ne!(a, b, "each answer has an id of its own");
    // A gateway's id that is not plain is not echoed: a new one is made.
    let reply = app
        .raw(request(
            "/v1/authorize",
            &[("x-request-id", "<script>".into())],
        ))
        .await;
    let id = reply.assert_error(401);
    assert_ne!(id, "<script>");
}

#[tokio::test]
async fn the_front_door_counts_under_the_routes_the_router_names() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let token = app.agent_token(&t, json!({ "name": "gw" })).await;
    let valid = token["token"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(app.authorize(valid).await.status, StatusCode::OK);
    }
    let bearer = [("authorization", format!("Bearer {valid}"))];
    let reply = app.raw(request("/iam/v1beta1/authorize", &bearer)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.authorize("akagt_nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    // The router's own path for the same route, counted under the same label.
    let reply =
        TestApp::reply_of(app.router.without_door(), request("/v1/authorize", &bearer)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let metrics = app.get("/metrics").await;
    let text = String::from_utf8(metrics.raw).unwrap();
    let count = |labels: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(&format!("agentkey_http_requests_total{{{labels}}}")))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    };
    assert_eq!(
        count(r#"method="GET",route="/v1/authorize",status="200""#),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        count(r#"method="GET",route="/iam/v1beta1/authorize",status="200""#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"method="GET",route="/v1/authorize",status="401""#),
        Some(1.0)
    );
}

#[tokio::test]
async fn other_methods_on_the_route_reach_the_router() {
    let app = TestApp::new().await;
    let reply = app.send(Method::POST, "/v1/authorize", None, None).await;
    let message = reply.assert_error(405);
    assert!(message.contains("/v1/authorize"), "{message}");
    let reply = app
        .send(Method::DELETE, "/iam/v1beta1/authorize", None, None)
        .await;
    reply.assert_error(405);
    // HEAD is a GET without a body: the router's GET route answers it.
    let reply = app.send(Method::HEAD, "/v1/authorize", None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A path that only looks like the route is not the route.
    app.send(Method::GET, "/v1/authorize/", None, None)
        .await
        .assert_error(404);
    app.send(Method::GET, "/v2/authorize", None, None)
        .await
        .assert_error(404);
}

/// A head at the limit (64 headers) without an id: the id made for it is
/// not counted against the client, on either path.
#[tokio::test]
async fn a_head_at_the_limit_is_measured_as_the_client_sent_it() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let token = app.agent_token(&t, json!({ "name": "gw" })).await;
    let valid = token["token"].as_str().unwrap();
    let headers: Vec<(&str, String)> = (0..63)
        .map(|i| ("x-filler", format!("{i}")))
        .chain([("authorization", format!("Bearer {valid}"))])
        .collect();
    let front = app.raw(request("/v1/authorize", &headers)).await;
    assert_eq!(front.status, StatusCode::OK, "{}", front.body);
    let router = TestApp::reply_of(
        app.router.without_door(),
        request("/v1/authorize", &headers),
    )
    .await;
    assert_eq!(router.status, StatusCode::OK, "{}", router.body);
    // One more is one too many, on both.
    let mut over = headers.clone();
    over.push(("x-filler", "64".into()));
    app.raw(request("/v1/authorize", &over))
        .await
        .assert_error(431);
    TestApp::reply_of(app.router.without_door(), request("/v1/authorize", &over))
        .await
        .assert_error(431);
}
