//! The outermost middleware: gives every request an id and a span carrying
//! it, counts and times it, logs it, and renders every error response as the
//! Astro `Error` envelope, whether it came from a handler, an extractor, the
//! router's fallbacks or a panic.
//!
//! It is a hand-written tower layer, not `from_fn`: this is the hot path of
//! every verification, and a layer costs one allocation per request. Its
//! metric handles are resolved once per route and status, not per request.
//! Management requests get one log line each; the verify endpoints (and
//! requests for no route) log a success at debug and count refusals into a
//! summary line (see `refusals`), so clients without a credential cannot
//! fill the log.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, OriginalUri, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use super::refusals::RefusalLog;
use crate::metrics::{Metrics, RequestHandles};
use crate::transport::{MAX_HEADERS, MAX_HEADER_BYTES};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Wraps every route in [`RequestContext`].
#[derive(Clone)]
pub struct RequestContextLayer {
    metrics: Arc<Metrics>,
    refusals: Arc<RefusalLog>,
}

impl RequestContextLayer {
    pub fn new(metrics: Arc<Metrics>) -> RequestContextLayer {
        RequestContextLayer {
            metrics,
            refusals: RefusalLog::started(),
        }
    }
}

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> RequestContext<S> {
        RequestContext {
            inner,
            shared: Arc::new(Shared {
                metrics: self.metrics.clone(),
                refusals: self.refusals.clone(),
                handles: RwLock::new(Vec::new()),
            }),
        }
    }
}

/// The middleware around one route (axum layers each route on its own).
#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Arc<Metrics>,
    refusals: Arc<RefusalLog>,
    /// The metric handles of this route, by method, route and status.
    handles: RwLock<Vec<CachedHandles>>,
}

/// A method, route and status, and the handles that count them.
type CachedHandles = (Method, Box<str>, u16, RequestHandles);

/// More distinct (method, route, status) triples than one route meets; past
/// it, handles are looked up by label each time.
const MAX_CACHED_HANDLES: usize = 64;

impl Shared {
    fn count(&self, method: &Method, route: &str, status: u16, took: std::time::Duration) {
        let cached = |entries: &Vec<CachedHandles>| {
            entries
                .iter()
                .find(|(m, r, s, _)| *s == status && m == method && &**r == route)
                .map(|(_, _, _, handles)| handles.observe(took))
                .is_some()
        };
        if cached(&self.handles.read().unwrap_or_else(|p| p.into_inner())) {
            return;
        }
        let handles = self.metrics.request_handles(method.as_str(), route, status);
        handles.observe(took);
        let mut entries = self.handles.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() < MAX_CACHED_HANDLES
            && !entries
                .iter()
                .any(|(m, r, s, _)| *s == status && m == method && &**r == route)
        {
            entries.push((method.clone(), route.into(), status, handles));
        }
    }
}

impl<S> tower::Service<Request> for RequestContext<S>
where
    S: tower::Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
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
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        let summarized = route.as_ref().is_none_or(|r| is_verify_route(r.as_str()));
        let span = if summarized {
            tracing::debug_span!("request", request_id = %request_id)
        } else {
            tracing::info_span!("request", request_id = %request_id)
        };
        let answer = if headers_too_large(&request) {
            None
        } else {
            // The clone that was made ready is the one that is called.
            let ready = self.inner.clone();
            Some(std::mem::replace(&mut self.inner, ready).call(request))
        };
        let shared = self.shared.clone();
        Box::pin(
            async move {
                let response = match answer {
                    Some(answer) => match answer.await {
                        Ok(response) => response.into_response(),
                        Err(never) => match never {},
                    },
                    None => ApiError::new(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        format!(
                            "the request headers are too large: at most {MAX_HEADERS} headers \
                             and {MAX_HEADER_BYTES} bytes"
                        ),
                    )
                    .into_response(),
                };
                let mut response = render_error(response, &request_id);
                let took = started.elapsed();
                let route = route.as_ref().map_or("(no route)", |r| r.as_str());
                let status = response.status().as_u16();
                shared.count(&method, route, status, took);
                if !summarized {
                    tracing::info!(
                        request_id = %request_id,
                        method = %method,
                        route,
                        status,
                        latency_us = took.as_micros() as u64,
                        "request"
                    );
                } else if status < 400 {
                    tracing::debug!(
                        request_id = %request_id,
                        method = %method,
                        route,
                        status,
                        latency_us = took.as_micros() as u64,
                        "request"
                    );
                } else {
                    shared.refusals.refused(route, status);
                }
                // The id's bytes move into the header; they were checked on
                // the way in (`incoming_request_id`) or made of plain
                // characters here.
                if let Ok(value) =
                    HeaderValue::from_maybe_shared(Bytes::from(request_id.into_bytes()))
                {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The endpoints that answer clients without a management credential.
fn is_verify_route(route: &str) -> bool {
    route.ends_with("/authorize") || route.ends_with("/introspect")
}

/// More headers, or more bytes of them, than a request may carry. hyper
/// refuses far larger heads itself, without a body (see `transport`).
fn headers_too_large(request: &Request) -> bool {
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return true;
    }
    let mut bytes = request.uri().path().len();
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + 4;
    }
    bytes > MAX_HEADER_BYTES
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
