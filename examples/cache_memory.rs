//! Measures the resident memory that 100,000 cached verifications cost:
//! fills agentkey's real `VerifyCache` with entries shaped like real tokens
//! (cuid ids, SHA-256 digests, typical names) and prints the growth of this
//! process's VmRSS. Linux only (reads /proc/self/status).
//!
//! Usage: `cargo run --release --example cache_memory -- 100000`

use agentkey::cache::{CacheLimits, VerifyCache};
use agentkey::model::AgentCredential;
use agentkey::token::{new_id, Digest};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let cache = VerifyCache::new(CacheLimits::default());
    let organization = new_id();
    let deployments: Vec<String> = (0..count.div_ceil(50)).map(|_| new_id()).collect();
    let before = rss_kib();
    for i in 0..count {
        let digest = Digest::of(&format!("token-{i}"));
        let credential = AgentCredential {
            token_id: new_id(),
            organization_id: organization.clone(),
            deployment_id: deployments[i / 50].clone(),
            name: format!("airflow-agent-{i}"),
            end_at: Some(1_900_000_000),
            grace_until: None,
            issued_at: 1_700_000_000,
            secret_digest: digest,
            allowed_networks: Vec::new(),
        };
        cache.insert(digest, credential, 0, cache.epoch());
    }
    let after = rss_kib();
    assert_eq!(cache.len().0, count);
    println!(
        "{count} cached tokens: VmRSS {:.1} MiB before, {:.1} MiB after, growth {:.1} MiB ({} bytes per token)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / 1024.0,
        (after - before) * 1024 / count as u64
    );
}
