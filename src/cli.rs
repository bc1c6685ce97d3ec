//! Command-line interface: parses flags and environment (clap) and runs the
//! chosen subcommand. Its types do not derive `Debug`: they hold the
//! database URL, which may carry a password.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use std::time::Duration;

use crate::app::Settings;
use crate::cache::CacheLimits;
use crate::config::{Config, LogFormat, ROOT_TOKEN_ENV};

const ENVIRONMENT_HELP: &str = "\
Environment:
  AGENTKEY_LISTEN                           address to listen on (serve)
  AGENTKEY_DATABASE_URL                     sqlite://PATH (default sqlite://agentkey.db)
  AGENTKEY_ROOT_TOKEN                       root credential, 32+ printable characters (serve);
                                            read only from the environment, never from a flag
  AGENTKEY_MAX_AGENT_TOKENS_PER_DEPLOYMENT  agent tokens per deployment (default 50)
  AGENTKEY_LAST_USED_FLUSH_SECONDS          how often lastUsedAt is written (default 5)
  AGENTKEY_CACHE_TTL_SECONDS                how long a verified token is trusted from memory (default 30)
  AGENTKEY_LOG_FORMAT                       text or json (default text)
  AGENTKEY_LOG                              log filter, e.g. debug or agentkey=debug (default info,sqlx=warn)";

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
}

#[derive(Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH (the file is created if missing).
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
    #[arg(long, env = "AGENTKEY_LISTEN", default_value = "127.0.0.1:8080")]
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
}

#[derive(Args)]
pub struct RootTokenArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Replace the generated root credential and print the new one once.
    #[arg(long)]
    pub rotate: bool,
}

/// Parses the command line and runs it; the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // Held until the end of `run`: dropping it flushes the log writer.
    let _log_writer = init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let root_token = match std::env::var(ROOT_TOKEN_ENV) {
                    Ok(token) => Some(token),
                    Err(std::env::VarError::NotPresent) => None,
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(format!("{ROOT_TOKEN_ENV} is not valid UTF-8"));
                    }
                };
                let settings = Settings {
                    max_agent_tokens_per_deployment: args.max_agent_tokens_per_deployment,
                    last_used_flush_interval: Duration::from_secs(args.last_used_flush_seconds),
                    cache: CacheLimits {
                        positive_ttl: args.cache_ttl_seconds,
                        ..CacheLimits::default()
                    },
                };
                let config = Config::new(
                    args.listen,
                    args.database.database_url,
                    root_token,
                    settings,
                )
                .map_err(|e| e.to_string())?;
                crate::serve::serve(config).await
            }
            Command::Migrate(args) => crate::bootstrap::migrate(&args.database_url).await,
            Command::RootToken(args) => {
                crate::bootstrap::root_token_command(&args.database.database_url, args.rotate).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("agentkey: error: {message}");
    ExitCode::FAILURE
}

/// Logs go to stderr through a background writer thread, so a request
/// never waits on a `write` to the terminal or file behind stderr. It is not
/// lossy: if the queue ever fills, logging waits rather than drops lines.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AGENTKEY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
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
    guard
}
