//! The console in a real browser: Debian's headless Chromium, driven over
//! WebDriver (chromedriver) by fantoccini, against the real binary. It
//! signs in, creates an organization, a workspace, a deployment and an
//! agent token, reads the secret off the page and checks it with
//! `GET /v1/authorize`, reloads and finds no secret, rotates, deletes, and
//! checks the token is refused; then adds an allowed range, and a webhook
//! endpoint whose signing secret it sees once and whose listing it checks
//! has no secret. Each page is saved as a screenshot under
//! `target/tmp/console-screenshots/`.
//!
//! Without `chromium` and `chromium-driver` the test says why it skipped;
//! under `CI=true` it fails instead (`.ci/run` installs both).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::Server;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ROOT: &str = "console-browser-test-root-credential-0123456789";
const WEBHOOK_KEY: &str = "console-browser-test-webhook-key-0123456789";

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver on loopback and waits until it accepts connections.
fn start_driver() -> (Driver, u16) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session in Chromium")
}

struct Shots {
    dir: PathBuf,
    count: usize,
}

impl Shots {
    async fn take(&mut self, client: &Client, name: &str) {
        self.count += 1;
        let png = client.screenshot().await.expect("screenshot");
        let path = self.dir.join(format!("{:02}-{name}.png", self.count));
        std::fs::write(&path, png).expect("save screenshot");
    }
}

/// Waits for an element: a click that submits a form returns before the
/// next page has loaded.
async fn wait_for(
    client: &Client,
    locator: Locator<'_>,
) -> Result<fantoccini::elements::Element, fantoccini::error::CmdError> {
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(locator)
        .await
}

async fn fill(client: &Client, id: &str, text: &str) {
    let field = wait_for(client, Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn press(client: &Client, label: &str) {
    let xpath = format!("//button[normalize-space(.)='{label}']");
    wait_for(client, Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("button {label}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn follow(client: &Client, text: &str) {
    let xpath = format!("//a[starts-with(normalize-space(.), '{text}')]");
    wait_for(client, Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("link {text}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn secret_on_page(client: &Client) -> String {
    wait_for(client, Locator::Id("secret"))
        .await
        .expect("the secret field")
        .prop("value")
        .await
        .expect("value")
        .expect("a value")
}

async fn authorize(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/v1/authorize"))
        .bearer_auth(token)
        .send()
        .await
        .expect("authorize")
        .status()
        .as_u16()
}

/// Whether the browser tests can run here; says why not when they cannot.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "console browser test SKIPPED: {} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}; under CI=true the browser test must run"
    );
    eprintln!("{why}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_manages_an_agent_token_in_chromium() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("agentkey.db"),
        &[
            ("AGENTKEY_ROOT_TOKEN", ROOT),
            ("AGENTKEY_WEBHOOK_KEY", WEBHOOK_KEY),
            // The endpoint below is on loopback, where nothing listens.
            ("AGENTKEY_WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    );
    let base = server.base.clone();
    let (_driver, port) = start_driver();
    let client = browser(port, &dir.path().join("chromium-profile")).await;
    let dir_shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir_shots).unwrap();
    let mut shots = Shots {
        dir: dir_shots,
        count: 0,
    };
    let result = drive(&client, &base, &mut shots).await;
    let _ = client.close().await;
    result.unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", server.log_text()));
}

async fn drive(client: &Client, base: &str, shots: &mut Shots) -> Result<(), String> {
    // The start page leads to signing in.
    client
        .goto(&format!("{base}/"))
        .await
        .map_err(|e| e.to_string())?;
    let url = client.current_url().await.unwrap();
    assert!(url.path().starts_with("/console/sign-in"), "{url}");
    shots.take(client, "sign-in").await;
    fill(client, "token", ROOT).await;
    press(client, "Sign in").await;

    fill(client, "org-name", "Acme Data").await;
    press(client, "Create organization").await;
    fill(client, "ws-name", "Data platform").await;
    assert!(client.source().await.unwrap().contains("Acme Data"));
    fill(client, "ws-description", "Pipelines of the data team").await;
    press(client, "Create workspace").await;
    shots.take(client, "workspace").await;
    fill(client, "dep-name", "production").await;
    press(client, "Create deployment").await;
    wait_for(client, Locator::Id("token-name"))
        .await
        .expect("the deployment page");
    let deployment_url = client.current_url().await.unwrap();
    assert!(
        deployment_url.path().contains("/deployments/"),
        "{deployment_url}"
    );

    // Create an agent token; the next page shows its secret once.
    fill(client, "token-name", "airflow-agent").await;
    fill(client, "token-description", "remote execution agent").await;
    fill(client, "token-expiry", "30").await;
    press(client, "Create").await;
    let secret = secret_on_page(client).await;
    assert!(secret.starts_with("akagt_"), "{secret}");
    let copy = wait_for(client, Locator::Css("button.copy"))
        .await
        .expect("a Copy button");
    assert!(copy.is_displayed().await.unwrap(), "the script shows Copy");
    shots.take(client, "secret-shown-once").await;
    assert_eq!(authorize(base, &secret).await, 200);

    // A reload sends the form again: nothing new, and no secret.
    client.refresh().await.map_err(|e| e.to_string())?;
    let reloaded = client.source().await.unwrap();
    assert!(!reloaded.contains(&secret), "the secret is shown only once");
    assert!(reloaded.contains("already sent once"), "{reloaded}");
    client.back().await.map_err(|e| e.to_string())?;
    assert!(!client.source().await.unwrap().contains(&secret));

    client
        .goto(deployment_url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let listing = client.source().await.unwrap();
    assert_eq!(
        listing.matches("<td>airflow-agent</td>").count(),
        1,
        "one token"
    );
    shots.take(client, "deployment").await;

    // Rotate without a grace period: the new secret works, the old does not.
    follow(client, "Rotate").await;
    fill(client, "grace", "0").await;
    shots.take(client, "rotate").await;
    press(client, "Rotate").await;
    let rotated = secret_on_page(client).await;
    assert_ne!(rotated, secret);
    assert_eq!(authorize(base, &rotated).await, 200);
    assert_eq!(authorize(base, &secret).await, 401);

    // Delete asks first; then the token is refused at once.
    client
        .goto(deployment_url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    follow(client, "Delete").await;
    shots.take(client, "confirm-delete").await;
    press(client, "Delete").await;
    let notice = wait_for(client, Locator::Css("p.notice"))
        .await
        .expect("a notice");
    assert!(notice.text().await.unwrap().contains("Deleted."));
    assert_eq!(authorize(base, &rotated).await, 401);

    // The audit log shows what the console did, newest first.
    let org_path = deployment_url
        .path()
        .split("/deployments/")
        .next()
        .unwrap()
        .to_string();
    client
        .goto(&format!("{base}{org_path}/audit-logs"))
        .await
        .map_err(|e| e.to_string())?;
    let source = client.source().await.unwrap();
    let audit = &source[source.find("<tbody>").expect("a table of events")..];
    let delete_at = audit
        .find("agentToken.delete")
        .expect("the delete is audited");
    let create_at = audit
        .find("agentToken.create")
        .expect("the create is audited");
    assert!(delete_at < create_at, "newest first");
    shots.take(client, "audit-log").await;

    // The organization's allowlist: a range not written normalised is
    // refused next to the field, a good one is listed.
    client
        .goto(&format!("{base}{org_path}/allowed-ip-address-ranges"))
        .await
        .map_err(|e| e.to_string())?;
    fill(client, "range", "10.1.2.3/8").await;
    press(client, "Add range").await;
    let refused = wait_for(client, Locator::Id("range-error"))
        .await
        .expect("the field's error");
    assert!(refused.text().await.unwrap().contains("10.0.0.0/8"));
    fill(client, "range", "10.0.0.0/8").await;
    press(client, "Add range").await;
    wait_for(client, Locator::Css("table code"))
        .await
        .expect("the listed range");
    let listed = client.source().await.unwrap();
    assert!(listed.contains("<code>10.0.0.0/8</code>"), "{listed}");
    shots.take(client, "allowlist").await;

    // A webhook endpoint, from the organization's page: its signing secret
    // once, then listed without it.
    client
        .goto(&format!("{base}{org_path}"))
        .await
        .map_err(|e| e.to_string())?;
    follow(client, "Webhooks").await;
    let hook_url = {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", closed.local_addr().unwrap())
    };
    fill(client, "hook-url", &hook_url).await;
    fill(client, "hook-description", "audit sink").await;
    wait_for(
        client,
        Locator::Css("input[name=eventTypes][value='agent_token.expiring']"),
    )
    .await
    .expect("an event type's checkbox")
    .click()
    .await
    .expect("click");
    shots.take(client, "webhooks-add").await;
    press(client, "Add endpoint").await;
    let hook_secret = secret_on_page(client).await;
    assert!(hook_secret.starts_with("whsec_"), "{hook_secret}");
    shots.take(client, "webhook-secret-shown-once").await;
    follow(client, "Back to the webhooks").await;
    wait_for(client, Locator::Css("table code"))
        .await
        .expect("the listed endpoint");
    let listed = client.source().await.unwrap();
    assert!(
        listed.contains(&format!("<code>{hook_url}</code>")),
        "{listed}"
    );
    assert!(listed.contains("<td>agent_token.expiring</td>"), "{listed}");
    assert!(
        !listed.contains(&hook_secret),
        "the secret is shown only once"
    );
    shots.take(client, "webhooks").await;

    press(client, "Sign out").await;
    wait_for(client, Locator::Id("token"))
        .await
        .expect("the sign-in page");
    let url = client.current_url().await.unwrap();
    assert!(url.path().starts_with("/console/sign-in"), "{url}");
    client
        .goto(deployment_url.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let url = client.current_url().await.unwrap();
    assert!(
        url.path().starts_with("/console/sign-in"),
        "signed out: {url}"
    );
    Ok(())
}
