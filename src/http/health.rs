//! `/healthz` (the process is up) and `/readyz` (the database answers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::app::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "Health", operation_id = "GetHealth", security(()),
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// How long readiness waits for the database: a load balancer wants a
/// prompt "no", not a pool's acquire timeout.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "Health", operation_id = "GetReadiness", security(()),
    responses((status = 200, description = "Ready", body = Health),
              (status = 503, description = "The database is unreachable", body = super::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let failure = match tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => return Ok(Json(Health { status: "ready" })),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {READINESS_TIMEOUT:?}"),
    };
    tracing::warn!(error = %failure, "readiness check failed");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unreachable",
    ))
}
