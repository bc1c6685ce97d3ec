//! The client subcommands' flags and arguments (clap), parsed by `cli` and
//! carried out by [`super::commands`]. They live here, below `cli`, so the
//! client never reaches back up into the module that dispatches to it.

use clap::{Args, Subcommand};

use super::output::Format;

/// A client command group: the options every client command takes, and
/// the command.
#[derive(Debug, Args)]
pub struct ClientArgs<C: Subcommand> {
    #[command(flatten)]
    pub options: ClientOptions,
    #[command(subcommand)]
    pub command: C,
}

/// Where to send requests and how to print answers. The credential is not
/// here: it comes only from `AGENTKEY_TOKEN`.
#[derive(Debug, Args)]
pub struct ClientOptions {
    /// URL of the agentkey server.
    #[arg(
        long,
        env = "AGENTKEY_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Output: tables for people, or the server's JSON for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Format,
}

/// A client command, after its group was chosen.
#[derive(Debug)]
pub enum ClientCommand {
    Org(OrgCommand),
    Workspace(WorkspaceCommand),
    Deployment(DeploymentCommand),
    Token(TokenCommand),
    Webhook(WebhookCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// List the webhook endpoints of an organization (never their secrets).
    List {
        #[command(flatten)]
        org: OrgScope,
        #[command(flatten)]
        list: ListOptions,
    },
    /// List an endpoint's deliveries, newest first, with their status and
    /// attempts.
    Deliveries {
        #[command(flatten)]
        org: OrgScope,
        /// Webhook endpoint id.
        webhook: String,
        /// Results per page, 0 to 100 (server default 20).
        #[arg(long, allow_negative_numbers = true)]
        limit: Option<i64>,
        /// Results to skip (default 0).
        #[arg(long, allow_negative_numbers = true)]
        offset: Option<i64>,
    },
    /// Send a delivery's event again (a new delivery, same event id).
    Redeliver {
        #[command(flatten)]
        org: OrgScope,
        /// Webhook endpoint id.
        webhook: String,
        /// Delivery id.
        delivery: String,
    },
}

/// The page of a list command.
#[derive(Debug, Args)]
pub struct ListOptions {
    /// Results per page, 0 to 1000 (server default 20).
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<i64>,
    /// Results to skip (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub offset: Option<i64>,
    /// Sort order, FIELD:asc or FIELD:desc; repeat for ties (e.g. --sort name:asc --sort createdAt:desc).
    #[arg(long, value_name = "FIELD:DIRECTION")]
    pub sort: Vec<String>,
}

#[derive(Debug, Args)]
pub struct OrgScope {
    /// Organization id.
    #[arg(long, env = "AGENTKEY_ORG")]
    pub org: String,
}

#[derive(Debug, Args)]
pub struct DeploymentScope {
    /// Organization id.
    #[arg(long, env = "AGENTKEY_ORG")]
    pub org: String,
    /// Deployment id.
    #[arg(long, env = "AGENTKEY_DEPLOYMENT")]
    pub deployment: String,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// List organizations.
    List(ListOptions),
    /// Create an organization.
    Create {
        /// 1 to 255 characters.
        #[arg(long)]
        name: String,
    },
    /// Show an organization.
    Get {
        /// Organization id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List the workspaces of an organization.
    List {
        #[command(flatten)]
        org: OrgScope,
        #[command(flatten)]
        list: ListOptions,
    },
    /// Create a workspace.
    Create {
        #[command(flatten)]
        org: OrgScope,
        /// 1 to 255 characters.
        #[arg(long)]
        name: String,
        /// Up to 1,000 characters.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a workspace.
    Get {
        #[command(flatten)]
        org: OrgScope,
        /// Workspace id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// List the deployments of an organization.
    List {
        #[command(flatten)]
        org: OrgScope,
        #[command(flatten)]
        list: ListOptions,
    },
    /// Create a deployment in a workspace.
    Create {
        #[command(flatten)]
        org: OrgScope,
        /// Id of a workspace of the same organization.
        #[arg(long)]
        workspace: String,
        /// 1 to 255 characters.
        #[arg(long)]
        name: String,
        /// Up to 1,000 characters.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a deployment.
    Get {
        #[command(flatten)]
        org: OrgScope,
        /// Deployment id.
        id: String,
    },
    /// Delete a deployment; every agent token of it stops verifying. On a
    /// terminal it asks first.
    Delete {
        #[command(flatten)]
        org: OrgScope,
        /// Deployment id.
        id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List the agent tokens of a deployment (never their secrets).
    List {
        #[command(flatten)]
        scope: DeploymentScope,
        #[command(flatten)]
        list: ListOptions,
    },
    /// Create an agent token; its secret is printed this once.
    Create {
        #[command(flatten)]
        scope: DeploymentScope,
        /// 1 to 255 characters.
        #[arg(long)]
        name: String,
        /// Up to 1,000 characters.
        #[arg(long)]
        description: Option<String>,
        /// Days until it expires, 1 to 3650; without it, it never expires.
        #[arg(long, allow_negative_numbers = true)]
        expiry_days: Option<i64>,
        /// A network the token may be presented from, in CIDR form
        /// (`10.0.0.0/8`); repeat for more. Without it, from anywhere.
        #[arg(long = "allowed-ip-range", value_name = "CIDR")]
        allowed_ip_ranges: Vec<String>,
    },
    /// Show an agent token (never its secret).
    Get {
        #[command(flatten)]
        scope: DeploymentScope,
        /// Agent token id.
        id: String,
    },
    /// Delete (revoke) an agent token; it stops verifying at once.
    Delete {
        #[command(flatten)]
        scope: DeploymentScope,
        /// Agent token id.
        id: String,
    },
    /// Give an agent token a new secret, printed this once.
    Rotate {
        #[command(flatten)]
        scope: DeploymentScope,
        /// Agent token id.
        id: String,
        /// Seconds the replaced secret keeps verifying, 0 to 86400 (default 0).
        #[arg(long, allow_negative_numbers = true)]
        grace_seconds: Option<i64>,
    },
}
