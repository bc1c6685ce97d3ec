//! The benchmark's baseline: the smallest axum server that answers
//! `GET /v1/authorize` with the answer agentkey gives a valid token (the
//! same body and the same headers, of the same sizes), doing no work at
//! all. `bench/verify` measures agentkey against it.
//!
//! Usage: `cargo run --release --example baseline -- 127.0.0.1:18090`

use axum::http::{header, HeaderName};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// A body of the same size and shape as agentkey's verification answer.
const BODY: &str = r#"{"active":true,"tokenId":"c0mwt66rnpc0zllsp0ag6xgwg","organizationId":"c0mwt66rfzsxnsn1m9sbsbo28","deploymentId":"c0mwt66rl71zzns9d1tmdnxca","scope":"DEPLOYMENT","expiresAt":null}"#;

/// agentkey's headers on that answer, with values of the same lengths (the
/// request id: a 15-character tag, a dash and a counter).
const HEADERS: [(HeaderName, &str); 6] = [
    (header::CONTENT_TYPE, "application/json"),
    (
        HeaderName::from_static("x-agentkey-token-id"),
        "c0mwt66rnpc0zllsp0ag6xgwg",
    ),
    (
        HeaderName::from_static("x-agentkey-organization-id"),
        "c0mwt66rfzsxnsn1m9sbsbo28",
    ),
    (
        HeaderName::from_static("x-agentkey-deployment-id"),
        "c0mwt66rl71zzns9d1tmdnxca",
    ),
    (header::CACHE_CONTROL, "no-store"),
    (
        HeaderName::from_static("x-request-id"),
        "mwt66rnpc0zllsp-1a2b3",
    ),
];

async fn authorize() -> impl IntoResponse {
    (HEADERS, BODY)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("baseline listening on {}", listener.local_addr().unwrap());
    let app = Router::new().route("/v1/authorize", get(authorize));
    axum::serve(listener, app).await.expect("serve");
}
