//! `kill -9` durability, through the real binary: concurrent creates and
//! deletes of agent tokens, the server killed with SIGKILL in the middle of
//! them, then restarted on the same database. Every create the server
//! acknowledged (200) must be there, with a secret that verifies; every
//! delete it acknowledged (204) must be gone, and its secret refused. On
//! SQLite always, on PostgreSQL when `AGENTKEY_TEST_DATABASE_URL` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::postgres::TestDatabase;
use crate::common::process::Server;
use serde_json::{json, Value};

/// Acknowledged creates before the kill (or at most `WRITING`).
const CREATES_BEFORE_KILL: usize = 300;
const WRITING: Duration = Duration::from_secs(5);
const WRITERS: usize = 8;

#[derive(Default)]
struct Acknowledged {
    /// Token id → secret, for every 200 to a create.
    created: BTreeMap<String, String>,
    /// Every 204 to a delete.
    deleted: BTreeSet<String>,
    /// Deletes the kill cut off: they may or may not have committed.
    in_doubt: BTreeSet<String>,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    // A request the kill cut off was not acknowledged: it answers `None`.
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn no_acknowledged_write_is_lost(env: &[(&str, &str)], db: &std::path::Path) {
    let mut env = env.to_vec();
    env.push(("AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT", "1000000"));
    // The check below presents many deleted secrets from one address.
    env.push(("AGENTKEY_AUTH_FAILURE_BURST", "100000"));
    let server = Server::start(db, &env);
    let root = server
        .printed_root()
        .expect("the root credential is printed");
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let made = |path: String, body: Value| {
        let (http, root) = (&http, &root);
        async move {
            let (status, body) = call(http, reqwest::Method::POST, &path, root, Some(body))
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    let org = made(format!("{base}/v1/organizations"), json!({ "name": "o" })).await;
    let ws = made(
        format!("{base}/v1/organizations/{org}/workspaces"),
        json!({ "name": "w" }),
    )
    .await;
    let dep = made(
        format!("{base}/v1/organizations/{org}/deployments"),
        json!({ "name": "d", "workspaceId": ws }),
    )
    .await;
    let tokens_path = format!("/v1/organizations/{org}/deployments/{dep}/agent-tokens");

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (http, root, acknowledged) = (http.clone(), root.clone(), acknowledged.clone());
        let tokens = format!("{base}{tokens_path}");
        writers.push(tokio::spawn(async move {
            let mut mine: Vec<String> = Vec::new();
            for i in 0.. {
                // Every third step deletes one of this writer's tokens.
                if i % 3 == 2 {
                    if let Some(id) = mine.pop() {
                        let url = format!("{tokens}/{id}");
                        match call(&http, reqwest::Method::DELETE, &url, &root, None).await {
                            Some((204, _)) => {
                                acknowledged.lock().unwrap().deleted.insert(id);
                            }
                            Some((status, body)) => panic!("delete: {status} {body}"),
                            None => {
                                acknowledged.lock().unwrap().in_doubt.insert(id);
                                return;
                            }
                        }
                        continue;
                    }
                }
                let body = json!({ "name": format!("w{writer}-{i}") });
                match call(&http, reqwest::Method::POST, &tokens, &root, Some(body)).await {
                    Some((200, body)) => {
                        let id = body["id"].as_str().unwrap().to_string();
                        let secret = body["token"].as_str().unwrap().to_string();
                        acknowledged
                            .lock()
                            .unwrap()
                            .created
                            .insert(id.clone(), secret);
                        mine.push(id);
                    }
                    Some((status, body)) => panic!("create: {status} {body}"),
                    None => return,
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().created.len() < CREATES_BEFORE_KILL
        && started.elapsed() < WRITING
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL in the middle of the writes: no shutdown, no flush.
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    let status = server.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );
    for writer in writers {
        writer.await.unwrap();
    }
    let killed_after = started.elapsed();
    drop(server);

    let server = Server::start(db, &env);
    assert_eq!(server.printed_root(), None, "the stored root is kept");
    let base = server.base.clone();
    let mut stored = BTreeSet::new();
    for offset in (0..).step_by(1000) {
        let url = format!("{base}{tokens_path}?limit=1000&offset={offset}");
        let (status, page) = call(&http, reqwest::Method::GET, &url, &root, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{page}");
        let items = page["tokens"].as_array().unwrap();
        stored.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        if items.len() < 1000 {
            break;
        }
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let created = acknowledged.created.len();
    let deleted = acknowledged.deleted.len();
    eprintln!(
        "killed after {killed_after:?}: {created} acknowledged creates, {deleted} acknowledged deletes, {} cut off, {} stored",
        acknowledged.in_doubt.len(),
        stored.len()
    );
    assert!(
        created >= 20 && deleted >= 5,
        "too few writes to mean anything"
    );
    let lost: Vec<_> = acknowledged
        .created
        .keys()
        .filter(|id| {
            !acknowledged.deleted.contains(*id)
                && !acknowledged.in_doubt.contains(*id)
                && !stored.contains(*id)
        })
        .collect();
    assert!(lost.is_empty(), "acknowledged creates lost: {lost:?}");
    let resurrected: Vec<_> = acknowledged
        .deleted
        .iter()
        .filter(|id| stored.contains(*id))
        .collect();
    assert!(
        resurrected.is_empty(),
        "acknowledged deletes undone: {resurrected:?}"
    );
    // And the secrets agree: live ones verify, deleted ones do not. A
    // sample keeps this quick (every id was checked above).
    let sure = acknowledged
        .created
        .iter()
        .filter(|(id, _)| !acknowledged.in_doubt.contains(*id));
    for (id, secret) in sure.take(200) {
        let url = format!("{base}/v1/authorize");
        let (status, _) = call(&http, reqwest::Method::GET, &url, secret, None)
            .await
            .unwrap();
        let expected = if acknowledged.deleted.contains(id) {
            401
        } else {
            200
        };
        assert_eq!(status, expected, "token {id}");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    no_acknowledged_write_is_lost(&[], &dir.path().join("agentkey.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_write_across_kill_9() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [("AGENTKEY_DATABASE_URL", database.url.as_str())];
    no_acknowledged_write_is_lost(&env, &dir.path().join("unused.db")).await;
}
