//! Persistence: one `Store` trait, one implementation per database, chosen by
//! the scheme of the database URL. Every write is a single statement or a
//! single transaction, so a failed request writes nothing. The statements
//! are written once (`sql.rs`) and run by code generic over the backend
//! (`db.rs`, `api_tokens.rs`, `sessions.rs`); `sqlite.rs` and `postgres.rs`
//! keep only what differs.

mod agent_tokens;
mod allowed_ranges;
mod api_tokens;
mod backend;
mod db;
mod postgres;
pub mod revocations;
mod rows;
pub mod sessions;
mod sql;
mod sqlite;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::model::{
    AgentCredential, AgentToken, AllowedIpRange, AuditEvent, Deployment, NewAgentToken,
    Organization, RootCredential, Rotation, Workspace,
};
use crate::model::{ApiCredential, ApiToken, ApiTokenChange, ConsoleSession, NewApiToken};
use crate::token::Digest;
use crate::webhooks::{Claimed, Delivery, Endpoint, Outcome};
pub use sessions::SessionCutoffs;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the deployment already has {limit} agent tokens, the maximum")]
    AgentTokenLimit { limit: i64 },
    #[error("no such deployment in this organization")]
    DeploymentNotFound,
    /// A deployment's workspace was deleted between the caller's lookup
    /// and the insert (its foreign key refused the row).
    #[error("no such workspace in this organization")]
    WorkspaceNotFound,
    #[error("the organization already has {limit} allowed IP address ranges, the maximum")]
    AllowedIpRangeLimit { limit: i64 },
    #[error("the organization already has {limit} webhook endpoints, the maximum")]
    WebhookLimit { limit: i64 },
    /// Ranges already in the organization's allowlist (nothing was added).
    #[error("already in the allowlist: {}", .0.join(", "))]
    AllowedIpRangeExists(Vec<String>),
    /// The change would have left a list that does not allow the address
    /// its [`LockOutGuard`] keeps (nothing was changed).
    #[error("the change would lock its caller out")]
    WouldLockOut,
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be opened or used; the text says which and why.
    #[error("{0}")]
    Open(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A column a list may be ordered by. The HTTP layer maps wire field names
/// onto these, so no caller-provided text ever reaches SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
    CreatedById,
    UpdatedById,
    StartAt,
    IpAddressRange,
}

impl SortColumn {
    pub fn sql(self) -> &'static str {
        match self {
            SortColumn::Name => "name",
            SortColumn::Description => "description",
            SortColumn::CreatedAt => "created_at",
            SortColumn::UpdatedAt => "updated_at",
            SortColumn::CreatedById => "created_by_id",
            SortColumn::UpdatedById => "updated_by_id",
            SortColumn::StartAt => "start_at",
            SortColumn::IpAddressRange => "ip_address_range",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub descending: bool,
}

/// One page of a list: which rows, in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub offset: i64,
    pub limit: i64,
    pub sorts: Vec<Sort>,
}

impl PageRequest {
    /// `ORDER BY` for this page: the requested sorts, then `created_at, id`
    /// so that the order is total and stable across pages.
    pub fn order_by(&self) -> String {
        let mut terms: Vec<String> = self
            .sorts
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.column.sql(),
                    if s.descending { "DESC" } else { "ASC" }
                )
            })
            .collect();
        terms.push("created_at ASC".into());
        terms.push("id ASC".into());
        terms.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;
    /// Closes the connections, waiting for those in use to be returned.
    async fn close(&self);

    async fn create_organization(&self, org: &Organization, audit: &AuditEvent) -> Result<()>;
    async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>>;
    async fn get_organization(&self, id: &str) -> Result<Option<Organization>>;
    /// Writes the organization's name and `updated_*` as `org` holds them;
    /// answers whether there was one.
    async fn update_organization(&self, org: &Organization, audit: &AuditEvent) -> Result<bool>;

    async fn create_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<()>;
    async fn list_workspaces(
        &self,
        org: &str,
        filter: &PlaceFilter,
        page: &PageRequest,
    ) -> Result<Page<Workspace>>;
    async fn get_workspace(&self, org: &str, id: &str) -> Result<Option<Workspace>>;
    /// Writes the workspace's name, description, CI/CD default and
    /// `updated_*` as `ws` holds them; answers whether there was one.
    async fn update_workspace(&self, ws: &Workspace, audit: &AuditEvent) -> Result<bool>;
    /// Deletes the workspace, the API tokens made for it and every role on
    /// it, in one transaction, unless a deployment is in it.
    async fn delete_workspace(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<WorkspaceDeletion>;

    async fn create_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<()>;
    async fn list_deployments(
        &self,
        org: &str,
        filter: &PlaceFilter,
        page: &PageRequest,
    ) -> Result<Page<Deployment>>;
    async fn get_deployment(&self, org: &str, id: &str) -> Result<Option<Deployment>>;
    /// Writes the deployment's name, description, CI/CD enforcement and
    /// `updated_*` as `dep` holds them; answers whether there was one.
    async fn update_deployment(&self, dep: &Deployment, audit: &AuditEvent) -> Result<bool>;
    /// Deletes the deployment and every agent token of it, in one
    /// transaction. Answers the deleted tokens' digests (empty if none), or
    /// `None` if there was no such deployment.
    async fn delete_deployment(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Vec<Digest>>>;

    /// Inserts the token unless its deployment already holds `limit` tokens;
    /// the count and the insert are one atomic step.
    async fn create_agent_token(
        &self,
        new: &NewAgentToken,
        limit: i64,
        audit: &AuditEvent,
    ) -> Result<()>;
    async fn list_agent_tokens(
        &self,
        org: &str,
        deployment: &str,
        page: &PageRequest,
    ) -> Result<Page<AgentToken>>;
    async fn get_agent_token(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
    ) -> Result<Option<AgentToken>>;
    /// Answers the deleted token's digest, or `None` if there was none.
    async fn delete_agent_token(
        &self,
        org: &str,
        deployment: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Digest>>;
    /// Rotates the token's secret; answers the token as it now is, or `None`
    /// if there is no such token. A secret still in an earlier grace window
    /// is retired at once.
    async fn rotate_agent_token(
        &self,
        rotation: &Rotation,
        audit: &AuditEvent,
    ) -> Result<Option<AgentToken>>;
    /// The token whose current secret, or previous secret still in its
    /// grace window, has this digest.
    async fn find_agent_credential(&self, digest: &Digest) -> Result<Option<AgentCredential>>;
    /// Raises `lastUsedAt` of each token to the given time (never lowers it).
    async fn record_agent_token_use(&self, uses: &[(String, i64)]) -> Result<()>;

    async fn root_credential(&self) -> Result<Option<RootCredential>>;
    /// Stores `cred` if there is no root credential yet; answers whether it did.
    async fn insert_root_credential_if_absent(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<bool>;
    /// Replaces the root credential, whatever it was.
    async fn replace_root_credential(
        &self,
        cred: &RootCredential,
        audit: &AuditEvent,
    ) -> Result<()>;

    /// How many agent tokens there are, (still valid at `now`, expired).
    async fn count_agent_tokens(&self, now: i64) -> Result<(i64, i64)>;
    /// The connection pool: (open connections, idle ones).
    fn pool_status(&self) -> (u32, usize);

    /// The organization's audit events in the window, oldest first.
    async fn list_audit_events(
        &self,
        org: &str,
        window: &AuditQuery,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>>;

    /// Starts delivering revocations made by other processes on the same
    /// database to `sink`, until `stop` turns true. `None` when the backend
    /// has no other processes to hear from (SQLite serves one process).
    fn follow_revocations(
        &self,
        _sink: Arc<dyn revocations::RevocationSink>,
        _stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    /// One page of the organization's allowlist.
    async fn list_allowed_ip_ranges(
        &self,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<AllowedIpRange>>;
    /// Every range of the organization's allowlist (normalised text), in
    /// the order they were added.
    async fn allowed_ip_ranges_of(&self, org: &str) -> Result<Vec<String>>;
    /// Adds every range (all of one organization) or none: none when one is
    /// already there ([`StoreError::AllowedIpRangeExists`] naming each),
    /// when the organization would hold more than `limit`, or when the list
    /// would no longer allow what `guard` keeps
    /// ([`StoreError::WouldLockOut`]). Writes `audit` with them and tells
    /// the other replicas.
    async fn create_allowed_ip_ranges(
        &self,
        ranges: &[AllowedIpRange],
        limit: i64,
        guard: LockOutGuard,
        audit: &[AuditEvent],
    ) -> Result<()>;
    /// Deletes those of `ids` that are ranges of the organization (others,
    /// and repeats, are passed over) in one transaction, with an audit
    /// event each (`audit`, given its own id and the range as target);
    /// answers the deleted ranges. Deletes none when the list left would
    /// no longer allow what `guard` keeps ([`StoreError::WouldLockOut`]).
    async fn delete_allowed_ip_ranges(
        &self,
        org: &str,
        ids: &[String],
        guard: LockOutGuard,
        audit: &AuditEvent,
    ) -> Result<Vec<AllowedIpRange>>;
    /// Appends an event that records no change (a refused request).
    async fn record_audit_event(&self, event: &AuditEvent) -> Result<()>;

    /// Inserts the API token and its roles, in one transaction.
    async fn create_api_token(&self, new: &NewApiToken, audit: &AuditEvent) -> Result<()>;
    /// The organization's API tokens, with their roles; narrowed by
    /// `filter` to tokens holding a role on its workspace and/or deployment.
    async fn list_api_tokens(
        &self,
        org: &str,
        filter: &ApiTokenFilter,
        page: &PageRequest,
    ) -> Result<Page<ApiToken>>;
    async fn get_api_token(&self, org: &str, id: &str) -> Result<Option<ApiToken>>;
    /// Applies the change in one transaction; answers the token as it now
    /// is, or `None` if there is no such token.
    async fn update_api_token(
        &self,
        change: &ApiTokenChange,
        audit: &AuditEvent,
    ) -> Result<Option<ApiToken>>;
    /// Deletes the token and its roles; answers whether there was one.
    async fn delete_api_token(&self, org: &str, id: &str, audit: &AuditEvent) -> Result<bool>;
    /// The API token whose current secret has this digest, with its roles.
    async fn find_api_credential(&self, digest: &Digest) -> Result<Option<ApiCredential>>;

    /// Stores a new console session, first removing those that have ended
    /// (created before `cutoffs.created_before` or idle since before
    /// `cutoffs.seen_before`).
    async fn create_console_session(
        &self,
        session: &ConsoleSession,
        cutoffs: SessionCutoffs,
    ) -> Result<()>;
    /// The session whose id has this digest.
    async fn find_console_session(&self, id: &Digest) -> Result<Option<ConsoleSession>>;
    /// Notes that the session was used at `at`.
    async fn touch_console_session(&self, id: &Digest, at: i64) -> Result<()>;
    /// Ends the session (a no-op if there is none).
    async fn delete_console_session(&self, id: &Digest) -> Result<()>;
    /// Records a form nonce of the session as used; answers whether this
    /// was its first use.
    async fn use_console_nonce(&self, session: &Digest, nonce: &Digest, at: i64) -> Result<bool>;

    /// Stores a new webhook endpoint.
    async fn create_webhook_endpoint(&self, endpoint: &Endpoint, audit: &AuditEvent) -> Result<()>;
    async fn list_webhook_endpoints(&self, org: &str, page: &PageRequest)
        -> Result<Page<Endpoint>>;
    async fn get_webhook_endpoint(&self, org: &str, id: &str) -> Result<Option<Endpoint>>;
    /// Raises the endpoint's generation (its secret derives from it);
    /// answers the endpoint as it now is, or `None` if there is none.
    async fn rotate_webhook_endpoint(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Endpoint>>;
    /// Deletes the endpoint and its deliveries; answers whether there was one.
    async fn delete_webhook_endpoint(
        &self,
        org: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool>;
    /// The endpoint's deliveries, newest first, with their latest attempts.
    async fn list_webhook_deliveries(
        &self,
        org: &str,
        endpoint: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Page<Delivery>>;
    async fn get_webhook_delivery(
        &self,
        org: &str,
        endpoint: &str,
        id: &str,
    ) -> Result<Option<Delivery>>;
    /// Queues the delivery's event again; answers the new delivery's id.
    async fn redeliver_webhook(
        &self,
        org: &str,
        endpoint: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<String>>;
    /// Leases up to `limit` due deliveries to `owner` (see `webhooks::worker`).
    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>>;
    /// Records attempts, in one transaction; answers, for each, whether
    /// `owner` still held the lease.
    async fn finish_webhook_deliveries(
        &self,
        owner: &str,
        outcomes: &[Outcome],
        at: i64,
    ) -> Result<Vec<bool>>;
    /// (pending, failed) deliveries.
    async fn webhook_backlog(&self) -> Result<(i64, i64)>;
    /// Deletes at most `limit` rows of one step of the retention sweep,
    /// older than `before` (seconds, the application's clock), in one
    /// statement; answers how many it deleted. See `webhooks::retention`.
    async fn prune_webhooks(
        &self,
        what: crate::webhooks::retention::Prune,
        before: i64,
        limit: i64,
    ) -> Result<u64>;
    /// One pass of the expiry scan; answers how many tokens it marked.
    async fn scan_token_expiry(&self, now: i64, thresholds: &[i64], lookback: i64)
        -> Result<usize>;
}

/// What a change to an organization's allowlist must leave allowed,
/// decided in the change's own transaction (so two concurrent changes
/// cannot together shut out a caller that each alone would not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutGuard {
    /// Nothing: the caller is exempt (root) or insists (`?force=true`).
    Off,
    /// This client address (`None`: unknown, which no range allows): the
    /// list left must be empty or allow it.
    Keep(Option<std::net::IpAddr>),
}

/// The audit events of one organization that occurred in `[from, until)`,
/// and only those of one action when `action` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub from: Option<i64>,
    pub until: Option<i64>,
    pub action: Option<String>,
}

/// What deleting a workspace did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceDeletion {
    Deleted,
    NotFound,
    /// Nothing: this many deployments are still in the workspace.
    HasDeployments(i64),
}

/// Which workspaces or deployments a list answers: the organization's,
/// narrowed by each list that is not empty (ids, names and, for
/// deployments, their workspaces); a value matches exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceFilter {
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub workspaces: Vec<String>,
}

/// Which API tokens a list answers: those holding a role on the workspace
/// and/or the deployment named (all of the organization's when both are
/// `None`), and, when `homes` is set, only those created for a place in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiTokenFilter {
    pub workspace: Option<String>,
    pub deployment: Option<String>,
    pub homes: Option<Homes>,
    /// Only tokens created for this kind of entity.
    pub scope: Option<crate::roles::EntityType>,
}

/// Where listed API tokens must have been created (their scope and
/// entity): what a caller without organization-wide access may see, the
/// same rule as for getting one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Homes {
    /// Created for the workspace or for one of its deployments.
    Workspace(String),
    /// Created for the deployment.
    Deployment(String),
}

/// Opens (creating if need be) and migrates the database the URL names.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A database URL with any password replaced, fit for messages and logs:
/// a `password=` query parameter, and the password of the user-info part.
/// Where a password was not percent-encoded the URL is ambiguous; this then
/// hides too much rather than too little.
pub fn redact_url(url: &str) -> String {
    // First every `password=` value, up to the next '&' (it may hold '@').
    let mut text = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let value_start = at + "password=".len();
        let value_end = rest[value_start..]
            .find('&')
            .map_or(rest.len(), |end| value_start + end);
        text.push_str(&rest[..value_start]);
        text.push_str("***");
        rest = &rest[value_end..];
    }
    text.push_str(rest);
    // Then the user-info password: from the first ':' after the scheme to
    // the last '@' (a password may itself hold '?', '/' or '#').
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text;
    };
    match (text[scheme_end..].find(':'), text[scheme_end..].rfind('@')) {
        (Some(colon), Some(at)) if colon < at => format!(
            "{}***{}",
            &text[..scheme_end + colon + 1],
            &text[scheme_end + at..]
        ),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://agentkey.db"), "sqlite://agentkey.db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=secret"),
            "postgres://u@h/db?sslmode=disable&password=***"
        );
        assert_eq!(
            redact_url("postgres://u:a@h/db?PASSWORD=b"),
            "postgres://u:***@h/db?PASSWORD=***"
        );
        assert_eq!(
            redact_url("postgres://agent:s3cr?et/x@127.0.0.1:1/db"),
            "postgres://agent:***@127.0.0.1:1/db"
        );
        let shown = redact_url("postgres://127.0.0.1:18899/db?password=se@cret&sslmode=require");
        assert!(
            !shown.contains("se@cret") && !shown.contains("cret"),
            "{shown}"
        );
        assert!(shown.contains("sslmode=require"), "{shown}");
    }

    #[test]
    fn order_is_total() {
        let page = PageRequest {
            offset: 0,
            limit: 20,
            sorts: vec![Sort {
                column: SortColumn::Name,
                descending: true,
            }],
        };
        assert_eq!(page.order_by(), "name DESC, created_at ASC, id ASC");
    }
}
