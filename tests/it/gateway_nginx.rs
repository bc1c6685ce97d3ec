//! The nginx forward-auth example of docs/deploy.md, run for real: nginx
//! (`/usr/sbin/nginx`, as the test user, in a temporary prefix, on
//! loopback) in front of a real `agentkey serve` and a stand-in upstream.
//! Two agent tokens are bound to `127.0.0.2/32` and `127.0.0.3/32`; the
//! client connects to nginx from each of those source addresses (its
//! socket bound to them), so agentkey must learn the client's address from
//! what nginx forwards (`X-Real-IP`, `X-Forwarded-For`; nginx's own
//! address is in `AGENTKEY_TRUSTED_PROXIES`), and a client-sent
//! `X-Forwarded-For` must not change it.
//!
//! Without nginx the test says why it skipped; under `CI=true` it fails
//! instead (`.ci/run` installs nginx).

use std::net::{IpAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{json, Value};

use crate::common::process::Server;

const NGINX: &str = "/usr/sbin/nginx";

/// Whether nginx can run here; says why not when it cannot.
fn nginx_available() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    let why = format!(
        "nginx gateway test SKIPPED: {NGINX} is not installed (apt-get install nginx-light)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}; under CI=true the gateway test must run"
    );
    eprintln!("{why}");
    false
}

/// nginx in the foreground, one process, stopped (killed) when dropped.
struct Nginx {
    child: Child,
    error_log: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn errors(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The forward-auth server block of docs/deploy.md, with loopback ports
/// and the paths a non-root nginx needs.
fn config(prefix: &Path, port: u16, agentkey: &str, upstream: u16, deployment: &str) -> String {
    let p = prefix.display();
    format!(
        r#"daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{}}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;

    upstream agentkey {{
        server {agentkey};
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            auth_request /_agentkey;
            auth_request_set $agentkey_token_id $upstream_http_x_agentkey_token_id;
            proxy_set_header X-Agentkey-Token-Id $agentkey_token_id;
            proxy_pass http://127.0.0.1:{upstream};
        }}

        location = /_agentkey {{
            internal;
            proxy_pass http://agentkey/v1/authorize?deploymentId={deployment};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
        }}
    }}
}}
"#
    )
}

/// A stand-in for Airflow: answers 200 with the token id nginx passed on.
async fn upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(get(|headers: HeaderMap| async move {
        let id = headers
            .get("x-agentkey-token-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        format!("upstream reached by {id}")
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    root: &str,
    body: Value,
) -> Value {
    let reply = http
        .request(method, url)
        .bearer_auth(root)
        .json(&body)
        .send()
        .await
        .expect("management request");
    assert!(reply.status().is_success(), "{url}: {}", reply.status());
    reply.json().await.expect("JSON")
}

/// A client whose connections leave from `source`.
fn client_from(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .local_address(source)
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forwards_the_client_address_to_bound_tokens() {
    if !nginx_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("agentkey.db"),
        &[("AGENTKEY_TRUSTED_PROXIES", "127.0.0.1")],
    );
    let root = server.printed_root().expect("a generated root");
    let base = format!("{}/v1", server.base);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = reqwest::Method::POST;
    let org = call(
        &http,
        post.clone(),
        &format!("{base}/organizations"),
        &root,
        json!({ "name": "o" }),
    )
    .await;
    let org = org["id"].as_str().unwrap();
    let ws = call(
        &http,
        post.clone(),
        &format!("{base}/organizations/{org}/workspaces"),
        &root,
        json!({ "name": "w" }),
    )
    .await;
    let dep = call(
        &http,
        post.clone(),
        &format!("{base}/organizations/{org}/deployments"),
        &root,
        json!({ "name": "d", "workspaceId": ws["id"] }),
    )
    .await;
    let dep = dep["id"].as_str().unwrap().to_string();
    let tokens = format!("{base}/organizations/{org}/deployments/{dep}/agent-tokens");
    let mut bound = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        let token = call(
            &http,
            post.clone(),
            &tokens,
            &root,
            json!({ "name": source, "allowedIpAddressRanges": [format!("{source}/32")] }),
        )
        .await;
        bound.push((
            token["token"].as_str().unwrap().to_string(),
            token["id"].as_str().unwrap().to_string(),
        ));
    }

    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let port = free_port();
    let agentkey = server.base.trim_start_matches("http://").to_string();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        config(&prefix, port, &agentkey, upstream().await, &dep),
    )
    .unwrap();
    let child = Command::new(NGINX)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx {
        child,
        error_log: prefix.join("error.log"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen: {}",
            nginx.errors()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = format!("http://127.0.0.1:{port}/api/v2/dags");
    let through = |source: &'static str, token: String, forged: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut request = client_from(source).get(&url).bearer_auth(token);
            if let Some(forged) = forged {
                request = request
                    .header("x-forwarded-for", forged)
                    .header("x-real-ip", forged);
            }
            let reply = request.send().await.expect("request through nginx");
            let status = reply.status().as_u16();
            (status, reply.text().await.unwrap_or_default())
        }
    };
    let (first, second) = (&bound[0], &bound[1]);
    // Each token passes from its own address, and only from there.
    let (status, body) = through("127.0.0.2", first.0.clone(), None).await;
    assert_eq!(status, 200, "{body} {}", nginx.errors());
    assert_eq!(body, format!("upstream reached by {}", first.1));
    let (status, body) = through("127.0.0.3", second.0.clone(), None).await;
    assert_eq!(
        (status, body),
        (200, format!("upstream reached by {}", second.1))
    );
    assert_eq!(through("127.0.0.3", first.0.clone(), None).await.0, 401);
    assert_eq!(through("127.0.0.2", second.0.clone(), None).await.0, 401);
    // A client naming another address itself changes nothing: nginx
    // appends the real one, and agentkey takes the right-most untrusted.
    assert_eq!(
        through("127.0.0.3", first.0.clone(), Some("127.0.0.2"))
            .await
            .0,
        401
    );
    assert_eq!(
        through("127.0.0.2", first.0.clone(), Some("127.0.0.3"))
            .await
            .0,
        200
    );

    drop(nginx);
    let log = server.stop();
    assert!(
        !log.contains(&first.0) && !log.contains(&second.0),
        "no secret in the log"
    );
}
