-- Signed event webhooks (issue 15).
--
-- webhook_endpoints: where an organization wants its events. No signing
-- secret is stored: each endpoint's secret is derived when needed as
-- HMAC-SHA256(server webhook key, endpoint id || ":" || generation), and a
-- rotation raises `generation` (docs/design.md says why). `event_types` is
-- ",type,type," (or "*" for every type), so one LIKE matches a type.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    url              TEXT NOT NULL,
    description      TEXT NOT NULL,
    event_types      TEXT NOT NULL,
    generation       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    created_by_id    TEXT NOT NULL,
    created_by_type  TEXT NOT NULL,
    created_by_name  TEXT
);
CREATE INDEX webhook_endpoints_by_organization ON webhook_endpoints (organization_id, created_at, id);

-- The outbox: one row per event that at least one endpoint wanted, written
-- in the transaction of the change it reports. `subject_id` is the token
-- (or deployment, or range) it is about: deliveries of one subject to one
-- endpoint go out in `seq` order.
CREATE TABLE webhook_events (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);

-- One event to one endpoint. PENDING until it succeeds (SUCCEEDED) or its
-- retries run out (FAILED). A worker claims a PENDING row by setting a
-- lease; a worker that dies mid-delivery leaves a lease that runs out, and
-- another claims the row again. The delivery schedule is kept in
-- milliseconds of the wall clock (due_ms, lease_until_ms, deadline_ms: the
-- end of its retries, set at the first attempt); created_at and updated_at
-- are seconds, like every other table's.
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    event_id         TEXT NOT NULL REFERENCES webhook_events (id),
    endpoint_id      TEXT NOT NULL,
    organization_id  TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    due_ms           INTEGER NOT NULL,
    deadline_ms      INTEGER,
    lease_owner      TEXT,
    lease_until_ms   INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, due_ms);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, subject_id, seq);

-- Every attempt of a delivery: when, how long, what came back.
CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY NOT NULL,
    delivery_id      TEXT NOT NULL,
    attempted_at     INTEGER NOT NULL,
    latency_ms       INTEGER NOT NULL,
    status_code      INTEGER,
    outcome          TEXT NOT NULL,
    error            TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempted_at);

-- The expiry scan's memory: one row per token and threshold (days before
-- endAt; 0 = expired) once its event was decided, so each is emitted once,
-- whichever replica scans and however often it restarts.
CREATE TABLE token_expiry_marks (
    token_kind       TEXT NOT NULL,
    token_id         TEXT NOT NULL,
    threshold_days   INTEGER NOT NULL,
    marked_at        INTEGER NOT NULL,
    PRIMARY KEY (token_kind, token_id, threshold_days)
);
