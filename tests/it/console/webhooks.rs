//! The console's webhook pages: create (the signing secret shown once),
//! refusals next to the field, rotate and delete behind a confirm page,
//! deliveries paged with a Redeliver button, the page when webhooks are
//! off, and roles that may not manage webhooks.

use std::time::Duration;

use super::{api_token, Browser, Page};
use crate::common::{str_of, Tenant, TestApp};
use crate::webhooks::{drain, settings, worker};
use agentkey::app::Settings;
use agentkey::webhooks::worker::WebhookSettings;
use agentkey::webhooks::EventType;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

fn webhooks_on() -> Settings {
    Settings {
        webhooks: settings(),
        ..Settings::default()
    }
}

on_every_backend!(settings = super::webhooks_on();
    manages_webhook_endpoints_and_shows_each_secret_once,
    lists_deliveries_in_pages_and_redelivers,
    roles_that_may_not_manage_webhooks_are_refused,
);

/// A loopback URL nothing listens on.
async fn closed_url() -> String {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}/hook", closed.local_addr().unwrap())
}

/// An endpoint made through the API, at a loopback URL: its id and URL.
async fn endpoint(app: &TestApp, org: &str) -> (String, String) {
    let url = closed_url().await;
    let hook = app
        .post(
            format!("/v1/organizations/{org}/webhooks"),
            json!({ "url": url }),
        )
        .await;
    assert_eq!(hook.status, StatusCode::OK, "{}", hook.body);
    (str_of(&hook.body, "id").to_string(), url)
}

/// The session's CSRF token and a fresh nonce of its own, from the
/// deployment page (a nonce belongs to the session, not to a page): for
/// forms sent where no page offers them.
async fn session_tokens(browser: &mut Browser<'_>, t: &Tenant) -> (String, String) {
    let page = browser
        .get(&format!(
            "/console/organizations/{}/deployments/{}",
            t.org, t.deployment
        ))
        .await;
    (page.hidden("csrf"), page.hidden("nonce"))
}

async fn listed(app: &TestApp, org: &str) -> Vec<Value> {
    let reply = app.get(format!("/v1/organizations/{org}/webhooks")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["webhooks"].as_array().unwrap().clone()
}

/// The secret the server derives for an endpoint's `generation`.
fn derived(app: &TestApp, id: &str, generation: i64) -> String {
    let key = app.state.settings.webhooks.key.as_ref().unwrap();
    key.endpoint_secret(id, generation)
        .expose_secret()
        .to_string()
}

fn form_of<'a>(page: &Page, fields: &'a [(&'a str, &'a str)]) -> Vec<(String, String)> {
    let mut form = vec![
        ("csrf".to_string(), page.hidden("csrf")),
        ("nonce".to_string(), page.hidden("nonce")),
    ];
    form.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    form
}

fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn manages_webhook_endpoints_and_shows_each_secret_once(app: TestApp) {
    let t = app.tenant().await;
    let mut root = Browser::new(&app);
    root.sign_in(&app.root).await;
    let page_path = format!("/console/organizations/{}/webhooks", t.org);
    let org_page = root.get(&format!("/console/organizations/{}", t.org)).await;
    assert!(org_page.html.contains(&page_path), "{}", org_page.html);

    let page = root.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("No webhook endpoint yet"));
    assert!(!page.html.contains("Webhooks are off"));
    // One checkbox per event type the code knows, none checked.
    for t in EventType::ALL {
        let box_html = format!("name=\"eventTypes\" value=\"{}\">", t.as_str());
        assert!(page.html.contains(&box_html), "{box_html}: {}", page.html);
    }
    assert!(!page.html.contains(" checked>"), "{}", page.html);

    // A URL the API refuses: its words next to the field, what was typed
    // and checked kept, nothing stored.
    let refused_form = form_of(
        &page,
        &[
            ("url", "ftp://127.0.0.1/hook"),
            ("description", "audit sink"),
            ("eventTypes", "agent_token.created"),
            ("eventTypes", "deployment.deleted"),
        ],
    );
    let refused = root.post(&page_path, &pairs(&refused_form)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
    assert!(
        refused.html.contains("id=\"hook-url-error\""),
        "{}",
        refused.html
    );
    assert!(refused.html.contains("aria-invalid=\"true\""));
    assert!(refused.html.contains("value=\"ftp://127.0.0.1/hook\""));
    assert!(refused.html.contains("value=\"audit sink\""));
    assert!(refused
        .html
        .contains("value=\"deployment.deleted\" checked>"));
    assert!(!refused
        .html
        .contains("value=\"agent_token.deleted\" checked>"));
    assert!(listed(&app, &t.org).await.is_empty());

    // Without the CSRF token nothing is created.
    let url = closed_url().await;
    let forged = root
        .post(&page_path, &[("url", url.as_str()), ("nonce", "x")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(listed(&app, &t.org).await.is_empty());

    // Created: the secret once, on the secret page only.
    let page = root.get(&page_path).await;
    let form = form_of(
        &page,
        &[
            ("url", url.as_str()),
            ("description", "audit sink"),
            ("eventTypes", "agent_token.created"),
            ("eventTypes", "deployment.deleted"),
        ],
    );
    let created = root.post(&page_path, &pairs(&form)).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    assert_eq!(created.headers["cache-control"], "no-store");
    assert!(created.html.contains("shown only this once"));
    assert!(created.html.contains("derives it from the server"));
    let secret = created.hidden_secret();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let hooks = listed(&app, &t.org).await;
    assert_eq!(hooks.len(), 1);
    let id = str_of(&hooks[0], "id").to_string();
    assert_eq!(
        hooks[0]["eventTypes"],
        json!(["agent_token.created", "deployment.deleted"])
    );
    assert_eq!(secret, derived(&app, &id, 1));

    // Sent again: nothing created, no secret.
    let again = root.post(&page_path, &pairs(&form)).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let location = again.location.unwrap();
    assert!(location.ends_with("notice=already-done"), "{location}");
    let shown = root.get(&location).await;
    assert!(shown.html.contains("already sent once"));
    assert!(!shown.html.contains(&secret));
    assert_eq!(listed(&app, &t.org).await.len(), 1);

    // Listed, without its secret.
    let page = root.get(&page_path).await;
    assert!(page.html.contains(&format!("<code>{url}</code>")));
    assert!(page
        .html
        .contains("<td>agent_token.created, deployment.deleted</td>"));
    assert!(page.html.contains("<td>audit sink</td>"));
    assert!(!page.html.contains(&secret));

    // Rotate asks first; the new secret once, the old one replaced.
    let rotate_path = format!("{page_path}/{id}/rotate");
    let confirm = root.get(&rotate_path).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.html);
    assert!(confirm.html.contains("signs every request from now on"));
    let rotate_form = [
        ("csrf", confirm.hidden("csrf")),
        ("nonce", confirm.hidden("nonce")),
    ];
    let rotate_form: Vec<(&str, &str)> =
        rotate_form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rotated = root.post(&rotate_path, &rotate_form).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.html);
    let fresh = rotated.hidden_secret();
    assert_ne!(fresh, secret);
    assert_eq!(fresh, derived(&app, &id, 2));
    let twice = root.post(&rotate_path, &rotate_form).await;
    assert_eq!(twice.status, StatusCode::SEE_OTHER);
    assert!(twice.location.unwrap().ends_with("notice=already-done"));
    let audit = app
        .get(format!(
            "/v1/organizations/{}/audit-logs?action=webhook.rotate",
            t.org
        ))
        .await;
    assert_eq!(audit.body["totalCount"], 1, "{}", audit.body);

    // Delete asks first, then the endpoint is gone.
    let delete_path = format!("{page_path}/{id}/delete");
    let confirm = root.get(&delete_path).await;
    assert!(confirm.html.contains("cannot be undone"));
    let csrf = confirm.hidden("csrf");
    let forged = root.post(&delete_path, &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(listed(&app, &t.org).await.len(), 1);
    let deleted = root.post(&delete_path, &[("csrf", &csrf)]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.html);
    let location = deleted.location.unwrap();
    assert!(!location.contains(&fresh));
    let page = root.get(&location).await;
    assert!(page.html.contains("Nothing more is sent"), "{}", page.html);
    assert!(listed(&app, &t.org).await.is_empty());
    let gone = root.get(&delete_path).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

async fn lists_deliveries_in_pages_and_redelivers(app: TestApp) {
    let t = app.tenant().await;
    let (id, _) = endpoint(&app, &t.org).await;
    app.agent_token(&t, json!({ "name": "first" })).await;
    // Out of retries at once: nothing listens at the URL.
    let once = WebhookSettings {
        retry_for: Duration::ZERO,
        ..settings()
    };
    drain(&app, &worker(&app, once)).await;
    app.agent_token(&t, json!({ "name": "second" })).await;

    let mut root = Browser::new(&app);
    root.sign_in(&app.root).await;
    let list = root
        .get(&format!("/console/organizations/{}/webhooks", t.org))
        .await;
    let path = format!("/console/organizations/{}/webhooks/{id}/deliveries", t.org);
    assert!(list.html.contains(&path), "{}", list.html);
    let page = root.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("1–2 of 2"), "{}", page.html);
    assert!(page.html.contains(">PENDING</td>"));
    assert!(page.html.contains(">FAILED</td>"));
    assert!(
        page.html.contains("connect"),
        "the last error: {}",
        page.html
    );
    assert_eq!(page.html.matches(">Redeliver<").count(), 2);

    // Paged like the other lists: one a page, newest first.
    let first = root.get(&format!("{path}?limit=1")).await;
    assert!(first.html.contains("1–1 of 2"), "{}", first.html);
    assert!(first.html.contains(">PENDING</td>"));
    assert!(
        first.html.contains(&format!("{path}?offset=1&#38;limit=1")),
        "{}",
        first.html
    );
    let second = root.get(&format!("{path}?offset=1&limit=1")).await;
    assert!(second.html.contains("2–2 of 2"), "{}", second.html);
    assert!(second.html.contains(">FAILED</td>"));

    // Redeliver the failed one: a new pending delivery of the same event.
    let failed = app
        .get(format!(
            "/v1/organizations/{}/webhooks/{id}/deliveries",
            t.org
        ))
        .await;
    let failed = &failed.body["deliveries"][1];
    assert_eq!(failed["status"], "FAILED");
    let redeliver = format!("{path}/{}/redeliver", str_of(failed, "id"));
    assert!(second.html.contains(&redeliver));
    let forged = root.post(&redeliver, &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let sent = root
        .post(&redeliver, &[("csrf", &second.hidden("csrf"))])
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.html);
    let page = root.get(&sent.location.unwrap()).await;
    assert!(page.html.contains("Queued again"), "{}", page.html);
    assert!(page.html.contains("1–3 of 3"), "{}", page.html);
    let newest = app
        .get(format!(
            "/v1/organizations/{}/webhooks/{id}/deliveries",
            t.org
        ))
        .await;
    assert_eq!(newest.body["deliveries"][0]["eventId"], failed["eventId"]);
    assert_eq!(newest.body["deliveries"][0]["status"], "PENDING");

    // A delivery that is not there is the API's 404.
    let missing = root
        .post(
            &format!("{path}/{}/redeliver", agentkey::token::new_id()),
            &[("csrf", &second.hidden("csrf"))],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.html);
}

async fn roles_that_may_not_manage_webhooks_are_refused(app: TestApp) {
    let t = app.tenant().await;
    let (id, url) = endpoint(&app, &t.org).await;
    // A workspace owner manages agent tokens, not the organization's webhooks.
    let owner = api_token(&app, &t.org, "WORKSPACE_OWNER", "WORKSPACE", &t.workspace).await;
    let mut person = Browser::new(&app);
    person.sign_in(&owner).await;
    let org_page = person
        .get(&format!("/console/organizations/{}", t.org))
        .await;
    assert_eq!(org_page.status, StatusCode::OK, "{}", org_page.html);
    let page_path = format!("/console/organizations/{}/webhooks", t.org);
    assert!(!org_page.html.contains(&page_path), "no link");
    for path in [
        page_path.clone(),
        format!("{page_path}/{id}/rotate"),
        format!("{page_path}/{id}/delete"),
        format!("{page_path}/{id}/deliveries"),
    ] {
        let refused = person.get(&path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Forms sent anyway, with this session's CSRF token and a nonce of its
    // own, are the API's 403 and change nothing.
    let (csrf, nonce) = session_tokens(&mut person, &t).await;
    let other = closed_url().await;
    let created = person
        .post(
            &page_path,
            &[("csrf", &csrf), ("nonce", &nonce), ("url", &other)],
        )
        .await;
    assert_eq!(created.status, StatusCode::FORBIDDEN, "{}", created.html);
    let (_, nonce) = session_tokens(&mut person, &t).await;
    let rotated = person
        .post(
            &format!("{page_path}/{id}/rotate"),
            &[("csrf", &csrf), ("nonce", &nonce)],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::FORBIDDEN, "{}", rotated.html);
    assert!(!rotated.html.contains("whsec_"));
    let deleted = person
        .post(&format!("{page_path}/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status, StatusCode::FORBIDDEN, "{}", deleted.html);
    let hooks = listed(&app, &t.org).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["url"], url.as_str());
    let audit = app
        .get(format!(
            "/v1/organizations/{}/audit-logs?action=webhook.rotate",
            t.org
        ))
        .await;
    assert_eq!(audit.body["totalCount"], 0, "{}", audit.body);
}

/// Without `AGENTKEY_WEBHOOK_KEY` the page says so and how to turn them
/// on, offers no form, and a create sent anyway shows the API's refusal.
#[tokio::test]
async fn the_page_says_when_webhooks_are_off() {
    let app = TestApp::new().await;
    let t = app.tenant().await;
    let mut root = Browser::new(&app);
    root.sign_in(&app.root).await;
    let page_path = format!("/console/organizations/{}/webhooks", t.org);
    let page = root.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Webhooks are off on this server"));
    assert!(page.html.contains("<code>AGENTKEY_WEBHOOK_KEY</code>"));
    assert!(!page.html.contains("name=\"url\""), "no create form");
    // A form sent anyway.
    let (csrf, nonce) = session_tokens(&mut root, &t).await;
    let url = closed_url().await;
    let sent = root
        .post(
            &page_path,
            &[("csrf", &csrf), ("nonce", &nonce), ("url", &url)],
        )
        .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST, "{}", sent.html);
    assert!(sent.html.contains("webhooks are off"), "{}", sent.html);
    assert!(listed(&app, &t.org).await.is_empty());
}
