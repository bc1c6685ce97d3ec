//! The text of every fixed statement both backends run, written once with
//! `$N` placeholders (sqlx binds `$N` on SQLite too, and a repeated `$N`
//! takes the same value). A write whose caller needs to know whether it
//! wrote answers `RETURNING id`. Statements whose shape depends on the request
//! (lists, filters, the API-token update) are built with `sqlx::QueryBuilder`
//! where they run; what only one backend says lives in its own module.

// Column lists are macros so that `concat!` can splice them into the
// statements below at compile time; each also has a `&str` constant.
macro_rules! organization_columns {
    () => {
        "id, name, created_at, updated_at, created_by_id, created_by_type, created_by_name, \
         updated_by_id, updated_by_type, updated_by_name, \
         (SELECT COUNT(*) FROM allowed_ip_ranges r WHERE r.organization_id = organizations.id) \
         AS allowed_ip_range_count"
    };
}
// A workspace is read with its organization's name (a key lookup per row).
macro_rules! workspace_columns {
    () => {
        "id, organization_id, name, description, cicd_enforced_default, created_at, \
         updated_at, created_by_id, created_by_type, created_by_name, updated_by_id, \
         updated_by_type, updated_by_name, (SELECT o.name FROM organizations o \
         WHERE o.id = workspaces.organization_id) AS organization_name"
    };
}
macro_rules! deployment_columns {
    () => {
        "id, organization_id, workspace_id, name, description, deployment_type, \
         is_cicd_enforced, created_at, updated_at, created_by_id, created_by_type, \
         created_by_name, updated_by_id, updated_by_type, updated_by_name"
    };
}
macro_rules! agent_token_columns {
    () => {
        "id, organization_id, deployment_id, name, description, short_token, role, \
         expiry_period_in_days, start_at, end_at, created_at, updated_at, created_by_id, \
         created_by_type, created_by_name, updated_by_id, updated_by_type, updated_by_name, \
         last_used_at, last_rotated_at, previous_valid_until, allowed_ip_ranges"
    };
}
macro_rules! allowed_ip_range_columns {
    () => {
        "id, organization_id, ip_address_range, created_at, updated_at, created_by_id, \
         created_by_type, created_by_name, updated_by_id, updated_by_type, updated_by_name"
    };
}
macro_rules! audit_event_columns {
    () => {
        "id, organization_id, created_at, actor_id, actor_type, actor_name, action, \
         target_type, target_id, request_id, source_ip"
    };
}
macro_rules! api_token_columns {
    () => {
        "id, organization_id, name, description, short_token, scope, entity_id, \
         expiry_period_in_days, start_at, end_at, created_at, updated_at, created_by_id, \
         created_by_type, created_by_name, updated_by_id, updated_by_type, updated_by_name, \
         last_rotated_at"
    };
}

pub const ORGANIZATION_COLUMNS: &str = organization_columns!();
pub const WORKSPACE_COLUMNS: &str = workspace_columns!();
pub const DEPLOYMENT_COLUMNS: &str = deployment_columns!();
pub const AGENT_TOKEN_COLUMNS: &str = agent_token_columns!();
pub const AUDIT_EVENT_COLUMNS: &str = audit_event_columns!();
pub const API_TOKEN_COLUMNS: &str = api_token_columns!();
pub const ALLOWED_IP_RANGE_COLUMNS: &str = allowed_ip_range_columns!();
pub const API_TOKEN_ROLE_COLUMNS: &str = "token_id, entity_type, entity_id, role";

pub const PING: &str = "SELECT 1";

/// Appends one event to the audit trail.
pub const INSERT_AUDIT_EVENT: &str = concat!(
    "INSERT INTO audit_events (",
    audit_event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);

pub const INSERT_ORGANIZATION: &str = "INSERT INTO organizations (id, name, created_at, \
    updated_at, created_by_id, created_by_type, created_by_name, updated_by_id, \
    updated_by_type, updated_by_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/// Renames an organization ($2) and records who ($4..$6) did it when ($3).
pub const UPDATE_ORGANIZATION: &str = "UPDATE organizations SET name = $2, updated_at = $3, \
    updated_by_id = $4, updated_by_type = $5, updated_by_name = $6 WHERE id = $1 RETURNING id";
pub const GET_ORGANIZATION: &str = concat!(
    "SELECT ",
    organization_columns!(),
    " FROM organizations WHERE id = $1"
);

pub const INSERT_WORKSPACE: &str = "INSERT INTO workspaces \
    (id, organization_id, name, description, cicd_enforced_default, created_at, updated_at, \
    created_by_id, created_by_type, created_by_name, updated_by_id, updated_by_type, \
    updated_by_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
/// Workspace $2 of organization $1 takes its new name, description and
/// CI/CD default ($3..$5), changed at $6 by $7..$9.
pub const UPDATE_WORKSPACE: &str = "UPDATE workspaces SET name = $3, description = $4, \
    cicd_enforced_default = $5, updated_at = $6, updated_by_id = $7, updated_by_type = $8, \
    updated_by_name = $9 WHERE organization_id = $1 AND id = $2 RETURNING id";
/// Deleting a workspace ($1 organization, $2 workspace), in this order: the
/// API tokens made for it with their roles, every role other tokens held
/// on it, then itself, only while no deployment is in it (the statement
/// checks, so a deployment created meanwhile keeps the workspace).
pub const DELETE_WORKSPACE_API_TOKEN_ROLES: &str = "DELETE FROM api_token_roles \
    WHERE token_id IN (SELECT id FROM api_tokens \
    WHERE organization_id = $1 AND scope = 'WORKSPACE' AND entity_id = $2)";
pub const DELETE_WORKSPACE_API_TOKENS: &str = "DELETE FROM api_tokens \
    WHERE organization_id = $1 AND scope = 'WORKSPACE' AND entity_id = $2";
pub const DELETE_ROLES_ON_WORKSPACE: &str =
    "DELETE FROM api_token_roles WHERE entity_type = 'WORKSPACE' AND entity_id = $1";
pub const DELETE_EMPTY_WORKSPACE: &str = "DELETE FROM workspaces \
    WHERE organization_id = $1 AND id = $2 \
    AND NOT EXISTS (SELECT 1 FROM deployments WHERE workspace_id = $2) RETURNING id";
pub const COUNT_WORKSPACE_DEPLOYMENTS: &str =
    "SELECT COUNT(*) FROM deployments WHERE organization_id = $1 AND workspace_id = $2";
pub const GET_WORKSPACE: &str = concat!(
    "SELECT ",
    workspace_columns!(),
    " FROM workspaces WHERE organization_id = $1 AND id = $2"
);

pub const INSERT_DEPLOYMENT: &str = "INSERT INTO deployments \
    (id, organization_id, workspace_id, name, description, deployment_type, is_cicd_enforced, \
    created_at, updated_at, created_by_id, created_by_type, created_by_name, updated_by_id, \
    updated_by_type, updated_by_name) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
/// Deployment $2 of organization $1 takes its new name, description and
/// CI/CD enforcement ($3..$5), changed at $6 by $7..$9.
pub const UPDATE_DEPLOYMENT: &str = "UPDATE deployments SET name = $3, description = $4, \
    is_cicd_enforced = $5, updated_at = $6, updated_by_id = $7, updated_by_type = $8, \
    updated_by_name = $9 WHERE organization_id = $1 AND id = $2 RETURNING id";
pub const GET_DEPLOYMENT: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE organization_id = $1 AND id = $2"
);

/// Deleting a deployment ($1 organization, $2 deployment), in this order:
/// its agent tokens (answering their digests), the API tokens made for it
/// with their roles, every role other tokens held on it, then itself. None
/// may outlive what it is about.
pub const DELETE_DEPLOYMENT_AGENT_TOKENS: &str = "DELETE FROM agent_tokens \
    WHERE organization_id = $1 AND deployment_id = $2 RETURNING secret_digest";
pub const DELETE_DEPLOYMENT_API_TOKEN_ROLES: &str = "DELETE FROM api_token_roles \
    WHERE token_id IN (SELECT id FROM api_tokens \
    WHERE organization_id = $1 AND scope = 'DEPLOYMENT' AND entity_id = $2)";
pub const DELETE_DEPLOYMENT_API_TOKENS: &str = "DELETE FROM api_tokens \
    WHERE organization_id = $1 AND scope = 'DEPLOYMENT' AND entity_id = $2";
pub const DELETE_ROLES_ON_DEPLOYMENT: &str =
    "DELETE FROM api_token_roles WHERE entity_type = 'DEPLOYMENT' AND entity_id = $1";
pub const DELETE_DEPLOYMENT: &str =
    "DELETE FROM deployments WHERE organization_id = $1 AND id = $2 RETURNING id";

/// Inserts an agent token ($1..$19, and its networks $23) only if its
/// deployment ($20, in organization $21) exists and holds fewer than $22
/// tokens: one statement, so the count and the insert are one atomic step.
pub const INSERT_AGENT_TOKEN_WITHIN_LIMIT: &str = "INSERT INTO agent_tokens \
    (id, organization_id, deployment_id, name, description, short_token, secret_digest, role, \
    expiry_period_in_days, start_at, end_at, created_at, updated_at, created_by_id, \
    created_by_type, created_by_name, updated_by_id, updated_by_type, updated_by_name, \
    allowed_ip_ranges) \
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
    $23 \
    WHERE EXISTS (SELECT 1 FROM deployments WHERE id = $20 AND organization_id = $21) \
    AND (SELECT COUNT(*) FROM agent_tokens WHERE deployment_id = $20) < $22 RETURNING id";
pub const GET_AGENT_TOKEN: &str = concat!(
    "SELECT ",
    agent_token_columns!(),
    " FROM agent_tokens WHERE organization_id = $1 AND deployment_id = $2 AND id = $3"
);
/// Answers the digest, and what the `agent_token.deleted` event says about
/// the token (its name, deployment and end).
pub const DELETE_AGENT_TOKEN: &str = "DELETE FROM agent_tokens \
    WHERE organization_id = $1 AND deployment_id = $2 AND id = $3 \
    RETURNING secret_digest, name, deployment_id, end_at";
/// Rotation in one statement. `SET` expressions read the row as it was, so
/// `previous_digest` takes the secret being replaced; with no grace window
/// ($1 NULL) all three `previous_*` columns become NULL.
pub const ROTATE_AGENT_TOKEN: &str = concat!(
    "UPDATE agent_tokens SET \
     previous_digest = CASE WHEN $1 IS NULL THEN NULL ELSE secret_digest END, \
     previous_issued_at = CASE WHEN $1 IS NULL THEN NULL \
     ELSE COALESCE(last_rotated_at, start_at) END, \
     previous_valid_until = $1, secret_digest = $2, short_token = $3, \
     last_rotated_at = $4, updated_at = $4, updated_by_id = $5, \
     updated_by_type = $6, updated_by_name = $7 \
     WHERE organization_id = $8 AND deployment_id = $9 AND id = $10 RETURNING ",
    agent_token_columns!()
);
pub const FIND_AGENT_CREDENTIAL: &str = "SELECT id, organization_id, deployment_id, name, \
    end_at, start_at, last_rotated_at, secret_digest, previous_digest, previous_valid_until, \
    previous_issued_at, allowed_ip_ranges FROM agent_tokens \
    WHERE secret_digest = $1 OR previous_digest = $1";
/// Raises `last_used_at` to $1, never lowering it (the larger of the two,
/// spelled with `CASE`: SQLite says `MAX(a, b)`, PostgreSQL `GREATEST`).
pub const RECORD_AGENT_TOKEN_USE: &str = "UPDATE agent_tokens SET last_used_at = \
    CASE WHEN COALESCE(last_used_at, 0) < $1 THEN $1 ELSE COALESCE(last_used_at, 0) END \
    WHERE id = $2";
/// (still valid at $1, expired) agent tokens.
pub const COUNT_AGENT_TOKENS: &str = "SELECT \
    COALESCE(SUM(CASE WHEN end_at IS NULL OR end_at > $1 THEN 1 ELSE 0 END), 0), \
    COALESCE(SUM(CASE WHEN end_at IS NULL OR end_at > $1 THEN 0 ELSE 1 END), 0) \
    FROM agent_tokens";

pub const GET_ROOT_CREDENTIAL: &str =
    "SELECT id, secret_digest, created_at FROM root_credential WHERE singleton = 1";
pub const INSERT_ROOT_CREDENTIAL_IF_ABSENT: &str = "INSERT INTO root_credential \
    (singleton, id, secret_digest, created_at) VALUES (1, $1, $2, $3) \
    ON CONFLICT (singleton) DO NOTHING RETURNING id";
pub const REPLACE_ROOT_CREDENTIAL: &str = "INSERT INTO root_credential \
    (singleton, id, secret_digest, created_at) VALUES (1, $1, $2, $3) \
    ON CONFLICT (singleton) DO UPDATE SET id = excluded.id, \
    secret_digest = excluded.secret_digest, created_at = excluded.created_at RETURNING id";

pub const INSERT_API_TOKEN: &str = "INSERT INTO api_tokens (id, organization_id, name, \
    description, short_token, secret_digest, scope, entity_id, expiry_period_in_days, \
    start_at, end_at, created_at, updated_at, created_by_id, created_by_type, created_by_name, \
    updated_by_id, updated_by_type, updated_by_name) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";
pub const GET_API_TOKEN: &str = concat!(
    "SELECT ",
    api_token_columns!(),
    " FROM api_tokens WHERE organization_id = $1 AND id = $2"
);
pub const FIND_API_CREDENTIAL: &str = "SELECT id, organization_id, name, end_at, secret_digest \
    FROM api_tokens WHERE secret_digest = $1";
pub const DELETE_API_TOKEN_ROLES: &str = "DELETE FROM api_token_roles WHERE token_id IN \
    (SELECT id FROM api_tokens WHERE organization_id = $1 AND id = $2)";
pub const DELETE_API_TOKEN: &str =
    "DELETE FROM api_tokens WHERE organization_id = $1 AND id = $2 RETURNING id";
pub const INSERT_API_TOKEN_ROLE: &str = "INSERT INTO api_token_roles \
    (token_id, entity_type, entity_id, role) VALUES ($1, $2, $3, $4)";
pub const CLEAR_API_TOKEN_ROLES: &str = "DELETE FROM api_token_roles WHERE token_id = $1";

/// Inserts one range of organization $2's allowlist unless the organization
/// already holds $12 ranges or this very range: the count, the uniqueness
/// and the insert are one statement. Answers the id when it inserted.
pub const INSERT_ALLOWED_IP_RANGE_WITHIN_LIMIT: &str = "INSERT INTO allowed_ip_ranges \
    (id, organization_id, ip_address_range, created_at, updated_at, created_by_id, \
    created_by_type, created_by_name, updated_by_id, updated_by_type, updated_by_name) \
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
    WHERE (SELECT COUNT(*) FROM allowed_ip_ranges WHERE organization_id = $2) < $12 \
    ON CONFLICT (organization_id, ip_address_range) DO NOTHING RETURNING id";
/// The ranges of organization $1, in the order they were added.
pub const ALLOWED_IP_RANGES_OF: &str = "SELECT ip_address_range FROM allowed_ip_ranges \
    WHERE organization_id = $1 ORDER BY created_at, id";
pub const DELETE_ALLOWED_IP_RANGE: &str = concat!(
    "DELETE FROM allowed_ip_ranges WHERE organization_id = $1 AND id = $2 RETURNING ",
    allowed_ip_range_columns!()
);

// Webhooks (issue 15).

macro_rules! webhook_endpoint_columns {
    () => {
        "id, organization_id, url, description, event_types, generation, created_at, \
         updated_at, created_by_id, created_by_type, created_by_name"
    };
}
macro_rules! webhook_delivery_columns {
    () => {
        "d.id, d.event_id, d.endpoint_id, e.event_type, d.subject_id, d.status, d.attempts, \
         d.due_ms, d.last_status_code, d.last_error, d.created_at, d.updated_at, e.payload"
    };
}
pub const WEBHOOK_ENDPOINT_COLUMNS: &str = webhook_endpoint_columns!();

/// Inserts an endpoint unless organization $2 already has $12: the count
/// and the insert are one statement. Answers the id when it inserted.
pub const INSERT_WEBHOOK_ENDPOINT: &str = concat!(
    "INSERT INTO webhook_endpoints (",
    webhook_endpoint_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
     WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE organization_id = $2) < $12 \
     RETURNING id"
);
pub const GET_WEBHOOK_ENDPOINT: &str = concat!(
    "SELECT ",
    webhook_endpoint_columns!(),
    " FROM webhook_endpoints WHERE organization_id = $1 AND id = $2"
);
/// A new secret: the generation goes up by one.
pub const ROTATE_WEBHOOK_ENDPOINT: &str = concat!(
    "UPDATE webhook_endpoints SET generation = generation + 1, updated_at = $3 \
     WHERE organization_id = $1 AND id = $2 RETURNING ",
    webhook_endpoint_columns!()
);
/// Deleting an endpoint ($1 organization, $2 endpoint): its attempts, its
/// deliveries, then itself. Events stay while other endpoints use them.
pub const DELETE_WEBHOOK_ATTEMPTS: &str = "DELETE FROM webhook_attempts WHERE delivery_id IN \
    (SELECT id FROM webhook_deliveries WHERE organization_id = $1 AND endpoint_id = $2)";
pub const DELETE_WEBHOOK_DELIVERIES: &str =
    "DELETE FROM webhook_deliveries WHERE organization_id = $1 AND endpoint_id = $2";
pub const DELETE_WEBHOOK_ENDPOINT: &str =
    "DELETE FROM webhook_endpoints WHERE organization_id = $1 AND id = $2 RETURNING id";

/// The endpoints of organization $1 that want events of type $2 (given as
/// `%,type,%`).
pub const WEBHOOK_ENDPOINTS_FOR: &str = "SELECT id FROM webhook_endpoints \
    WHERE organization_id = $1 AND (event_types = '*' OR event_types LIKE $2) ORDER BY id";
pub const INSERT_WEBHOOK_EVENT: &str = "INSERT INTO webhook_events \
    (id, organization_id, event_type, subject_id, payload, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6)";
pub const INSERT_WEBHOOK_DELIVERY: &str = "INSERT INTO webhook_deliveries \
    (id, event_id, endpoint_id, organization_id, subject_id, status, attempts, due_ms, \
    created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, $6, $7, $7)";

/// What an event says about its subject, read in the change's transaction:
/// (name, parent id, endAt).
pub const SNAPSHOT_AGENT_TOKEN: &str =
    "SELECT name, deployment_id, end_at FROM agent_tokens WHERE id = $1";
pub const SNAPSHOT_API_TOKEN: &str = "SELECT name, entity_id, end_at FROM api_tokens WHERE id = $1";
pub const SNAPSHOT_ALLOWED_IP_RANGE: &str = "SELECT ip_address_range, organization_id, \
    CAST(NULL AS BIGINT) FROM allowed_ip_ranges WHERE id = $1";
pub const SNAPSHOT_DEPLOYMENT: &str =
    "SELECT name, workspace_id, CAST(NULL AS BIGINT) FROM deployments WHERE id = $1";

/// One page of an endpoint's deliveries ($1 organization, $2 endpoint),
/// newest first.
pub const LIST_WEBHOOK_DELIVERIES: &str = concat!(
    "SELECT ",
    webhook_delivery_columns!(),
    " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
     WHERE d.organization_id = $1 AND d.endpoint_id = $2 ORDER BY d.seq DESC LIMIT $3 OFFSET $4"
);
pub const COUNT_WEBHOOK_DELIVERIES: &str =
    "SELECT COUNT(*) FROM webhook_deliveries WHERE organization_id = $1 AND endpoint_id = $2";
pub const GET_WEBHOOK_DELIVERY: &str = concat!(
    "SELECT ",
    webhook_delivery_columns!(),
    " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
     WHERE d.organization_id = $1 AND d.endpoint_id = $2 AND d.id = $3"
);
pub const LIST_WEBHOOK_ATTEMPTS: &str = "SELECT id, delivery_id, attempted_at, latency_ms, \
    status_code, outcome, error FROM webhook_attempts WHERE delivery_id = $1 \
    ORDER BY attempted_at DESC, id DESC LIMIT 20";

/// Claims up to $4 due deliveries for lease owner $1 until $2 (now: $3):
/// pending, due, not leased by a live worker, and the first pending one of
/// its subject for its endpoint (so one subject's events go out in order).
/// The argument is what follows the inner `SELECT` (PostgreSQL's
/// `FOR UPDATE SKIP LOCKED`, so replicas claim different rows).
macro_rules! claim_webhook_deliveries {
    ($lock:literal) => {
        concat!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until_ms = $2 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             WHERE d.status = 'PENDING' AND d.due_ms <= $3 \
             AND (d.lease_until_ms IS NULL OR d.lease_until_ms < $3) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
             WHERE p.endpoint_id = d.endpoint_id AND p.subject_id = d.subject_id \
             AND p.status = 'PENDING' AND p.seq < d.seq) \
             ORDER BY d.seq LIMIT $4",
            $lock,
            ") RETURNING id"
        )
    };
}
pub(super) use claim_webhook_deliveries;

/// What a claimed delivery ($1) needs for sending, if its owner is still $2.
pub const CLAIMED_WEBHOOK_DELIVERY: &str = "SELECT d.id, d.event_id, d.endpoint_id, \
    d.attempts, d.deadline_ms, w.url, w.generation, e.payload \
    FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
    JOIN webhook_endpoints w ON w.id = d.endpoint_id \
    WHERE d.id = $1 AND d.lease_owner = $2";
/// Records an attempt's outcome on the delivery, if lease owner $2 still
/// holds it ($1 the delivery).
pub const FINISH_WEBHOOK_DELIVERY: &str = "UPDATE webhook_deliveries SET status = $3, \
    attempts = attempts + 1, due_ms = $4, deadline_ms = $5, last_status_code = $6, \
    last_error = $7, lease_owner = NULL, lease_until_ms = NULL, updated_at = $8 \
    WHERE id = $1 AND lease_owner = $2 RETURNING id";
pub const INSERT_WEBHOOK_ATTEMPT: &str = "INSERT INTO webhook_attempts \
    (id, delivery_id, attempted_at, latency_ms, status_code, outcome, error) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// A delivery sent once more: a new row for the same event and endpoint.
pub const REDELIVER_WEBHOOK: &str = "INSERT INTO webhook_deliveries \
    (id, event_id, endpoint_id, organization_id, subject_id, status, attempts, due_ms, \
    created_at, updated_at) SELECT $1, event_id, endpoint_id, organization_id, subject_id, \
    'PENDING', 0, 0, $2, $2 FROM webhook_deliveries \
    WHERE organization_id = $3 AND endpoint_id = $4 AND id = $5 RETURNING id";
/// The retention sweep's deletes, each of at most $2 rows older than $1
/// (seconds), in the order the sweep runs them (`webhooks::retention::Prune`):
/// the attempts of final deliveries, final deliveries, then events no
/// delivery points to. A PENDING delivery is never chosen, whatever its
/// age. The argument follows each inner `SELECT` (PostgreSQL's
/// `FOR UPDATE SKIP LOCKED`, so replicas sweeping at once take different
/// rows instead of waiting on each other).
macro_rules! prune_webhooks {
    ($lock:literal) => {
        [
            concat!(
                "DELETE FROM webhook_attempts WHERE id IN (SELECT a.id FROM webhook_attempts a \
                 WHERE a.delivery_id IN (SELECT d.id FROM webhook_deliveries d \
                 WHERE d.status IN ('SUCCEEDED', 'FAILED') AND d.updated_at < $1) LIMIT $2",
                $lock,
                ")"
            ),
            concat!(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                 WHERE d.status IN ('SUCCEEDED', 'FAILED') AND d.updated_at < $1 LIMIT $2",
                $lock,
                ")"
            ),
            concat!(
                "DELETE FROM webhook_events WHERE id IN (SELECT e.id FROM webhook_events e \
                 WHERE e.created_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) LIMIT $2",
                $lock,
                ")"
            ),
        ]
    };
}
pub(super) use prune_webhooks;

/// (pending, failed) deliveries: the backlog for `/metrics`.
pub const COUNT_WEBHOOK_BACKLOG: &str = "SELECT \
    COALESCE(SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END), 0), \
    COALESCE(SUM(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END), 0) FROM webhook_deliveries";

/// Tokens whose `endAt` lies in ($2, $1]: those the expiry scan looks at.
pub const EXPIRY_CANDIDATE_AGENT_TOKENS: &str = "SELECT id, organization_id, name, \
    deployment_id, end_at FROM agent_tokens \
    WHERE end_at IS NOT NULL AND end_at <= $1 AND end_at > $2 ORDER BY id";
pub const EXPIRY_CANDIDATE_API_TOKENS: &str = "SELECT id, organization_id, name, \
    entity_id, end_at FROM api_tokens \
    WHERE end_at IS NOT NULL AND end_at <= $1 AND end_at > $2 ORDER BY id";
/// The marks already made for the tokens the candidate statements above
/// answer (same $1, $2), so a scan opens a transaction only for a token
/// with a threshold still to mark.
pub const EXPIRY_MARKS_AGENT_TOKENS: &str = "SELECT token_id, threshold_days \
    FROM token_expiry_marks WHERE token_kind = 'AGENT_TOKEN' AND token_id IN \
    (SELECT id FROM agent_tokens WHERE end_at IS NOT NULL AND end_at <= $1 AND end_at > $2)";
pub const EXPIRY_MARKS_API_TOKENS: &str = "SELECT token_id, threshold_days \
    FROM token_expiry_marks WHERE token_kind = 'API_TOKEN' AND token_id IN \
    (SELECT id FROM api_tokens WHERE end_at IS NOT NULL AND end_at <= $1 AND end_at > $2)";
/// Marks threshold $3 of token ($1 kind, $2 id) as handled; answers a row
/// only for the one transaction, on any replica, that marked it first.
pub const INSERT_EXPIRY_MARK: &str = "INSERT INTO token_expiry_marks \
    (token_kind, token_id, threshold_days, marked_at) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (token_kind, token_id, threshold_days) DO NOTHING RETURNING token_id";

/// Sets `lastUsedAt` only if the token had never been used: the first use.
pub const RECORD_FIRST_AGENT_TOKEN_USE: &str = "UPDATE agent_tokens SET last_used_at = $1 \
    WHERE id = $2 AND last_used_at IS NULL \
    RETURNING organization_id, name, deployment_id, end_at";
