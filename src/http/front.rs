//! The front door: where every request enters, ahead of the router.
//!
//! Gateways call `GET {base}/authorize` for every request an Airflow agent
//! makes, so that route is answered here, directly: the same handler body
//! (`authorize::answer`) behind the same request context (`context::
//! Exchange`: id, metrics, log, error envelope) and a panic guard, but
//! without the router's dispatch, which for a nested route costs a rebuilt
//! URI, a boxed clone of every layered service and a handful of extension
//! maps per request: about half of this route's allocations. Everything
//! else, including other methods on that path, goes to the router.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::FutureExt;
use tracing::Instrument;

use super::auth::bearer_token;
use super::context::{self, Exchange};
use super::error::ApiError;
use super::refusals::RefusalLog;
use super::{authorize, client_ip, BASE_PATHS};
use crate::app::AppState;
use crate::metrics::RequestHandles;

/// The whole HTTP application as one service: the front door and the
/// router behind it.
#[derive(Clone)]
pub struct Front {
    router: Router,
    verify: Option<Arc<VerifyDoor>>,
}

/// The boxed answer of [`Front`].
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Front {
    /// `router` alone, with nothing answered ahead of it.
    pub fn router_only(router: Router) -> Front {
        Front {
            router,
            verify: None,
        }
    }

    /// `router`, with `GET {base}/authorize` answered ahead of it for
    /// `state`, its refusals summarized into `refusals`.
    pub fn new(router: Router, state: AppState, refusals: Arc<RefusalLog>) -> Front {
        let routes = BASE_PATHS.map(|base| RouteHandles::new(format!("{base}/authorize")));
        Front {
            router,
            verify: Some(Arc::new(VerifyDoor {
                state,
                refusals,
                routes,
            })),
        }
    }

    /// The same application with every request handed to the router: what
    /// the tests compare the front door's answers with.
    pub fn without_door(&self) -> Front {
        Front::router_only(self.router.clone())
    }

    /// Answers `request`, which came from `peer` (`None`: made in-process).
    pub fn serve(&self, peer: Option<SocketAddr>, mut request: Request) -> ResponseFuture {
        if let Some(door) = &self.verify {
            if request.method() == Method::GET {
                if let Some(route) = door.route(request.uri().path()) {
                    return Box::pin(door.clone().authorize(route, peer, request));
                }
            }
        }
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let mut router = self.router.clone();
        Box::pin(async move { tower::Service::call(&mut router, request).await })
    }
}

/// For callers in-process (the tests): the peer, if any, is the request's
/// `ConnectInfo`, as the server would have recorded it.
impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        self.serve(peer, request)
    }
}

struct VerifyDoor {
    state: AppState,
    refusals: Arc<RefusalLog>,
    /// `{base}/authorize` for each of [`BASE_PATHS`], in that order.
    routes: [RouteHandles; BASE_PATHS.len()],
}

impl VerifyDoor {
    fn route(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|route| route.path == path)
    }

    async fn authorize(
        self: Arc<Self>,
        route: usize,
        peer: Option<SocketAddr>,
        request: Request,
    ) -> Result<Response, Infallible> {
        // The head alone: a verification has no body to read.
        let (head, _) = request.into_parts();
        // No handler reads the id from the request here: a new one goes
        // only into the answer.
        let exchange = Exchange::begin(&head.method, &head.headers, true, |_| {});
        let span = exchange.span();
        let answer = async {
            if let Some(refusal) = Exchange::oversized(&head.uri, &head.headers) {
                return Err(refusal);
            }
            let state = &self.state;
            let client = client_ip::client_ip(
                peer.map(|peer| peer.ip()),
                &head.headers,
                &state.settings.trusted_proxies,
            );
            let deployment_id = authorize::wanted_deployment(&head.uri)?;
            let presented = bearer_token(&head.headers);
            authorize::answer(state, client, presented, deployment_id.as_deref()).await
        };
        let response = guarded(answer.instrument(span.clone())).await;
        let route = &self.routes[route];
        // Its log lines in the request's span, as the router's are.
        let _inside = span.enter();
        Ok(
            exchange.finish(response, &route.path, &self.refusals, |_, status, took| {
                route.count(&self.state, status, took)
            }),
        )
    }
}

/// The answer of `answer`, or a 500 if it panics.
async fn guarded(answer: impl Future<Output = Result<Response, ApiError>>) -> Response {
    match AssertUnwindSafe(answer).catch_unwind().await {
        Ok(answer) => answer.into_response(),
        Err(panic) => context::panicked(panic),
    }
}

/// One route's metric handles, resolved once per status.
struct RouteHandles {
    path: String,
    /// The statuses the route answers, each with its handles once seen.
    by_status: [(u16, OnceLock<RequestHandles>); 8],
}

impl RouteHandles {
    fn new(path: String) -> RouteHandles {
        RouteHandles {
            path,
            by_status: [200, 400, 401, 403, 429, 431, 500, 503].map(|s| (s, OnceLock::new())),
        }
    }

    fn count(&self, state: &AppState, status: u16, took: Duration) {
        let resolve = || state.metrics.request_handles("GET", &self.path, status);
        match self.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, handles)) => handles.get_or_init(resolve).observe(took),
            None => resolve().observe(took),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn a_panic_is_a_500_that_names_no_detail() {
        let response = guarded(async {
            if true {
                panic!("a bug on the verify path");
            }
            Err(ApiError::internal())
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let error = response
            .extensions()
            .get::<ApiError>()
            .expect("an error for the envelope");
        assert_eq!(error.message, ApiError::internal().message);
        assert!(!format!("{error:?}").contains("a bug on the verify path"));
    }

    #[tokio::test]
    async fn an_answer_passes_through() {
        let response = guarded(async { Err(ApiError::forbidden("no")) }).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}
