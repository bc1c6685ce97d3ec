//! The web console: server-rendered pages for the people who manage tokens,
//! served by the same binary under `/console`.
//!
//! A request flows one way: security headers → [`session::SignedIn`] (the
//! cookie, its limits, the credential checked again) → a page handler in
//! [`pages`] → [`api::Api`], which calls the JSON API in-process as the
//! signed-in principal → a template in [`views`]. Forms that change
//! something arrive through [`Posted`], which refuses them unless they carry
//! the session's CSRF token and come from the console's own origin.

pub mod api;
pub mod pages;
pub mod session;
pub mod views;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::app::AppState;
use crate::token::id::is_id;
use api::Api;
use session::SignedIn;

/// What every console handler gets: the application, and the API router it
/// calls in-process (built once).
#[derive(Clone)]
pub struct Console {
    pub state: AppState,
    api: Router,
}

/// The console's routes, and `/`, which leads to it.
pub fn router(state: AppState) -> Router {
    let console = Console {
        api: crate::http::api_router(state.clone()),
        state,
    };
    let org = "/console/organizations/{org}";
    let dep = "/console/organizations/{org}/deployments/{dep}";
    let agent = "/console/organizations/{org}/deployments/{dep}/agent-tokens/{token}";
    let api_token = "/console/organizations/{org}/api-tokens/{token}";
    let webhook = "/console/organizations/{org}/webhooks/{webhook}";
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::home))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
        .route(
            "/console/sign-in",
            get(pages::sign_in_form).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/organizations", post(pages::create_organization))
        .route(org, get(pages::organization))
        .route(&format!("{org}/workspaces"), post(pages::create_workspace))
        .route(
            &format!("{org}/workspaces/{{ws}}"),
            get(pages::workspace).post(pages::update_workspace),
        )
        .route(
            &format!("{org}/deployments"),
            post(pages::create_deployment),
        )
        .route(dep, get(pages::deployment).post(pages::update_deployment))
        .route(
            &format!("{dep}/agent-tokens"),
            get(pages::deployment).post(pages::create_agent_token),
        )
        .route(
            &format!("{agent}/rotate"),
            get(pages::rotate_agent_token_form).post(pages::rotate_agent_token),
        )
        .route(
            &format!("{agent}/delete"),
            get(pages::delete_agent_token_form).post(pages::delete_agent_token),
        )
        .route(
            &format!("{org}/api-tokens"),
            get(pages::api_tokens).post(pages::create_api_token),
        )
        .route(
            api_token,
            get(pages::api_token).post(pages::update_api_token),
        )
        .route(
            &format!("{api_token}/roles"),
            post(pages::update_api_token_roles),
        )
        .route(
            &format!("{api_token}/rotate"),
            post(pages::rotate_api_token),
        )
        .route(
            &format!("{api_token}/delete"),
            get(pages::delete_api_token_form).post(pages::delete_api_token),
        )
        .route(&format!("{org}/audit-logs"), get(pages::audit_logs))
        .route(
            &format!("{org}/allowed-ip-address-ranges"),
            get(pages::allow_list).post(pages::add_allowed_range),
        )
        .route(
            &format!("{org}/allowed-ip-address-ranges/{{range}}/delete"),
            post(pages::delete_allowed_range),
        )
        .route(
            &format!("{org}/webhooks"),
            get(pages::webhooks).post(pages::create_webhook),
        )
        .route(
            &format!("{webhook}/rotate"),
            get(pages::rotate_webhook_form).post(pages::rotate_webhook),
        )
        .route(
            &format!("{webhook}/delete"),
            get(pages::delete_webhook_form).post(pages::delete_webhook),
        )
        .route(
            &format!("{webhook}/deliveries"),
            get(pages::webhook_deliveries),
        )
        .route(
            &format!("{webhook}/deliveries/{{delivery}}/redeliver"),
            post(pages::redeliver_webhook),
        )
        .route(
            "/console/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .layer(from_fn(ids_only))
        .layer(from_fn(security_headers))
        .with_state(console)
}

/// The content security policy of every console page: only our own script
/// and style, no inline code, never framed, forms only to ourselves.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ] {
        headers.insert(name, value);
    }
    // Pages show what only this session may see, and sometimes a secret:
    // none is kept by the browser or anything in between. Assets may be.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The words of console paths that are not ids.
const PATH_WORDS: [&str; 13] = [
    "organizations",
    "workspaces",
    "deployments",
    "agent-tokens",
    "api-tokens",
    "audit-logs",
    "allowed-ip-address-ranges",
    "webhooks",
    "deliveries",
    "redeliver",
    "rotate",
    "delete",
    "roles",
];

/// Refuses, with the console's 404 page, a path under
/// `/console/organizations/` with a segment that is neither one of the
/// console's words nor shaped like an id. Pages build API paths from these
/// segments, so nothing else (`%2F`, `..`, `?`) ever reaches one.
async fn ids_only(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if let Some(rest) = path.strip_prefix("/console/organizations/") {
        let fine = rest
            .split('/')
            .all(|segment| PATH_WORDS.contains(&segment) || is_id(segment));
        if !fine {
            return pages::not_found().await;
        }
    }
    next.run(request).await
}

const STYLESHEET: &str = include_str!("../../assets/console/console.css");
const SCRIPT: &str = include_str!("../../assets/console/console.js");

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A signed-in request, with the API as its principal sees it.
pub struct Ctx {
    pub user: SignedIn,
    pub api: Api,
    pub console: Console,
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let user = SignedIn::from_request_parts(parts, console).await?;
        let api = Api::new(
            console.api.clone(),
            user.principal.clone(),
            &parts.headers,
            peer_of(parts),
        );
        Ok(Ctx {
            user,
            api,
            console: console.clone(),
        })
    }
}

/// The client's address, as the API establishes it (trusted proxies and
/// all), for the console's own handlers.
pub struct ClientOf(pub Option<std::net::IpAddr>);

impl FromRequestParts<Console> for ClientOf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientOf(crate::http::client_ip::of(parts, &console.state)))
    }
}

fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// A form that changes something: from a signed-in session, from the
/// console's own origin, carrying the session's CSRF token. Anything else
/// is a 403 that changes nothing.
pub struct Posted<T> {
    pub ctx: Ctx,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<Console> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        if !session::same_origin(&parts.headers, &console.state.settings.console) {
            return Err(pages::forbidden_form());
        }
        let ctx = Ctx::from_request_parts(&mut parts, console).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), &())
            .await
            .map_err(|_| pages::bad_form())?;
        let csrf: CsrfField =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| pages::bad_form())?;
        if !ctx.user.check_csrf(&csrf.csrf) {
            return Err(pages::forbidden_form());
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|_| pages::bad_form())?;
        Ok(Posted { ctx, form })
    }
}

/// A query string read into `T`; one that does not fit (`?offset=abc`) is
/// the console's 400 page, not a plain-text rejection.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Q(value))
            .map_err(|_| pages::bad_query())
    }
}

/// A redirect after a change: `303 See Other`, so a reload does not post
/// again.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}
