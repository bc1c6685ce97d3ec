//! End to end: the real `agentkey` binary, real processes, real HTTP on
//! loopback, a real SQLite file. Covers what only a process shows: the root
//! credential printed once, settings from the environment, graceful
//! shutdown flushing `lastUsedAt`, `root-token --rotate` taking effect on a
//! running server, and no secret in the logs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::{root_in, Server, BIN};

use serde_json::{json, Value};

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &Server) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.base.clone(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    async fn create(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, body) = self
            .call(reqwest::Method::POST, path, token, Some(body))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

#[tokio::test]
async fn full_lifecycle_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentkey.db");

    // First start: a root credential is generated and printed once.
    let server = Server::start(&db, &[("AGENTKEY_LAST_USED_FLUSH_SECONDS", "3600")]);
    let root = server
        .printed_root()
        .expect("root credential printed at first start");
    // stderr is a pipe: the credential went to a file, which the log names.
    assert!(server.log_text().contains("it is not shown again"));
    let api = Client::new(&server);
    let org = api
        .create("/v1/organizations", &root, json!({ "name": "acme" }))
        .await;
    let org = org["id"].as_str().unwrap();
    let ws = api
        .create(
            &format!("/v1/organizations/{org}/workspaces"),
            &root,
            json!({ "name": "w" }),
        )
        .await;
    let dep = api
        .create(
            &format!("/v1/organizations/{org}/deployments"),
            &root,
            json!({ "name": "d", "workspaceId": ws["id"] }),
        )
        .await;
    let dep = dep["id"].as_str().unwrap();
    let tokens = format!("/v1/organizations/{org}/deployments/{dep}/agent-tokens");
    let created = api.create(&tokens, &root, json!({ "name": "agent" })).await;
    let secret = created["token"].as_str().unwrap().to_string();
    let token_path = format!("{tokens}/{}", created["id"].as_str().unwrap());

    let (status, who) = api
        .call(reqwest::Method::GET, "/v1/authorize", &secret, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(who["deploymentId"], dep);

    // Every other kind of secret too: a rotated-away agent secret (with a
    // grace window, so it is used once more) and an API token.
    let (status, rotated) = api
        .call(
            reqwest::Method::POST,
            &format!("{token_path}/rotate"),
            &root,
            Some(json!({ "gracePeriodSeconds": 60 })),
        )
        .await;
    assert_eq!(status, 200);
    let rotated = rotated["token"].as_str().unwrap().to_string();
    let api_token = api
        .create(
            &format!("/v1/organizations/{org}/tokens"),
            &root,
            json!({ "name": "ci", "role": "ORGANIZATION_OWNER", "scope": "ORGANIZATION" }),
        )
        .await;
    let api_secret = api_token["token"].as_str().unwrap().to_string();
    for presented in [&secret, &rotated] {
        let (status, _) = api
            .call(reqwest::Method::GET, "/v1/authorize", presented, None)
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/organizations", &api_secret, None)
        .await;
    assert_eq!(status, 200);
    let secret = rotated; // the current one, from here on

    // SIGTERM: clean exit, and the pending lastUsedAt is written on the way out
    // (the flush interval is an hour, so only the shutdown flush can do it).
    let log = server.stop();
    for issued in [
        &secret,
        &api_secret,
        &created["token"].as_str().unwrap().to_string(),
    ] {
        assert!(!log.contains(issued.as_str()), "a secret in the logs");
        // Not even its random part alone.
        let body = &issued[issued.find('_').unwrap() + 1..];
        assert!(
            !log.contains(&body[..16]),
            "a secret's random part in the logs"
        );
    }
    assert_eq!(
        log.matches(&root).count(),
        0,
        "the root credential went to its file, never into the log"
    );

    // Second start on the same database: no new root credential.
    let server = Server::start(&db, &[]);
    assert_eq!(server.printed_root(), None);
    let api = Client::new(&server);
    let (status, token) = api
        .call(reqwest::Method::GET, &token_path, &root, None)
        .await;
    assert_eq!(status, 200, "{token}");
    assert!(
        token["lastUsedAt"].is_string(),
        "flushed at shutdown: {token}"
    );
    assert!(token.get("token").is_none());

    // Rotate the root credential with the CLI while the server runs.
    let output = Command::new(BIN)
        .args([
            "root-token",
            "--rotate",
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    // The credential alone on stdout (for `NEW=$(...)`), never on stderr;
    // no terminal here, so no question was asked.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let new_root = stdout.trim().to_string();
    assert_eq!(root_in(&stdout).as_deref(), Some(new_root.as_str()));
    assert!(!stderr.contains("akroot_"), "{stderr}");
    assert!(stderr.contains("printed on stdout"), "{stderr}");
    assert!(!stderr.contains("[y/N]"), "{stderr}");
    assert_ne!(new_root, root);
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/organizations", &root, None)
        .await;
    assert_eq!(status, 401, "the old root credential stops working at once");
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/organizations", &new_root, None)
        .await;
    assert_eq!(status, 200);

    // Revocation through the running process.
    let (status, _) = api
        .call(reqwest::Method::DELETE, &token_path, &new_root, None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = api
        .call(reqwest::Method::GET, "/v1/authorize", &secret, None)
        .await;
    assert_eq!(status, 401, "{body}");
    let log = server.stop();
    assert!(!log.contains(&secret) && !log.contains(&new_root) && !log.contains(&root));
}

#[tokio::test]
async fn a_configured_root_token_replaces_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentkey.db");
    let first = Server::start(&db, &[]);
    let generated = first.printed_root().unwrap();
    first.stop();

    let configured = "my-very-own-root-token-of-40-characters!";
    let server = Server::start(&db, &[("AGENTKEY_ROOT_TOKEN", configured)]);
    assert_eq!(server.printed_root(), None);
    let api = Client::new(&server);
    let org = api
        .create("/v1/organizations", configured, json!({ "name": "a" }))
        .await;
    let (status, _) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/organizations/{}", org["id"].as_str().unwrap()),
            &generated,
            None,
        )
        .await;
    assert_eq!(
        status, 401,
        "while AGENTKEY_ROOT_TOKEN is set, only it is root"
    );
    let log = server.stop();
    assert!(
        !log.contains(configured),
        "the configured root token is never logged"
    );
}

#[test]
fn a_short_root_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("serve")
        .env("AGENTKEY_LISTEN", "127.0.0.1:0")
        .env(
            "AGENTKEY_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("a.db").display()),
        )
        .env("AGENTKEY_ROOT_TOKEN", "too-short-a-secret")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("AGENTKEY_ROOT_TOKEN must be at least 32 characters"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("too-short-a-secret"),
        "the message does not echo the secret"
    );
}

/// Issue 12, papercut 7: the usual near misses of `--listen` get a hint.
#[test]
fn listen_addresses_that_are_not_addresses_get_a_hint() {
    for (given, hint) in [
        ("8080", "127.0.0.1:8080"),
        ("localhost:8080", "127.0.0.1:8080"),
        ("example:80", "IP:PORT"),
    ] {
        let output = Command::new(BIN)
            .args(["serve", "--listen", given])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{given}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(hint), "{given}: {stderr}");
    }
}

/// Issue 12, papercut 7: a log filter that does not parse is refused, not
/// silently replaced by the default.
#[test]
fn an_invalid_log_filter_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let output = Command::new(BIN)
        .args(["migrate", "--database-url", &url])
        .env("AGENTKEY_LOG", "agentkey=loudest")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("AGENTKEY_LOG=\"agentkey=loudest\""),
        "{stderr}"
    );
    assert!(!dir.path().join("a.db").exists(), "nothing ran");
    let fine = Command::new(BIN)
        .args(["migrate", "--database-url", &url])
        .env("AGENTKEY_LOG", "")
        .output()
        .unwrap();
    assert!(fine.status.success(), "empty means the default");
}

#[test]
fn an_unsupported_database_url_is_a_clear_error() {
    let output = Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            "mysql://user:hunter2@localhost/db",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "passwords are redacted: {stderr}"
    );
}

/// A PostgreSQL nothing listens for is named at once, not after the pool's
/// 5 s acquire timeout as "pool timed out".
#[test]
fn an_unreachable_postgres_is_named_at_once() {
    // A loopback port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let output = Command::new(BIN)
        .arg("serve")
        .env("AGENTKEY_LISTEN", "127.0.0.1:0")
        .env(
            "AGENTKEY_DATABASE_URL",
            format!("postgres://postgres:hunter2@127.0.0.1:{port}/test"),
        )
        .env_remove("AGENTKEY_ROOT_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("connection refused at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("pool timed out"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {stderr}");
}

#[test]
fn migrate_and_root_token_work_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let migrate = Command::new(BIN)
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(dir.path().join("m.db").exists());
    let status = Command::new(BIN)
        .args(["root-token", "--database-url", &url])
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stderr);
    assert!(text.contains("No generated root credential"), "{text}");
    assert_eq!(root_in(&text), None);
}

#[test]
fn root_token_refuses_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.db");
    let output = Command::new(BIN)
        .args([
            "root-token",
            "--rotate",
            "--database-url",
            &format!("sqlite://{}", path.display()),
        ])
        .env_remove("AGENTKEY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no database at"), "{stderr}");
    assert_eq!(root_in(&stderr), None, "no credential printed");
    assert!(!path.exists(), "no database created");
}

#[test]
fn help_lists_every_setting() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in [
        "AGENTKEY_LISTEN",
        "AGENTKEY_DATABASE_URL",
        "AGENTKEY_ROOT_TOKEN",
        "AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT",
        "AGENTKEY_LAST_USED_FLUSH_SECONDS",
        "AGENTKEY_LOG_FORMAT",
        "serve",
        "migrate",
        "root-token",
    ] {
        assert!(help.contains(setting), "--help mentions {setting}:\n{help}");
    }
}

/// SIGTERM while a request is half sent: the server keeps running until
/// that request is answered, then exits cleanly, and what it wrote stays.
#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentkey.db");
    let mut server = Server::start(&db, &[]);
    let root = server.printed_root().unwrap();
    let addr = server.base.trim_start_matches("http://").to_string();

    let body = r#"{"name":"finished-after-sigterm"}"#;
    let mut client = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        client,
        "POST /v1/organizations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {root}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    // Time for the server to read the request head (so the connection is
    // busy, not idle, when the signal comes), then to act on the signal.
    std::thread::sleep(Duration::from_millis(750));
    server.signal_term();
    std::thread::sleep(Duration::from_millis(750));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still serving the request in flight"
    );

    client.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "agentkey did not exit after the last request"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    let server = Server::start(&db, &[]);
    let api = Client::new(&server);
    let (_, orgs) = api
        .call(reqwest::Method::GET, "/v1/organizations", &root, None)
        .await;
    assert_eq!(orgs["organizations"][0]["name"], "finished-after-sigterm");
    server.stop();
}

/// JSON logs carry one line per request (method, route, status, latency,
/// request id), and AGENTKEY_METRICS_LISTEN serves /metrics on its own
/// address without a credential.
#[tokio::test]
async fn json_request_logs_and_the_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("agentkey.db"),
        &[("AGENTKEY_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let root = server.printed_root().unwrap();
    let metrics_addr = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| {
            let event: Value = serde_json::from_str(line).ok()?;
            (event["message"] == "serving /metrics")
                .then(|| event["addr"].as_str().unwrap().to_string())
        })
        .expect("the metrics listener is announced");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/organizations", server.base))
        .bearer_auth(&root)
        .json(&json!({ "name": "logged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(
        metrics.status(),
        200,
        "no credential needed on the metrics listener"
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"agentkey_http_requests_total{method="POST",route="/v1/organizations",status="200"} 1"#),
        "{text}"
    );

    let log = server.stop();
    let line: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == "request" && event["request_id"] == request_id.as_str())
        .expect("a log line for the request, under its id");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/v1/organizations");
    assert_eq!(line["status"], 200);
    assert!(line["latency_us"].is_u64());
    assert_eq!(line["level"], "INFO");
    assert_eq!(
        log.matches(&root).count(),
        0,
        "the root secret is never in the log (it went to its file)"
    );
}

/// Issue 11 item 3 through a real socket: the TCP peer is the client, a
/// forged `X-Forwarded-For` from it changes nothing, failures over the
/// burst are a 429 with `Retry-After`, a valid token is never limited.
#[tokio::test]
async fn failed_checks_over_the_burst_are_429_for_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("a.db"),
        &[("AGENTKEY_AUTH_FAILURE_BURST", "2")],
    );
    let root = server.printed_root().unwrap();
    let client = Client::new(&server);
    let org = client
        .create("/v1/organizations", &root, json!({ "name": "o" }))
        .await;
    let org = org["id"].as_str().unwrap();
    let ws = client
        .create(
            &format!("/v1/organizations/{org}/workspaces"),
            &root,
            json!({ "name": "w" }),
        )
        .await;
    let dep = client
        .create(
            &format!("/v1/organizations/{org}/deployments"),
            &root,
            json!({ "name": "d", "workspaceId": ws["id"] }),
        )
        .await;
    let token = client
        .create(
            &format!(
                "/v1/organizations/{org}/deployments/{}/agent-tokens",
                dep["id"].as_str().unwrap()
            ),
            &root,
            json!({ "name": "t" }),
        )
        .await;
    let valid = token["token"].as_str().unwrap();
    let authorize = |token: &str, forged: &str| {
        client
            .http
            .get(format!("{}/v1/authorize", client.base))
            .bearer_auth(token)
            .header("x-forwarded-for", forged)
            .header("x-real-ip", forged)
            .send()
    };
    // Verified once, so in the cache: never limited after.
    let response = authorize(valid, "10.0.0.9").await.unwrap();
    assert_eq!(response.status(), 200);
    for forged in ["10.0.0.1", "10.0.0.2"] {
        let response = authorize("akagent_nonsense", forged).await.unwrap();
        assert_eq!(response.status(), 401);
    }
    let response = authorize("akagent_nonsense", "10.0.0.3").await.unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 429);
    let response = authorize(valid, "10.0.0.4").await.unwrap();
    assert_eq!(response.status(), 200, "a verified token is never limited");
    server.stop();
}

/// `AGENTKEY_CLIENT_IP_HEADER` through the real binary: behind a trusted
/// proxy (loopback here) that sets `X-Real-IP`, a client-sent
/// `X-Forwarded-For` decides the address under `either` (the default) but
/// not under `x-real-ip`: the same X-Real-IP is then limited whatever the
/// client forwards.
#[tokio::test]
async fn the_named_client_header_is_the_only_one_believed() {
    let failures_until_limited = |header: &'static str| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(
            &dir.path().join("a.db"),
            &[
                ("AGENTKEY_TRUSTED_PROXIES", "127.0.0.1"),
                ("AGENTKEY_CLIENT_IP_HEADER", header),
                ("AGENTKEY_AUTH_FAILURE_BURST", "2"),
            ],
        );
        let client = Client::new(&server);
        let mut refused = Vec::new();
        for n in 1..=4 {
            let response = client
                .http
                .get(format!("{}/v1/authorize", client.base))
                .bearer_auth("akagent_nonsense")
                .header("x-real-ip", "10.0.0.1")
                .header("x-forwarded-for", format!("198.51.100.{n}"))
                .send()
                .await
                .unwrap();
            refused.push(response.status().as_u16());
        }
        server.stop();
        refused
    };
    assert_eq!(failures_until_limited("either").await, [401, 401, 401, 401]);
    assert_eq!(
        failures_until_limited("x-real-ip").await,
        [401, 401, 429, 429]
    );
}

#[test]
fn a_bad_trusted_proxy_list_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("serve")
        .env("AGENTKEY_LISTEN", "127.0.0.1:0")
        .env(
            "AGENTKEY_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("a.db").display()),
        )
        .env("AGENTKEY_TRUSTED_PROXIES", "10.0.0.0/8, gateway.local")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("AGENTKEY_TRUSTED_PROXIES: \"gateway.local\" is not an IP address"),
        "{stderr}"
    );
}

/// Issue 12: a start-up error names the setting as it was given: the flag
/// if the command line set it, the environment variable if that did,
/// whether clap refuses the value (exit 2) or agentkey does (exit 1).
#[test]
fn start_up_errors_name_the_flag_or_variable_that_was_used() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    // (flag, variable, bad value, subcommand, exit code)
    let cases = [
        ("--listen", "AGENTKEY_LISTEN", "8080", "serve", 2),
        (
            "--header-read-timeout-seconds",
            "AGENTKEY_HEADER_READ_TIMEOUT_SECONDS",
            "0",
            "serve",
            2,
        ),
        ("--log-format", "AGENTKEY_LOG_FORMAT", "xml", "serve", 2),
        (
            "--max-agent-tokens-per-deployment",
            "AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT",
            "0",
            "serve",
            1,
        ),
        (
            "--trusted-proxies",
            "AGENTKEY_TRUSTED_PROXIES",
            "gateway.local",
            "serve",
            1,
        ),
        (
            "--client-ip-header",
            "AGENTKEY_CLIENT_IP_HEADER",
            "forwarded",
            "serve",
            1,
        ),
        (
            "--database-url",
            "AGENTKEY_DATABASE_URL",
            missing.as_str(),
            "root-token",
            1,
        ),
    ];
    for (flag, variable, bad, subcommand, code) in cases {
        let run = |from_flag: bool| {
            let mut command = Command::new(BIN);
            command
                .arg(subcommand)
                .env("AGENTKEY_LISTEN", "127.0.0.1:0")
                .env("AGENTKEY_DATABASE_URL", &url)
                .env_remove("AGENTKEY_ROOT_TOKEN");
            if from_flag {
                command.arg(format!("{flag}={bad}"));
            } else {
                command.env(variable, bad);
            }
            command.output().unwrap()
        };
        for (from_flag, named, not_named) in [(true, flag, variable), (false, variable, flag)] {
            let output = run(from_flag);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(code), "{named}: {stderr}");
            assert!(stderr.contains(named), "names {named}: {stderr}");
            assert!(!stderr.contains(not_named), "not {not_named}: {stderr}");
        }
    }
    assert!(!dir.path().join("a.db").exists(), "nothing started");
}
