//! `GET /metrics`: Prometheus' text format. On the API listener it needs
//! the root credential; with `AGENTKEY_METRICS_LISTEN` set it is also
//! served, without a credential, on that separate address (for a scraper
//! on a private interface).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::auth::Caller;
use super::error::ApiError;
use crate::app::AppState;
use crate::authz::{Action, Resource};

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "Meta", operation_id = "GetMetrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Action::ReadMetrics, Resource::Global)?;
    exposition(&state).await
}

async fn exposition(state: &AppState) -> Result<Response, ApiError> {
    let text = state.render_metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The router of the separate metrics listener: `/metrics` only, open.
pub fn open_router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { exposition(&state).await }),
        )
        .with_state(state);
    super::with_middleware(router, metrics)
}
