//! Signed event webhooks (issue 15), with a real HTTP receiver on loopback
//! started by each test: the signature verifies as docs/events.md says
//! (its test vector included), an event exists only if its change
//! committed, retries after each failure and none after success, a
//! delivery given up is marked FAILED and can be sent again, a token's
//! events arrive in order, expiry thresholds fire once each on a manual
//! clock, private addresses are refused without connecting, a server
//! killed mid-delivery delivers after its restart (real binary), and two
//! replicas on PostgreSQL never send one delivery at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentkey::app::Settings;
use agentkey::webhooks::sign::{self, WebhookKey};
use agentkey::webhooks::worker::{WebhookSettings, Worker};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};

use crate::common::process::Server;
use crate::common::{str_of, Tenant, TestApp};

const KEY: &str = "test-webhook-key-0123456789abcdef-0123456789";

/// Webhooks on, loopback allowed (the receiver is on 127.0.0.1), quick
/// retries.
pub fn settings() -> WebhookSettings {
    WebhookSettings {
        key: Some(WebhookKey::parse(KEY).unwrap()),
        allow_private: true,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(60),
        retry_base: Duration::from_millis(10),
        retry_max_interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        ..WebhookSettings::default()
    }
}

pub(crate) fn app_settings() -> Settings {
    Settings {
        webhooks: settings(),
        ..Settings::default()
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

#[derive(Default)]
struct Inner {
    got: Vec<Received>,
    /// Statuses to answer, in turn; 200 once they run out.
    script: VecDeque<u16>,
    /// Requests to leave unanswered (a receiver that hangs).
    hang: usize,
    /// Delivery ids being answered now, and any seen twice at once.
    in_flight: HashSet<String>,
    overlaps: Vec<String>,
    /// How long to take over each answer.
    delay: Duration,
}

/// A webhook receiver on 127.0.0.1.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let delivery = headers
        .get(sign::DELIVERY_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (status, hang, delay) = {
        let mut inner = inner.lock().unwrap();
        inner.got.push(Received { headers, body });
        if !inner.in_flight.insert(delivery.clone()) {
            inner.overlaps.push(delivery.clone());
        }
        let hang = inner.hang > 0;
        if hang {
            inner.hang -= 1;
        }
        (inner.script.pop_front().unwrap_or(200), hang, inner.delay)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    inner.lock().unwrap().in_flight.remove(&delivery);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        Receiver::on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    async fn on(listener: tokio::net::TcpListener) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Receiver { url, inner }
    }

    fn got(&self) -> Vec<Received> {
        self.inner.lock().unwrap().got.clone()
    }

    /// How many requests it has had.
    pub(crate) fn requests(&self) -> usize {
        self.inner.lock().unwrap().got.len()
    }

    /// Answers these statuses to the next requests, in turn.
    pub(crate) fn answer(&self, statuses: impl IntoIterator<Item = u16>) {
        self.inner.lock().unwrap().script = statuses.into_iter().collect();
    }

    fn types(&self) -> Vec<String> {
        self.got()
            .iter()
            .map(|r| r.json()["type"].as_str().unwrap().to_string())
            .collect()
    }
}

pub(crate) async fn create_webhook(app: &TestApp, org: &str, body: Value) -> Value {
    let reply = app
        .post(format!("/v1/organizations/{org}/webhooks"), body)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

pub(crate) async fn deliveries(app: &TestApp, org: &str, webhook: &str) -> Vec<Value> {
    let reply = app
        .get(format!(
            "/v1/organizations/{org}/webhooks/{webhook}/deliveries?limit=100"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["deliveries"].as_array().unwrap().clone()
}

pub(crate) fn worker(app: &TestApp, settings: WebhookSettings) -> Arc<Worker> {
    Arc::new(
        Worker::new(
            app.store.clone(),
            settings,
            app.state.metrics.clone(),
            app.clock.clone(),
        )
        .unwrap(),
    )
}

/// Runs delivery rounds until `done` holds (at most 15 s).
pub(crate) async fn rounds_until(worker: &Arc<Worker>, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        worker.round().await.unwrap();
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs rounds until nothing is due and nothing is pending.
pub(crate) async fn drain(app: &TestApp, worker: &Arc<Worker>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sent = worker.round().await.unwrap();
        let (pending, _) = app.store.webhook_backlog().await.unwrap();
        if sent == 0 && pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain");
        if sent == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_signed_event_verifies_and_carries_no_secret() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    let secret = str_of(&hook, "secret").to_string();
    assert!(secret.starts_with("whsec_"), "{hook}");
    assert_eq!(hook["eventTypes"], json!(["*"]));
    // The secret is shown once: never by a get or a list.
    let id = str_of(&hook, "id");
    let got = app
        .get(format!("/v1/organizations/{}/webhooks/{id}", t.org))
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.get("secret").is_none(), "{}", got.body);
    let listed = app
        .get(format!("/v1/organizations/{}/webhooks", t.org))
        .await;
    assert_eq!(listed.body["totalCount"], 1);
    assert!(!listed.raw.windows(6).any(|w| w == b"whsec_"));

    let token = app
        .agent_token(
            &t,
            json!({"name": "worker-1", "tokenExpiryPeriodInDays": 30}),
        )
        .await;
    let w = worker(&app, settings());
    rounds_until(&w, "the created event", || !receiver.got().is_empty()).await;
    let request = &receiver.got()[0];
    let event = request.json();
    assert_eq!(event["type"], "agent_token.created");
    assert_eq!(event["organizationId"], t.org.as_str());
    assert_eq!(event["data"]["object"]["id"], token["id"]);
    assert_eq!(event["data"]["object"]["name"], "worker-1");
    assert_eq!(
        event["data"]["object"]["deploymentId"],
        t.deployment.as_str()
    );
    assert_eq!(event["data"]["object"]["endAt"], token["endAt"]);
    assert_eq!(event["actor"]["subjectType"], "SERVICEKEY");
    assert_eq!(
        request.header(sign::EVENT_ID_HEADER),
        event["id"].as_str().unwrap()
    );
    assert_eq!(request.header("content-type"), "application/json");
    // No secret in the event: neither the token's nor the endpoint's.
    assert!(!request.body.contains(str_of(&token, "token")));
    assert!(!request.body.contains(&secret));
    // The signature verifies with the secret the create answered, and
    // with nothing else.
    let signature = request.header(sign::SIGNATURE_HEADER);
    let now = chrono::Utc::now().timestamp();
    assert!(sign::verify(
        &secret,
        signature,
        request.body.as_bytes(),
        now,
        300
    ));
    assert!(!sign::verify(&secret, signature, b"{}", now, 300));
    // The same check, spelled out as docs/events.md does it.
    let (t_part, v1) = signature.split_once(",v1=").unwrap();
    let t_value = t_part.strip_prefix("t=").unwrap();
    let expected = sign::signature(&secret, t_value.parse().unwrap(), request.body.as_bytes());
    assert_eq!(v1, expected);

    // A rotation makes a new secret that signs from then on.
    let rotated = app
        .post(
            format!("/v1/organizations/{}/webhooks/{id}/rotate", t.org),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = str_of(&rotated.body, "secret").to_string();
    assert_ne!(new_secret, secret);
    app.delete(t.token_path(str_of(&token, "id"))).await;
    rounds_until(&w, "the deleted event", || receiver.got().len() == 2).await;
    let second = &receiver.got()[1];
    assert_eq!(second.json()["type"], "agent_token.deleted");
    assert_eq!(second.json()["data"]["object"]["name"], "worker-1");
    let sig = second.header(sign::SIGNATURE_HEADER);
    assert!(sign::verify(
        &new_secret,
        sig,
        second.body.as_bytes(),
        now,
        300
    ));
    assert!(!sign::verify(
        &secret,
        sig,
        second.body.as_bytes(),
        now,
        300
    ));

    // Every change to the endpoint is audited.
    let audit = app
        .get(format!("/v1/organizations/{}/audit-logs", t.org))
        .await;
    let actions: Vec<&str> = audit.body["auditLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"webhook.create"), "{actions:?}");
    assert!(actions.contains(&"webhook.rotate"), "{actions:?}");
}

/// The test vector of docs/events.md, read from the page itself.
#[test]
fn the_documented_test_vector_holds() {
    let doc = include_str!("../../docs/events.md");
    let field = |name: &str| {
        let line = doc
            .lines()
            .find(|l| l.starts_with(&format!("- {name}: `")))
            .unwrap_or_else(|| panic!("docs/events.md has no `- {name}:` line"));
        line.split('`').nth(1).unwrap().to_string()
    };
    let secret = field("secret");
    let t: i64 = field("t").parse().unwrap();
    let body = field("body");
    let header = field("X-Agentkey-Signature");
    assert_eq!(sign::header(&secret, t, body.as_bytes()), header);
    assert!(sign::verify(&secret, &header, body.as_bytes(), t + 60, 300));
}

#[tokio::test]
async fn a_rolled_back_change_is_never_sent() {
    let app = TestApp::sqlite(Settings {
        max_agent_tokens_per_deployment: 1,
        ..app_settings()
    })
    .await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    app.agent_token(&t, json!({"name": "kept"})).await;
    let refused = app.post(&t.tokens_path(), json!({"name": "refused"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let w = worker(&app, settings());
    drain(&app, &w).await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{:?}", receiver.types());
    assert_eq!(got[0].json()["data"]["object"]["name"], "kept");
    assert_eq!(deliveries(&app, &t.org, str_of(&hook, "id")).await.len(), 1);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_once_more_after_each_failure() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    receiver.inner.lock().unwrap().script = VecDeque::from([500, 503, 429]);
    let hook = create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    let hook = str_of(&hook, "id").to_string();
    app.agent_token(&t, json!({"name": "x"})).await;
    let w = worker(&app, settings());
    drain(&app, &w).await;
    let got = receiver.got();
    assert_eq!(got.len(), 4, "three failures, then one success");
    let ids: HashSet<&str> = got
        .iter()
        .map(|r| r.header(sign::EVENT_ID_HEADER))
        .collect();
    assert_eq!(ids.len(), 1, "the same event each time");
    // Nothing more once it succeeded.
    for _ in 0..5 {
        assert_eq!(w.round().await.unwrap(), 0);
    }
    assert_eq!(receiver.got().len(), 4);
    let listed = deliveries(&app, &t.org, &hook).await;
    assert_eq!(listed.len(), 1);
    let d = &listed[0];
    assert_eq!(d["status"], "SUCCEEDED");
    assert_eq!(d["attemptCount"], 4);
    let codes: Vec<i64> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 429, 503, 500], "newest first");
    assert!(d["attempts"][0]["latencyMs"].as_i64().unwrap() >= 0);
    assert_eq!(d["attempts"][1]["outcome"], "FAILED");
}

#[tokio::test]
async fn a_delivery_out_of_retries_is_failed_and_can_be_sent_again() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    // Nothing listens here: the port was bound, then let go.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let hook = create_webhook(&app, &t.org, json!({"url": closed_url})).await;
    let hook = str_of(&hook, "id").to_string();
    app.agent_token(&t, json!({"name": "x"})).await;
    let once = WebhookSettings {
        retry_for: Duration::ZERO,
        ..settings()
    };
    let w = worker(&app, once);
    drain(&app, &w).await;
    let listed = deliveries(&app, &t.org, &hook).await;
    assert_eq!(listed[0]["status"], "FAILED", "{}", listed[0]);
    assert!(listed[0]["lastError"].as_str().unwrap().contains("connect"));
    assert!(listed[0]["attempts"][0]["statusCode"].is_null());
    let (_, failed) = app.store.webhook_backlog().await.unwrap();
    assert_eq!(failed, 1);
    let metrics = app.state.render_metrics().await.unwrap();
    assert!(
        metrics.contains("agentkey_webhook_deliveries{state=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("agentkey_webhook_attempts_total{outcome=\"failed\"} 1"));

    let delivery = str_of(&listed[0], "id");
    let again = app
        .post(
            format!(
                "/v1/organizations/{}/webhooks/{hook}/deliveries/{delivery}/redeliver",
                t.org
            ),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["status"], "PENDING");
    assert_eq!(again.body["eventId"], listed[0]["eventId"]);
    assert_ne!(again.body["id"], listed[0]["id"]);
    let missing = app
        .post(
            format!(
                "/v1/organizations/{}/webhooks/{hook}/deliveries/{}/redeliver",
                t.org,
                agentkey::token::new_id()
            ),
            json!({}),
        )
        .await;
    missing.assert_error(404);
}

#[tokio::test]
async fn a_tokens_events_arrive_in_order_and_only_those_asked_for() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    let everything = Receiver::start().await;
    // The first failure of the first event holds back the ones after it.
    receiver.inner.lock().unwrap().script = VecDeque::from([500]);
    create_webhook(
        &app,
        &t.org,
        json!({"url": receiver.url, "eventTypes": ["agent_token.created", "agent_token.rotated", "agent_token.deleted"]}),
    )
    .await;
    create_webhook(
        &app,
        &t.org,
        json!({"url": everything.url, "eventTypes": ["deployment.deleted"]}),
    )
    .await;
    let token = app.agent_token(&t, json!({"name": "x"})).await;
    let id = str_of(&token, "id");
    let rotated = app
        .post(format!("{}/rotate", t.token_path(id)), json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    app.delete(t.token_path(id)).await;
    let w = worker(&app, settings());
    drain(&app, &w).await;
    assert_eq!(
        receiver.types(),
        vec![
            "agent_token.created",
            "agent_token.created",
            "agent_token.rotated",
            "agent_token.deleted"
        ]
    );
    assert!(everything.got().is_empty());
    let deleted = app
        .delete(format!(
            "/v1/organizations/{}/deployments/{}",
            t.org, t.deployment
        ))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    drain(&app, &w).await;
    assert_eq!(everything.types(), vec!["deployment.deleted"]);
    assert_eq!(
        everything.got()[0].json()["data"]["object"]["workspaceId"],
        t.workspace.as_str()
    );
}

/// Each range added to or deleted from the allowlist is one
/// `allowed_ip_range.changed`; a request the list refuses sends nothing.
#[tokio::test]
async fn allowlist_changes_are_reported_once_per_range() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    create_webhook(
        &app,
        &t.org,
        json!({"url": receiver.url, "eventTypes": ["allowed_ip_range.changed"]}),
    )
    .await;
    let ranges = format!("/v1/organizations/{}/allowed-ip-address-ranges", t.org);
    let added = app
        .post(
            format!("{ranges}/bulk-create"),
            json!({"allowedIpAddressRanges": ["192.0.2.0/24", "2001:db8::/32"]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let first = str_of(&added.body["allowedIpAddressRanges"][0], "id").to_string();
    // An API token from outside the list is refused: no change, no event.
    let owner = app
        .post(
            format!("/v1/organizations/{}/tokens", t.org),
            json!({"name": "o", "role": "ORGANIZATION_OWNER", "scope": "ORGANIZATION"}),
        )
        .await;
    let secret = str_of(&owner.body, "token").to_string();
    let refused = app
        .send(axum::http::Method::GET, &ranges, Some(&secret), None)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let deleted = app.delete(format!("{ranges}/{first}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let w = worker(&app, settings());
    drain(&app, &w).await;
    assert_eq!(receiver.types(), vec!["allowed_ip_range.changed"; 3]);
    let events: Vec<Value> = receiver.got().iter().map(|r| r.json()).collect();
    let objects: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| {
            let object = &e["data"]["object"];
            (object["id"].as_str().unwrap(), object["name"].as_str())
        })
        .collect();
    assert_eq!(objects[0].1, Some("192.0.2.0/24"));
    assert_eq!(objects[1].1, Some("2001:db8::/32"));
    assert_eq!(
        objects[2],
        (first.as_str(), Some("192.0.2.0/24")),
        "the deleted range, named"
    );
    for event in &events {
        assert_eq!(event["data"]["object"]["type"], "ALLOWED_IP_ADDRESS_RANGE");
        assert_eq!(event["actor"]["apiTokenName"], "root");
    }
}

/// An organization has at most 20 endpoints: the 21st is a 400 that
/// writes nothing, and deleting one makes room again.
#[tokio::test]
async fn an_organization_has_at_most_twenty_endpoints() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let path = format!("/v1/organizations/{}/webhooks", t.org);
    let mut ids = Vec::new();
    for i in 0..20 {
        let reply = app
            .post(&path, json!({"url": format!("http://127.0.0.1:9/{i}")}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        ids.push(str_of(&reply.body, "id").to_string());
    }
    let refused = app
        .post(&path, json!({"url": "http://127.0.0.1:9/one-more"}))
        .await;
    let message = refused.assert_error(400).to_string();
    assert!(message.contains("20 webhook endpoints"), "{message}");
    assert_eq!(app.get(&path).await.body["totalCount"], 20);
    let audited = app
        .get(format!(
            "/v1/organizations/{}/audit-logs?action=webhook.create&limit=100",
            t.org
        ))
        .await;
    assert_eq!(audited.body["totalCount"], 20, "no event for the refusal");
    assert_eq!(
        app.delete(format!("{path}/{}", ids[0])).await.status,
        StatusCode::NO_CONTENT
    );
    let again = app
        .post(&path, json!({"url": "http://127.0.0.1:9/one-more"}))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
}

#[tokio::test]
async fn first_use_is_reported_once() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    create_webhook(
        &app,
        &t.org,
        json!({"url": receiver.url, "eventTypes": ["agent_token.first_used"]}),
    )
    .await;
    let token = app.agent_token(&t, json!({"name": "x"})).await;
    let secret = str_of(&token, "token");
    assert_eq!(app.authorize(secret).await.status, StatusCode::OK);
    app.state.usage.flush(app.store.as_ref()).await.unwrap();
    app.clock.advance(10);
    assert_eq!(app.authorize(secret).await.status, StatusCode::OK);
    app.state.usage.flush(app.store.as_ref()).await.unwrap();
    let w = worker(&app, settings());
    drain(&app, &w).await;
    assert_eq!(receiver.types(), vec!["agent_token.first_used"]);
    assert!(!receiver.got()[0].body.contains(secret));
    assert!(receiver.got()[0].json()["actor"].is_null());
}

#[tokio::test]
async fn private_destinations_are_refused_without_connecting() {
    let app = TestApp::sqlite(Settings {
        webhooks: WebhookSettings {
            allow_private: false,
            ..settings()
        },
        ..Settings::default()
    })
    .await;
    let org = app.org("acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "ftp://127.0.0.1/hook",
        "http://user:pw@127.0.0.1/hook",
    ] {
        let reply = app
            .post(
                format!("/v1/organizations/{org}/webhooks"),
                json!({"url": url}),
            )
            .await;
        reply.assert_error(400);
        assert_eq!(reply.fields(), vec!["url"], "{url}: {}", reply.body);
    }
    let bad = app
        .post(
            format!("/v1/organizations/{org}/webhooks"),
            json!({"url": "https://hooks.example.com/x", "eventTypes": ["agent_token.nope"]}),
        )
        .await;
    bad.assert_error(400);
    assert_eq!(bad.fields(), vec!["eventTypes"]);
    // Webhooks off: a clear 409, nothing stored.
    let off = TestApp::new().await;
    let org = off.org("acme").await;
    let reply = off
        .post(
            format!("/v1/organizations/{org}/webhooks"),
            json!({"url": "https://hooks.example.com/x"}),
        )
        .await;
    assert!(reply.assert_error(409).contains("AGENTKEY_WEBHOOK_KEY"));
}

/// Agent tokens expiring in 40 days: each threshold once, then `.expired`
/// once, however often the scan runs.
async fn expiry_thresholds_fire_once_each(app: TestApp) {
    let t = app.tenant().await;
    let hook = create_webhook(
        &app,
        &t.org,
        json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["agent_token.expiring", "agent_token.expired"]}),
    )
    .await;
    let hook = str_of(&hook, "id").to_string();
    app.agent_token(&t, json!({"name": "soon", "tokenExpiryPeriodInDays": 40}))
        .await;
    app.agent_token(&t, json!({"name": "never"})).await;
    let thresholds = [30, 7, 1];
    let scan =
        || agentkey::webhooks::expiry::scan(app.store.as_ref(), app.clock.as_ref(), &thresholds);
    // (type, thresholdDays) of every event so far, oldest first.
    let seen = || async {
        deliveries(&app, &t.org, &hook)
            .await
            .iter()
            .rev()
            .map(|d| {
                (
                    d["eventType"].as_str().unwrap().to_string(),
                    d["event"]["data"]["thresholdDays"].as_i64(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(scan().await.unwrap(), 0);
    const DAY: i64 = 86_400;
    let mut expected = Vec::new();
    for (advance, kind, days) in [
        (10 * DAY, "agent_token.expiring", Some(30)),
        (23 * DAY, "agent_token.expiring", Some(7)),
        (6 * DAY, "agent_token.expiring", Some(1)),
        (DAY, "agent_token.expired", None),
    ] {
        app.clock.advance(advance - 1);
        assert_eq!(scan().await.unwrap(), 0, "not yet: {kind} {days:?}");
        app.clock.advance(1);
        assert_eq!(scan().await.unwrap(), 1);
        assert_eq!(scan().await.unwrap(), 0, "never twice");
        expected.push((kind.to_string(), days));
        assert_eq!(seen().await, expected);
    }
    app.clock.advance(DAY);
    scan().await.unwrap();
    assert_eq!(seen().await.len(), 4);
    let last = &deliveries(&app, &t.org, &hook).await[0];
    assert_eq!(last["event"]["data"]["object"]["name"], "soon");
    assert!(last["event"]["actor"].is_null());
}

#[tokio::test]
async fn expiry_thresholds_fire_once_each_sqlite() {
    expiry_thresholds_fire_once_each(TestApp::sqlite(app_settings()).await).await;
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn expiry_thresholds_fire_once_each_postgres() {
    if let Some(app) = TestApp::postgres(app_settings()).await {
        expiry_thresholds_fire_once_each(app).await;
    }
}

/// Tokens (an agent token and an API token) created with a day to live
/// cross every threshold at once: one event each, for the nearest; then
/// `.expired` once each.
#[tokio::test]
async fn a_short_lived_token_gets_one_warning() {
    let app = TestApp::sqlite(app_settings()).await;
    let t = app.tenant().await;
    let hook = create_webhook(&app, &t.org, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let hook = str_of(&hook, "id").to_string();
    app.agent_token(&t, json!({"name": "day", "tokenExpiryPeriodInDays": 1}))
        .await;
    let api = app
        .post(
            format!("/v1/organizations/{}/tokens", t.org),
            json!({"name": "ci", "scope": "ORGANIZATION", "role": "ORGANIZATION_MEMBER", "tokenExpiryPeriodInDays": 1}),
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let scan =
        || agentkey::webhooks::expiry::scan(app.store.as_ref(), app.clock.as_ref(), &[30, 7, 1]);
    assert_eq!(scan().await.unwrap(), 2);
    assert_eq!(scan().await.unwrap(), 0);
    let listed = deliveries(&app, &t.org, &hook).await;
    let types: Vec<&str> = listed
        .iter()
        .map(|d| d["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "api_token.expiring",
            "agent_token.expiring",
            "api_token.created",
            "agent_token.created"
        ]
    );
    assert_eq!(listed[0]["event"]["data"]["thresholdDays"], 1);
    assert_eq!(listed[0]["event"]["data"]["object"]["name"], "ci");
    assert_eq!(
        listed[0]["event"]["data"]["object"]["entityId"],
        t.org.as_str()
    );
    assert_eq!(listed[1]["event"]["data"]["thresholdDays"], 1);
    // Expired, a day later: `.expired` once each.
    app.clock.advance(86_400);
    assert_eq!(scan().await.unwrap(), 2);
    assert_eq!(scan().await.unwrap(), 0);
    let listed = deliveries(&app, &t.org, &hook).await;
    assert_eq!(listed[0]["eventType"], "api_token.expired");
    assert_eq!(listed[1]["eventType"], "agent_token.expired");
}

async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> Value {
    let response = http
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

/// The real binary, killed with SIGKILL while its receiver holds a
/// delivery unanswered, delivers it after a restart (its lease ran out).
#[tokio::test]
async fn a_server_killed_mid_delivery_delivers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentkey.db");
    let receiver = Receiver::start().await;
    receiver.inner.lock().unwrap().hang = 1;
    let env = [
        ("AGENTKEY_WEBHOOK_KEY", KEY),
        ("AGENTKEY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("AGENTKEY_WEBHOOK_POLL_MS", "20"),
        ("AGENTKEY_WEBHOOK_LEASE_SECONDS", "2"),
        ("AGENTKEY_WEBHOOK_TIMEOUT_SECONDS", "1"),
    ];
    let mut server = Server::start(&db, &env);
    let root = server.printed_root().expect("root credential");
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let org = api(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/organizations"),
        &root,
        json!({"name": "a"}),
    )
    .await;
    let org = str_of(&org, "id").to_string();
    let ws = api(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/organizations/{org}/workspaces"),
        &root,
        json!({"name": "w"}),
    )
    .await;
    let dep = api(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/organizations/{org}/deployments"),
        &root,
        json!({"name": "d", "workspaceId": ws["id"]}),
    )
    .await;
    let dep = str_of(&dep, "id").to_string();
    api(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/organizations/{org}/webhooks"),
        &root,
        json!({"url": receiver.url}),
    )
    .await;
    api(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/organizations/{org}/deployments/{dep}/agent-tokens"),
        &root,
        json!({"name": "t"}),
    )
    .await;
    // Wait until the server is mid-delivery: the receiver holds it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.got().is_empty() {
        assert!(Instant::now() < deadline, "no delivery started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let first = receiver.got()[0].header(sign::EVENT_ID_HEADER).to_string();

    let restarted = Server::start(&db, &env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.got().len() < 2 {
        assert!(Instant::now() < deadline, "not delivered after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = &receiver.got()[1];
    assert_eq!(again.header(sign::EVENT_ID_HEADER), first);
    assert_eq!(again.json()["type"], "agent_token.created");
    drop(restarted);
}

/// Two replicas (two stores, two workers) on one PostgreSQL database,
/// with a slow receiver: no delivery is ever in flight twice, and each is
/// sent exactly once (none fails, no lease runs out).
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn two_replicas_never_send_one_delivery_at_once() {
    let Some(app) = TestApp::postgres(app_settings()).await else {
        return;
    };
    let second = agentkey::store::open(app.database_url().unwrap())
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    receiver.inner.lock().unwrap().delay = Duration::from_millis(30);
    let t: Tenant = app.tenant().await;
    create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    const TOKENS: usize = 12;
    for i in 0..TOKENS {
        app.agent_token(&t, json!({"name": format!("t{i}")})).await;
    }
    let small = WebhookSettings {
        batch: 3,
        ..settings()
    };
    let a = worker(&app, small.clone());
    let b = Arc::new(
        Worker::new(
            second.clone(),
            small,
            app.state.metrics.clone(),
            app.clock.clone(),
        )
        .unwrap(),
    );
    let run = |w: Arc<Worker>, store: Arc<dyn agentkey::store::Store>| {
        tokio::spawn(async move {
            let mut sent = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(Instant::now() < deadline, "the outbox did not drain");
                let n = w.round().await.unwrap();
                sent += n;
                if n == 0 {
                    if store.webhook_backlog().await.unwrap().0 == 0 {
                        return sent;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let (sa, sb) = (
        run(a.clone(), app.store.clone()),
        run(b.clone(), second.clone()),
    );
    let (sa, sb) = (sa.await.unwrap(), sb.await.unwrap());
    drain(&app, &a).await;
    let got = receiver.got();
    assert_eq!(got.len(), TOKENS, "each delivery once");
    let mut per_delivery: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *per_delivery
            .entry(r.header(sign::DELIVERY_ID_HEADER).to_string())
            .or_default() += 1;
    }
    assert!(per_delivery.values().all(|n| *n == 1), "{per_delivery:?}");
    assert!(receiver.inner.lock().unwrap().overlaps.is_empty());
    assert!(sa > 0 && sb > 0, "both replicas sent some: {sa} and {sb}");
    second.close().await;
}

/// Webhook settings that cannot work stop `serve` at once, saying which.
#[test]
fn bad_webhook_settings_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("agentkey.db").display());
    for (env, says) in [
        (
            vec![("AGENTKEY_WEBHOOK_KEY", "short")],
            "at least 32 characters",
        ),
        (
            vec![("AGENTKEY_WEBHOOK_EXPIRY_DAYS", "30,soon")],
            "AGENTKEY_WEBHOOK_EXPIRY_DAYS",
        ),
        (
            vec![
                ("AGENTKEY_WEBHOOK_LEASE_SECONDS", "5"),
                ("AGENTKEY_WEBHOOK_TIMEOUT_SECONDS", "10"),
            ],
            "must be longer than AGENTKEY_WEBHOOK_TIMEOUT_SECONDS",
        ),
        (
            vec![("AGENTKEY_WEBHOOK_RETENTION_DAYS", "0")],
            "AGENTKEY_WEBHOOK_RETENTION_DAYS must be at least 1",
        ),
        (
            vec![("AGENTKEY_WEBHOOK_RETENTION_DAYS", "36501")],
            "AGENTKEY_WEBHOOK_RETENTION_DAYS",
        ),
    ] {
        let mut command = std::process::Command::new(crate::common::process::BIN);
        command
            .arg("serve")
            .env("AGENTKEY_LISTEN", "127.0.0.1:0")
            .env("AGENTKEY_DATABASE_URL", &db)
            .env_remove("AGENTKEY_WEBHOOK_KEY")
            .current_dir(dir.path());
        for (key, value) in &env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} started");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
        assert!(
            !stderr.contains("short\""),
            "the key is never echoed: {stderr}"
        );
    }
}

/// The store's lease, on each backend: a claimed delivery is no one
/// else's until its lease runs out; then another owner claims it, and the
/// first owner's late outcome no longer counts.
async fn a_lease_keeps_a_delivery_to_one_owner_until_it_runs_out(app: TestApp) {
    use agentkey::webhooks::{Attempt, DeliveryStatus, Outcome};
    let t = app.tenant().await;
    create_webhook(&app, &t.org, json!({"url": "http://127.0.0.1:9/hook"})).await;
    app.agent_token(&t, json!({"name": "x"})).await;
    let store = &app.store;
    let now = agentkey::webhooks::now_ms();
    let first = store
        .claim_webhook_deliveries("owner-a", now, now + 1_000, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].payload.contains("agent_token.created"));
    assert!(store
        .claim_webhook_deliveries("owner-b", now, now + 1_000, 10)
        .await
        .unwrap()
        .is_empty());
    let later = store
        .claim_webhook_deliveries("owner-b", now + 2_000, now + 3_000, 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].id, first[0].id);
    // Each call is a new attempt, with an id of its own.
    let outcome = || Outcome {
        attempt: Attempt {
            id: agentkey::token::new_id(),
            delivery_id: first[0].id.clone(),
            attempted_at_ms: now,
            latency_ms: 3,
            status_code: Some(200),
            succeeded: true,
            error: None,
        },
        status: DeliveryStatus::Succeeded,
        due_ms: now,
        deadline_ms: Some(now + 1_000),
    };
    assert!(
        !store
            .finish_webhook_deliveries("owner-a", &[outcome()], 0)
            .await
            .unwrap()[0]
    );
    assert!(
        store
            .finish_webhook_deliveries("owner-b", &[outcome()], 0)
            .await
            .unwrap()[0]
    );
    assert!(store
        .claim_webhook_deliveries("owner-c", now + 10_000, now + 11_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.webhook_backlog().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn a_lease_keeps_a_delivery_to_one_owner_sqlite() {
    a_lease_keeps_a_delivery_to_one_owner_until_it_runs_out(TestApp::sqlite(app_settings()).await)
        .await;
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn a_lease_keeps_a_delivery_to_one_owner_postgres() {
    if let Some(app) = TestApp::postgres(app_settings()).await {
        a_lease_keeps_a_delivery_to_one_owner_until_it_runs_out(app).await;
    }
}

/// A host name is checked once resolved: `localhost` (from the hosts file)
/// is refused at delivery when private addresses are not allowed, before
/// any connection, and the attempt says why.
#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused_at_delivery() {
    let strict = WebhookSettings {
        allow_private: false,
        retry_for: Duration::ZERO,
        ..settings()
    };
    let app = TestApp::sqlite(Settings {
        webhooks: strict.clone(),
        ..Settings::default()
    })
    .await;
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    let port = receiver.url.split(':').nth(2).unwrap().to_string();
    let hook = create_webhook(
        &app,
        &t.org,
        json!({"url": format!("http://localhost:{port}")}),
    )
    .await;
    let hook = str_of(&hook, "id").to_string();
    app.agent_token(&t, json!({"name": "x"})).await;
    let w = worker(&app, strict);
    drain(&app, &w).await;
    let listed = deliveries(&app, &t.org, &hook).await;
    assert_eq!(listed[0]["status"], "FAILED");
    let error = listed[0]["lastError"].as_str().unwrap();
    assert!(error.contains("AGENTKEY_WEBHOOK_ALLOW_PRIVATE"), "{error}");
    assert!(listed[0]["attempts"][0]["statusCode"].is_null());
    assert!(receiver.got().is_empty(), "nothing reached the receiver");
}
