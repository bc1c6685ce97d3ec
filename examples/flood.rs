//! Load for `bench/flood`: a flood of well-formed, never-issued agent
//! tokens at a fixed rate against `GET /v1/authorize` from one loopback
//! source address, and meanwhile a management request at a low fixed rate
//! from another, whose latency it measures. Loopback only, bounded in time.
//!
//!   flood TARGET SECONDS FLOOD_RATE FLOOD_SOURCE PROBE_PATH PROBE_TOKEN
//!
//! `TARGET` is `http://127.0.0.1:PORT`; a `FLOOD_RATE` of 0 measures the
//! probe alone. Prints one JSON line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentkey::token::{Secret, SecretKind};
use governor::{Quota, RateLimiter};

const FLOOD_CONNECTIONS: usize = 64;
const PROBE_EVERY: Duration = Duration::from_millis(20);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, seconds, rate, source, probe_path, probe_token] = args.as_slice() else {
        eprintln!("usage: flood TARGET SECONDS FLOOD_RATE FLOOD_SOURCE PROBE_PATH PROBE_TOKEN");
        std::process::exit(2);
    };
    assert!(
        target.starts_with("http://127.") || target.starts_with("http://[::1]"),
        "loopback targets only"
    );
    let source: IpAddr = source.parse().expect("FLOOD_SOURCE is an address");
    assert!(source.is_loopback(), "loopback sources only");
    let seconds: u64 = seconds.parse().expect("SECONDS");
    let rate: u32 = rate.parse().expect("FLOOD_RATE");
    let until = Instant::now() + Duration::from_secs(seconds.min(120));

    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let mut flooders = Vec::new();
    if let Some(rate) = NonZeroU32::new(rate) {
        let limiter = Arc::new(RateLimiter::direct(
            Quota::per_second(rate).allow_burst(NonZeroU32::new(64).unwrap()),
        ));
        for _ in 0..FLOOD_CONNECTIONS {
            let client = reqwest::Client::builder()
                .local_address(source)
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let (limiter, statuses) = (limiter.clone(), statuses.clone());
            let url = format!("{target}/v1/authorize");
            flooders.push(tokio::spawn(async move {
                let mut mine = BTreeMap::<u16, u64>::new();
                while Instant::now() < until {
                    limiter.until_ready().await;
                    let token = Secret::generate(SecretKind::Agent);
                    let status = match client.get(&url).bearer_auth(token.expose()).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    *mine.entry(status).or_default() += 1;
                }
                let mut all = statuses.lock().unwrap();
                for (status, n) in mine {
                    *all.entry(status).or_default() += n;
                }
            }));
        }
    }

    let probe = reqwest::Client::new();
    let url = format!("{target}{probe_path}");
    let mut latencies = Vec::new();
    let mut probe_statuses = BTreeMap::<u16, u64>::new();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(PROBE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        ticker.tick().await;
        let sent = Instant::now();
        let status = match probe.get(&url).bearer_auth(probe_token).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        latencies.push(sent.elapsed());
        *probe_statuses.entry(status).or_default() += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for flooder in flooders {
        flooder.await.unwrap();
    }
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let statuses = statuses.lock().unwrap();
    let flood_total: u64 = statuses.values().sum();
    let json = |map: &BTreeMap<u16, u64>| {
        map.iter()
            .map(|(s, n)| format!("\"{s}\":{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "{{\"flood_requests\":{flood_total},\"flood_rps\":{:.0},\"flood_statuses\":{{{}}},\"probe_requests\":{},\"probe_p50_ms\":{:.2},\"probe_p99_ms\":{:.2},\"probe_max_ms\":{:.2},\"probe_statuses\":{{{}}}}}",
        flood_total as f64 / elapsed,
        json(&statuses),
        latencies.len(),
        at(0.50),
        at(0.99),
        at(1.0),
        json(&probe_statuses),
    );
}
