//! The outermost middleware: gives every request an id, logs one line per
//! request, and renders every error response as the Astro `Error` envelope,
//! whether it came from a handler, an extractor, the router's fallbacks or a
//! panic.

use std::cell::Cell;
use std::time::Instant;

use axum::body::{Body, Bytes};
use std::sync::Arc;

use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::metrics::Metrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn request_context(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = match incoming_request_id(&request) {
        Some(id) => id,
        None => {
            // Handlers read the id from the request (for the audit trail).
            let id = next_request_id();
            if let Ok(value) = HeaderValue::from_str(&id) {
                request
                    .headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
            }
            id
        }
    };
    // The route pattern, not the concrete path: ids stay out of metrics'
    // labels and the log, and nothing from the query string is logged.
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();

    let response = next.run(request).await;
    let mut response = render_error(response, &request_id);
    let took = started.elapsed();
    let route = route.as_ref().map_or("(no route)", |r| r.as_str());
    let status = response.status().as_u16();
    metrics.request(method.as_str(), route, status, took);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route,
        status,
        latency_us = took.as_micros() as u64,
        "request"
    );
    // The id's bytes move into the header; they were checked on the way in
    // (`incoming_request_id`) or made of plain characters here.
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(request_id.into_bytes())) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    response
}

/// Replaces the body of an error response with the envelope. Responses that
/// carry an [`ApiError`] use its message; any other 4xx/5xx that is not
/// already JSON (axum's own 405, say) gets the status's canonical reason.
fn render_error(mut response: Response, request_id: &str) -> Response {
    let status = response.status();
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(error) => error,
        None if status.is_client_error() || status.is_server_error() => {
            // Already an envelope, or a console page made for people.
            if has_content_type(&response, "application/json")
                || has_content_type(&response, "text/html")
            {
                return response;
            }
            ApiError::new(
                status,
                status.canonical_reason().unwrap_or("error").to_lowercase(),
            )
        }
        None => return response,
    };
    if let Some(detail) = &error.detail {
        tracing::error!(request_id, status = status.as_u16(), "{detail}");
    }
    let body = serde_json::to_vec(&error.body(request_id)).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body.into())
}

fn has_content_type(response: &Response, media_type: &str) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(media_type))
}

/// A request id set by the gateway in front, if it is short and plain enough
/// to echo back and log.
pub fn incoming_request_id(request: &Request) -> Option<String> {
    incoming_request_id_in(request.headers())
}

/// The same, from headers alone.
pub fn incoming_request_id_in(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.:".contains(&b);
    (!value.is_empty() && value.len() <= 128 && value.bytes().all(plain)).then(|| value.to_string())
}

/// A unique id: a random tag drawn once per thread, then that thread's
/// counter. No randomness and no shared counter on the request path, so the
/// cores serving requests never contend for it.
fn next_request_id() -> String {
    thread_local! {
        static NEXT: (String, Cell<u64>) =
            (crate::token::new_id()[10..].to_string(), Cell::new(0));
    }
    NEXT.with(|(tag, counter)| {
        let n = counter.get();
        counter.set(n + 1);
        format!("{tag}-{n:x}")
    })
}

/// The answer for a route that does not exist.
pub async fn not_found(request: Request<Body>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

/// The answer for a route that exists but not with this method.
pub async fn method_not_allowed(OriginalUri(uri): OriginalUri, method: Method) -> ApiError {
    // `OriginalUri`, because inside a nested router the path lacks its base.
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The answer when a handler panicked: a 500, with the details left in the log.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError {
        detail: Some("a request handler panicked".into()),
        ..ApiError::internal()
    }
    .into_response()
}
