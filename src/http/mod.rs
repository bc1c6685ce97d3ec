//! The HTTP API: the route table, the middleware around it, and the OpenAPI
//! document generated from the same table.
//!
//! A request flows one way: `transport` (connection limits and timeouts)
//! → `front` (answers a gateway's `GET /authorize` itself, with the same
//! request context; everything else goes on) → `context` (request id and
//! span, metrics, log line, error envelope) → panic guard → body limit →
//! router → extractors (`auth`, `extract`) → one handler per resource file
//! → `store`.

pub mod access;
pub mod agent_tokens;
pub mod allowed_ip_ranges;
pub mod api_tokens;
pub mod audit;
pub mod auth;
pub mod authorize;
pub mod client_ip;
pub mod context;
pub mod deployments;
pub mod error;
pub mod extract;
pub mod front;
pub mod grants;
pub mod health;
pub mod introspect;
pub mod metrics;
pub mod openapi;
pub mod organizations;
pub mod refusals;
pub mod request;
pub mod schema;
pub mod webhooks;
pub mod workspaces;

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::metrics::Metrics;

/// The API served under each base path.
pub const BASE_PATHS: [&str; 2] = ["/v1", "/iam/v1beta1"];

/// Where the Astro Terraform provider's platform client (its workspace and
/// deployment resources) calls: only the organization, workspace and
/// deployment routes are served there, not tokens.
pub const PLATFORM_BASE_PATH: &str = "/platform/v1beta1";

/// Organizations, workspaces and deployments: served under each of
/// [`BASE_PATHS`] and under [`PLATFORM_BASE_PATH`].
fn registry_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            organizations::list_organizations,
            organizations::create_organization
        ))
        .routes(routes!(
            organizations::get_organization,
            organizations::update_organization
        ))
        .routes(routes!(
            workspaces::list_workspaces,
            workspaces::create_workspace
        ))
        .routes(routes!(
            workspaces::get_workspace,
            workspaces::update_workspace,
            workspaces::delete_workspace
        ))
        .routes(routes!(
            deployments::list_deployments,
            deployments::create_deployment
        ))
        .routes(routes!(
            deployments::get_deployment,
            deployments::update_deployment,
            deployments::delete_deployment
        ))
}

/// Routes served under each base path, with their OpenAPI operations.
fn api_routes() -> OpenApiRouter<AppState> {
    registry_routes()
        .routes(routes!(
            agent_tokens::list_agent_tokens,
            agent_tokens::create_agent_token
        ))
        .routes(routes!(
            agent_tokens::get_agent_token,
            agent_tokens::delete_agent_token
        ))
        .routes(routes!(agent_tokens::rotate_agent_token))
        .routes(routes!(
            api_tokens::list_api_tokens,
            api_tokens::create_api_token
        ))
        .routes(routes!(
            api_tokens::get_api_token,
            api_tokens::update_api_token,
            api_tokens::delete_api_token
        ))
        .routes(routes!(api_tokens::update_api_token_roles))
        .routes(routes!(api_tokens::rotate_api_token))
        .routes(routes!(authorize::authorize))
        .routes(routes!(introspect::introspect))
        .routes(routes!(audit::list_audit_logs))
        .routes(routes!(
            allowed_ip_ranges::list_allowed_ip_address_ranges,
            allowed_ip_ranges::create_allowed_ip_address_range
        ))
        .routes(routes!(
            allowed_ip_ranges::bulk_create_allowed_ip_address_ranges
        ))
        .routes(routes!(
            allowed_ip_ranges::bulk_delete_allowed_ip_address_ranges
        ))
        .routes(routes!(allowed_ip_ranges::delete_allowed_ip_address_range))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::rotate_webhook))
        .routes(routes!(webhooks::list_webhook_deliveries))
        .routes(routes!(webhooks::redeliver_webhook))
        .routes(routes!(openapi::openapi_json))
}

/// Routes at the root, outside the versioned API.
fn root_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
}

/// The OpenAPI document, built once from the route table.
pub fn openapi_document() -> &'static String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, api) = api_routes().split_for_parts();
        let (_, root) = root_routes().split_for_parts();
        let mut doc = openapi::ApiDoc::openapi().nest(BASE_PATHS[0], api);
        doc.merge(root);
        openapi::finish(&mut doc);
        doc.to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// The complete application: every route, under both base paths, and
/// `beside` (the console's pages), behind the middleware that gives each
/// request an id and renders every API error; and in front of it all, the
/// front door that answers gateways' verifications without the router.
pub fn router(state: AppState, beside: Router) -> front::Front {
    let (api, _) = api_routes().split_for_parts();
    let api = api.method_not_allowed_fallback(context::method_not_allowed);
    let (root, _) = root_routes().split_for_parts();
    let mut router = Router::new().merge(root);
    for base in BASE_PATHS {
        router = router.nest(base, api.clone());
    }
    let (registry, _) = registry_routes().split_for_parts();
    router = router.nest(
        PLATFORM_BASE_PATH,
        registry.method_not_allowed_fallback(context::method_not_allowed),
    );
    let metrics = state.metrics.clone();
    let router = router
        .with_state(state.clone())
        .merge(api_reference())
        .merge(beside);
    let refusals = refusals::RefusalLog::started();
    front::Front::new(layered(router, metrics, refusals.clone()), state, refusals)
}

/// `GET /docs`: the API reference in the browser, Swagger UI reading
/// `/v1/openapi.json`. Its files are embedded in the binary at build time
/// (`utoipa-swagger-ui`'s `vendored` feature): nothing is fetched from a CDN.
fn api_reference() -> Router {
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::from("/v1/openapi.json"))
        .into()
}

/// The API under its first base path alone, without the request context:
/// what the console calls in-process. Errors come back as an [`ApiError`]
/// in the response's extensions, not rendered.
pub fn api_router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    Router::new()
        .nest(BASE_PATHS[0], api)
        .fallback(context::not_found)
        .method_not_allowed_fallback(context::method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(state)
}

/// Wraps routes in what every request passes through: the request context
/// (id, log line, error envelope), the panic guard, the body limit, and the
/// JSON answers for unknown routes and methods.
pub fn with_middleware(router: Router, metrics: Arc<Metrics>) -> Router {
    layered(router, metrics, refusals::RefusalLog::started())
}

/// [`with_middleware`], summarizing refused verifications into `refusals`.
fn layered(router: Router, metrics: Arc<Metrics>, refusals: Arc<refusals::RefusalLog>) -> Router {
    router
        .fallback(context::not_found)
        .method_not_allowed_fallback(context::method_not_allowed)
        // One layer of three, not three layers: axum boxes each layer
        // around each route, and every box is an allocation per request.
        .layer(
            tower::ServiceBuilder::new()
                .layer(context::RequestContextLayer::new(metrics, refusals))
                .layer(CatchPanicLayer::custom(context::panicked))
                .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES)),
        )
}
