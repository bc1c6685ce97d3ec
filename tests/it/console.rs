//! The web console through the real router: signing in and out, the
//! cookie's flags, session limits on a manual clock, CSRF refusals, role
//! parity with the API, and secrets shown exactly once.

use std::time::Duration;

use crate::common::{str_of, TestApp};
use agentkey::app::Settings;
use agentkey::console::session::SessionSettings;
use agentkey::roles::Role;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::json;

mod webhooks;

const HOST: &str = "console.test";

/// A browser of one: keeps the session cookie, sends forms as a browser
/// would (same-origin `Origin`), and reads the HTML.
struct Browser<'a> {
    app: &'a TestApp,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    headers: axum::http::HeaderMap,
    html: String,
}

impl Page {
    /// The `value` of the hidden input named `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.html))
            + marker.len();
        let end = self.html[start..].find('"').expect("closing quote") + start;
        self.html[start..end].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser { app, cookie: None }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        self.send_from(method, path, form, Some(&format!("http://{HOST}")))
            .await
    }

    async fn send_from(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        origin: Option<&str>,
    ) -> Page {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let body = match form {
            Some(fields) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(serde_urlencoded::to_string(fields).unwrap())
            }
            None => Body::empty(),
        };
        let reply = self.app.raw(request.body(body).unwrap()).await;
        let set_cookie = reply.header("set-cookie").map(str::to_string);
        if let Some(set) = &set_cookie {
            let pair = set.split(';').next().unwrap().to_string();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        Page {
            status: reply.status,
            location: reply.header("location").map(str::to_string),
            set_cookie,
            headers: reply.headers.clone(),
            html: String::from_utf8(reply.raw).unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        self.post(
            "/console/sign-in",
            &[("token", token), ("next", "/console/")],
        )
        .await
    }

    /// The CSRF token of the page at `path` (which must render).
    async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        page.hidden("csrf")
    }
}

fn session_settings(idle_minutes: u64, hours: u64, public: Option<&str>) -> Settings {
    Settings {
        console: SessionSettings {
            idle_timeout: Duration::from_secs(idle_minutes * 60),
            lifetime: Duration::from_secs(hours * 3600),
            public_origin: public.map(str::to_string),
        },
        ..Settings::default()
    }
}

async fn api_token(app: &TestApp, org: &str, role: &str, scope: &str, entity: &str) -> String {
    let reply = app
        .post(
            format!("/v1/organizations/{org}/tokens"),
            json!({ "name": format!("{role} token"), "role": role, "scope": scope, "entityId": entity }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    str_of(&reply.body, "token").to_string()
}

on_every_backend!(
    signs_in_and_out_with_a_strict_cookie,
    refuses_bad_credentials_and_agent_tokens,
    a_forged_or_tokenless_post_changes_nothing,
    creates_an_agent_token_and_shows_its_secret_once,
    form_errors_are_the_apis_next_to_the_field,
    roles_decide_in_the_console_as_in_the_api,
    the_session_ends_with_its_credential,
    manages_api_tokens_in_the_console,
    offers_only_roles_the_credential_may_confer,
    the_audit_log_filters_and_pages,
    edits_a_workspace_and_a_deployment_as_the_api_allows,
    manages_the_allowlist_and_token_networks,
);

async fn signs_in_and_out_with_a_strict_cookie(app: TestApp) {
    let mut browser = Browser::new(&app);
    let first = browser.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.location.as_deref(), Some("/console/"));
    let unsigned = browser.get("/console/").await;
    assert_eq!(unsigned.status, StatusCode::SEE_OTHER);
    assert!(unsigned.location.unwrap().starts_with("/console/sign-in"));
    let form = browser.get("/console/sign-in").await;
    assert!(form.html.contains("<label for=\"token\">API token</label>"));
    assert!(form.html.contains(">Sign in</button>"));

    let signed = browser.sign_in(&app.root).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.html);
    assert_eq!(signed.location.as_deref(), Some("/console/"));
    let cookie = signed.set_cookie.expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert!(
        !cookie.contains(&app.root),
        "the cookie is not the credential"
    );

    let home = browser.get("/console/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.html.contains("Signed in as <strong>root</strong>"));
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(home.headers[name], value);
    }
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));

    // Signing in again ends the session this browser had.
    let earlier = browser.cookie.clone();
    browser.sign_in(&app.root).await;
    let mut replay = Browser::new(&app);
    replay.cookie = earlier;
    assert_eq!(replay.get("/console/").await.status, StatusCode::SEE_OTHER);
    let home = browser.get("/console/").await;

    let old_cookie = browser.cookie.clone();
    let csrf = home.hidden("csrf");
    let out = browser.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    // The old cookie, replayed, no longer opens anything.
    browser.cookie = old_cookie;
    let after = browser.get("/console/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
}

async fn refuses_bad_credentials_and_agent_tokens(app: TestApp) {
    let t = app.tenant().await;
    let agent = app.agent_token(&t, json!({ "name": "gw" })).await;
    let mut browser = Browser::new(&app);
    let wrong = browser.sign_in("akapi_notarealtoken").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.html.contains("invalid, expired or revoked"));
    assert!(
        !wrong.html.contains("akapi_notarealtoken"),
        "secrets are not echoed"
    );
    let refused = browser.sign_in(str_of(&agent, "token")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.html.contains("An agent token cannot sign in"));
    assert!(refused.set_cookie.is_none() && browser.cookie.is_none());
    // The next page after sign-in is a console path, never another site.
    let elsewhere = browser
        .post(
            "/console/sign-in",
            &[("token", &app.root), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(elsewhere.location.as_deref(), Some("/console/"));
}

async fn a_forged_or_tokenless_post_changes_nothing(app: TestApp) {
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let csrf = browser.csrf("/console/").await;
    let without = browser
        .post("/console/organizations", &[("name", "forged")])
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    let wrong = browser
        .post(
            "/console/organizations",
            &[("name", "forged"), ("csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let cross_site = browser
        .send_from(
            Method::POST,
            "/console/organizations",
            Some(&[("name", "forged"), ("csrf", &csrf)]),
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert!(cross_site.html.contains("nothing was changed"));
    let listed = app.get("/v1/organizations").await;
    assert_eq!(listed.body["totalCount"], 0, "{}", listed.body);

    let real = browser
        .post(
            "/console/organizations",
            &[("name", "real"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(real.status, StatusCode::SEE_OTHER, "{}", real.html);
    assert_eq!(app.get("/v1/organizations").await.body["totalCount"], 1);
}

async fn creates_an_agent_token_and_shows_its_secret_once(app: TestApp) {
    let t = app.tenant().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let page_path = format!(
        "/console/organizations/{}/deployments/{}",
        t.org, t.deployment
    );
    let page = browser.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    for label in ["Name", "Description", "Expires in (days)"] {
        assert!(page.html.contains(&format!(">{label}</label>")), "{label}");
    }
    let form = [
        ("csrf", page.hidden("csrf")),
        ("nonce", page.hidden("nonce")),
        ("name", "airflow-agent".to_string()),
        ("description", "from the console".to_string()),
        ("tokenExpiryPeriodInDays", "30".to_string()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = browser
        .post(&format!("{page_path}/agent-tokens"), &form)
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    assert_eq!(created.headers["cache-control"], "no-store");
    assert!(created.html.contains("shown only this once"));
    let secret = created.hidden_secret();
    assert!(secret.starts_with("akagt_"));
    assert_eq!(app.authorize(&secret).await.status, StatusCode::OK);

    // A nonce this server did not issue is spent on nothing.
    let mut forged: Vec<(&str, &str)> = form.clone();
    let made_up = "a".repeat(64);
    forged[1] = ("nonce", &made_up);
    let refused = browser
        .post(&format!("{page_path}/agent-tokens"), &forged)
        .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert!(refused.location.unwrap().ends_with("notice=already-done"));

    // Sent again (a reload, the back button): nothing is created or shown.
    let again = browser
        .post(&format!("{page_path}/agent-tokens"), &form)
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let shown = browser.get(again.location.as_deref().unwrap()).await;
    assert!(!shown.html.contains(&secret));
    assert!(shown.html.contains("already sent once"));
    let listed = app.get(t.tokens_path()).await;
    assert_eq!(listed.body["totalCount"], 1, "{}", listed.body);
    let id = str_of(&listed.body["tokens"][0], "id").to_string();
    assert_eq!(listed.body["tokens"][0]["expiryPeriodInDays"], 30);

    // Audited exactly as the API would: same action, target and actor.
    let audit = app
        .get(format!(
            "/v1/organizations/{}/audit-logs?action=agentToken.create",
            t.org
        ))
        .await;
    assert_eq!(audit.body["totalCount"], 1, "{}", audit.body);
    assert_eq!(audit.body["auditLogs"][0]["targetId"], id);
    assert_eq!(audit.body["auditLogs"][0]["actor"]["apiTokenName"], "root");

    // Rotate with a grace window: the new secret once, the old one still good.
    let rotate_path = format!("{page_path}/agent-tokens/{id}/rotate");
    let rotate_form = browser.get(&rotate_path).await;
    assert!(rotate_form.html.contains(">Grace period (seconds)</label>"));
    let rotated = browser
        .post(
            &rotate_path,
            &[
                ("csrf", &rotate_form.hidden("csrf")),
                ("nonce", &rotate_form.hidden("nonce")),
                ("gracePeriodSeconds", "600"),
            ],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.html);
    let fresh = rotated.hidden_secret();
    assert_ne!(fresh, secret);
    assert_eq!(app.authorize(&fresh).await.status, StatusCode::OK);
    assert_eq!(app.authorize(&secret).await.status, StatusCode::OK);
    let listing = browser.get(&page_path).await;
    assert!(
        listing.html.contains("old secret valid until"),
        "{}",
        listing.html
    );

    // Delete asks first, then the token is refused at once.
    let delete_path = format!("{page_path}/agent-tokens/{id}/delete");
    let confirm = browser.get(&delete_path).await;
    assert!(confirm.html.contains("cannot be undone"));
    let deleted = browser
        .post(&delete_path, &[("csrf", &confirm.hidden("csrf"))])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(app.authorize(&fresh).await.status, StatusCode::UNAUTHORIZED);
}

impl Page {
    /// The secret a secret page shows (in its read-only field).
    fn hidden_secret(&self) -> String {
        let marker = "class=\"secret-value\" value=\"";
        let start = self.html.find(marker).expect("a secret field") + marker.len();
        let end = self.html[start..].find('"').unwrap() + start;
        self.html[start..end].to_string()
    }
}

async fn form_errors_are_the_apis_next_to_the_field(app: TestApp) {
    let t = app.tenant().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let page_path = format!(
        "/console/organizations/{}/deployments/{}",
        t.org, t.deployment
    );
    let page = browser.get(&page_path).await;
    let sent = browser
        .post(
            &format!("{page_path}/agent-tokens"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("nonce", &page.hidden("nonce")),
                ("name", "   "),
                ("description", "kept <b>as typed</b>"),
                ("tokenExpiryPeriodInDays", "soon"),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::BAD_REQUEST);
    assert!(
        sent.html.contains("id=\"token-expiry-error\""),
        "{}",
        sent.html
    );
    assert!(sent.html.contains("must be a whole number"));
    assert!(
        sent.html
            .contains("value=\"kept &#60;b&#62;as typed&#60;/b&#62;\"")
            || sent
                .html
                .contains("value=\"kept &lt;b&gt;as typed&lt;/b&gt;\""),
        "{}",
        sent.html
    );
    let named = browser.get(&page_path).await;
    let blank = browser
        .post(
            &format!("{page_path}/agent-tokens"),
            &[
                ("csrf", &named.hidden("csrf")),
                ("nonce", &named.hidden("nonce")),
                ("name", "   "),
            ],
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    let api = app.post(t.tokens_path(), json!({ "name": "   " })).await;
    let message = api.assert_error(400).to_string();
    assert!(blank.html.contains(&message), "{message} in {}", blank.html);
    assert_eq!(app.get(t.tokens_path()).await.body["totalCount"], 0);
}

async fn roles_decide_in_the_console_as_in_the_api(app: TestApp) {
    let t = app.tenant().await;
    let agent = app.agent_token(&t, json!({ "name": "gw" })).await;
    let id = str_of(&agent, "id");
    let member = api_token(&app, &t.org, "WORKSPACE_MEMBER", "WORKSPACE", &t.workspace).await;
    // The API refuses this role a delete ...
    let api = app
        .send(Method::DELETE, &t.token_path(id), Some(&member), None)
        .await;
    api.assert_error(403);
    // ... and so does the console, which offers no delete link either.
    let mut browser = Browser::new(&app);
    browser.sign_in(&member).await;
    let page_path = format!(
        "/console/organizations/{}/deployments/{}",
        t.org, t.deployment
    );
    let page = browser.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("gw"));
    assert!(
        !page.html.contains("/delete\""),
        "no delete link: {}",
        page.html
    );
    let csrf = page.hidden("csrf");
    let refused = browser
        .post(
            &format!("{page_path}/agent-tokens/{id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert_eq!(
        app.authorize(str_of(&agent, "token")).await.status,
        StatusCode::OK
    );
    // Another organization is as invisible as through the API.
    let other = app.org("other").await;
    let hidden = browser
        .get(&format!("/console/organizations/{other}"))
        .await;
    let through_api = app
        .send(
            Method::GET,
            &format!("/v1/organizations/{other}"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(hidden.status, through_api.status);
    assert!(hidden
        .html
        .contains(through_api.body["message"].as_str().unwrap()));
}

async fn the_session_ends_with_its_credential(app: TestApp) {
    let t = app.tenant().await;
    let owner = api_token(&app, &t.org, "ORGANIZATION_OWNER", "ORGANIZATION", &t.org).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&owner).await;
    let org_page = format!("/console/organizations/{}", t.org);
    assert_eq!(browser.get(&org_page).await.status, StatusCode::OK);
    let listed = app.get(format!("/v1/organizations/{}/tokens", t.org)).await;
    let token_id = str_of(&listed.body["tokens"][0], "id").to_string();
    app.delete(format!("/v1/organizations/{}/tokens/{token_id}", t.org))
        .await;
    let after = browser.get(&org_page).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(after.location.unwrap().starts_with("/console/sign-in"));
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_lifetime() {
    let app = TestApp::sqlite(session_settings(30, 12, None)).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    app.clock.advance(29 * 60);
    assert_eq!(browser.get("/console/").await.status, StatusCode::OK);
    app.clock.advance(31 * 60);
    let idle = browser.get("/console/").await;
    assert_eq!(idle.status, StatusCode::SEE_OTHER, "idle for 31 minutes");
    assert!(idle.set_cookie.unwrap().contains("Max-Age=0"));

    browser.sign_in(&app.root).await;
    for _ in 0..(12 * 60 / 20 - 1) {
        app.clock.advance(20 * 60);
        assert_eq!(browser.get("/console/").await.status, StatusCode::OK);
    }
    app.clock.advance(20 * 60);
    assert_eq!(
        browser.get("/console/").await.status,
        StatusCode::SEE_OTHER,
        "12 hours old, however busy"
    );
}

#[tokio::test]
async fn an_https_public_url_makes_the_cookie_secure_and_names_the_origin() {
    let app = TestApp::sqlite(session_settings(30, 12, Some("https://keys.example"))).await;
    let mut browser = Browser::new(&app);
    // The Host header is not the public origin: a form from it is refused.
    let refused = browser.sign_in(&app.root).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let signed = browser
        .send_from(
            Method::POST,
            "/console/sign-in",
            Some(&[("token", &app.root)]),
            Some("https://keys.example"),
        )
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    assert!(signed.set_cookie.unwrap().contains("; Secure"));
}

#[tokio::test]
async fn pages_are_html_even_when_missing() {
    let app = TestApp::sqlite(Settings::default()).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let missing = browser.get("/console/organizations/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.html.starts_with("<!doctype html>"));
    // An id with an encoded slash never becomes another API path.
    let t = app.tenant().await;
    for sneaky in [
        format!("/console/organizations/{}%2Ftokens", t.org),
        format!(
            "/console/organizations/{}/deployments/..%2F..%2Fmetrics",
            t.org
        ),
        format!(
            "/console/organizations/{}/workspaces/{}%3Flimit=1",
            t.org, t.workspace
        ),
    ] {
        let page = browser.get(&sneaky).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{sneaky}");
        assert!(page.html.contains("no such page"), "{sneaky}");
    }
    let unknown = browser.get("/console/no/such/page").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.html.contains("no such page"));
    let css = browser.get("/console/assets/console.css").await;
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert!(css.html.contains("prefers-color-scheme: dark"));
}

/// The `<option>` values of the `<select>` with this id.
fn options(html: &str, select_id: &str) -> Vec<String> {
    let start = html
        .find(&format!("<select id=\"{select_id}\""))
        .unwrap_or_else(|| panic!("no select {select_id}"));
    let end = html[start..].find("</select>").unwrap() + start;
    html[start..end]
        .split("<option value=\"")
        .skip(1)
        .map(|o| o[..o.find('"').unwrap()].to_string())
        .collect()
}

async fn manages_api_tokens_in_the_console(app: TestApp) {
    let t = app.tenant().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let list_path = format!("/console/organizations/{}/api-tokens", t.org);
    let list = browser.get(&list_path).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.html);
    let roles = options(&list.html, "api-role");
    assert!(
        roles.contains(&"ORGANIZATION_OWNER".to_string()),
        "{roles:?}"
    );
    let workspace_entity = format!("WORKSPACE:{}", t.workspace);
    assert!(options(&list.html, "api-entity").contains(&workspace_entity));
    let created = browser
        .post(
            &list_path,
            &[
                ("csrf", &list.hidden("csrf")),
                ("nonce", &list.hidden("nonce")),
                ("name", "ci deployer"),
                ("description", "pipelines"),
                ("role", "WORKSPACE_OWNER"),
                ("entity", &workspace_entity),
                ("tokenExpiryPeriodInDays", ""),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    let secret = created.hidden_secret();
    assert!(secret.starts_with("akapi_"));
    let ws_path = format!("/v1/organizations/{}/workspaces/{}", t.org, t.workspace);
    let as_token = |token: String| {
        let path = ws_path.clone();
        let app = &app;
        async move {
            app.send(Method::GET, &path, Some(&token), None)
                .await
                .status
        }
    };
    assert_eq!(as_token(secret.clone()).await, StatusCode::OK);

    let listed = app.get(format!("/v1/organizations/{}/tokens", t.org)).await;
    let id = str_of(&listed.body["tokens"][0], "id").to_string();
    let token_path = format!("{list_path}/{id}");
    let page = browser.get(&token_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let renamed = browser
        .post(
            &token_path,
            &[
                ("csrf", &page.hidden("csrf")),
                ("name", "ci"),
                ("description", "renamed"),
            ],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER, "{}", renamed.html);
    let got = app
        .get(format!("/v1/organizations/{}/tokens/{id}", t.org))
        .await;
    assert_eq!(
        (got.body["name"].as_str(), got.body["description"].as_str()),
        (Some("ci"), Some("renamed"))
    );

    // The API's rule holds here too: a token keeps a role on its own scope.
    let deployment_entity = format!("DEPLOYMENT:{}", t.deployment);
    let refused = browser
        .post(
            &format!("{token_path}/roles"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("role", "DEPLOYMENT_ADMIN"),
                ("entity", &deployment_entity),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.html.contains("own WORKSPACE role"),
        "{}",
        refused.html
    );
    let reroled = browser
        .post(
            &format!("{token_path}/roles"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("role", "WORKSPACE_MEMBER"),
                ("entity", &workspace_entity),
            ],
        )
        .await;
    assert_eq!(reroled.status, StatusCode::SEE_OTHER, "{}", reroled.html);
    let got = app
        .get(format!("/v1/organizations/{}/tokens/{id}", t.org))
        .await;
    assert_eq!(
        got.body["roles"][0]["role"], "WORKSPACE_MEMBER",
        "{}",
        got.body
    );
    assert_eq!(as_token(secret.clone()).await, StatusCode::OK);

    let page = browser.get(&token_path).await;
    let rotated = browser
        .post(
            &format!("{token_path}/rotate"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("nonce", &page.hidden("nonce")),
            ],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.html);
    let fresh = rotated.hidden_secret();
    assert_ne!(fresh, secret);
    assert_eq!(as_token(secret).await, StatusCode::UNAUTHORIZED);

    let confirm = browser.get(&format!("{token_path}/delete")).await;
    assert!(confirm.html.contains("cannot be undone"));
    let deleted = browser
        .post(
            &format!("{token_path}/delete"),
            &[("csrf", &confirm.hidden("csrf"))],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(as_token(fresh).await, StatusCode::UNAUTHORIZED);
}

async fn offers_only_roles_the_credential_may_confer(app: TestApp) {
    let t = app.tenant().await;
    // An organization owner sees the list and may confer every role.
    let owner = api_token(&app, &t.org, "ORGANIZATION_OWNER", "ORGANIZATION", &t.org).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&owner).await;
    let list_path = format!("/console/organizations/{}/api-tokens", t.org);
    let list = browser.get(&list_path).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.html);
    assert_eq!(options(&list.html, "api-role").len(), Role::ALL.len());
    // A workspace owner may not list the organization's tokens: the
    // console answers as the API does, and offers nothing.
    let ws_owner = api_token(&app, &t.org, "WORKSPACE_OWNER", "WORKSPACE", &t.workspace).await;
    let mut other = Browser::new(&app);
    other.sign_in(&ws_owner).await;
    let refused = other.get(&list_path).await;
    let api = app
        .send(
            Method::GET,
            &format!("/v1/organizations/{}/tokens", t.org),
            Some(&ws_owner),
            None,
        )
        .await;
    assert_eq!(refused.status, api.status);
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!refused.html.contains("Create API token"));
    // A forged form asking for more than the credential holds is the
    // API's 403, with what was typed kept, and creates nothing.
    // (Nonces belong to the session: one from the deployment page will do.)
    let dep_page = other
        .get(&format!(
            "/console/organizations/{}/deployments/{}",
            t.org, t.deployment
        ))
        .await;
    let escalated = other
        .post(
            &list_path,
            &[
                ("csrf", &dep_page.hidden("csrf")),
                ("nonce", &dep_page.hidden("nonce")),
                ("name", "escalation"),
                ("role", "ORGANIZATION_OWNER"),
                ("entity", &format!("ORGANIZATION:{}", t.org)),
            ],
        )
        .await;
    assert_eq!(
        escalated.status,
        StatusCode::FORBIDDEN,
        "{}",
        escalated.html
    );
    let all = app.get(format!("/v1/organizations/{}/tokens", t.org)).await;
    assert_eq!(
        all.body["totalCount"], 2,
        "nothing was created: {}",
        all.body
    );
}

async fn the_audit_log_filters_and_pages(app: TestApp) {
    let t = app.tenant().await;
    for name in ["a", "b", "c"] {
        app.agent_token(&t, json!({ "name": name })).await;
    }
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let audit = format!("/console/organizations/{}/audit-logs", t.org);
    let all = browser.get(&audit).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.html.contains("workspace.create") && all.html.contains("agentToken.create"));
    let only = browser
        .get(&format!("{audit}?action=agentToken.create&limit=2"))
        .await;
    assert_eq!(only.status, StatusCode::OK);
    assert!(!only.html.contains("<td>workspace.create</td>"));
    assert_eq!(only.html.matches("<td>agentToken.create</td>").count(), 2);
    assert!(only.html.contains("1–2 of 3") && only.html.contains("Next page"));
    let bad = browser.get(&format!("{audit}?from=yesterday")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.html.contains("From must be a date and time."));
    let later = browser.get(&format!("{audit}?from=2099-01-01T00:00")).await;
    assert!(later.html.contains("No event matches."));
}

#[tokio::test]
async fn failed_sign_ins_are_limited_like_failed_api_calls() {
    let app = TestApp::sqlite(Settings::default()).await;
    let mut browser = Browser::new(&app);
    let burst = Settings::default().auth_failures.burst;
    for _ in 0..burst {
        let wrong = browser.sign_in("akapi_notarealtoken").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    let limited = browser.sign_in("akapi_notarealtoken").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.html
    );
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.html.contains("too many failed credential checks"));
    // Over the limit even the right credential waits: nothing is read.
    let right = browser.sign_in(&app.root).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(browser.cookie.is_none());
}

/// A cookie that names no session is a failed credential check: a flood
/// of made-up cookies is limited like a flood of made-up tokens.
#[tokio::test]
async fn made_up_session_cookies_are_limited() {
    let app = TestApp::sqlite(Settings::default()).await;
    let burst = Settings::default().auth_failures.burst;
    let mut browser = Browser::new(&app);
    for i in 0..burst {
        browser.cookie = Some(format!("agentkey_session={:064x}", i + 1));
        let page = browser.get("/console/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "round {i}");
    }
    browser.cookie = Some(format!("agentkey_session={:064x}", 999));
    let limited = browser.get("/console/").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.html
    );
    assert!(limited.headers.contains_key("retry-after"));
}

/// The workspace and deployment pages edit name and description through
/// the API's updates: saved and read back, refused next to the field,
/// and neither offered nor accepted where the API says 403.
async fn edits_a_workspace_and_a_deployment_as_the_api_allows(app: TestApp) {
    let t = app.tenant().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.root).await;
    let org = &t.org;
    for (page_path, api_path, heading) in [
        (
            format!("/console/organizations/{org}/workspaces/{}", t.workspace),
            format!("/v1/organizations/{org}/workspaces/{}", t.workspace),
            "Edit workspace",
        ),
        (
            format!("/console/organizations/{org}/deployments/{}", t.deployment),
            format!("/v1/organizations/{org}/deployments/{}", t.deployment),
            "Edit deployment",
        ),
    ] {
        let before = app.get(&api_path).await.body;
        let page = browser.get(&page_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        assert!(page.html.contains(heading), "{}", page.html);
        let name = str_of(&before, "name");
        assert!(
            page.html.contains(&format!("value=\"{name}\"")),
            "prefilled"
        );

        let refused = browser
            .post(
                &page_path,
                &[
                    ("csrf", &page.hidden("csrf")),
                    ("name", " "),
                    ("description", "kept"),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
        let api = app.post(&api_path, json!({ "name": " " })).await;
        let message = api.assert_error(400).to_string();
        assert!(
            refused.html.contains(&message),
            "{message} in {}",
            refused.html
        );
        assert!(
            refused.html.contains("value=\"kept\""),
            "what was typed stays"
        );
        assert_eq!(app.get(&api_path).await.body, before, "nothing written");

        let saved = browser
            .post(
                &page_path,
                &[
                    ("csrf", &page.hidden("csrf")),
                    ("name", "renamed here"),
                    ("description", ""),
                ],
            )
            .await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
        let after = app.get(&api_path).await.body;
        assert_eq!(after["name"], "renamed here");
        assert_eq!(after["description"], "");
        assert_eq!(after["createdAt"], before["createdAt"]);
        let shown = browser.get(&format!("{page_path}?notice=saved")).await;
        assert!(shown.html.contains("Saved."));
        assert!(shown.html.contains("renamed here"));
    }

    // A workspace member may read both pages, and edit neither.
    let member = api_token(&app, org, "WORKSPACE_MEMBER", "WORKSPACE", &t.workspace).await;
    let mut other = Browser::new(&app);
    other.sign_in(&member).await;
    for (page_path, api_path) in [
        (
            format!("/console/organizations/{org}/workspaces/{}", t.workspace),
            format!("/v1/organizations/{org}/workspaces/{}", t.workspace),
        ),
        (
            format!("/console/organizations/{org}/deployments/{}", t.deployment),
            format!("/v1/organizations/{org}/deployments/{}", t.deployment),
        ),
    ] {
        let page = other.get(&page_path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        assert!(
            !page.html.contains("<h2>Edit"),
            "no edit form: {}",
            page.html
        );
        let refused = other
            .post(
                &page_path,
                &[("csrf", &page.hidden("csrf")), ("name", "not allowed")],
            )
            .await;
        let api = app
            .send(
                Method::POST,
                &api_path,
                Some(&member),
                Some(json!({ "name": "not allowed" })),
            )
            .await;
        assert_eq!(refused.status, api.status);
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get(&api_path).await.body["name"], "renamed here");
    }
}

/// The organization's allowed IP address ranges and an agent token's
/// networks, edited in the console: errors next to the field, the
/// lock-out protection (in-process requests have no address, so an API
/// token's session is outside any list), CSRF, and root's exemption.
async fn manages_the_allowlist_and_token_networks(app: TestApp) {
    let t = app.tenant().await;
    let owner = api_token(&app, &t.org, "ORGANIZATION_OWNER", "ORGANIZATION", &t.org).await;
    let page_path = format!("/console/organizations/{}/allowed-ip-address-ranges", t.org);
    let api_path = format!("/v1/organizations/{}/allowed-ip-address-ranges", t.org);

    let mut root = Browser::new(&app);
    root.sign_in(&app.root).await;
    let org_page = root.get(&format!("/console/organizations/{}", t.org)).await;
    assert!(org_page.html.contains(&page_path), "{}", org_page.html);
    let page = root.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("The list is empty"));
    let csrf = page.hidden("csrf");

    // A range not in normalised form: the API's words next to the field.
    let refused = root
        .post(
            &page_path,
            &[("csrf", &csrf), ("ipAddressRange", "10.1.2.3/8")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.html.contains("id=\"range-error\""),
        "{}",
        refused.html
    );
    assert!(refused.html.contains("10.0.0.0/8"));
    assert!(listed_ranges(&app, &api_path).await.is_empty());
    // Without the CSRF token nothing changes.
    let forged = root
        .post(&page_path, &[("ipAddressRange", "192.0.2.0/24")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(listed_ranges(&app, &api_path).await.is_empty());

    let added = root
        .post(
            &page_path,
            &[("csrf", &csrf), ("ipAddressRange", "192.0.2.0/24")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
    let page = root.get(&page_path).await;
    assert!(
        page.html.contains("<code>192.0.2.0/24</code>"),
        "{}",
        page.html
    );
    assert!(page
        .html
        .contains("answers API tokens only from these ranges"));
    assert_eq!(listed_ranges(&app, &api_path).await, ["192.0.2.0/24"]);
    let org_page = root.get(&format!("/console/organizations/{}", t.org)).await;
    assert!(org_page.html.contains("(enforced)"));

    // An owner's session, from no known address, is refused.
    let mut person = Browser::new(&app);
    person.sign_in(&owner).await;
    let shut_out = person.get(&page_path).await;
    assert_eq!(shut_out.status, StatusCode::FORBIDDEN, "{}", shut_out.html);
    assert!(
        shut_out.html.contains("is not allowed"),
        "{}",
        shut_out.html
    );

    // Root deletes the range; the owner is let in again.
    let range_id = app.get(&api_path).await.body["allowedIpAddressRanges"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = root
        .post(
            &format!("{page_path}/{range_id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.html);
    assert!(listed_ranges(&app, &api_path).await.is_empty());
    let page = person.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("<code>unknown</code>"));
    let person_csrf = page.hidden("csrf");

    // The owner cannot lock itself out by mistake, only on purpose.
    let locked = person
        .post(
            &page_path,
            &[("csrf", &person_csrf), ("ipAddressRange", "192.0.2.0/24")],
        )
        .await;
    assert_eq!(locked.status, StatusCode::BAD_REQUEST);
    assert!(locked.html.contains("lock you out"), "{}", locked.html);
    assert!(listed_ranges(&app, &api_path).await.is_empty());
    let forced = person
        .post(
            &page_path,
            &[
                ("csrf", &person_csrf),
                ("ipAddressRange", "192.0.2.0/24"),
                ("force", "on"),
            ],
        )
        .await;
    assert_eq!(forced.status, StatusCode::SEE_OTHER, "{}", forced.html);
    assert_eq!(person.get(&page_path).await.status, StatusCode::FORBIDDEN);

    // An agent token bound to networks, from the deployment's form.
    let dep_path = format!(
        "/console/organizations/{}/deployments/{}",
        t.org, t.deployment
    );
    let page = root.get(&dep_path).await;
    assert!(page.html.contains("Usable from (IP address ranges)"));
    let bad = root
        .post(
            &format!("{dep_path}/agent-tokens"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("nonce", &page.hidden("nonce")),
                ("name", "bound"),
                ("allowedIpAddressRanges", "10.1.2.3/8"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.html.contains("id=\"token-networks-error\""),
        "{}",
        bad.html
    );
    let page = root.get(&dep_path).await;
    let created = root
        .post(
            &format!("{dep_path}/agent-tokens"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("nonce", &page.hidden("nonce")),
                ("name", "bound"),
                ("allowedIpAddressRanges", "10.0.0.0/8, 2001:db8::/32"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    let page = root.get(&dep_path).await;
    assert!(
        page.html.contains("<td>10.0.0.0/8, 2001:db8::/32</td>"),
        "{}",
        page.html
    );
    let tokens = app.get(t.tokens_path()).await;
    assert_eq!(
        tokens.body["tokens"][0]["allowedIpAddressRanges"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
}

async fn listed_ranges(app: &TestApp, api_path: &str) -> Vec<String> {
    let reply = app.get(api_path).await;
    reply.body["allowedIpAddressRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ipAddressRange"].as_str().unwrap().to_string())
        .collect()
}
