//! Measures webhooks over loopback, on a real SQLite file: how many events
//! per second the delivery worker sends to a local receiver, and what a
//! webhook endpoint adds to the latency of an agent-token create (the
//! outbox rows written in the create's transaction). The creates go over
//! HTTP to the real router served by `transport::serve`, with no endpoint
//! and then with one, interleaved in rounds. A benchmark, not a test: the
//! figures go to `bench/results/webhooks.md`.
//!
//! Usage: `cargo run --release --example webhook_bench -- [CREATES] [EVENTS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentkey::app::{AppState, Settings};
use agentkey::bootstrap::ensure_generated_root;
use agentkey::clock::SystemClock;
use agentkey::store;
use agentkey::webhooks::sign::WebhookKey;
use agentkey::webhooks::worker::{WebhookSettings, Worker};
use serde_json::{json, Value};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

struct Server {
    base: String,
    root: String,
    state: AppState,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn server(settings: Settings) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("agentkey.db").display());
    let store = store::open(&url).await.unwrap();
    let root = ensure_generated_root(store.as_ref(), 0)
        .await
        .unwrap()
        .unwrap()
        .expose()
        .to_string();
    let state = AppState::new(store, Arc::new(SystemClock), settings, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(agentkey::transport::serve(
        listener,
        state.router(),
        agentkey::transport::Limits::default(),
        state.metrics.clone(),
        stopped,
    ));
    Server {
        base,
        root,
        state,
        _dir: dir,
        _stop: stop,
    }
}

async fn post(http: &reqwest::Client, s: &Server, path: &str, body: Value) -> Value {
    let response = http
        .post(format!("{}{path}", s.base))
        .bearer_auth(&s.root)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// An organization with one deployment; answers (org, agent-tokens path).
async fn tenant(http: &reqwest::Client, s: &Server) -> (String, String) {
    let org = post(http, s, "/v1/organizations", json!({"name": "bench"})).await;
    let org = org["id"].as_str().unwrap().to_string();
    let ws = post(
        http,
        s,
        &format!("/v1/organizations/{org}/workspaces"),
        json!({"name": "w"}),
    )
    .await;
    let dep = post(
        http,
        s,
        &format!("/v1/organizations/{org}/deployments"),
        json!({"name": "d", "workspaceId": ws["id"]}),
    )
    .await;
    let path = format!(
        "/v1/organizations/{org}/deployments/{}/agent-tokens",
        dep["id"].as_str().unwrap()
    );
    (org, path)
}

/// A receiver on loopback answering 200 to every POST.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn settings() -> Settings {
    Settings {
        max_agent_tokens_per_deployment: 1_000_000,
        webhooks: WebhookSettings {
            key: Some(WebhookKey::parse("bench-webhook-key-0123456789abcdef-0123").unwrap()),
            allow_private: true,
            poll_interval: Duration::from_millis(5),
            ..WebhookSettings::default()
        },
        ..Settings::default()
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let creates: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(400);
    let events: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2000);
    let http = reqwest::Client::new();
    let hook = receiver().await;

    // 1. Create latency, without and with an endpoint, interleaved so that
    //    both see the same machine; no worker runs during this part.
    let plain = server(settings()).await;
    let hooked = server(settings()).await;
    let (_, plain_path) = tenant(&http, &plain).await;
    let (hooked_org, hooked_path) = tenant(&http, &hooked).await;
    post(
        &http,
        &hooked,
        &format!("/v1/organizations/{hooked_org}/webhooks"),
        json!({"url": hook}),
    )
    .await;
    let mut without = Vec::with_capacity(creates);
    let mut with = Vec::with_capacity(creates);
    for i in 0..creates {
        for (s, path, into) in [
            (&plain, &plain_path, &mut without),
            (&hooked, &hooked_path, &mut with),
        ] {
            let started = Instant::now();
            post(&http, s, path, json!({"name": format!("t{i}")})).await;
            into.push(started.elapsed());
        }
    }
    without.sort();
    with.sort();

    // 2. Throughput: `events` queued (one create each, in the hooked
    //    server's outbox), then one worker sends them all.
    let queued_before = hooked.state.store.webhook_backlog().await.unwrap().0 as usize;
    for i in 0..events.saturating_sub(queued_before) {
        post(
            &http,
            &hooked,
            &hooked_path,
            json!({"name": format!("e{i}")}),
        )
        .await;
    }
    let queued = hooked.state.store.webhook_backlog().await.unwrap().0 as usize;
    let worker = Arc::new(
        Worker::new(
            hooked.state.store.clone(),
            settings().webhooks,
            hooked.state.metrics.clone(),
            hooked.state.clock.clone(),
        )
        .unwrap(),
    );
    let started = Instant::now();
    loop {
        let sent = worker.round().await.unwrap();
        if sent == 0 && hooked.state.store.webhook_backlog().await.unwrap().0 == 0 {
            break;
        }
    }
    let took = started.elapsed();
    let rate = queued as f64 / took.as_secs_f64();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let table = format!(
        "| measure | without a webhook | with one webhook endpoint |\n\
         |---|---|---|\n\
         | agent-token create, p50 (ms) | {} | {} |\n\
         | agent-token create, p90 (ms) | {} | {} |\n\
         | agent-token create, p99 (ms) | {} | {} |\n\n\
         | delivery | events | seconds | events/s |\n\
         |---|---|---|---|\n\
         | one worker, batches of 32, receiver answering 200 | {queued} | {:.2} | {rate:.0} |\n",
        ms(percentile(&without, 0.5)),
        ms(percentile(&with, 0.5)),
        ms(percentile(&without, 0.9)),
        ms(percentile(&with, 0.9)),
        ms(percentile(&without, 0.99)),
        ms(percentile(&with, 0.99)),
        took.as_secs_f64(),
    );
    println!("{table}");
    println!("({creates} creates each, interleaved; {cores} cores)");
    let report = format!(
        "# Webhooks benchmark\n\n\
         Generated by `cargo run --release --example webhook_bench -- {creates} {events}`\n\
         on {cores} cores (shared with other work while it ran), over loopback, \
         SQLite in a temporary directory.\n\n\
         Creates go over HTTP to the real router (`transport::serve`), one at a \
         time, alternating between a server whose organization has no webhook \
         endpoint and one whose organization has one that wants every event: the \
         difference is the outbox (one `SELECT` of the endpoints, one event row, \
         one delivery row) written in the create's transaction. Then one delivery \
         worker sends the queued events to a local axum receiver that answers 200 \
         at once: signing and a POST over loopback for each, and every attempt of \
         a round (32) recorded in one SQLite transaction. Medians are steady from \
         run to run; the tails move with what else the shared cores are doing.\n\n{table}"
    );
    std::fs::create_dir_all("bench/results").unwrap();
    std::fs::write("bench/results/webhooks.md", report).unwrap();
}
