//! The one error type of the HTTP layer and the Astro `Error` envelope it
//! renders: `{message, requestId, statusCode, fieldErrors?}`.
//!
//! Handlers and extractors return [`ApiError`]; its `IntoResponse` only sets
//! the status and stashes the error in the response extensions. The
//! request-context middleware (see `context.rs`) renders the body, because it
//! is the one place that knows the request id.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::request::FieldError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field_errors: Vec<FieldError>,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<&'static str>,
    /// The `Retry-After` seconds of a 429 or 503.
    pub retry_after: Option<u64>,
    /// What went wrong inside, for the log line of a 5xx; never sent.
    pub detail: Option<String>,
}

/// The Astro `Error` body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: String,
    pub request_id: String,
    pub status_code: u16,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub field_errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field_errors: Vec::new(),
            challenge: None,
            retry_after: None,
            detail: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 400 naming the fields at fault.
    pub fn invalid(field_errors: Vec<FieldError>) -> ApiError {
        let fields: Vec<&str> = field_errors.iter().map(|e| e.field.as_str()).collect();
        let message = match field_errors.as_slice() {
            [only] => only.message.clone(),
            _ => format!("invalid request: check {}", fields.join(", ")),
        };
        ApiError {
            field_errors,
            ..ApiError::bad_request(message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            challenge: Some("Bearer"),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// A 429 for a client over its limit of failed credential checks.
    pub fn too_many_failures(retry: crate::throttle::RetryAfter) -> ApiError {
        let seconds = retry.seconds();
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed credential checks from this address; retry in {seconds} s"
                ),
            )
        }
    }

    /// A 503 for a credential check that waited too long for a store read.
    pub fn busy() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many credential checks in progress; retry in 1 s",
            )
        }
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the request id identifies it in the server log",
        )
    }

    pub fn body(self, request_id: &str) -> ErrorBody {
        ErrorBody {
            status_code: self.status.as_u16(),
            message: self.message,
            request_id: request_id.to_string(),
            field_errors: self.field_errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::AgentTokenLimit { limit } => ApiError::bad_request(format!(
                "this deployment already has {limit} agent tokens, the maximum; \
                 delete one before creating another"
            )),
            StoreError::AllowedIpRangeLimit { limit } => ApiError::bad_request(format!(
                "the organization would have more than {limit} allowed IP address ranges, \
                 the maximum; nothing was added"
            )),
            StoreError::WebhookLimit { limit } => ApiError::bad_request(format!(
                "this organization already has {limit} webhook endpoints, the maximum; \
                 delete one before creating another"
            )),
            StoreError::AllowedIpRangeExists(present) => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "already in the organization's allowed IP address ranges: {}; \
                     nothing was added",
                    present.join(", ")
                ),
            ),
            // Deleted between the handler's lookup and the insert.
            StoreError::DeploymentNotFound => ApiError::not_found("deployment"),
            StoreError::WorkspaceNotFound => ApiError::invalid(vec![FieldError::new(
                "workspaceId",
                "not_found",
                "the workspace was deleted while the deployment was being created",
            )]),
            // Logged with the request id by the request context. A database
            // error can name tables and values but never a secret: secrets
            // reach the store only as digests.
            other => ApiError {
                detail: Some(format!("store failure: {other}")),
                ..ApiError::internal()
            },
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
    }
}
