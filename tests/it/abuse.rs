//! Clients without a valid credential (issue 11, items 3 and 4): failed
//! checks are limited per client address (and successes never are), the
//! address is the TCP peer unless a trusted proxy forwards another, unknown
//! management credentials are remembered, and store reads on cache misses
//! are bounded. Requests go through the real router with the peer address
//! the server would record (`ConnectInfo`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{Reply, TestApp};
use agentkey::app::Settings;
use agentkey::clock::Clock;
use agentkey::http::client_ip::{parse_network, TrustedProxies};
use agentkey::throttle::FailureLimits;
use agentkey::token::{Secret, SecretKind};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

const NEVER_ISSUED_AGENT: fn() -> String =
    || Secret::generate(SecretKind::Agent).expose().to_string();

fn limited(burst: u32) -> Settings {
    Settings {
        auth_failures: FailureLimits {
            burst,
            per_minute: 1,
            ..FailureLimits::default()
        },
        ..Settings::default()
    }
}

/// A request from `peer`, with `token` and extra headers.
async fn from(
    app: &TestApp,
    peer: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    app.raw(request).await
}

async fn authorize_from(app: &TestApp, peer: &str, token: Option<&str>) -> Reply {
    from(app, peer, Method::GET, "/v1/authorize", token, &[], None).await
}

/// The value of one metric line, e.g. `agentkey_x{a="b"}`.
async fn metric(app: &TestApp, series: &str) -> f64 {
    let reply = app.get("/metrics").await;
    let text = String::from_utf8(reply.raw).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[track_caller]
fn assert_limited(reply: &Reply) {
    let message = reply.assert_error(429);
    assert!(
        message.contains("too many failed credential checks"),
        "{message}"
    );
    let wait: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(wait >= 1, "{wait}");
}

async fn failed_agent_tokens_are_limited_per_client_and_valid_ones_never(app: TestApp) {
    let t = app.tenant().await;
    let valid = app.agent_token(&t, json!({ "name": "a" })).await;
    let valid = valid["token"].as_str().unwrap().to_string();
    let unverified = app.agent_token(&t, json!({ "name": "b" })).await;
    let unverified = unverified["token"].as_str().unwrap().to_string();
    let unknown = NEVER_ISSUED_AGENT();
    // Verified once: from here on it is in the cache.
    assert_eq!(
        authorize_from(&app, "198.51.100.1", Some(&valid))
            .await
            .status,
        StatusCode::OK
    );

    for attempt in [None, Some("malformed"), Some(unknown.as_str())] {
        authorize_from(&app, "198.51.100.1", attempt)
            .await
            .assert_error(401);
    }
    // The fourth failure in a row is over the burst of 3.
    assert_limited(&authorize_from(&app, "198.51.100.1", Some(&unknown)).await);
    assert_limited(&authorize_from(&app, "198.51.100.1", None).await);
    // The same client's verified token is never limited.
    for _ in 0..50 {
        let reply = authorize_from(&app, "198.51.100.1", Some(&valid)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // While over the limit, what is not in the cache is not read from the
    // store at all: a flood of fresh tokens costs no database reads ...
    let misses = "agentkey_cache_lookups_total{result=\"miss\"}";
    let before = metric(&app, misses).await;
    for _ in 0..20 {
        let reply = authorize_from(&app, "198.51.100.1", Some(&NEVER_ISSUED_AGENT())).await;
        assert_limited(&reply);
    }
    // ... and a valid token this replica has not verified yet waits too
    // (Retry-After), while from any other address it verifies.
    assert_limited(&authorize_from(&app, "198.51.100.1", Some(&unverified)).await);
    assert_eq!(metric(&app, misses).await, before, "no store read");
    let reply = authorize_from(&app, "198.51.100.2", Some(&unverified)).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Another client has its own bucket.
    authorize_from(&app, "198.51.100.2", Some(&unknown))
        .await
        .assert_error(401);
    assert_eq!(
        metric(
            &app,
            "agentkey_auth_failures_limited_total{check=\"authorize\"}"
        )
        .await,
        23.0
    );
    assert_eq!(metric(&app, "agentkey_auth_failure_clients").await, 2.0);
}

async fn failed_management_credentials_are_limited_per_client(app: TestApp) {
    let bad_api = Secret::generate(SecretKind::Api).expose().to_string();
    let bad_root = Secret::generate(SecretKind::Root).expose().to_string();
    for token in [None, Some(bad_api.as_str()), Some(bad_root.as_str())] {
        let reply = from(
            &app,
            "203.0.113.7",
            Method::GET,
            "/v1/organizations",
            token,
            &[],
            None,
        )
        .await;
        reply.assert_error(401);
    }
    let reply = from(
        &app,
        "203.0.113.7",
        Method::POST,
        "/v1/organizations",
        Some(&bad_api),
        &[],
        Some(json!({ "name": "x" })),
    )
    .await;
    assert_limited(&reply);
    // The root credential from the same address still works.
    let reply = from(
        &app,
        "203.0.113.7",
        Method::GET,
        "/v1/organizations",
        Some(&app.root),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["totalCount"], 0, "the refused POST made nothing");
    assert_eq!(
        metric(
            &app,
            "agentkey_auth_failures_limited_total{check=\"management\"}"
        )
        .await,
        1.0
    );
}

async fn introspecting_unknown_tokens_is_limited(app: TestApp) {
    let t = app.tenant().await;
    let valid = app.agent_token(&t, json!({ "name": "a" })).await;
    let valid = valid["token"].as_str().unwrap().to_string();
    let introspect = |token: String| {
        let app = &app;
        async move {
            let body = format!("token={token}");
            let mut request = Request::builder()
                .method(Method::POST)
                .uri("/v1/introspect")
                .header("authorization", format!("Bearer {}", app.root))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap();
            let peer: SocketAddr = "192.0.2.9:1234".parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            app.raw(request).await
        }
    };
    let reply = introspect(valid.clone()).await;
    assert_eq!(reply.body["active"], true, "{}", reply.body);
    for _ in 0..3 {
        let reply = introspect(NEVER_ISSUED_AGENT()).await;
        assert_eq!(reply.body, json!({ "active": false }));
    }
    assert_limited(&introspect(NEVER_ISSUED_AGENT()).await);
    let reply = introspect(valid).await;
    assert_eq!(
        reply.body["active"], true,
        "verified tokens are never limited"
    );
    assert_eq!(
        metric(
            &app,
            "agentkey_auth_failures_limited_total{check=\"introspect\"}"
        )
        .await,
        1.0
    );
}

/// `X-Forwarded-For` and `X-Real-IP` from a peer that is not a trusted
/// proxy change nothing: not the bucket, not the audit trail.
async fn forwarded_headers_from_untrusted_peers_are_ignored(app: TestApp) {
    let unknown = NEVER_ISSUED_AGENT();
    for i in 0..3 {
        let forged = format!("10.9.9.{i}");
        let headers = [
            ("x-forwarded-for", forged.as_str()),
            ("x-real-ip", forged.as_str()),
        ];
        let reply = from(
            &app,
            "198.51.100.3",
            Method::GET,
            "/v1/authorize",
            Some(&unknown),
            &headers,
            None,
        )
        .await;
        reply.assert_error(401);
    }
    let headers = [
        ("x-forwarded-for", "10.9.9.200"),
        ("x-real-ip", "10.9.9.201"),
    ];
    let reply = from(
        &app,
        "198.51.100.3",
        Method::GET,
        "/v1/authorize",
        Some(&unknown),
        &headers,
        None,
    )
    .await;
    assert_limited(&reply);

    let made = from(
        &app,
        "198.51.100.4",
        Method::POST,
        "/v1/organizations",
        Some(&app.root),
        &headers,
        Some(json!({ "name": "o" })),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK);
    let org = made.body["id"].as_str().unwrap();
    let trail = app.get(format!("/v1/organizations/{org}/audit-logs")).await;
    assert_eq!(trail.body["auditLogs"][0]["sourceIp"], "198.51.100.4");
}

async fn a_trusted_proxy_forwards_the_client(app: TestApp) {
    let unknown = NEVER_ISSUED_AGENT();
    let via_proxy = |client: &'static str| {
        let app = &app;
        let unknown = unknown.clone();
        async move {
            // The client wrote a forged entry; the proxy appended the truth.
            let chain = format!("1.2.3.4, {client}");
            let headers = [("x-forwarded-for", chain.as_str())];
            from(
                app,
                "10.0.0.5",
                Method::GET,
                "/v1/authorize",
                Some(&unknown),
                &headers,
                None,
            )
            .await
        }
    };
    via_proxy("203.0.113.1").await.assert_error(401);
    via_proxy("203.0.113.1").await.assert_error(401);
    assert_limited(&via_proxy("203.0.113.1").await);
    // Another client behind the same proxy is not.
    via_proxy("203.0.113.2").await.assert_error(401);
    // X-Real-IP, as nginx sets it, when there is no X-Forwarded-For.
    let headers = [("x-real-ip", "203.0.113.3")];
    let made = from(
        &app,
        "10.0.0.5",
        Method::POST,
        "/v1/organizations",
        Some(&app.root),
        &headers,
        Some(json!({ "name": "o" })),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK);
    let org = made.body["id"].as_str().unwrap();
    let trail = app.get(format!("/v1/organizations/{org}/audit-logs")).await;
    assert_eq!(trail.body["auditLogs"][0]["sourceIp"], "203.0.113.3");
}

/// Item 4: an unknown API token is read from the store once, then
/// remembered; a token issued with that digest is known at once.
async fn unknown_api_tokens_are_remembered_until_issued(app: TestApp) {
    let unknown = Secret::generate(SecretKind::Api);
    let misses = "agentkey_credential_lookups_total{result=\"miss\"}";
    let hits = "agentkey_credential_lookups_total{result=\"negative_hit\"}";
    let before = metric(&app, misses).await;
    for _ in 0..10 {
        let reply = app
            .send(
                Method::GET,
                "/v1/organizations",
                Some(unknown.expose()),
                None,
            )
            .await;
        reply.assert_error(401);
    }
    // The root's own scrapes are management lookups too: count them out.
    let scrape = 1.0;
    assert_eq!(metric(&app, misses).await - before - scrape, 1.0);
    assert_eq!(metric(&app, hits).await, 9.0);

    // Secrets issued after that verify at once.
    let org = app.org("acme").await;
    let issued = app
        .post(
            format!("/v1/organizations/{org}/tokens"),
            json!({ "name": "n", "scope": "ORGANIZATION", "entityId": org, "role": "ORGANIZATION_OWNER" }),
        )
        .await;
    let id = issued.body["id"].as_str().unwrap();
    // A rotated secret is new, and verifies at once.
    let rotated = app
        .post(
            format!("/v1/organizations/{org}/tokens/{id}/rotate"),
            json!({}),
        )
        .await;
    let secret = rotated.body["token"].as_str().unwrap().to_string();
    let reply = app
        .send(Method::GET, "/v1/organizations", Some(&secret), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A digest the verifier is told was issued is no longer unknown (only
    // a test can know a secret before it is issued).
    let digest = unknown.digest();
    assert!(app
        .state
        .verifier
        .cache()
        .is_known_unknown(&digest, app.clock.now()));
    app.state.verifier.issued(&digest);
    assert!(!app
        .state
        .verifier
        .cache()
        .is_known_unknown(&digest, app.clock.now()));
}

/// Item 4: a flood of never-issued agent tokens, whose reads cannot
/// finish (the table is locked), holds at most `credential_reads`
/// connections; the rest wait their turn and are shed with a 503 after
/// `READ_WAIT`, and a management request meanwhile goes straight through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cache_misses_waits_its_turn_and_management_goes_on() {
    use sqlx::{Connection, Executor};
    let settings = Settings {
        credential_reads: 2,
        ..limited(10_000)
    };
    let Some(app) = TestApp::postgres(settings).await else {
        return;
    };
    let mut locker = sqlx::PgConnection::connect(app.database_url().unwrap())
        .await
        .unwrap();
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute("LOCK TABLE agent_tokens IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let app = std::sync::Arc::new(app);
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let reply = authorize_from(&app, "198.51.100.9", Some(&NEVER_ISSUED_AGENT())).await;
                (
                    reply.status,
                    reply.header("retry-after").map(str::to_string),
                )
            })
        })
        .collect();
    // Read without a scrape: a scrape counts agent tokens, in the locked
    // table.
    let counter = |series: &str| {
        let text = app.state.metrics.render(agentkey::metrics::Snapshot {
            active_tokens: 0,
            expired_tokens: 0,
            pool_size: 0,
            pool_idle: 0,
            cache_entries: (0, 0),
            limited_clients: 0,
            webhook_backlog: (0, 0),
        });
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let waited = "agentkey_credential_read_turns_total{result=\"waited\"}";
    let started = Instant::now();
    while counter(waited) < 18.0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the flood never queued"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (size, idle) = app.store.pool_status();
    assert!(
        size as usize - idle <= 3,
        "flood holds {} connections",
        size as usize - idle
    );
    let asked = Instant::now();
    let reply = app.get("/v1/organizations").await;
    assert_eq!(reply.status, StatusCode::OK);
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "management waited {took:?}"
    );

    // The waiting reads give up after READ_WAIT; then the lock goes.
    let mut answers = Vec::new();
    for (i, request) in flood.into_iter().enumerate() {
        if i == 0 {
            // Give the queue its time to be shed before the lock goes.
            let shed = "agentkey_credential_read_turns_total{result=\"shed\"}";
            while counter(shed) < 18.0 {
                assert!(started.elapsed() < Duration::from_secs(5), "never shed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            locker.execute("COMMIT").await.unwrap();
        }
        answers.push(request.await.unwrap());
    }
    let busy = answers
        .iter()
        .filter(|(status, retry)| {
            *status == StatusCode::SERVICE_UNAVAILABLE && retry.as_deref() == Some("1")
        })
        .count();
    let refused = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!((busy, refused), (18, 2), "{answers:?}");
}

macro_rules! on_both_backends {
    ($($name:ident: $settings:expr),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(TestApp::sqlite($settings).await).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = TestApp::postgres($settings).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    failed_agent_tokens_are_limited_per_client_and_valid_ones_never: limited(3),
    failed_management_credentials_are_limited_per_client: limited(3),
    introspecting_unknown_tokens_is_limited: limited(3),
    forwarded_headers_from_untrusted_peers_are_ignored: limited(3),
    a_trusted_proxy_forwards_the_client: Settings {
        trusted_proxies: TrustedProxies::new(vec![parse_network("10.0.0.0/8").unwrap()]),
        ..limited(2)
    },
    unknown_api_tokens_are_remembered_until_issued: limited(1_000),
);
