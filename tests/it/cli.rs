//! The CLI client end to end: the real `agentkey` binary as a client,
//! against a real `agentkey serve` started here (port 0, a temporary SQLite
//! file). Every subcommand in table and JSON mode, and the exit codes of
//! each way a command can fail.

use std::process::Command;

use serde_json::Value;

use crate::common::process::BIN;
const ROOT: &str = "cli-test-root-credential-0123456789abcdef";

const NOT_FOUND: i32 = 3;
const NOT_ALLOWED: i32 = 4;
const UNREACHABLE: i32 = 5;
const REJECTED: i32 = 6;
const USAGE: i32 = 2;

/// `agentkey serve` on a free loopback port with a configured root
/// credential, on a database of its own; stopped when dropped.
struct Server {
    // Kept for its Drop, which stops the server.
    _process: crate::common::process::Server,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let process = crate::common::process::Server::start(
            &dir.path().join("agentkey.db"),
            &[("AGENTKEY_ROOT_TOKEN", ROOT)],
        );
        let base = process.base.clone();
        Server {
            _process: process,
            base,
            _dir: dir,
        }
    }

    /// A CLI with the root credential, talking to this server.
    fn cli(&self) -> Cli {
        Cli::new(&self.base, Some(ROOT))
    }
}

/// One way to run the client: a server URL, a credential (or none) and
/// extra environment.
#[derive(Clone)]
struct Cli {
    server: String,
    token: Option<String>,
    env: Vec<(String, String)>,
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl Cli {
    fn new(server: &str, token: Option<&str>) -> Cli {
        Cli {
            server: server.to_string(),
            token: token.map(str::to_string),
            env: Vec::new(),
        }
    }

    fn token(&self, token: Option<&str>) -> Cli {
        Cli {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    fn env(&self, key: &str, value: &str) -> Cli {
        let mut cli = self.clone();
        cli.env.push((key.to_string(), value.to_string()));
        cli
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("AGENTKEY_SERVER", &self.server)
            .env_remove("AGENTKEY_TOKEN")
            .env_remove("AGENTKEY_ORG")
            .env_remove("AGENTKEY_DEPLOYMENT")
            .env_remove("AGENTKEY_LOG")
            .env("NO_COLOR", "1");
        if let Some(token) = &self.token {
            command.env("AGENTKEY_TOKEN", token);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let output = command.output().expect("run agentkey");
        let outcome = Outcome {
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        // The credential is never echoed, whatever happened.
        if let Some(token) = &self.token {
            if token.len() > 8 {
                assert!(
                    !outcome.stdout.contains(token.as_str())
                        && !outcome.stderr.contains(token.as_str()),
                    "{args:?} echoed the credential"
                );
            }
        }
        outcome
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str]) -> Outcome {
        let outcome = self.run(args);
        assert_eq!(
            outcome.code, 0,
            "{args:?} failed: {}{}",
            outcome.stdout, outcome.stderr
        );
        assert_eq!(outcome.stderr, "", "{args:?} wrote to stderr");
        outcome
    }

    /// Runs a command that must fail with `code`; its error message.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let outcome = self.run(args);
        assert_eq!(
            outcome.code, code,
            "{args:?}: stdout {:?} stderr {:?}",
            outcome.stdout, outcome.stderr
        );
        assert_eq!(outcome.stdout, "", "{args:?} printed on stdout");
        assert!(
            outcome.stderr.starts_with("agentkey: ") || outcome.stderr.starts_with("error: "),
            "{args:?}: {}",
            outcome.stderr
        );
        outcome.stderr
    }

    /// Runs a command with `--output json`; its answer.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        self.ok(&args).json()
    }
}

/// An error message that carries the server's request id.
fn assert_server_error(message: &str, label: &str, server_message: &str) {
    assert!(
        message.starts_with(&format!("agentkey: {label}: {server_message}")),
        "{message}"
    );
    assert!(message.contains(" (request id "), "{message}");
}

/// The value of a field row (`Name  acme`) of a detail table.
fn field(table: &str, name: &str) -> String {
    table
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            rest.starts_with("  ").then(|| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} row in:\n{table}"))
}

/// The data rows of a list table (without its header).
fn rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ID  "), "{table}");
    lines
        .take_while(|line| line.starts_with('c'))
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// A well-formed id that names nothing.
const UNKNOWN_ID: &str = "c000000000000000000000000";

struct Fixture {
    org: String,
    workspace: String,
    deployment: String,
}

fn fixture(cli: &Cli) -> Fixture {
    let org = cli.json(&["org", "create", "--name", "acme"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let workspace = cli.json(&["workspace", "create", "--org", &org, "--name", "w"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deployment = cli.json(&[
        "deployment",
        "create",
        "--org",
        &org,
        "--workspace",
        &workspace,
        "--name",
        "prod",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    Fixture {
        org,
        workspace,
        deployment,
    }
}

#[test]
fn org_list_create_get() {
    let server = Server::start();
    let cli = server.cli();

    assert_eq!(cli.ok(&["org", "list"]).stdout, "No organizations.\n");

    let table = cli.ok(&["org", "create", "--name", "acme"]).stdout;
    assert_eq!(field(&table, "Name"), "acme");
    let acme = field(&table, "ID");
    let zeta = cli.json(&["org", "create", "--name", "zeta"]);
    assert_eq!(zeta["name"], "zeta");
    let zeta = zeta["id"].as_str().unwrap();

    let table = cli.ok(&["org", "list"]).stdout;
    let listed = rows(&table);
    assert_eq!(listed.len(), 2, "{table}");
    assert_eq!(listed[0][..2], [acme.as_str(), "acme"]);
    assert_eq!(listed[1][..2], [zeta, "zeta"]);
    assert!(!table.contains(" of "), "a full page has no page line");

    let page = cli.ok(&["org", "list", "--limit", "1", "--sort", "name:desc"]);
    assert_eq!(rows(&page.stdout)[0][1], "zeta");
    assert!(
        page.stdout
            .ends_with("1-1 of 2 organizations; next page: --offset 1\n"),
        "{}",
        page.stdout
    );

    let list = cli.json(&["org", "list", "--sort", "name:desc", "--offset", "1"]);
    assert_eq!(list["totalCount"], 2);
    assert_eq!(list["offset"], 1);
    assert_eq!(list["organizations"][0]["name"], "acme");

    let table = cli.ok(&["org", "get", &acme]).stdout;
    assert_eq!(field(&table, "ID"), acme);
    assert_eq!(field(&table, "Name"), "acme");
    assert_eq!(cli.json(&["org", "get", zeta])["name"], "zeta");

    let message = cli.fails(NOT_FOUND, &["org", "get", UNKNOWN_ID]);
    assert_server_error(&message, "not found", "organization not found");
    let message = cli.fails(REJECTED, &["org", "create", "--name", &"x".repeat(256)]);
    // The server's field is said as the flag that set it.
    assert_server_error(&message, "rejected", "--name must be at most 255");
    let message = cli.fails(REJECTED, &["org", "list", "--sort", "bogus:asc"]);
    assert_server_error(&message, "rejected", "invalid sort \"bogus:asc\"");
}

#[test]
fn workspace_list_create_get() {
    let server = Server::start();
    let cli = server.cli();
    let org = cli.json(&["org", "create", "--name", "acme"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The organization may come from the environment.
    let in_org = cli.env("AGENTKEY_ORG", &org);

    let table = in_org
        .ok(&[
            "workspace",
            "create",
            "--name",
            "data",
            "--description",
            "the data team",
        ])
        .stdout;
    assert_eq!(field(&table, "Name"), "data");
    assert_eq!(field(&table, "Description"), "the data team");
    assert_eq!(field(&table, "Organization"), org);
    let data = field(&table, "ID");
    let ml = cli.json(&["workspace", "create", "--org", &org, "--name", "ml"]);
    assert_eq!(ml["description"], "");
    let ml = ml["id"].as_str().unwrap();

    let listed = rows(&in_org.ok(&["workspace", "list"]).stdout);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0][..3], [data.as_str(), "data", "the"]);
    assert_eq!(listed[1][..2], [ml, "ml"]);
    let list = cli.json(&["workspace", "list", "--org", &org, "--limit", "0"]);
    assert_eq!(list["totalCount"], 2);
    assert_eq!(list["workspaces"], serde_json::json!([]));

    assert_eq!(
        field(&in_org.ok(&["workspace", "get", ml]).stdout, "Name"),
        "ml"
    );
    assert_eq!(
        cli.json(&["workspace", "get", "--org", &org, &data])["name"],
        "data"
    );

    let message = in_org.fails(NOT_FOUND, &["workspace", "get", UNKNOWN_ID]);
    assert_server_error(&message, "not found", "workspace not found");
    let message = cli.fails(NOT_FOUND, &["workspace", "list", "--org", UNKNOWN_ID]);
    assert_server_error(&message, "not found", "organization not found");
    let message = in_org.fails(
        REJECTED,
        &[
            "workspace",
            "create",
            "--name",
            "x",
            "--description",
            &"d".repeat(1001),
        ],
    );
    assert_server_error(&message, "rejected", "--description must be at most");
    // Without --org or AGENTKEY_ORG, clap refuses the command.
    let message = cli.fails(USAGE, &["workspace", "list"]);
    assert!(message.contains("--org"), "{message}");
}

#[test]
fn deployment_list_create_get_delete() {
    let server = Server::start();
    let cli = server.cli();
    let f = fixture(&cli);
    let in_org = cli.env("AGENTKEY_ORG", &f.org);

    let table = in_org
        .ok(&[
            "deployment",
            "create",
            "--workspace",
            &f.workspace,
            "--name",
            "staging",
            "--description",
            "pre-prod",
        ])
        .stdout;
    assert_eq!(field(&table, "Name"), "staging");
    assert_eq!(field(&table, "Workspace"), f.workspace);
    assert_eq!(field(&table, "Description"), "pre-prod");
    let staging = field(&table, "ID");

    let listed = rows(&in_org.ok(&["deployment", "list"]).stdout);
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0][..3],
        [f.deployment.as_str(), "prod", f.workspace.as_str()]
    );
    assert_eq!(listed[1][..2], [staging.as_str(), "staging"]);
    let list = cli.json(&["deployment", "list", "--org", &f.org, "--sort", "name:asc"]);
    assert_eq!(list["deployments"][0]["name"], "prod");
    assert_eq!(list["totalCount"], 2);

    assert_eq!(
        field(&in_org.ok(&["deployment", "get", &staging]).stdout, "Name"),
        "staging"
    );
    assert_eq!(
        cli.json(&["deployment", "get", "--org", &f.org, &f.deployment])["workspaceId"],
        f.workspace.as_str()
    );

    let deleted = in_org.ok(&["deployment", "delete", &staging]).stdout;
    assert_eq!(
        deleted,
        format!("Deleted deployment {staging}; its agent tokens no longer verify.\n")
    );
    // JSON mode: a 204 prints nothing, the exit code tells.
    assert_eq!(
        in_org
            .ok(&["deployment", "delete", &f.deployment, "--output", "json"])
            .stdout,
        ""
    );
    let message = in_org.fails(NOT_FOUND, &["deployment", "delete", &staging]);
    assert_server_error(&message, "not found", "deployment not found");
    let message = in_org.fails(NOT_FOUND, &["deployment", "get", &f.deployment]);
    assert_server_error(&message, "not found", "deployment not found");

    let message = in_org.fails(
        REJECTED,
        &[
            "deployment",
            "create",
            "--workspace",
            UNKNOWN_ID,
            "--name",
            "x",
        ],
    );
    assert_server_error(
        &message,
        "rejected",
        &format!("--workspace \"{UNKNOWN_ID}\" is not a workspace of this organization"),
    );
    let message = in_org.fails(USAGE, &["deployment", "create", "--name", "x"]);
    assert!(message.contains("--workspace"), "{message}");
}

/// The HTTP status `/v1/authorize` answers for an agent token secret.
fn authorize(server: &Server, secret: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/authorize", server.base))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

/// The secret of a table-mode create or rotate: on exactly one line, marked.
fn printed_secret(table: &str) -> String {
    let marked: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("Secret (shown once, store it now): "))
        .collect();
    assert_eq!(marked.len(), 1, "{table}");
    let secret = marked[0].to_string();
    assert!(
        secret.starts_with("akagt_") && secret.len() == 55,
        "{secret}"
    );
    assert_eq!(table.matches(&secret).count(), 1, "shown once: {table}");
    secret
}

#[test]
fn token_list_create_get_delete_rotate() {
    let server = Server::start();
    let root = server.cli();
    let f = fixture(&root);
    // Organization and deployment from the environment, as a script would.
    let cli = root
        .env("AGENTKEY_ORG", &f.org)
        .env("AGENTKEY_DEPLOYMENT", &f.deployment);

    assert_eq!(cli.ok(&["token", "list"]).stdout, "No agent tokens.\n");

    // create, table mode: the details, then the secret once, marked.
    let table = cli
        .ok(&[
            "token",
            "create",
            "--name",
            "runner",
            "--description",
            "the runner",
            "--expiry-days",
            "30",
        ])
        .stdout;
    assert_eq!(field(&table, "Name"), "runner");
    assert_eq!(field(&table, "Description"), "the runner");
    assert!(field(&table, "Expires").ends_with("(30 days after start)"));
    let runner = field(&table, "ID");
    let runner_secret = printed_secret(&table);
    assert_eq!(field(&table, "Short token"), &runner_secret[..10]);
    assert_eq!(authorize(&server, &runner_secret), 200);

    // create, JSON mode: the server's answer, secret in `token`.
    let created = root.json(&[
        "token",
        "create",
        "--org",
        &f.org,
        "--deployment",
        &f.deployment,
        "--name",
        "backfill",
    ]);
    assert_eq!(created["name"], "backfill");
    assert!(created.get("endAt").is_none(), "never expires: {created}");
    let backfill = created["id"].as_str().unwrap().to_string();
    let backfill_secret = created["token"].as_str().unwrap().to_string();
    assert_eq!(authorize(&server, &backfill_secret), 200);

    // list
    let table = cli.ok(&["token", "list"]).stdout;
    let listed = rows(&table);
    assert_eq!(listed.len(), 2, "{table}");
    assert_eq!(
        listed[0][..3],
        [runner.as_str(), "runner", &runner_secret[..10]]
    );
    assert_eq!(listed[1][..2], [backfill.as_str(), "backfill"]);
    assert_eq!(listed[1][4], "never");
    assert!(!table.contains(&runner_secret), "no secret in a list");
    let page = cli.ok(&["token", "list", "--limit", "1", "--sort", "name:asc"]);
    assert_eq!(rows(&page.stdout)[0][1], "backfill");
    assert!(page
        .stdout
        .ends_with("1-1 of 2 agent tokens; next page: --offset 1\n"));
    let list = cli.json(&[
        "token",
        "list",
        "--sort",
        "name:desc",
        "--sort",
        "createdAt:asc",
    ]);
    assert_eq!(list["totalCount"], 2);
    assert_eq!(list["tokens"][0]["name"], "runner");
    assert_eq!(list["tokens"][1]["name"], "backfill");
    assert!(
        list["tokens"][0].get("token").is_none(),
        "no secret in a list"
    );

    // get: never the secret
    let table = cli.ok(&["token", "get", &runner]).stdout;
    assert_eq!(field(&table, "Name"), "runner");
    assert_eq!(field(&table, "Last rotated"), "-");
    assert!(!table.contains("Secret"), "{table}");
    let got = cli.json(&["token", "get", &backfill]);
    assert_eq!(got["id"], backfill.as_str());
    assert!(got.get("token").is_none());

    // rotate, table mode: a new secret, once; the old one stops at once.
    let table = cli.ok(&["token", "rotate", &runner]).stdout;
    let rotated_secret = printed_secret(&table);
    assert_ne!(rotated_secret, runner_secret);
    assert_ne!(field(&table, "Last rotated"), "-");
    assert_eq!(authorize(&server, &rotated_secret), 200);
    assert_eq!(authorize(&server, &runner_secret), 401);
    // rotate, JSON mode, with a grace window: the old one keeps working.
    let rotated = cli.json(&["token", "rotate", &backfill, "--grace-seconds", "300"]);
    let new_backfill_secret = rotated["token"].as_str().unwrap();
    assert_ne!(new_backfill_secret, backfill_secret);
    assert!(rotated["lastRotatedAt"].is_string());
    assert_eq!(authorize(&server, new_backfill_secret), 200);
    assert_eq!(authorize(&server, &backfill_secret), 200);

    // delete
    let deleted = cli.ok(&["token", "delete", &runner]).stdout;
    assert_eq!(
        deleted,
        format!("Deleted agent token {runner}; it no longer verifies.\n")
    );
    assert_eq!(authorize(&server, &rotated_secret), 401);
    assert_eq!(
        cli.ok(&["token", "delete", &backfill, "-o", "json"]).stdout,
        ""
    );
    assert_eq!(cli.json(&["token", "list"])["totalCount"], 0);

    // not found, for every command that names a token or a deployment
    for args in [
        vec!["token", "get", &runner],
        vec!["token", "delete", &runner],
        vec!["token", "rotate", &runner],
    ] {
        let message = cli.fails(NOT_FOUND, &args);
        assert_server_error(&message, "not found", "agent token not found");
    }
    let elsewhere = root
        .env("AGENTKEY_ORG", &f.org)
        .env("AGENTKEY_DEPLOYMENT", UNKNOWN_ID);
    for args in [
        vec!["token", "list"],
        vec!["token", "create", "--name", "x"],
        vec!["token", "get", &runner],
    ] {
        let message = elsewhere.fails(NOT_FOUND, &args);
        assert_server_error(&message, "not found", "deployment not found");
    }

    // rejected input
    for (args, what) in [
        (
            vec!["token", "create", "--name", "x", "--expiry-days", "0"],
            "--expiry-days must",
        ),
        (
            vec!["token", "create", "--name", "x", "--expiry-days", "-5"],
            "--expiry-days must",
        ),
        (vec!["token", "list", "--limit", "1001"], "--limit must"),
        (vec!["token", "list", "--offset", "-1"], "--offset must"),
        (
            vec!["token", "rotate", &backfill, "--grace-seconds", "86401"],
            "--grace-seconds must",
        ),
    ] {
        let message = cli.fails(REJECTED, &args);
        assert!(message.starts_with("agentkey: rejected: "), "{message}");
        assert!(message.contains(what), "{args:?}: {message}");
        assert!(message.contains(" (request id "), "{message}");
    }
    // Several faults at once: one line each.
    let message = cli.fails(
        REJECTED,
        &["token", "list", "--limit", "1001", "--sort", "bogus"],
    );
    assert!(
        message.contains("\n  --limit: ") && message.contains("\n  --sort: "),
        "{message}"
    );
    // Without a deployment, clap refuses the command.
    let message = root
        .env("AGENTKEY_ORG", &f.org)
        .fails(USAGE, &["token", "list"]);
    assert!(message.contains("--deployment"), "{message}");
}

/// Every client subcommand, with the ids of real resources.
fn every_subcommand(f: &Fixture) -> Vec<Vec<String>> {
    let (org, ws, dep) = (f.org.as_str(), f.workspace.as_str(), f.deployment.as_str());
    let scope = ["--org", org, "--deployment", dep];
    let commands: Vec<Vec<&str>> = vec![
        vec!["org", "list"],
        vec!["org", "create", "--name", "x"],
        vec!["org", "get", org],
        vec!["workspace", "list", "--org", org],
        vec!["workspace", "create", "--org", org, "--name", "x"],
        vec!["workspace", "get", "--org", org, ws],
        vec!["deployment", "list", "--org", org],
        vec![
            "deployment",
            "create",
            "--org",
            org,
            "--workspace",
            ws,
            "--name",
            "x",
        ],
        vec!["deployment", "get", "--org", org, dep],
        vec!["deployment", "delete", "--org", org, dep],
        [&["token", "list"][..], &scope[..]].concat(),
        [&["token", "create", "--name", "x"][..], &scope[..]].concat(),
        [&["token", "get", UNKNOWN_ID][..], &scope[..]].concat(),
        [&["token", "delete", UNKNOWN_ID][..], &scope[..]].concat(),
        [&["token", "rotate", UNKNOWN_ID][..], &scope[..]].concat(),
    ];
    commands
        .into_iter()
        .map(|c| c.into_iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn every_subcommand_maps_failures_to_exit_codes() {
    let server = Server::start();
    let root = server.cli();
    let f = fixture(&root);
    let commands = every_subcommand(&f);
    assert_eq!(commands.len(), 15);

    // A port nothing listens on: bound, then released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);

    for command in &commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();

        // Not allowed: an unknown credential is a 401.
        let wrong = root.token(Some("akroot_not-the-credential-of-this-server"));
        let message = wrong.fails(NOT_ALLOWED, &args);
        assert_server_error(
            &message,
            "not allowed",
            "the bearer credential is invalid, expired or revoked",
        );

        // Missing credential: refused before any request.
        let message = root.token(None).fails(USAGE, &args);
        assert!(
            message.starts_with("agentkey: usage error: AGENTKEY_TOKEN is not set"),
            "{message}"
        );
        let message = root.token(Some("")).fails(USAGE, &args);
        assert!(
            message.contains("AGENTKEY_TOKEN is set but empty"),
            "{message}"
        );

        // Unreachable: connection refused.
        let message = Cli::new(&dead, Some(ROOT)).fails(UNREACHABLE, &args);
        assert!(
            message.starts_with(&format!(
                "agentkey: server unreachable: cannot connect to {dead}/v1/"
            )),
            "{message}"
        );
        // --server wins over AGENTKEY_SERVER, and JSON mode fails alike.
        let mut with_flag = args.clone();
        with_flag.extend(["--server", &dead, "--output", "json"]);
        root.fails(UNREACHABLE, &with_flag);
    }

    // An agent token is a credential without management permissions: 403.
    let agent = root.json(&[
        "token",
        "create",
        "--org",
        &f.org,
        "--deployment",
        &f.deployment,
        "--name",
        "agent",
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let message = root
        .token(Some(&agent))
        .fails(NOT_ALLOWED, &["org", "get", &f.org]);
    assert!(message.starts_with("agentkey: not allowed: "), "{message}");
    assert!(message.contains(" (request id "), "{message}");

    // Still there: nothing above reached the server with a valid credential.
    assert_eq!(
        root.json(&["deployment", "list", "--org", &f.org])["totalCount"],
        1
    );
}

#[test]
fn usage_errors_exit_2() {
    let cli = Cli::new("http://127.0.0.1:9", Some(ROOT));
    cli.fails(USAGE, &["token", "list", "--org", "o"]);
    cli.fails(USAGE, &["token"]);
    cli.fails(USAGE, &["org", "list", "--limit", "many"]);
    cli.fails(USAGE, &["org", "list", "--output", "yaml"]);
    let message = cli.fails(USAGE, &["org", "list", "--server", "127.0.0.1:8080"]);
    assert!(message.contains("http://"), "{message}");
    let message = cli.fails(USAGE, &["org", "get", ".."]);
    assert!(message.contains("is not an id"), "{message}");
    // No flag takes the credential.
    cli.fails(USAGE, &["org", "list", "--token", ROOT]);
}

#[test]
fn client_help_documents_environment_and_exit_codes() {
    let output = Command::new(BIN)
        .args(["token", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "AGENTKEY_SERVER",
        "AGENTKEY_TOKEN",
        "AGENTKEY_ORG",
        "AGENTKEY_DEPLOYMENT",
        "3  not found",
        "4  not allowed",
        "5  server unreachable",
        "6  rejected",
        "7  server error",
        "rotate",
    ] {
        assert!(
            help.contains(needle),
            "token --help mentions {needle}:\n{help}"
        );
    }
}

/// `webhook list`, `webhook deliveries` and `webhook redeliver` against a
/// server whose endpoint points at a closed loopback port: the delivery
/// fails once and is marked FAILED (no retries), then is queued again.
#[test]
fn webhook_deliveries_and_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let process = crate::common::process::Server::start(
        &dir.path().join("agentkey.db"),
        &[
            ("AGENTKEY_ROOT_TOKEN", ROOT),
            (
                "AGENTKEY_WEBHOOK_KEY",
                "cli-test-webhook-key-0123456789abcdef",
            ),
            ("AGENTKEY_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("AGENTKEY_WEBHOOK_POLL_MS", "20"),
            ("AGENTKEY_WEBHOOK_RETRY_FOR_SECONDS", "0"),
        ],
    );
    let cli = Cli::new(&process.base, Some(ROOT));
    let org = cli.json(&["org", "create", "--name", "acme"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cli.ok(&["webhook", "list", "--org", &org]).stdout,
        "No webhook endpoints.\n"
    );
    // Nothing listens on a port just let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    // The CLI does not create endpoints: the API does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created: Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/v1/organizations/{org}/webhooks", process.base))
            .bearer_auth(ROOT)
            .json(&serde_json::json!({"url": url, "eventTypes": ["agent_token.created"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let webhook = created["id"].as_str().unwrap().to_string();
    let listed = cli.ok(&["webhook", "list", "--org", &org]).stdout;
    assert_eq!(rows(&listed)[0][0], webhook, "{listed}");
    assert!(listed.contains("agent_token.created"), "{listed}");

    let ws = cli.json(&["workspace", "create", "--org", &org, "--name", "w"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dep = cli.json(&[
        "deployment",
        "create",
        "--org",
        &org,
        "--workspace",
        &ws,
        "--name",
        "d",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    cli.ok(&[
        "token",
        "create",
        "--org",
        &org,
        "--deployment",
        &dep,
        "--name",
        "t",
    ]);

    // Wait for the one attempt to be recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let page = loop {
        let page = cli.json(&["webhook", "deliveries", "--org", &org, &webhook]);
        if page["deliveries"][0]["status"] == "FAILED" {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(page["totalCount"], 1);
    let delivery = page["deliveries"][0]["id"].as_str().unwrap().to_string();
    let table = cli
        .ok(&["webhook", "deliveries", "--org", &org, &webhook])
        .stdout;
    let row = &rows(&table)[0];
    assert_eq!(
        row[..4],
        [
            delivery.clone(),
            "agent_token.created".into(),
            "FAILED".into(),
            "1".into()
        ],
        "{table}"
    );

    let again = cli
        .ok(&["webhook", "redeliver", "--org", &org, &webhook, &delivery])
        .stdout;
    assert_eq!(field(&again, "Event"), "agent_token.created", "{again}");
    assert_eq!(
        field(&again, "Event id"),
        page["deliveries"][0]["eventId"].as_str().unwrap()
    );
    assert_ne!(field(&again, "ID"), delivery);
    let json = cli.json(&["webhook", "redeliver", "--org", &org, &webhook, &delivery]);
    assert_eq!(json["eventId"], page["deliveries"][0]["eventId"]);

    let message = cli.fails(
        NOT_FOUND,
        &["webhook", "redeliver", "--org", &org, &webhook, UNKNOWN_ID],
    );
    assert!(message.contains("webhook delivery"), "{message}");
    cli.fails(
        NOT_FOUND,
        &["webhook", "deliveries", "--org", &org, UNKNOWN_ID],
    );
    cli.fails(USAGE, &["webhook", "redeliver", "--org", &org, &webhook]);
    let stranger = cli.token(Some("akapi_not-a-real-token"));
    stranger.fails(NOT_ALLOWED, &["webhook", "list", "--org", &org]);
}
