//! The console's way into the house: it calls the API itself, in-process,
//! as the signed-in principal. Every change a person makes in the browser
//! therefore passes the same extractors, the same `authz` table, the same
//! validation and the same store calls as the same change made with `curl`,
//! and lands in the audit trail the same way; an error comes back as the
//! same `ApiError`, field errors included.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::ServiceExt;

use crate::http::auth::Authenticated;
use crate::http::context::REQUEST_ID_HEADER;
use crate::http::error::ApiError;
use crate::verify::Principal;

/// One console request's view of the API.
pub struct Api {
    router: Router,
    principal: Principal,
    /// The browser request's id and client-address headers, passed on so
    /// the API logs and audits the same request and client.
    forwarded: Vec<(HeaderName, HeaderValue)>,
    peer: Option<SocketAddr>,
}

/// Headers of the browser's request that the in-process API call carries.
const FORWARDED: [&str; 3] = [REQUEST_ID_HEADER, "x-forwarded-for", "x-real-ip"];

impl Api {
    pub fn new(
        router: Router,
        principal: Principal,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Api {
        let forwarded = FORWARDED
            .iter()
            .flat_map(|name| {
                headers
                    .get_all(*name)
                    .iter()
                    .map(|value| (HeaderName::from_static(name), value.clone()))
            })
            .collect();
        Api {
            router,
            principal,
            forwarded,
            peer,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ApiError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ApiError> {
        self.call::<Empty>(Method::DELETE, path, None::<&()>)
            .await
            .map(|_| ())
    }

    /// Sends one request to the API under `/v1` and reads its answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ApiError> {
        let mut request = Request::builder().method(method).uri(format!("/v1{path}"));
        for (name, value) in &self.forwarded {
            request = request.header(name, value.clone());
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(body).map_err(|_| ApiError::internal())?)
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|_| {
            // Only an invalid path can get here; paths are built from ids
            // the router already matched.
            ApiError::bad_request("invalid path")
        })?;
        request
            .extensions_mut()
            .insert(Authenticated(self.principal.clone()));
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        if let Some(error) = response.extensions().get::<ApiError>() {
            return Err(error.clone());
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|_| ApiError::internal())?
            .to_bytes();
        if !status.is_success() {
            return Err(ApiError::new(status, "the request failed"));
        }
        let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| ApiError {
            detail: Some(format!("the console could not read an API answer: {e}")),
            ..ApiError::internal()
        })
    }
}

/// What a `204 No Content` reads as.
#[derive(serde::Deserialize)]
struct Empty;
