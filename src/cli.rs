//! Command-line interface: parses flags and environment (clap) and runs the
//! chosen subcommand: the server's own (`serve`, `migrate`, `root-token`)
//! here, the client's (`org`, `workspace`, `deployment`, `token`) through
//! `crate::client`. The server's argument types do not derive `Debug`:
//! they hold the database URL, which may carry a password.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use std::time::Duration;

use crate::app::Settings;
use crate::cache::CacheLimits;
use crate::client::args::{
    ClientArgs, ClientCommand, DeploymentCommand, OrgCommand, TokenCommand, WebhookCommand,
    WorkspaceCommand,
};
use crate::config::{Config, ConfigError, LogFormat, ROOT_TOKEN_ENV};
use crate::console::session::SessionSettings;

const ENVIRONMENT_HELP: &str = "\
Environment:
  AGENTKEY_LISTEN                           address to listen on (serve)
  AGENTKEY_DATABASE_URL                     sqlite://PATH (default sqlite://agentkey.db) or postgres://...
  AGENTKEY_ROOT_TOKEN                       root credential, 32+ printable characters (serve);
                                            read only from the environment, never from a flag
  AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT  agent tokens per deployment (default 50)
  AGENTKEY_LAST_USED_FLUSH_SECONDS          how often lastUsedAt is written (default 5)
  AGENTKEY_CACHE_TTL_SECONDS                how long a verified token is trusted from memory (default 30)
  AGENTKEY_METRICS_LISTEN                   a separate address serving /metrics without a credential (serve)
  AGENTKEY_HEADER_READ_TIMEOUT_SECONDS      time for a request's head to arrive (default 10)
  AGENTKEY_BODY_TIMEOUT_SECONDS             longest wait for the next chunk of a request body (default 10)
  AGENTKEY_IDLE_TIMEOUT_SECONDS             how long a keep-alive connection may idle (default 60)
  AGENTKEY_MAX_CONNECTIONS                  connections served at once; more wait (default 10000)
  AGENTKEY_TRUSTED_PROXIES                  proxies whose X-Forwarded-For / X-Real-IP is believed, CIDR list (default none)
  AGENTKEY_CLIENT_IP_HEADER                 which of them names the client: either, x-forwarded-for, x-real-ip (default either)
  AGENTKEY_AUTH_FAILURE_BURST               failed credential checks a client may make in a row (default 20)
  AGENTKEY_AUTH_FAILURES_PER_MINUTE         failed checks per minute a client regains (default 60)
  AGENTKEY_AUTH_FAILURE_MAX_CLIENTS         client addresses the failure limit tracks (default 100000)
  AGENTKEY_CREDENTIAL_READS                 cache-miss credential reads at once, per lane (default 4)
  AGENTKEY_NEGATIVE_CACHE_SECONDS           how long an unknown token is remembered (default 30)
  AGENTKEY_NEGATIVE_CACHE_ENTRIES           unknown tokens remembered at most (default 10000)
  AGENTKEY_CONSOLE_IDLE_MINUTES             minutes a console session may sit unused (default 30)
  AGENTKEY_CONSOLE_SESSION_HOURS            hours a console session lasts at most (default 12)
  AGENTKEY_PUBLIC_URL                       the console's public origin behind a proxy (default none)
  AGENTKEY_WEBHOOK_KEY                      turns webhooks on: the key their signing secrets derive from,
                                            32+ printable characters; read only from the environment
  AGENTKEY_WEBHOOK_ALLOW_PRIVATE            true: allow loopback/private/link-local endpoints (default false)
  AGENTKEY_WEBHOOK_POLL_MS                  how often due deliveries are looked for (default 1000)
  AGENTKEY_WEBHOOK_LEASE_SECONDS            how long a replica holds a delivery it sends (default 60)
  AGENTKEY_WEBHOOK_RETRY_BASE_MS            first retry delay, doubled each time, with jitter (default 30000)
  AGENTKEY_WEBHOOK_RETRY_MAX_INTERVAL_SECONDS  longest wait between attempts (default 3600)
  AGENTKEY_WEBHOOK_RETRY_FOR_SECONDS        how long a delivery is retried before it FAILED (default 86400)
  AGENTKEY_WEBHOOK_TIMEOUT_SECONDS          time limit of one attempt (default 10)
  AGENTKEY_WEBHOOK_EXPIRY_DAYS              days before endAt to send .expiring (default 30,7,1)
  AGENTKEY_WEBHOOK_EXPIRY_SCAN_SECONDS      how often the expiry scan runs (default 60)
  AGENTKEY_WEBHOOK_RETENTION_DAYS           days finished deliveries and their events are kept (default 30)
  AGENTKEY_LOG_FORMAT                       text or json (default text)
  AGENTKEY_LOG                              log filter, e.g. debug or agentkey=debug (default info,sqlx=warn)

Client commands (org, workspace, deployment, token, webhook): see `agentkey token --help`.";

const CLIENT_HELP: &str = "\
Environment:
  AGENTKEY_SERVER      server URL (default http://127.0.0.1:8080)
  AGENTKEY_TOKEN       the credential (required); read only from the environment, never from a flag
  AGENTKEY_ORG         organization id, instead of --org
  AGENTKEY_DEPLOYMENT  deployment id, instead of --deployment (token commands)

Exit codes:
  0  success
  2  usage error: bad flags, AGENTKEY_TOKEN not set, --server not a URL
  3  not found (404)
  4  not allowed (401, 403): wrong or missing permission
  5  server unreachable: connection refused, timeout, unknown host, TLS failure
  6  rejected input (any other 4xx), e.g. a name too long
  7  server error (5xx) or an unexpected response";

#[derive(Parser)]
#[command(name = "agentkey", version, about = "Issues and verifies Apache Airflow agent tokens (Astro API v1 compatible)", after_help = ENVIRONMENT_HELP)]
pub struct Cli {
    /// Log output format.
    #[arg(
        long,
        env = "AGENTKEY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP service (migrating the database first).
    #[command(after_help = ENVIRONMENT_HELP)]
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Show whether a generated root credential exists, or replace it.
    RootToken(RootTokenArgs),
    /// Client: list, create and show organizations on a server.
    #[command(after_help = CLIENT_HELP)]
    Org(ClientArgs<OrgCommand>),
    /// Client: list, create and show workspaces of an organization.
    #[command(after_help = CLIENT_HELP)]
    Workspace(ClientArgs<WorkspaceCommand>),
    /// Client: list, create, show and delete deployments.
    #[command(after_help = CLIENT_HELP)]
    Deployment(ClientArgs<DeploymentCommand>),
    /// Client: list, create, show, delete and rotate agent tokens.
    #[command(after_help = CLIENT_HELP)]
    Token(ClientArgs<TokenCommand>),
    /// Client: list webhook endpoints, their deliveries, and redeliver.
    #[command(after_help = CLIENT_HELP)]
    Webhook(ClientArgs<WebhookCommand>),
}

#[derive(Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE. `serve` and
    /// `migrate` create a missing SQLite file; `root-token` refuses one.
    #[arg(
        long,
        env = "AGENTKEY_DATABASE_URL",
        default_value = "sqlite://agentkey.db"
    )]
    pub database_url: String,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "AGENTKEY_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The most agent tokens one deployment may hold.
    #[arg(
        long,
        env = "AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT",
        default_value_t = 50
    )]
    pub max_agent_tokens_per_deployment: i64,
    /// Seconds between writes of lastUsedAt (uses are coalesced in memory).
    #[arg(long, env = "AGENTKEY_LAST_USED_FLUSH_SECONDS", default_value_t = 5)]
    pub last_used_flush_seconds: u64,
    /// Seconds a verified token is trusted from memory before it is read
    /// again; bounds how long a change made by another process goes unseen.
    #[arg(long, env = "AGENTKEY_CACHE_TTL_SECONDS", default_value_t = 30)]
    pub cache_ttl_seconds: i64,
    /// A separate address serving /metrics without a credential (for a
    /// Prometheus scraper); unset, /metrics is served only on the API
    /// listener, to the root credential.
    #[arg(long, env = "AGENTKEY_METRICS_LISTEN", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a client has to send a request's head, counted from the
    /// connection's start or the first byte after an idle spell.
    #[arg(
        long,
        env = "AGENTKEY_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub header_read_timeout_seconds: u64,
    /// Longest wait, in seconds, for the next chunk of a request body.
    #[arg(long, env = "AGENTKEY_BODY_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub body_timeout_seconds: u64,
    /// Seconds a keep-alive connection may sit idle between requests.
    #[arg(long, env = "AGENTKEY_IDLE_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_seconds: u64,
    /// Connections served at once (per listener); more wait in the kernel's
    /// backlog. Lowered at start if the open-file limit is smaller.
    #[arg(long, env = "AGENTKEY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Minutes a web console session may sit unused before it ends.
    #[arg(long, env = "AGENTKEY_CONSOLE_IDLE_MINUTES", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub console_idle_minutes: u64,
    /// Hours a web console session lasts at most, however busy.
    #[arg(long, env = "AGENTKEY_CONSOLE_SESSION_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=8_760))]
    pub console_session_hours: u64,
    /// The origin people reach the console at when it is behind a proxy
    /// (https://keys.example.com): forms must come from it, and an https
    /// origin makes the session cookie Secure.
    #[arg(long, env = "AGENTKEY_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub abuse: AbuseArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Signed event webhooks and expiry warnings (see docs/events.md). The
/// key itself (`AGENTKEY_WEBHOOK_KEY`) is read only from the environment.
#[derive(Args)]
pub struct WebhookArgs {
    /// Allow webhook endpoints on loopback, private and link-local
    /// addresses (refused by default, so webhooks cannot probe the network
    /// agentkey runs in).
    #[arg(long, env = "AGENTKEY_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Milliseconds between looks for due deliveries when there were none.
    #[arg(long, env = "AGENTKEY_WEBHOOK_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub webhook_poll_ms: u64,
    /// Seconds a replica holds a delivery it is sending; one that dies
    /// mid-delivery leaves it to others after this long.
    #[arg(long, env = "AGENTKEY_WEBHOOK_LEASE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub webhook_lease_seconds: u64,
    /// Milliseconds before the first retry; each later one doubles, with jitter.
    #[arg(long, env = "AGENTKEY_WEBHOOK_RETRY_BASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub webhook_retry_base_ms: u64,
    /// The longest wait between two attempts, in seconds.
    #[arg(long, env = "AGENTKEY_WEBHOOK_RETRY_MAX_INTERVAL_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub webhook_retry_max_interval_seconds: u64,
    /// Seconds after its first attempt a delivery is retried before it is
    /// marked FAILED.
    #[arg(long, env = "AGENTKEY_WEBHOOK_RETRY_FOR_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub webhook_retry_for_seconds: u64,
    /// Seconds an attempt may take (connecting included).
    #[arg(long, env = "AGENTKEY_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_seconds: u64,
    /// Days before a token's endAt at which `.expiring` is sent,
    /// comma-separated.
    #[arg(long, env = "AGENTKEY_WEBHOOK_EXPIRY_DAYS", default_value = "30,7,1")]
    pub webhook_expiry_days: String,
    /// Seconds between two expiry scans.
    #[arg(long, env = "AGENTKEY_WEBHOOK_EXPIRY_SCAN_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub webhook_expiry_scan_seconds: u64,
    /// Days a delivery that SUCCEEDED or FAILED is kept after its last
    /// update, with its attempts (and its event, once no delivery points
    /// to it); PENDING deliveries are kept until they finish.
    #[arg(long, env = "AGENTKEY_WEBHOOK_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=36_500))]
    pub webhook_retention_days: u64,
}

impl WebhookArgs {
    /// The webhook settings, with the key from `AGENTKEY_WEBHOOK_KEY`.
    fn settings(self) -> Result<crate::webhooks::worker::WebhookSettings, String> {
        let key = match std::env::var("AGENTKEY_WEBHOOK_KEY") {
            Ok(text) if !text.is_empty() => Some(crate::webhooks::sign::WebhookKey::parse(&text)?),
            Ok(_) | Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err("AGENTKEY_WEBHOOK_KEY is not valid UTF-8".into())
            }
        };
        let mut thresholds = Vec::new();
        for part in self.webhook_expiry_days.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            match part.parse::<i64>() {
                Ok(days) if (1..=3650).contains(&days) => thresholds.push(days),
                _ => {
                    return Err(format!(
                        "AGENTKEY_WEBHOOK_EXPIRY_DAYS: {part:?} is not a whole number of days \
                         from 1 to 3650"
                    ))
                }
            }
        }
        thresholds.sort_unstable_by(|a, b| b.cmp(a));
        thresholds.dedup();
        // A lease that could run out while its attempt is still waiting for
        // an answer would let another replica send the same delivery at once.
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds {
            return Err(format!(
                "AGENTKEY_WEBHOOK_LEASE_SECONDS ({}) must be longer than \
                 AGENTKEY_WEBHOOK_TIMEOUT_SECONDS ({})",
                self.webhook_lease_seconds, self.webhook_timeout_seconds
            ));
        }
        Ok(crate::webhooks::worker::WebhookSettings {
            key,
            allow_private: self.webhook_allow_private,
            poll_interval: Duration::from_millis(self.webhook_poll_ms),
            lease: Duration::from_secs(self.webhook_lease_seconds),
            retry_base: Duration::from_millis(self.webhook_retry_base_ms),
            retry_max_interval: Duration::from_secs(self.webhook_retry_max_interval_seconds),
            retry_for: Duration::from_secs(self.webhook_retry_for_seconds),
            timeout: Duration::from_secs(self.webhook_timeout_seconds),
            expiry_thresholds: thresholds,
            expiry_scan_interval: Duration::from_secs(self.webhook_expiry_scan_seconds),
            retention: Duration::from_secs(self.webhook_retention_days * 86_400),
            ..Default::default()
        })
    }
}

/// A listen address: an IP address and a port, with a hint for the usual
/// near misses (`8080`, `localhost:8080`).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let hint = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        format!("a port alone is not an address: use 127.0.0.1:{text} (this machine only) or 0.0.0.0:{text} (every interface)")
    } else if let Some(port) = text.strip_prefix("localhost:") {
        format!("an address, not a host name: use 127.0.0.1:{port} (or [::1]:{port})")
    } else {
        "use IP:PORT, such as 127.0.0.1:8080 or [::1]:8080".to_string()
    };
    Err(format!("{text:?} is not an IP address and port: {hint}"))
}

/// An origin: `http(s)://host[:port]`, nothing after it.
fn parse_public_url(text: &str) -> Result<String, String> {
    let text = text.trim_end_matches('/');
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be an origin such as https://keys.example.com, without a path".into());
    }
    Ok(text.to_ascii_lowercase())
}

/// Limits against clients without a valid credential (see
/// docs/operations.md).
#[derive(Args)]
pub struct AbuseArgs {
    /// Proxies (comma-separated CIDR blocks or addresses) whose
    /// X-Forwarded-For / X-Real-IP names the client; from any other peer
    /// those headers are ignored. Empty: the TCP peer is the client.
    #[arg(long, env = "AGENTKEY_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Which header of a trusted proxy names the client: `either`
    /// (X-Forwarded-For, else X-Real-IP), `x-forwarded-for` or `x-real-ip`.
    /// Name the one your proxy sets: with `either`, a proxy that sets only
    /// X-Real-IP lets clients choose their address by sending X-Forwarded-For.
    #[arg(long, env = "AGENTKEY_CLIENT_IP_HEADER", default_value = "either")]
    pub client_ip_header: String,
    /// Failed credential checks a client may make in a row before it is
    /// answered 429.
    #[arg(long, env = "AGENTKEY_AUTH_FAILURE_BURST", default_value_t = 20)]
    pub auth_failure_burst: u32,
    /// Failed credential checks per minute a client regains, up to the burst.
    #[arg(long, env = "AGENTKEY_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    pub auth_failures_per_minute: u32,
    /// Client addresses the failure limit tracks at most (memory bound).
    #[arg(
        long,
        env = "AGENTKEY_AUTH_FAILURE_MAX_CLIENTS",
        default_value_t = 100_000
    )]
    pub auth_failure_max_clients: usize,
    /// Store reads for credentials not in the cache, at once, per lane
    /// (agent-token verification; management credentials).
    #[arg(long, env = "AGENTKEY_CREDENTIAL_READS", default_value_t = 4)]
    pub credential_reads: usize,
    /// Seconds a token the store did not know is remembered as unknown.
    #[arg(long, env = "AGENTKEY_NEGATIVE_CACHE_SECONDS", default_value_t = 30)]
    pub negative_cache_seconds: i64,
    /// Unknown tokens remembered at most.
    #[arg(
        long,
        env = "AGENTKEY_NEGATIVE_CACHE_ENTRIES",
        default_value_t = 10_000
    )]
    pub negative_cache_entries: usize,
}

impl AbuseArgs {
    /// The settings these flags describe, on top of `settings`.
    fn apply(self, settings: Settings, given: &Given) -> anyhow::Result<Settings> {
        let networks = self
            .trusted_proxies
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(crate::http::client_ip::parse_network)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("{}: {e}", given.name("AGENTKEY_TRUSTED_PROXIES")))?;
        let header: crate::http::client_ip::ClientIpHeader = self
            .client_ip_header
            .parse()
            .map_err(|e| anyhow!("{}: {e}", given.name("AGENTKEY_CLIENT_IP_HEADER")))?;
        Ok(Settings {
            trusted_proxies: crate::http::client_ip::TrustedProxies::new(networks).reading(header),
            auth_failures: crate::throttle::FailureLimits {
                burst: self.auth_failure_burst,
                per_minute: self.auth_failures_per_minute,
                max_clients: self.auth_failure_max_clients,
            },
            credential_reads: self.credential_reads,
            cache: CacheLimits {
                negative_ttl: self.negative_cache_seconds,
                negative_capacity: self.negative_cache_entries,
                ..settings.cache
            },
            ..settings
        })
    }
}

#[derive(Args)]
pub struct RootTokenArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Replace the generated root credential and print the new one once, on
    /// stdout (`NEW=$(agentkey root-token --rotate --yes)`). On a terminal
    /// it asks first.
    #[arg(long)]
    pub rotate: bool,
    /// Rotate without asking for confirmation.
    #[arg(long, requires = "rotate")]
    pub yes: bool,
}

/// Parses the command line and runs it; the process exit code.
pub fn run() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(err) => return usage_error(err),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let given = Given::of(&matches);
    // Held until the end of `run`: dropping it flushes the log writer.
    let _log_writer = match init_logging(cli.log_format) {
        Ok(guard) => guard,
        Err(err) => return fail(&err),
    };
    let runtime = match tokio::runtime::Runtime::new().context("cannot start the async runtime") {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let (options, command) = match cli.command {
        Command::Org(a) => (a.options, ClientCommand::Org(a.command)),
        Command::Workspace(a) => (a.options, ClientCommand::Workspace(a.command)),
        Command::Deployment(a) => (a.options, ClientCommand::Deployment(a.command)),
        Command::Token(a) => (a.options, ClientCommand::Token(a.command)),
        Command::Webhook(a) => (a.options, ClientCommand::Webhook(a.command)),
        server_command => return run_server_command(&runtime, server_command, &given),
    };
    if let ClientCommand::Deployment(DeploymentCommand::Delete { id, yes, .. }) = &command {
        let question = format!(
            "Delete deployment {id}? Every agent token of it stops verifying at once. [y/N] "
        );
        if !confirmed(*yes, &question) {
            eprintln!("agentkey: nothing was deleted");
            return ExitCode::from(1);
        }
    }
    match runtime.block_on(crate::client::commands::run(&options, command)) {
        Ok(text) => {
            // A closed pipe (`| head`) is not a failure of the command.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("agentkey: {err}");
            err.exit_code()
        }
    }
}

fn run_server_command(
    runtime: &tokio::runtime::Runtime,
    command: Command,
    given: &Given,
) -> ExitCode {
    let result = runtime.block_on(async move {
        match command {
            Command::Serve(args) => {
                let root_token = match std::env::var(ROOT_TOKEN_ENV) {
                    Ok(token) => Some(token),
                    Err(std::env::VarError::NotPresent) => None,
                    Err(std::env::VarError::NotUnicode(_)) => {
                        anyhow::bail!("{ROOT_TOKEN_ENV} is not valid UTF-8");
                    }
                };
                let settings = Settings {
                    max_agent_tokens_per_deployment: args.max_agent_tokens_per_deployment,
                    last_used_flush_interval: Duration::from_secs(args.last_used_flush_seconds),
                    cache: CacheLimits {
                        positive_ttl: args.cache_ttl_seconds,
                        ..CacheLimits::default()
                    },
                    console: SessionSettings {
                        idle_timeout: Duration::from_secs(args.console_idle_minutes * 60),
                        lifetime: Duration::from_secs(args.console_session_hours * 3600),
                        public_origin: args.public_url,
                    },
                    webhooks: args.webhooks.settings().map_err(|e| anyhow!(e))?,
                    ..Settings::default()
                };
                let settings = args.abuse.apply(settings, given)?;
                let config = Config::new(
                    args.listen,
                    args.database.database_url,
                    root_token,
                    settings,
                )
                .map_err(|e| given.config_error(e))?;
                let config = Config {
                    metrics_listen: args.metrics_listen,
                    ..config
                }
                .with_transport(crate::transport::Limits {
                    header_read_timeout: Duration::from_secs(args.header_read_timeout_seconds),
                    body_timeout: Duration::from_secs(args.body_timeout_seconds),
                    idle_timeout: Duration::from_secs(args.idle_timeout_seconds),
                    max_connections: args.max_connections,
                })
                .map_err(|e| given.config_error(e))?;
                crate::serve::serve(config).await
            }
            Command::Migrate(args) => crate::bootstrap::migrate(&args.database_url).await,
            Command::RootToken(args) => {
                crate::bootstrap::root_token_command(
                    &args.database.database_url,
                    &given.name("AGENTKEY_DATABASE_URL"),
                    args.rotate,
                    args.yes,
                )
                .await
            }
            Command::Org(_)
            | Command::Workspace(_)
            | Command::Deployment(_)
            | Command::Token(_)
            | Command::Webhook(_) => {
                unreachable!("client commands are run by crate::client")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// The subcommand as given: which of its settings came from the command
/// line, so that an error names the flag that was typed, and the
/// environment variable otherwise (clap's `ArgMatches::value_source`).
pub struct Given {
    command: clap::Command,
    matches: ArgMatches,
}

impl Given {
    /// The deepest subcommand of `matches` and its matches.
    fn of(matches: &ArgMatches) -> Given {
        let mut command = Cli::command();
        command.build();
        let mut matches = matches.clone();
        while let Some((name, sub)) = matches.subcommand() {
            let (name, sub) = (name.to_string(), sub.clone());
            command = match command.find_subcommand(&name) {
                Some(found) => found.clone(),
                None => break,
            };
            matches = sub;
        }
        Given { command, matches }
    }

    /// The setting read from the environment variable `env`, named as it
    /// was given: `--flag` if the command line set it, else `env`.
    pub fn name(&self, env: &str) -> String {
        let arg = self
            .command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|e| e == env));
        match arg {
            Some(arg) if self.source(arg) == Some(ValueSource::CommandLine) => {
                format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str()))
            }
            _ => env.to_string(),
        }
    }

    fn source(&self, arg: &clap::Arg) -> Option<ValueSource> {
        self.matches
            .try_contains_id(arg.get_id().as_str())
            .ok()
            .and_then(|_| self.matches.value_source(arg.get_id().as_str()))
    }

    /// A configuration error, naming its setting as it was given.
    fn config_error(&self, err: ConfigError) -> ConfigError {
        match err {
            ConfigError::NotPositive(env) => ConfigError::NotPositive(self.name(&env)),
            other => other,
        }
    }
}

/// Prints a usage error and answers its exit code (2; 0 for `--help`).
/// clap names a value that does not parse by its flag (`--listen
/// <LISTEN>`) even when it came from the environment; then the error names
/// the variable instead.
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        if let Some(text) = name_the_variable(&err) {
            eprint!("{text}");
            return ExitCode::from(2);
        }
    }
    err.exit()
}

/// The text of `err`, a bad value, with its flag replaced by the
/// environment variable it came from; `None` if it came from the command
/// line (or cannot be told).
fn name_the_variable(err: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(flag)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = flag.strip_prefix("--")?.split([' ', '=']).next()?;
    // Parse the same command line again with every value taken as text,
    // which cannot fail on a value, to learn where the bad one came from.
    let lenient = lenient(Cli::command());
    let matches = lenient.try_get_matches().ok()?;
    let given = Given::of(&matches);
    let arg = given
        .command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))?;
    if given.source(arg) != Some(ValueSource::EnvVariable) {
        return None;
    }
    let env = arg.get_env()?.to_str()?;
    let text = err.render().to_string();
    Some(text.replacen(&format!("'{flag}'"), &format!("'{env}'"), 1))
}

/// `command` with every value parser replaced by plain text, in every
/// subcommand.
fn lenient(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            if arg.get_action().takes_values() {
                arg.value_parser(clap::builder::ValueParser::string())
            } else {
                arg
            }
        })
        .mut_subcommands(lenient)
}

/// Whether to go on with a destructive command: yes without asking when
/// `--yes` was given or nobody is at a terminal to ask (scripts); on a
/// terminal, only after a "y".
fn confirmed(yes: bool, question: &str) -> bool {
    if yes || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return true;
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

/// Prints why the command failed, with every cause, and answers exit 1.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("agentkey: error: {}", with_causes(err));
    ExitCode::FAILURE
}

/// An error and its causes, outermost first, joined by ": " (anyhow's
/// `{:#}`), except that a cause whose text the line already holds is left
/// out: many errors (thiserror's `{0}` with `#[from]`, sqlx's) print their
/// source themselves and also hand it on as the source.
fn with_causes(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Logs go to stderr through a background writer thread, so a request
/// never waits on a `write` to the terminal or file behind stderr. It is not
/// lossy: if the queue ever fills, logging waits rather than drops lines.
fn init_logging(format: LogFormat) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    // An unset or empty AGENTKEY_LOG means the default; one that does not
    // parse is refused, never silently replaced.
    let filter = match std::env::var("AGENTKEY_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).map_err(|e| {
            anyhow!("AGENTKEY_LOG={text:?} is not a log filter ({e}); try e.g. info or agentkey=debug,sqlx=warn")
        })?,
        _ => EnvFilter::new("info,sqlx=warn"),
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_its_wording_then_each_new_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let err = anyhow::Error::new(io)
            .context("cannot write the generated root credential to /x")
            .context("no root credential was stored");
        assert_eq!(
            with_causes(&err),
            "no root credential was stored: cannot write the generated root credential to /x: \
             Permission denied"
        );
    }

    #[test]
    fn a_cause_the_line_already_holds_is_not_repeated() {
        // As thiserror's `#[error("database error: {0}")]` with `#[from]`:
        // the outer text holds the source's, which is also its source.
        #[derive(Debug, thiserror::Error)]
        #[error("database error: {0}")]
        struct Outer(#[from] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = anyhow::Error::new(Outer(io)).context("cannot open the database x.db");
        assert_eq!(
            with_causes(&err),
            "cannot open the database x.db: database error: refused"
        );
    }
}
