//! What binding an agent token to networks costs its verification: the
//! same cached token checked with and without `allowedIpAddressRanges`,
//! side by side, in-process (no sockets at all) on a real SQLite file.
//! Two layers are timed: `Verifier::verify_agent_from` alone (the check
//! itself, a cache hit) and `GET /v1/authorize` through the real router
//! (extractors, client address, JSON answer), each interleaved over
//! several rounds, the median kept. A benchmark, not a test: the figures
//! go to `bench/results/networks.md`.
//!
//! Usage: `cargo run --release --example verify_networks -- [ROUNDS]`

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use agentkey::app::{AppState, Settings};
use agentkey::bootstrap::ensure_generated_root;
use agentkey::clock::SystemClock;
use agentkey::http::front::Front;
use agentkey::store;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn api(router: &Front, root: &str, path: &str, body: Value) -> Value {
    let request = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {root}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// The cases: a label, the token's networks, and the client's address.
fn cases() -> Vec<(&'static str, Vec<String>, &'static str)> {
    // 100 networks, the client in the last: the longest walk there is.
    let hundred: Vec<String> = (0..99)
        .map(|i| format!("10.{i}.0.0/16"))
        .chain(["192.0.2.0/24".to_string()])
        .collect();
    vec![
        ("no networks (the default)", vec![], "192.0.2.9"),
        (
            "1 network, client inside",
            vec!["192.0.2.0/24".into()],
            "192.0.2.9",
        ),
        (
            "1 network, client outside (refused)",
            vec!["192.0.2.0/24".into()],
            "198.51.100.1",
        ),
        (
            "2 networks, IPv6 client inside",
            vec!["192.0.2.0/24".into(), "2001:db8::/32".into()],
            "2001:db8::9",
        ),
        ("100 networks, client in the last", hundred, "192.0.2.9"),
    ]
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(7);
    const CHECKS: usize = 200_000;
    const REQUESTS: usize = 20_000;
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
    let tokens = format!(
        "/v1/organizations/{org}/deployments/{}/agent-tokens",
        dep["id"].as_str().unwrap()
    );
    let mut prepared = Vec::new();
    for (label, networks, client) in cases() {
        let token = api(
            &router,
            &root,
            &tokens,
            json!({ "name": label, "allowedIpAddressRanges": networks }),
        )
        .await;
        let secret = token["token"].as_str().unwrap().to_string();
        let client: IpAddr = client.parse().unwrap();
        prepared.push((label, secret, client));
    }

    let verifier = state.verifier.clone();
    let limits = state.auth_failures.clone();
    let mut check_ns = vec![Vec::new(); prepared.len()];
    let mut request_us = vec![Vec::new(); prepared.len()];
    let mut outcome = vec![String::new(); prepared.len()];
    for round in 0..=rounds {
        for (i, (_, secret, client)) in prepared.iter().enumerate() {
            let started = Instant::now();
            let mut valid = 0usize;
            for _ in 0..CHECKS {
                valid += verifier
                    .verify_agent_from(secret, &limits, Some(*client))
                    .await
                    .is_ok() as usize;
            }
            let per_check = started.elapsed().as_nanos() as f64 / CHECKS as f64;
            outcome[i] = if valid == CHECKS {
                "valid".into()
            } else {
                format!("refused ({valid} valid)")
            };

            let started = Instant::now();
            for _ in 0..REQUESTS {
                let mut request = Request::get("/v1/authorize")
                    .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                    .body(Body::empty())
                    .unwrap();
                request
                    .extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(*client, 40000)));
                let response = router.clone().oneshot(request).await.unwrap();
                let _ = response.into_body().collect().await.unwrap();
            }
            let per_request = started.elapsed().as_nanos() as f64 / REQUESTS as f64 / 1000.0;
            // Round 0 warms the caches and the allocator; it is not kept.
            if round > 0 {
                check_ns[i].push(per_check);
                request_us[i].push(per_request);
            }
        }
    }
    let base_check = median(check_ns[0].clone());
    let base_request = median(request_us[0].clone());
    println!(
        "medians of {rounds} interleaved rounds; each round {CHECKS} checks and {REQUESTS} \
         requests per case, one thread"
    );
    println!("| token | outcome | check (cache hit) ns | vs. no networks | GET /v1/authorize µs | vs. no networks |");
    println!("|---|---|---:|---:|---:|---:|");
    for (i, (label, _, _)) in prepared.iter().enumerate() {
        let check = median(check_ns[i].clone());
        let request = median(request_us[i].clone());
        println!(
            "| {label} | {} | {check:.0} | {:+.0} ns | {request:.2} | {:+.2} µs |",
            outcome[i],
            check - base_check,
            request - base_request,
        );
    }
}
