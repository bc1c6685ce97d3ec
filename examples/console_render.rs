//! Measures how long the web console takes to answer its two heaviest
//! pages, through the real router on a real SQLite file: a deployment with
//! 50 agent tokens, and an audit-log page of 100 rows. Also prints what a
//! page and its assets weigh. A benchmark, not a test: the figures go to
//! `bench/results/console.md`.
//!
//! Usage: `cargo run --release --example console_render -- 300`

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentkey::app::{AppState, Settings};
use agentkey::bootstrap::ensure_generated_root;
use agentkey::clock::SystemClock;
use agentkey::http::front::Front;
use agentkey::store;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn send(
    router: &Front,
    request: Request<Body>,
) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn api(router: &Front, root: &str, path: &str, body: Value) -> Value {
    let request = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {root}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, bytes) = send(router, request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("agentkey.db").display());
    let store = store::open(&url).await.unwrap();
    let root = ensure_generated_root(store.as_ref(), 0)
        .await
        .unwrap()
        .unwrap();
    let root = root.expose().to_string();
    let state = AppState::new(store, Arc::new(SystemClock), Settings::default(), None);
    let router = state.router();

    let org = api(
        &router,
        &root,
        "/v1/organizations",
        json!({ "name": "Acme" }),
    )
    .await;
    let org = org["id"].as_str().unwrap().to_string();
    let ws = api(
        &router,
        &root,
        &format!("/v1/organizations/{org}/workspaces"),
        json!({ "name": "Data" }),
    )
    .await;
    let dep = api(
        &router,
        &root,
        &format!("/v1/organizations/{org}/deployments"),
        json!({ "name": "production", "workspaceId": ws["id"] }),
    )
    .await;
    let dep = dep["id"].as_str().unwrap().to_string();
    let tokens = format!("/v1/organizations/{org}/deployments/{dep}/agent-tokens");
    for i in 0..50 {
        let token = api(
            &router,
            &root,
            &tokens,
            json!({ "name": format!("airflow-agent-{i:02}"), "description": "remote execution agent", "tokenExpiryPeriodInDays": 90 }),
        )
        .await;
        // A rotation each: 100 audit events for the audit page, and half
        // the tokens in a grace window.
        let grace = if i % 2 == 0 { 3600 } else { 0 };
        api(
            &router,
            &root,
            &format!("{tokens}/{}/rotate", token["id"].as_str().unwrap()),
            json!({ "gracePeriodSeconds": grace }),
        )
        .await;
    }

    // Sign in as a browser would.
    let form =
        serde_urlencoded::to_string([("token", root.as_str()), ("next", "/console/")]).unwrap();
    let request = Request::post("/console/sign-in")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "http://localhost")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, headers, _) = send(&router, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("a session cookie");

    let pages = [
        (
            "deployment page, 50 agent tokens",
            format!("/console/organizations/{org}/deployments/{dep}"),
        ),
        (
            "audit log, 100 rows",
            format!("/console/organizations/{org}/audit-logs?limit=100"),
        ),
    ];
    println!("rounds per page: {rounds} (after 20 warm-up requests)");
    println!("| page | p50 ms | p90 ms | p99 ms | HTML bytes |");
    println!("|---|---:|---:|---:|---:|");
    let mut html_bytes = Vec::new();
    for (label, path) in &pages {
        let get = || {
            Request::get(path.as_str())
                .header(header::COOKIE, &cookie)
                .header(header::HOST, "localhost")
                .body(Body::empty())
                .unwrap()
        };
        for _ in 0..20 {
            send(&router, get()).await;
        }
        let mut took = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let (status, _, body) = send(&router, get()).await;
            took.push(started.elapsed());
            assert_eq!(status, StatusCode::OK);
            size = body.len();
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {size} |",
            ms(percentile(&took, 0.5)),
            ms(percentile(&took, 0.9)),
            ms(percentile(&took, 0.99)),
        );
        html_bytes.push(size);
    }
    let mut assets = 0;
    for asset in ["/console/assets/console.css", "/console/assets/console.js"] {
        let (_, _, body) = send(&router, Request::get(asset).body(Body::empty()).unwrap()).await;
        println!("{asset}: {} bytes", body.len());
        assets += body.len();
    }
    for (size, (label, _)) in html_bytes.iter().zip(&pages) {
        println!(
            "{label} with its assets: {} bytes ({:.1} KB), uncompressed",
            size + assets,
            (size + assets) as f64 / 1024.0
        );
    }
}
