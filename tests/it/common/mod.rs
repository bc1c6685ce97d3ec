//! Test harness: the real router on a real database (a SQLite file in a
//! temporary directory, or a fresh PostgreSQL database), with a manual
//! clock, driven in-process request by request.

#![allow(dead_code)]

pub mod postgres;
pub mod process;

use std::path::PathBuf;
use std::sync::Arc;

use agentkey::app::{AppState, Settings};
use agentkey::bootstrap::ensure_generated_root;
use agentkey::clock::{Clock, ManualClock};
use agentkey::http::front::Front;
use agentkey::store::{self, Store};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

/// 2022-11-22T04:37:12Z, the instant of Astro's examples.
pub const START: i64 = 1_669_091_832;

pub struct TestApp {
    pub router: Front,
    pub state: AppState,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub root: String,
    /// The SQLite file, when the backend is SQLite.
    pub db_path: Option<PathBuf>,
    _dir: TempDir,
    _database: Option<postgres::TestDatabase>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the Astro `Error` envelope and answers its message.
    #[track_caller]
    pub fn assert_error(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["statusCode"], status, "body: {}", self.body);
        let request_id = self.body["requestId"].as_str().expect("requestId");
        assert!(!request_id.is_empty());
        assert_eq!(self.header("x-request-id"), Some(request_id));
        assert!(self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")));
        self.body["message"].as_str().expect("message")
    }

    /// The `field` values of `fieldErrors`.
    pub fn fields(&self) -> Vec<String> {
        self.body["fieldErrors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    /// On SQLite, with the default settings.
    pub async fn new() -> TestApp {
        TestApp::sqlite(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> TestApp {
        TestApp::sqlite(settings).await
    }

    pub async fn sqlite(settings: Settings) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("agentkey.db");
        let url = format!("sqlite://{}", db_path.display());
        TestApp::open(&url, settings, dir, Some(db_path), None).await
    }

    /// On a fresh PostgreSQL database, or `None` without a server.
    pub async fn postgres(settings: Settings) -> Option<TestApp> {
        let database = postgres::TestDatabase::create().await?;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = database.url.clone();
        Some(TestApp::open(&url, settings, dir, None, Some(database)).await)
    }

    async fn open(
        url: &str,
        settings: Settings,
        dir: TempDir,
        db_path: Option<PathBuf>,
        database: Option<postgres::TestDatabase>,
    ) -> TestApp {
        let store = store::open(url).await.expect("open store");
        let clock = Arc::new(ManualClock::new(START));
        let root = ensure_generated_root(store.as_ref(), clock.now())
            .await
            .expect("root")
            .expect("a fresh database has no root credential");
        let state = AppState::new(store.clone(), clock.clone(), settings, None);
        TestApp {
            router: state.router(),
            state,
            store,
            clock,
            root: root.expose().to_string(),
            db_path,
            _dir: dir,
            _database: database,
        }
    }

    /// Sends one request; `body` is sent as JSON when given.
    /// The PostgreSQL database's URL, when the backend is PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self._database.as_ref().map(|d| d.url.as_str())
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        self.raw(request).await
    }

    pub async fn raw(&self, request: Request<Body>) -> Reply {
        TestApp::reply_of(self.router.clone(), request).await
    }

    /// The reply of `app` (this app's front door, or another) to `request`.
    pub async fn reply_of(app: Front, request: Request<Body>) -> Reply {
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        let json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        // Not JSON (the metrics text, say): the bytes are in `raw`.
        let body = if raw.is_empty() || !json {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or_else(|_| {
                panic!("response is not JSON: {}", String::from_utf8_lossy(&raw))
            })
        };
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    /// A request from TCP peer `peer` (an address; the server records it as
    /// `ConnectInfo`), with `token`, extra headers and a JSON body.
    pub async fn send_from(
        &self,
        peer: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let ip: std::net::IpAddr = peer.parse().expect("peer address");
        let peer = std::net::SocketAddr::new(ip, 40000);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.raw(request).await
    }

    pub async fn get(&self, path: impl AsRef<str>) -> Reply {
        self.send(Method::GET, path.as_ref(), Some(&self.root), None)
            .await
    }

    pub async fn post(&self, path: impl AsRef<str>, body: Value) -> Reply {
        self.send(Method::POST, path.as_ref(), Some(&self.root), Some(body))
            .await
    }

    pub async fn delete(&self, path: impl AsRef<str>) -> Reply {
        self.send(Method::DELETE, path.as_ref(), Some(&self.root), None)
            .await
    }

    #[track_caller]
    fn id_of(reply: Reply) -> String {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["id"].as_str().expect("id").to_string()
    }

    pub async fn org(&self, name: &str) -> String {
        Self::id_of(
            self.post("/v1/organizations", json!({ "name": name }))
                .await,
        )
    }

    pub async fn workspace(&self, org: &str) -> String {
        Self::id_of(
            self.post(
                &format!("/v1/organizations/{org}/workspaces"),
                json!({ "name": "ws" }),
            )
            .await,
        )
    }

    pub async fn deployment(&self, org: &str, workspace: &str) -> String {
        Self::id_of(
            self.post(
                &format!("/v1/organizations/{org}/deployments"),
                json!({ "name": "dep", "workspaceId": workspace }),
            )
            .await,
        )
    }

    /// A new organization with one workspace and one deployment.
    pub async fn tenant(&self) -> Tenant {
        let org = self.org("acme").await;
        let workspace = self.workspace(&org).await;
        let deployment = self.deployment(&org, &workspace).await;
        Tenant {
            org,
            workspace,
            deployment,
        }
    }

    /// Creates an agent token; answers the whole create response.
    pub async fn agent_token(&self, t: &Tenant, body: Value) -> Value {
        let reply = self.post(&t.tokens_path(), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    pub async fn authorize(&self, token: &str) -> Reply {
        self.send(Method::GET, "/v1/authorize", Some(token), None)
            .await
    }
}

/// An audit event for store calls made directly by tests.
pub fn audit() -> agentkey::model::AuditEvent {
    agentkey::model::AuditEvent {
        id: agentkey::token::new_id(),
        organization_id: None,
        occurred_at: START,
        actor: agentkey::model::Subject {
            id: agentkey::token::new_id(),
            subject_type: agentkey::model::SubjectType::ServiceKey,
            api_token_name: Some("test".into()),
        },
        action: "test.change".into(),
        target_type: "TEST".into(),
        target_id: "test".into(),
        request_id: None,
        source_ip: None,
    }
}

pub struct Tenant {
    pub org: String,
    pub workspace: String,
    pub deployment: String,
}

impl Tenant {
    pub fn tokens_path(&self) -> String {
        format!(
            "/v1/organizations/{}/deployments/{}/agent-tokens",
            self.org, self.deployment
        )
    }

    pub fn token_path(&self, id: &str) -> String {
        format!("{}/{id}", self.tokens_path())
    }
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

/// Runs each named `async fn NAME(app: TestApp)` on SQLite and, when
/// `AGENTKEY_TEST_DATABASE_URL` is set, on a fresh PostgreSQL database:
/// one `#[tokio::test]` each, `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        on_every_backend!(settings = Default::default(); $($name),*);
    };
    // The same, each app built with these `Settings`.
    (settings = $settings:expr; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = $crate::common::TestApp::sqlite($settings).await;
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(not(postgres_tests), ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it")]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::postgres($settings).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}
