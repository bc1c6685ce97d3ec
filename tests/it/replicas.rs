//! Two replicas on one PostgreSQL database: two complete apps with their
//! own connection pools and caches, each following the other's revocations
//! (LISTEN/NOTIFY), as two `agentkey serve` processes would. Replica B
//! reaches the database through a TCP proxy the test can cut, to show what
//! happens when a replica loses the database and gets it back.
//! Runs only when `AGENTKEY_TEST_DATABASE_URL` is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::postgres::TestDatabase;
use agentkey::app::{AppState, Settings};
use agentkey::bootstrap::ensure_generated_root;
use agentkey::clock::{Clock, SystemClock};
use agentkey::store::{self, Store};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

struct Replica {
    state: AppState,
    store: Arc<dyn Store>,
    _stop: watch::Sender<bool>,
}

impl Replica {
    async fn start(url: &str, settings: Settings) -> Replica {
        let store = store::open(url).await.expect("open store");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state = AppState::new(store.clone(), clock, settings, None);
        let (stop, stopped) = watch::channel(false);
        store
            .follow_revocations(state.verifier.clone(), stopped)
            .expect("PostgreSQL follows revocations");
        Replica {
            state,
            store,
            _stop: stop,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .state
            .router()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn authorize(&self, token: &str) -> StatusCode {
        self.call(Method::GET, "/v1/authorize", token, None).await.0
    }

    fn following(&self) -> bool {
        self.state.verifier.cache().is_enabled()
    }
}

/// Polls `check` until it holds; answers how long that took.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback TCP proxy to the PostgreSQL server that can be cut (every
/// connection closed, new ones refused) and restored, and that can swallow
/// the revocation listener's traffic: its connection stays open, but
/// nothing passes either way, as when a server goes silent.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<Tracked>>>,
}

/// A proxied connection: its task, and what the proxy knows of it.
type Tracked = (tokio::task::AbortHandle, Arc<Link>);

/// What the proxy knows of one connection.
#[derive(Default)]
struct Link {
    /// It subscribed to the revocation channel.
    listener: AtomicBool,
    /// Its traffic is read and dropped.
    swallowed: AtomicBool,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accepting, tracked) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let link = Arc::new(Link::default());
                let task = tokio::spawn({
                    let link = link.clone();
                    async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        // Either direction ending ends both.
                        tokio::select! {
                            () = relay(client_read, server_write, &link, true) => {}
                            () = relay(server_read, client_write, &link, false) => {}
                        }
                    }
                });
                tracked.lock().unwrap().push((task.abort_handle(), link));
            }
        });
        Proxy {
            port,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for (connection, _) in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Swallows the traffic of every listener connection not yet
    /// swallowed; answers how many there were.
    fn swallow_listeners(&self) -> usize {
        let connections = self.connections.lock().unwrap();
        let live = connections.iter().filter(|(_, link)| {
            link.listener.load(Ordering::SeqCst) && !link.swallowed.load(Ordering::SeqCst)
        });
        let mut count = 0;
        for (_, link) in live {
            link.swallowed.store(true, Ordering::SeqCst);
            count += 1;
        }
        count
    }
}

/// Copies bytes one way until either side closes. `to_server` tells the
/// client's direction, in which a `LISTEN` marks the listener connection.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: &Link,
    to_server: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SUBSCRIBE: &[u8] = b"LISTEN \"agentkey_revocations\"";
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let bytes = &buffer[..n];
        if to_server && bytes.windows(SUBSCRIBE.len()).any(|w| w == SUBSCRIBE) {
            link.listener.store(true, Ordering::SeqCst);
        }
        if link.swallowed.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(bytes).await.is_err() {
            return;
        }
    }
}

/// `url` with its host and port replaced.
fn via(url: &str, host_port: &str) -> (String, String) {
    let authority = url.find("://").unwrap() + 3;
    let host_start = url[authority..]
        .find('@')
        .map_or(authority, |at| authority + at + 1);
    let host_end = host_start
        + url[host_start..]
            .find(['/', '?'])
            .unwrap_or(url.len() - host_start);
    let upstream = url[host_start..host_end].to_string();
    (
        format!("{}{host_port}{}", &url[..host_start], &url[host_end..]),
        upstream,
    )
}

async fn two_replicas(
    settings: Settings,
) -> Option<(TestDatabase, Replica, Replica, Proxy, String)> {
    let database = TestDatabase::create().await?;
    let (_, upstream) = via(&database.url, "");
    let upstream = if upstream.contains(':') {
        upstream
    } else {
        format!("{upstream}:5432")
    };
    let proxy = Proxy::start(upstream).await;
    let (b_url, _) = via(&database.url, &format!("127.0.0.1:{}", proxy.port));
    let a = Replica::start(&database.url, settings.clone()).await;
    let b = Replica::start(&b_url, settings).await;
    let root = ensure_generated_root(a.store.as_ref(), 0)
        .await
        .unwrap()
        .unwrap();
    within(Duration::from_secs(5), async || {
        a.following() && b.following()
    })
    .await;
    Some((database, a, b, proxy, root.expose().to_string()))
}

/// An organization, workspace and deployment, made through `replica`.
async fn deployment(replica: &Replica, root: &str) -> String {
    let (_, org) = replica
        .call(
            Method::POST,
            "/v1/organizations",
            root,
            Some(json!({ "name": "o" })),
        )
        .await;
    let org = org["id"].as_str().unwrap().to_string();
    let ws_path = format!("/v1/organizations/{org}/workspaces");
    let (_, ws) = replica
        .call(Method::POST, &ws_path, root, Some(json!({ "name": "w" })))
        .await;
    let dep_path = format!("/v1/organizations/{org}/deployments");
    let body = json!({ "name": "d", "workspaceId": ws["id"] });
    let (_, dep) = replica
        .call(Method::POST, &dep_path, root, Some(body))
        .await;
    format!(
        "/v1/organizations/{org}/deployments/{}",
        dep["id"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn revocations_reach_the_other_replica_within_a_second() {
    let Some((_db, a, b, _proxy, root)) = two_replicas(Settings::default()).await else {
        return;
    };
    let dep = deployment(&a, &root).await;
    let tokens = format!("{dep}/agent-tokens");

    // Created on A, verifies on B; both now hold it in their caches.
    let (_, created) = a
        .call(Method::POST, &tokens, &root, Some(json!({ "name": "t" })))
        .await;
    let secret = created["token"].as_str().unwrap().to_string();
    let token_path = format!("{tokens}/{}", created["id"].as_str().unwrap());
    assert_eq!(b.authorize(&secret).await, StatusCode::OK);
    assert_eq!(a.authorize(&secret).await, StatusCode::OK);

    // Rotated on A: B stops accepting the old secret.
    let (status, rotated) = a
        .call(Method::POST, &format!("{token_path}/rotate"), &root, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let took = within(Duration::from_secs(1), async || {
        b.authorize(&secret).await == StatusCode::UNAUTHORIZED
    })
    .await;
    eprintln!("rotation seen by the other replica after {took:?}");
    let secret = rotated["token"].as_str().unwrap().to_string();
    assert_eq!(b.authorize(&secret).await, StatusCode::OK);
    assert_eq!(a.authorize(&secret).await, StatusCode::OK);

    // Deleted on B: A refuses it.
    let (status, _) = b.call(Method::DELETE, &token_path, &root, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let took = within(Duration::from_secs(1), async || {
        a.authorize(&secret).await == StatusCode::UNAUTHORIZED
    })
    .await;
    eprintln!("deletion seen by the other replica after {took:?}");

    // A deployment deleted on A: B refuses its tokens.
    let (_, other) = a
        .call(Method::POST, &tokens, &root, Some(json!({ "name": "u" })))
        .await;
    let other = other["token"].as_str().unwrap().to_string();
    assert_eq!(b.authorize(&other).await, StatusCode::OK);
    let (status, _) = a.call(Method::DELETE, &dep, &root, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    within(Duration::from_secs(1), async || {
        b.authorize(&other).await == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn concurrent_creates_on_both_replicas_respect_the_limit() {
    let settings = Settings {
        max_agent_tokens_per_deployment: 5,
        ..Settings::default()
    };
    let Some((_db, a, b, _proxy, root)) = two_replicas(settings).await else {
        return;
    };
    let tokens = format!("{}/agent-tokens", deployment(&a, &root).await);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut creates = Vec::new();
    for i in 0..20 {
        let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (tokens, root) = (tokens.clone(), root.clone());
        creates.push(tokio::spawn(async move {
            replica
                .call(
                    Method::POST,
                    &tokens,
                    &root,
                    Some(json!({ "name": format!("t{i}") })),
                )
                .await
                .0
        }));
    }
    let mut statuses = Vec::new();
    for create in creates {
        statuses.push(create.await.unwrap());
    }
    let created = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((created, refused), (5, 15), "{statuses:?}");
    let (_, list) = b.call(Method::GET, &tokens, &root, None).await;
    assert_eq!(list["totalCount"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn a_replica_that_loses_the_database_fails_closed_and_recovers() {
    let Some((_db, a, b, proxy, root)) = two_replicas(Settings::default()).await else {
        return;
    };
    let tokens = format!("{}/agent-tokens", deployment(&a, &root).await);
    let (_, created) = a
        .call(Method::POST, &tokens, &root, Some(json!({ "name": "t" })))
        .await;
    let secret = created["token"].as_str().unwrap().to_string();
    let token_path = format!("{tokens}/{}", created["id"].as_str().unwrap());
    assert_eq!(b.authorize(&secret).await, StatusCode::OK, "cached on B");
    let ready = |replica: &Replica| {
        let router = replica.state.router();
        async move {
            let request = Request::builder()
                .uri("/readyz")
                .body(Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        }
    };
    assert_eq!(ready(&b).await, StatusCode::OK);

    // B loses the database: it stops trusting its cache at once (its
    // listener connection closes), and says it is not ready.
    proxy.cut();
    within(Duration::from_secs(5), async || !b.following()).await;
    assert_eq!(ready(&b).await, StatusCode::SERVICE_UNAVAILABLE);
    // Meanwhile A deletes the token. B cannot hear of it, so it must not
    // answer from what it cached: it fails closed instead.
    let (status, _) = a.call(Method::DELETE, &token_path, &root, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_ne!(b.authorize(&secret).await, StatusCode::OK);

    // The database comes back: B is ready again without a restart, follows
    // revocations again, and knows the token is gone.
    proxy.restore();
    within(Duration::from_secs(10), async || {
        ready(&b).await == StatusCode::OK
    })
    .await;
    within(Duration::from_secs(10), async || b.following()).await;
    assert_eq!(b.authorize(&secret).await, StatusCode::UNAUTHORIZED);
}

/// Issue 11, item 2: a listener connection that goes silent is given up
/// (sqlx then waits on its `UNLISTEN *` without a timeout); that must cost
/// none of the store's pool connections, however often it happens, and the
/// new listener must carry revocations again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn a_silent_listener_connection_costs_no_pool_connection() {
    let Some((_db, a, b, proxy, root)) = two_replicas(Settings::default()).await else {
        return;
    };
    let in_use = || {
        let (size, idle) = b.store.pool_status();
        size as usize - idle
    };
    let baseline = in_use();
    for round in 0..20 {
        assert_eq!(proxy.swallow_listeners(), 1, "round {round}: one listener");
        within(Duration::from_secs(5), async || !b.following()).await;
        within(Duration::from_secs(5), async || b.following()).await;
        within(Duration::from_secs(2), async || in_use() == baseline).await;
    }
    eprintln!(
        "pool in use after 20 silent listeners: {} (baseline {baseline})",
        in_use()
    );

    // The twenty-first listener carries revocations from A to B.
    let tokens = format!("{}/agent-tokens", deployment(&a, &root).await);
    let (_, created) = a
        .call(Method::POST, &tokens, &root, Some(json!({ "name": "t" })))
        .await;
    let secret = created["token"].as_str().unwrap().to_string();
    let token_path = format!("{tokens}/{}", created["id"].as_str().unwrap());
    assert_eq!(b.authorize(&secret).await, StatusCode::OK, "cached on B");
    let (status, _) = a.call(Method::DELETE, &token_path, &root, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    within(Duration::from_secs(1), async || {
        b.authorize(&secret).await == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn an_allowlist_change_reaches_the_other_replica_within_a_second() {
    let Some((_db, a, b, _proxy, root)) = two_replicas(Settings::default()).await else {
        return;
    };
    let dep = deployment(&a, &root).await;
    let org = dep.split('/').nth(3).unwrap().to_string();
    let (_, owner) = a
        .call(
            Method::POST,
            &format!("/v1/organizations/{org}/tokens"),
            &root,
            Some(json!({ "name": "o", "scope": "ORGANIZATION", "role": "ORGANIZATION_OWNER" })),
        )
        .await;
    let owner = owner["token"].as_str().unwrap().to_string();
    let org_path = format!("/v1/organizations/{org}");
    // B reads, and caches, the empty list: the owner is let in.
    assert_eq!(
        b.call(Method::GET, &org_path, &owner, None).await.0,
        StatusCode::OK
    );
    // A range added on A: B refuses the owner, whose in-process requests
    // have no address, so are outside every range.
    let ranges = format!("{org_path}/allowed-ip-address-ranges");
    let (status, range) = a
        .call(
            Method::POST,
            &ranges,
            &root,
            Some(json!({ "ipAddressRange": "192.0.2.0/24" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{range}");
    let took = within(Duration::from_secs(1), async || {
        b.call(Method::GET, &org_path, &owner, None).await.0 == StatusCode::FORBIDDEN
    })
    .await;
    eprintln!("allowlist addition seen by the other replica after {took:?}");
    // Deleted on B: A lets the owner in again.
    assert_eq!(
        a.call(Method::GET, &org_path, &owner, None).await.0,
        StatusCode::FORBIDDEN
    );
    let range_path = format!("{ranges}/{}", range["id"].as_str().unwrap());
    let (status, _) = b.call(Method::DELETE, &range_path, &root, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    within(Duration::from_secs(1), async || {
        a.call(Method::GET, &org_path, &owner, None).await.0 == StatusCode::OK
    })
    .await;
}
