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

use axum::body::Body;
use axum::extract::{MatchedPath, OriginalUri, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use super::refusals::RefusalLog;
use crate::metrics::{Metrics, RequestHandles};
use crate::transport::{MAX_HEADERS, MAX_HEADER_BYTES};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The same, parsed once: a name given as text is checked on every use.
pub static REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Wraps every route in [`RequestContext`].
#[derive(Clone)]
pub struct RequestContextLayer {
    metrics: Arc<Metrics>,
    refusals: Arc<RefusalLog>,
}

impl RequestContextLayer {
    /// The layer, summarizing refusals into `refusals` (shared with the
    /// front door's verify path, so that one summary covers both).
    pub fn new(metrics: Arc<Metrics>, refusals: Arc<RefusalLog>) -> RequestContextLayer {
        RequestContextLayer { metrics, refusals }
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
        // The route pattern, not the concrete path: ids stay out of metrics'
        // labels and the log, and nothing from the query string is logged.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let summarized = route.as_ref().is_none_or(|r| is_verify_route(r.as_str()));
        let mut made = None;
        let exchange = Exchange::begin(request.method(), request.headers(), summarized, |id| {
            made = Some(id.clone())
        });
        let span = exchange.span();
        // Measured as the client sent it, before the id is added.
        let answer = match Exchange::oversized(request.uri(), request.headers()) {
            Some(refusal) => Err(refusal),
            None => {
                if let Some(id) = made {
                    // Handlers read the id from the request (for the audit
                    // trail).
                    request.headers_mut().insert(REQUEST_ID.clone(), id);
                }
                // The clone that was made ready is the one that is called.
                let ready = self.inner.clone();
                Ok(std::mem::replace(&mut self.inner, ready).call(request))
            }
        };
        let shared = self.shared.clone();
        Box::pin(
            async move {
                let response = match answer {
                    Ok(answer) => match answer.await {
                        Ok(response) => response.into_response(),
                        Err(never) => match never {},
                    },
                    Err(refusal) => refusal.into_response(),
                };
                let route = route.as_ref().map_or("(no route)", |r| r.as_str());
                Ok(
                    exchange.finish(response, route, &shared.refusals, |method, status, took| {
                        shared.count(method, route, status, took)
                    }),
                )
            }
            .instrument(span),
        )
    }
}

/// One request as the context sees it, from the moment it enters until its
/// answer leaves: what the router's layer ([`RequestContext`]) and the
/// front door's verify path (`http::front`) both do, written once.
pub struct Exchange {
    started: Instant,
    /// The gateway's id, or one made here: checked or made of plain
    /// characters, so it is also valid UTF-8.
    request_id: HeaderValue,
    method: Method,
    /// Logged as a summary of refusals and successes at debug (the verify
    /// endpoints), rather than a line per request.
    summarized: bool,
}

impl Exchange {
    /// Starts the clock and settles the request's id: the gateway's, or a
    /// new one, which `made` is then given.
    pub fn begin(
        method: &Method,
        headers: &HeaderMap,
        summarized: bool,
        made: impl FnOnce(&HeaderValue),
    ) -> Exchange {
        let started = Instant::now();
        let request_id = match headers.get(&REQUEST_ID) {
            Some(incoming) if is_plain_request_id(incoming.as_bytes()) => incoming.clone(),
            _ => {
                let id = next_request_id();
                made(&id);
                id
            }
        };
        Exchange {
            started,
            request_id,
            method: method.clone(),
            summarized,
        }
    }

    /// The span the request is served in, carrying its id.
    pub fn span(&self) -> tracing::Span {
        // The id is read only when the span is enabled.
        if self.summarized {
            tracing::debug_span!("request", request_id = self.request_id())
        } else {
            tracing::info_span!("request", request_id = self.request_id())
        }
    }

    pub fn request_id(&self) -> &str {
        // Plain ASCII (see the field), so this is a check, not a search for
        // characters `HeaderValue::to_str` would refuse.
        std::str::from_utf8(self.request_id.as_bytes()).unwrap_or_default()
    }

    /// The refusal of a request with more headers, or more bytes of them,
    /// than a request may carry. hyper refuses far larger heads itself,
    /// without a body (see `transport`).
    pub fn oversized(uri: &Uri, headers: &HeaderMap) -> Option<ApiError> {
        headers_too_large(uri, headers).then(|| {
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "the request headers are too large: at most {MAX_HEADERS} headers \
                     and {MAX_HEADER_BYTES} bytes"
                ),
            )
        })
    }

    /// Finishes the answer to the request on `route`: renders an error as
    /// the envelope, counts it with `count(method, status, took)`, logs it
    /// (or adds a refusal to `refusals`' summary) and sets its id header.
    pub fn finish(
        self,
        response: Response,
        route: &str,
        refusals: &RefusalLog,
        count: impl FnOnce(&Method, u16, std::time::Duration),
    ) -> Response {
        let mut response = render_error(response, self.request_id());
        let took = self.started.elapsed();
        let status = response.status().as_u16();
        count(&self.method, status, took);
        let request_id = self.request_id();
        let method = &self.method;
        if !self.summarized {
            tracing::info!(
                request_id,
                %method,
                route,
                status,
                latency_us = took.as_micros() as u64,
                "request"
            );
        } else if status < 400 {
            tracing::debug!(
                request_id,
                %method,
                route,
                status,
                latency_us = took.as_micros() as u64,
                "request"
            );
        } else {
            refusals.refused(route, status);
        }
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), self.request_id);
        response
    }
}

/// The endpoints that answer clients without a management credential.
fn is_verify_route(route: &str) -> bool {
    route.ends_with("/authorize") || route.ends_with("/introspect")
}

/// More headers, or more bytes of them, than a request may carry.
fn headers_too_large(uri: &Uri, headers: &HeaderMap) -> bool {
    if headers.len() > MAX_HEADERS {
        return true;
    }
    let mut bytes = uri.path().len();
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
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
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
pub fn incoming_request_id_in(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(&REQUEST_ID)?;
    is_plain_request_id(value.as_bytes())
        .then(|| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

fn is_plain_request_id(id: &[u8]) -> bool {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:".contains(b);
    !id.is_empty() && id.len() <= 128 && id.iter().all(plain)
}

/// A unique id: a random tag drawn once per thread, then that thread's
/// counter. No randomness and no shared counter on the request path, so the
/// cores serving requests never contend for it; and no formatting machinery,
/// only the one copy into the header value.
fn next_request_id() -> HeaderValue {
    thread_local! {
        static NEXT: (String, Cell<u64>) =
            (crate::token::new_id()[10..].to_string(), Cell::new(0));
    }
    NEXT.with(|(tag, counter)| {
        let n = counter.get();
        counter.set(n + 1);
        // The tag, a dash and the counter in hex: at most 16 + 1 + 16 bytes.
        let mut id = [0u8; 64];
        id[..tag.len()].copy_from_slice(tag.as_bytes());
        id[tag.len()] = b'-';
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        let end = tag.len() + 1 + digits;
        for (i, slot) in id[tag.len() + 1..end].iter_mut().rev().enumerate() {
            *slot = b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id[..end]).expect("an id of plain characters")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_request_ids_are_the_tag_and_a_hex_counter() {
        let first = next_request_id();
        let first = first.to_str().unwrap();
        let (tag, counter) = first.rsplit_once('-').unwrap();
        let start = u64::from_str_radix(counter, 16).unwrap();
        for step in 1..300u64 {
            let id = next_request_id();
            assert_eq!(id.to_str().unwrap(), format!("{tag}-{:x}", start + step));
            assert!(is_plain_request_id(id.as_bytes()));
        }
    }

    #[test]
    fn only_short_plain_incoming_ids_are_kept() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("gw-1:a.b_c"));
        assert_eq!(
            incoming_request_id_in(&headers).as_deref(),
            Some("gw-1:a.b_c")
        );
        for bad in ["", "a b", "<script>", &"x".repeat(129)] {
            headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(bad).unwrap());
            assert_eq!(incoming_request_id_in(&headers), None, "{bad:?}");
        }
    }
}
