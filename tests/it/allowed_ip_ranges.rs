//! Allowed IP address ranges (issue 14): the organization allowlist's five
//! endpoints, its enforcement on management requests (API tokens refused
//! from outside, root exempt, refusals audited), lock-out protection, and
//! agent tokens bound to networks, refused by `/v1/authorize` and
//! `/v1/introspect` elsewhere. Requests carry the TCP peer the server
//! would record; trusted and untrusted proxies decide which address is
//! the client's.

use crate::common::{str_of, Reply, TestApp};
use agentkey::app::Settings;
use agentkey::http::client_ip::{parse_network, TrustedProxies};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

const INSIDE_V4: &str = "192.0.2.5";
const OUTSIDE_V4: &str = "198.51.100.1";
const INSIDE_V6: &str = "2001:db8::5";
const OUTSIDE_V6: &str = "2001:db9::5";

fn ranges_path(org: &str) -> String {
    format!("/v1/organizations/{org}/allowed-ip-address-ranges")
}

/// An organization owner's API token in `org`.
async fn owner(app: &TestApp, org: &str) -> String {
    let reply = app
        .post(
            format!("/v1/organizations/{org}/tokens"),
            json!({ "name": "owner", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    str_of(&reply.body, "token").to_string()
}

/// Root adds `ranges` to the organization's list.
async fn allow(app: &TestApp, org: &str, ranges: &[&str]) -> Vec<String> {
    let reply = app
        .post(
            format!("{}/bulk-create", ranges_path(org)),
            json!({ "allowedIpAddressRanges": ranges }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["allowedIpAddressRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "id").to_string())
        .collect()
}

async fn listed(app: &TestApp, org: &str) -> Vec<String> {
    let reply = app.get(format!("{}?limit=1000", ranges_path(org))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["allowedIpAddressRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "ipAddressRange").to_string())
        .collect()
}

async fn audit_actions(app: &TestApp, org: &str) -> Vec<(String, String, Option<String>)> {
    let reply = app
        .get(format!("/v1/organizations/{org}/audit-logs?limit=1000"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["auditLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                str_of(e, "action").to_string(),
                str_of(e, "targetId").to_string(),
                e["sourceIp"].as_str().map(str::to_string),
            )
        })
        .collect()
}

async fn has_ranges(app: &TestApp, org: &str) -> bool {
    let reply = app.get(format!("/v1/organizations/{org}")).await;
    reply.body["hasAllowedIpAddressRanges"]
        .as_bool()
        .expect("hasAllowedIpAddressRanges")
}

// ---------------------------------------------------------------------------
// The endpoints
// ---------------------------------------------------------------------------

async fn ranges_round_trip_on_both_base_paths(app: TestApp) {
    let org = app.org("acme").await;
    assert!(!has_ranges(&app, &org).await);
    let empty = app.get(ranges_path(&org)).await;
    assert_eq!(
        empty.body,
        json!({ "allowedIpAddressRanges": [], "limit": 20, "offset": 0, "totalCount": 0 })
    );

    let created = app
        .post(ranges_path(&org), json!({ "ipAddressRange": "10.0.0.0/8" }))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let body = &created.body;
    assert_eq!(body["organizationId"], org.as_str());
    assert_eq!(body["ipAddressRange"], "10.0.0.0/8");
    assert_eq!(body["createdAt"], "2022-11-22T04:37:12Z");
    assert_eq!(body["updatedAt"], "2022-11-22T04:37:12Z");
    assert_eq!(body["createdBy"]["subjectType"], "SERVICEKEY");
    let first = str_of(body, "id").to_string();
    assert!(has_ranges(&app, &org).await);
    let listed_orgs = app.get("/v1/organizations").await;
    assert_eq!(
        listed_orgs.body["organizations"][0]["hasAllowedIpAddressRanges"],
        true
    );

    app.clock.advance(5);
    let bulk = app
        .post(
            format!("/iam/v1beta1/organizations/{org}/allowed-ip-address-ranges/bulk-create"),
            json!({ "allowedIpAddressRanges": ["2001:db8::/32", "192.0.2.7/32"] }),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    let added = bulk.body["allowedIpAddressRanges"].as_array().unwrap();
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["ipAddressRange"], "2001:db8::/32");
    assert_eq!(added[1]["ipAddressRange"], "192.0.2.7/32");

    // Default order: as added; sorted by the range's text; paged.
    assert_eq!(
        listed(&app, &org).await,
        ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    );
    let by_text = app
        .get(format!("{}?sorts=ipAddress:desc", ranges_path(&org)))
        .await;
    let texts: Vec<&str> = by_text.body["allowedIpAddressRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ipAddressRange"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["2001:db8::/32", "192.0.2.7/32", "10.0.0.0/8"]);
    let newest_first = app
        .get(format!(
            "/iam/v1beta1/organizations/{org}/allowed-ip-address-ranges?sorts=createdAt:desc&limit=1&offset=1"
        ))
        .await;
    assert_eq!(newest_first.body["totalCount"], 3);
    assert_eq!(newest_first.body["limit"], 1);
    assert_eq!(newest_first.body["offset"], 1);
    assert_eq!(
        newest_first.body["allowedIpAddressRanges"][0]["ipAddressRange"],
        "192.0.2.7/32"
    );
    let bad_sort = app
        .get(format!("{}?sorts=name:asc", ranges_path(&org)))
        .await;
    assert!(bad_sort.assert_error(400).contains("name:asc"));

    // Delete: 204, then 404.
    let one = format!("{}/{first}", ranges_path(&org));
    assert_eq!(app.delete(&one).await.status, StatusCode::NO_CONTENT);
    app.delete(&one).await.assert_error(404);
    app.delete(format!("{}/not-an-id", ranges_path(&org)))
        .await
        .assert_error(404);

    // Bulk delete: unknown, repeated and malformed ids are passed over.
    let ids: Vec<String> = added.iter().map(|r| str_of(r, "id").to_string()).collect();
    let reply = app
        .post(
            format!("{}/bulk-delete", ranges_path(&org)),
            json!({ "allowedIpAddressRangeIds": [ids[0], ids[0], first, "c000000000000000000000000", "x"] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    assert!(reply.raw.is_empty());
    assert_eq!(listed(&app, &org).await, ["192.0.2.7/32"]);
    let reply = app
        .post(
            format!("{}/bulk-delete", ranges_path(&org)),
            json!({ "allowedIpAddressRangeIds": [ids[1]] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(listed(&app, &org).await.is_empty());
    assert!(!has_ranges(&app, &org).await);
    // Nothing left: bulk delete still answers 204.
    let reply = app
        .post(
            format!("{}/bulk-delete", ranges_path(&org)),
            json!({ "allowedIpAddressRangeIds": [ids[1]] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

async fn bad_ranges_are_refused_naming_the_entry_and_write_nothing(app: TestApp) {
    let org = app.org("acme").await;
    allow(&app, &org, &["10.0.0.0/8"]).await;
    let events = audit_actions(&app, &org).await.len();

    let reply = app
        .post(ranges_path(&org), json!({ "ipAddressRange": "10.1.2.3/8" }))
        .await;
    let message = reply.assert_error(400);
    assert!(
        message.contains("10.1.2.3/8") && message.contains("write 10.0.0.0/8"),
        "{message}"
    );
    assert_eq!(reply.fields(), ["ipAddressRange"]);
    for (bad, hint) in [
        ("10.1.2.3", "10.1.2.3/32"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("example.com", "CIDR"),
        ("10.0.0.0/33", "CIDR"),
    ] {
        let reply = app
            .post(ranges_path(&org), json!({ "ipAddressRange": bad }))
            .await;
        let message = reply.assert_error(400);
        assert!(
            message.contains(bad) && message.contains(hint),
            "{bad}: {message}"
        );
    }
    let reply = app.post(ranges_path(&org), json!({})).await;
    reply.assert_error(400);
    assert_eq!(reply.fields(), ["ipAddressRange"]);

    // Already there: a 409 naming it.
    let reply = app
        .post(ranges_path(&org), json!({ "ipAddressRange": "10.0.0.0/8" }))
        .await;
    assert!(reply.assert_error(409).contains("10.0.0.0/8"));

    // Bulk: one bad entry, a repeat, one present: nothing is added.
    let bulk = format!("{}/bulk-create", ranges_path(&org));
    let reply = app
        .post(
            &bulk,
            json!({ "allowedIpAddressRanges": ["172.16.0.0/12", "10.9.9.9/8", "fc00::/7", "fc00::/7"] }),
        )
        .await;
    let message = reply.assert_error(400).to_string();
    assert_eq!(
        reply.fields(),
        ["allowedIpAddressRanges[1]", "allowedIpAddressRanges[3]"],
        "{message}"
    );
    assert!(reply.body["fieldErrors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("10.9.9.9/8"));
    let reply = app
        .post(
            &bulk,
            json!({ "allowedIpAddressRanges": ["172.16.0.0/12", "10.0.0.0/8"] }),
        )
        .await;
    let message = reply.assert_error(409);
    assert!(
        message.contains("10.0.0.0/8") && !message.contains("172.16"),
        "{message}"
    );
    for body in [
        json!({ "allowedIpAddressRanges": [] }),
        json!({}),
        json!({ "allowedIpAddressRanges": "10.0.0.0/8" }),
    ] {
        app.post(&bulk, body).await.assert_error(400);
    }
    let too_many: Vec<String> = (0..1001)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    app.post(&bulk, json!({ "allowedIpAddressRanges": too_many }))
        .await
        .assert_error(400);
    app.post(format!("{}/bulk-delete", ranges_path(&org)), json!({}))
        .await
        .assert_error(400);

    assert_eq!(listed(&app, &org).await, ["10.0.0.0/8"]);
    assert_eq!(audit_actions(&app, &org).await.len(), events, "no event");
}

async fn an_organization_holds_at_most_1000_ranges(app: TestApp) {
    let org = app.org("acme").await;
    let all: Vec<String> = (0..1000)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    allow(&app, &org, &refs).await;
    let reply = app
        .post(
            ranges_path(&org),
            json!({ "ipAddressRange": "192.0.2.0/24" }),
        )
        .await;
    assert!(reply.assert_error(400).contains("1000"));
    let reply = app.get(format!("{}?limit=0", ranges_path(&org))).await;
    assert_eq!(reply.body["totalCount"], 1000);
}

async fn changes_are_audited(app: TestApp) {
    let org = app.org("acme").await;
    let ids = allow(&app, &org, &["10.0.0.0/8", "2001:db8::/32"]).await;
    let single = app
        .post(
            ranges_path(&org),
            json!({ "ipAddressRange": "192.0.2.0/24" }),
        )
        .await;
    let third = str_of(&single.body, "id").to_string();
    app.delete(format!("{}/{third}", ranges_path(&org))).await;
    app.post(
        format!("{}/bulk-delete", ranges_path(&org)),
        json!({ "allowedIpAddressRangeIds": ids }),
    )
    .await;
    let events: Vec<(String, String)> = audit_actions(&app, &org)
        .await
        .into_iter()
        .filter(|(action, _, _)| action.starts_with("allowedIpAddressRange."))
        .map(|(action, target, _)| (action, target))
        .collect();
    let create = "allowedIpAddressRange.create".to_string();
    let delete = "allowedIpAddressRange.delete".to_string();
    assert_eq!(
        events,
        vec![
            (create.clone(), ids[0].clone()),
            (create.clone(), ids[1].clone()),
            (create, third.clone()),
            (delete.clone(), third),
            (delete.clone(), ids[0].clone()),
            (delete, ids[1].clone()),
        ]
    );
}

// ---------------------------------------------------------------------------
// Enforcement on management requests
// ---------------------------------------------------------------------------

async fn management_from_outside_the_list_is_refused(app: TestApp) {
    let org = app.org("acme").await;
    let other = app.org("other").await;
    let token = owner(&app, &org).await;
    let other_token = owner(&app, &other).await;
    let org_path = format!("/v1/organizations/{org}");
    let get = |peer: &'static str| {
        let (app, path, token) = (&app, org_path.clone(), token.clone());
        async move {
            app.send_from(peer, Method::GET, &path, Some(&token), &[], None)
                .await
        }
    };
    // No list yet (and now cached as empty): everyone is let in.
    assert_eq!(get(OUTSIDE_V4).await.status, StatusCode::OK);

    // A change is seen at once by the process that made it.
    allow(&app, &org, &["192.0.2.0/24", "2001:db8::/32"]).await;
    for inside in [INSIDE_V4, INSIDE_V6, "::ffff:192.0.2.5"] {
        assert_eq!(get(inside).await.status, StatusCode::OK, "{inside}");
    }
    for outside in [OUTSIDE_V4, OUTSIDE_V6] {
        let reply = get(outside).await;
        let message = reply.assert_error(403);
        assert!(
            message.contains(&format!("address {outside} is not allowed")),
            "{message}"
        );
    }
    // Every route, not just this one; a request with no known address
    // (made in-process, without a peer) is outside too.
    let workspaces = format!("{org_path}/workspaces");
    app.send_from(
        OUTSIDE_V4,
        Method::POST,
        &workspaces,
        Some(&token),
        &[],
        Some(json!({ "name": "w" })),
    )
    .await
    .assert_error(403);
    let reply = app.send(Method::GET, &org_path, Some(&token), None).await;
    assert!(reply.assert_error(403).contains("address unknown"));
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let forged = app
        .send_from(
            OUTSIDE_V4,
            Method::GET,
            &org_path,
            Some(&token),
            &[("x-forwarded-for", INSIDE_V4), ("x-real-ip", INSIDE_V4)],
            None,
        )
        .await;
    forged.assert_error(403);

    // Root is exempt; another organization's list is its own.
    let root = app
        .send_from(
            OUTSIDE_V4,
            Method::GET,
            &org_path,
            Some(&app.root),
            &[],
            None,
        )
        .await;
    assert_eq!(root.status, StatusCode::OK);
    let theirs = app
        .send_from(
            OUTSIDE_V4,
            Method::GET,
            &format!("/v1/organizations/{other}"),
            Some(&other_token),
            &[],
            None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::OK);

    // Refusals are audited, with the refused address.
    let refusals: Vec<Option<String>> = audit_actions(&app, &org)
        .await
        .into_iter()
        .filter(|(action, target, _)| action == "allowedIpAddressRange.refuse" && *target == org)
        .map(|(_, _, ip)| ip)
        .collect();
    assert_eq!(
        refusals,
        vec![
            Some(OUTSIDE_V4.to_string()),
            Some(OUTSIDE_V6.to_string()),
            Some(OUTSIDE_V4.to_string()),
            None,
            Some(OUTSIDE_V4.to_string()),
        ]
    );
    // Nothing was created by the refused POST.
    let listed_ws = app.get(&workspaces).await;
    assert_eq!(listed_ws.body["totalCount"], 0);
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_address() {
    let app = TestApp::with_settings(Settings {
        trusted_proxies: TrustedProxies::new(vec![parse_network("10.0.0.0/8").unwrap()]),
        ..Settings::default()
    })
    .await;
    let org = app.org("acme").await;
    let token = owner(&app, &org).await;
    allow(&app, &org, &["192.0.2.0/24"]).await;
    let path = format!("/v1/organizations/{org}");
    let via_proxy = |headers: &'static [(&'static str, &'static str)]| {
        let (app, path, token) = (&app, path.clone(), token.clone());
        async move {
            app.send_from("10.0.0.1", Method::GET, &path, Some(&token), headers, None)
                .await
                .status
        }
    };
    assert_eq!(
        via_proxy(&[("x-forwarded-for", INSIDE_V4)]).await,
        StatusCode::OK
    );
    assert_eq!(via_proxy(&[("x-real-ip", INSIDE_V4)]).await, StatusCode::OK);
    assert_eq!(
        via_proxy(&[("x-forwarded-for", OUTSIDE_V4)]).await,
        StatusCode::FORBIDDEN
    );
    // The client wrote the left entry itself; the proxy appended the truth.
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "192.0.2.5, 198.51.100.1")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        via_proxy(&[("x-forwarded-for", "198.51.100.1, 192.0.2.5, 10.0.0.7")]).await,
        StatusCode::OK
    );
    // The proxy itself is not in the list.
    assert_eq!(via_proxy(&[]).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_console_is_held_to_the_list_too() {
    use agentkey::console::api::Api;
    use agentkey::verify::Principal;
    let app = TestApp::new().await;
    let org = app.org("acme").await;
    let token = owner(&app, &org).await;
    allow(&app, &org, &["192.0.2.0/24"]).await;
    let principal = app.state.verifier.authenticate(&token).await.unwrap();
    assert!(matches!(principal, Principal::ApiToken(_)));
    let api_router = agentkey::http::api_router(app.state.clone());
    let call = |peer: &str| {
        let api = Api::new(
            api_router.clone(),
            principal.clone(),
            &Default::default(),
            Some(format!("{peer}:40000").parse().unwrap()),
        );
        let path = format!("/organizations/{org}");
        async move { api.get::<Value>(&path).await }
    };
    assert!(call(INSIDE_V4).await.is_ok());
    let refused = call(OUTSIDE_V4).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.message.contains("198.51.100.1 is not allowed"));
}

// ---------------------------------------------------------------------------
// Lock-out protection
// ---------------------------------------------------------------------------

async fn a_caller_cannot_lock_itself_out_by_one_call(app: TestApp) {
    let org = app.org("acme").await;
    let token = owner(&app, &org).await;
    let path = ranges_path(&org);
    let bulk = format!("{path}/bulk-create");
    let as_owner = |peer: &'static str, method: Method, path: String, body: Option<Value>| {
        let (app, token) = (&app, token.clone());
        async move {
            app.send_from(peer, method, &path, Some(&token), &[], body)
                .await
        }
    };

    // The first range must cover the caller (IPv4 and IPv6 alike).
    let reply = as_owner(
        INSIDE_V4,
        Method::POST,
        path.clone(),
        Some(json!({ "ipAddressRange": "198.51.100.0/24" })),
    )
    .await;
    let message = reply.assert_error(400);
    assert!(
        message.contains("lock you out")
            && message.contains(INSIDE_V4)
            && message.contains("force=true"),
        "{message}"
    );
    let reply = as_owner(
        INSIDE_V6,
        Method::POST,
        bulk.clone(),
        Some(json!({ "allowedIpAddressRanges": ["192.0.2.0/24"] })),
    )
    .await;
    assert!(reply.assert_error(400).contains(INSIDE_V6));
    assert!(listed(&app, &org).await.is_empty());

    let reply = as_owner(
        INSIDE_V4,
        Method::POST,
        bulk.clone(),
        Some(json!({ "allowedIpAddressRanges": ["192.0.2.0/24", "198.51.100.0/24"] })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let ids: Vec<String> = reply.body["allowedIpAddressRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "id").to_string())
        .collect();

    // Deleting the range that covers the caller, alone or in bulk: refused.
    let reply = as_owner(
        INSIDE_V4,
        Method::DELETE,
        format!("{path}/{}", ids[0]),
        None,
    )
    .await;
    reply.assert_error(400);
    let reply = as_owner(
        INSIDE_V4,
        Method::POST,
        format!("{path}/bulk-delete"),
        Some(json!({ "allowedIpAddressRangeIds": [ids[0]] })),
    )
    .await;
    reply.assert_error(400);
    assert_eq!(listed(&app, &org).await.len(), 2);
    // The other one is fine; so is emptying the list (no restriction).
    let reply = as_owner(
        INSIDE_V4,
        Method::DELETE,
        format!("{path}/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    // ?force=true does it anyway: the caller is then locked out, and root
    // repairs the list.
    let reply = as_owner(
        INSIDE_V4,
        Method::POST,
        format!("{path}/bulk-delete?force=true"),
        Some(json!({ "allowedIpAddressRangeIds": [ids[0]] })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    let reply = as_owner(
        INSIDE_V4,
        Method::POST,
        format!("{path}?force=true"),
        Some(json!({ "ipAddressRange": "198.51.100.0/24" })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    as_owner(INSIDE_V4, Method::GET, path.clone(), None)
        .await
        .assert_error(403);
    let reply = app
        .send_from(
            OUTSIDE_V6,
            Method::POST,
            &path,
            Some(&app.root),
            &[],
            Some(json!({ "ipAddressRange": "192.0.2.0/24" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "root is not held to the list");
    assert_eq!(
        as_owner(INSIDE_V4, Method::GET, path.clone(), None)
            .await
            .status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------
// Agent tokens bound to networks
// ---------------------------------------------------------------------------

async fn introspect_from(
    app: &TestApp,
    peer: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder()
        .method("POST")
        .uri("/v1/introspect")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Bearer {}", app.root));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::from(format!("token={token}"))).unwrap();
    let ip: std::net::IpAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::new(ip, 40000)));
    app.raw(request).await
}

async fn authorize_from(
    app: &TestApp,
    peer: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    app.send_from(
        peer,
        Method::GET,
        "/v1/authorize",
        Some(token),
        headers,
        None,
    )
    .await
    .status
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn bound_tokens_verify_only_from_their_networks(app: TestApp) {
    let t = app.tenant().await;
    let created = app
        .agent_token(
            &t,
            json!({ "name": "bound", "allowedIpAddressRanges": ["192.0.2.0/24", "2001:db8::/32"] }),
        )
        .await;
    assert_eq!(
        created["allowedIpAddressRanges"],
        json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    let secret = str_of(&created, "token").to_string();
    let id = str_of(&created, "id").to_string();
    let got = app.get(t.token_path(&id)).await;
    assert_eq!(
        got.body["allowedIpAddressRanges"],
        json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    let list = app.get(t.tokens_path()).await;
    assert_eq!(
        list.body["tokens"][0]["allowedIpAddressRanges"],
        json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    // A token without networks shows no such field and verifies anywhere.
    let free = app.agent_token(&t, json!({ "name": "free" })).await;
    assert!(free.get("allowedIpAddressRanges").is_none(), "{free}");
    let free_secret = str_of(&free, "token").to_string();

    for inside in [INSIDE_V4, INSIDE_V6, "::ffff:192.0.2.9"] {
        assert_eq!(
            authorize_from(&app, inside, &secret, &[]).await,
            StatusCode::OK,
            "{inside}"
        );
    }
    for outside in [OUTSIDE_V4, OUTSIDE_V6] {
        // Refused again and again: the cached entry is not a pass.
        for _ in 0..2 {
            assert_eq!(
                authorize_from(&app, outside, &secret, &[]).await,
                StatusCode::UNAUTHORIZED,
                "{outside}"
            );
        }
    }
    app.authorize(&secret).await.assert_error(401);
    assert_eq!(
        authorize_from(&app, OUTSIDE_V4, &free_secret, &[]).await,
        StatusCode::OK
    );
    // A forged address from an untrusted peer changes nothing.
    assert_eq!(
        authorize_from(
            &app,
            OUTSIDE_V4,
            &secret,
            &[("x-forwarded-for", INSIDE_V4), ("x-real-ip", INSIDE_V4)]
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    // Introspection answers for the address it is asked from.
    let active = introspect_from(&app, INSIDE_V4, &secret, &[]).await;
    assert_eq!(active.body["active"], true, "{}", active.body);
    let inactive = introspect_from(&app, OUTSIDE_V4, &secret, &[]).await;
    assert_eq!(inactive.body, json!({ "active": false }));

    // Counted as their own outcome.
    let metrics = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.raw);
    assert_eq!(
        metric(
            &text,
            r#"agentkey_verifications_total{outcome="address_not_allowed"}"#
        ),
        7.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_bound_token_behind_a_trusted_proxy_is_judged_by_the_forwarded_client() {
    let app = TestApp::with_settings(Settings {
        trusted_proxies: TrustedProxies::new(vec![parse_network("127.0.0.1/32").unwrap()]),
        ..Settings::default()
    })
    .await;
    let t = app.tenant().await;
    let created = app
        .agent_token(
            &t,
            json!({ "name": "bound", "allowedIpAddressRanges": ["192.0.2.0/24"] }),
        )
        .await;
    let secret = str_of(&created, "token").to_string();
    assert_eq!(
        authorize_from(&app, "127.0.0.1", &secret, &[("x-real-ip", INSIDE_V4)]).await,
        StatusCode::OK
    );
    assert_eq!(
        authorize_from(
            &app,
            "127.0.0.1",
            &secret,
            &[("x-forwarded-for", INSIDE_V4)]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        authorize_from(&app, "127.0.0.1", &secret, &[("x-real-ip", OUTSIDE_V4)]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        authorize_from(&app, "127.0.0.1", &secret, &[]).await,
        StatusCode::UNAUTHORIZED,
        "the proxy itself is not bound"
    );
    let inactive = introspect_from(
        &app,
        "127.0.0.1",
        &secret,
        &[("x-forwarded-for", OUTSIDE_V4)],
    )
    .await;
    assert_eq!(inactive.body, json!({ "active": false }));
    let active = introspect_from(
        &app,
        "127.0.0.1",
        &secret,
        &[("x-forwarded-for", INSIDE_V4)],
    )
    .await;
    assert_eq!(active.body["active"], true);
}

async fn bad_token_networks_are_refused_and_create_nothing(app: TestApp) {
    let t = app.tenant().await;
    for (ranges, hint) in [
        (json!(["10.1.2.3/8"]), "10.0.0.0/8"),
        (json!(["nonsense"]), "CIDR"),
        (json!(["10.0.0.0/8", "10.0.0.0/8"]), "more than once"),
        (
            json!((0..101)
                .map(|i| format!("10.0.{i}.0/24"))
                .collect::<Vec<_>>()),
            "at most 100",
        ),
    ] {
        let reply = app
            .post(
                t.tokens_path(),
                json!({ "name": "x", "allowedIpAddressRanges": ranges }),
            )
            .await;
        let message = reply.assert_error(400);
        assert!(message.contains(hint), "{message}");
        assert_eq!(reply.fields(), ["allowedIpAddressRanges"]);
    }
    let list = app.get(t.tokens_path()).await;
    assert_eq!(list.body["totalCount"], 0);
    // An empty list is no binding at all.
    let free = app
        .agent_token(&t, json!({ "name": "x", "allowedIpAddressRanges": [] }))
        .await;
    assert!(free.get("allowedIpAddressRanges").is_none());
}

on_every_backend!(
    ranges_round_trip_on_both_base_paths,
    bad_ranges_are_refused_naming_the_entry_and_write_nothing,
    an_organization_holds_at_most_1000_ranges,
    changes_are_audited,
    management_from_outside_the_list_is_refused,
    a_caller_cannot_lock_itself_out_by_one_call,
    bound_tokens_verify_only_from_their_networks,
    bad_token_networks_are_refused_and_create_nothing,
);

/// The list is read from memory, not the database, on each request: a
/// range written behind the process's back (as by a process that cannot
/// notify it) goes unseen until the cache's age limit, then is enforced.
#[tokio::test]
async fn the_list_is_cached_up_to_the_age_limit() {
    let app = TestApp::new().await;
    let org = app.org("acme").await;
    let token = owner(&app, &org).await;
    let path = format!("/v1/organizations/{org}");
    let get = || app.send_from(OUTSIDE_V4, Method::GET, &path, Some(&token), &[], None);
    assert_eq!(get().await.status, StatusCode::OK);
    assert_eq!(
        app.state.verifier.allowlists().len(),
        1,
        "the empty list is cached"
    );

    let behind_its_back = agentkey::model::AllowedIpRange {
        id: agentkey::token::new_id(),
        organization_id: org.clone(),
        ip_address_range: "192.0.2.0/24".into(),
        created_at: crate::common::START,
        updated_at: crate::common::START,
        created_by: crate::common::audit().actor,
        updated_by: crate::common::audit().actor,
    };
    app.store
        .create_allowed_ip_ranges(
            &[behind_its_back],
            1000,
            agentkey::store::LockOutGuard::Off,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(get().await.status, StatusCode::OK, "still the cached list");
    let ttl = Settings::default().cache.positive_ttl;
    app.clock.advance(ttl - 1);
    assert_eq!(get().await.status, StatusCode::OK);
    app.clock.advance(1);
    get().await.assert_error(403);
}
