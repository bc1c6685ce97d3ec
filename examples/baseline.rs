//! The benchmark's baseline: the smallest axum server that answers
//! `GET /v1/authorize` with a JSON body and headers the size of agentkey's
//! answer, doing no work at all. `bench/verify` measures agentkey against it.
//!
//! Usage: `cargo run --release --example baseline -- 127.0.0.1:18090`

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// A body of the same size and shape as agentkey's verification answer.
const BODY: &str = r#"{"active":true,"tokenId":"c0mwt66rnpc0zllsp0ag6xgwg","organizationId":"c0mwt66rfzsxnsn1m9sbsbo28","deploymentId":"c0mwt66rl71zzns9d1tmdnxca","scope":"DEPLOYMENT","expiresAt":null}"#;

async fn authorize() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        BODY,
    )
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
