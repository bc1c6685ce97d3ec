-- Signed event webhooks (issue 15).
--
-- webhook_endpoints: where an organization wants its events. No signing
-- secret is stored: each endpoint's secret is derived when needed as
-- HMAC-SHA256(server webhook key, endpoint id || ":" || generation), and a
-- rotation raises `generation` (docs/design.md says why). `event_types` is
-- ",type,type," (or "*" for every type), so one LIKE matches a type.
CREATE TABLE webhook_endpoints (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id  TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    url              TEXT COLLATE "C" NOT NULL,
    description      TEXT COLLATE "C" NOT NULL,
    event_types      TEXT COLLATE "C" NOT NULL,
    generation       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    created_by_id    TEXT COLLATE "C" NOT NULL,
    created_by_type  TEXT COLLATE "C" NOT NULL,
    created_by_name  TEXT COLLATE "C"
);
CREATE INDEX webhook_endpoints_by_organization ON webhook_endpoints (organization_id, created_at, id);

-- The outbox: one row per event that at least one endpoint wanted, written
-- in the transaction of the change it reports. `subject_id` is the token
-- (or deployment, or range) it is about: deliveries of one subject to one
-- endpoint go out in `seq` order.
CREATE TABLE webhook_events (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id  TEXT COLLATE "C" NOT NULL,
    event_type       TEXT COLLATE "C" NOT NULL,
    subject_id       TEXT COLLATE "C" NOT NULL,
    payload          TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL
);

-- One event to one endpoint. PENDING until it succeeds (SUCCEEDED) or its
-- retries run out (FAILED). A worker claims a PENDING row by setting a
-- lease; a worker that dies mid-delivery leaves a lease that runs out, and
-- another claims the row again. The delivery schedule is kept in
-- milliseconds of the wall clock (due_ms, lease_until_ms, deadline_ms: the
-- end of its retries, set at the first attempt); created_at and updated_at
-- are seconds, like every other table's.
CREATE TABLE webhook_deliveries (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT COLLATE "C" NOT NULL UNIQUE,
    event_id         TEXT COLLATE "C" NOT NULL REFERENCES webhook_events (id),
    endpoint_id      TEXT COLLATE "C" NOT NULL,
    organization_id  TEXT COLLATE "C" NOT NULL,
    subject_id       TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    attempts         BIGINT NOT NULL,
    due_ms           BIGINT NOT NULL,
    deadline_ms      BIGINT,
    lease_owner      TEXT COLLATE "C",
    lease_until_ms   BIGINT,
    last_status_code BIGINT,
    last_error       TEXT COLLATE "C",
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, due_ms);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, subject_id, seq);

-- Every attempt of a delivery: when, how long, what came back.
CREATE TABLE webhook_attempts (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    delivery_id      TEXT COLLATE "C" NOT NULL,
    attempted_at     BIGINT NOT NULL,
    latency_ms       BIGINT NOT NULL,
    status_code      BIGINT,
    outcome          TEXT COLLATE "C" NOT NULL,
    error            TEXT COLLATE "C"
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempted_at);

-- The expiry scan's memory: one row per token and threshold (days before
-- endAt; 0 = expired) once its event was decided, so each is emitted once,
-- whichever replica scans and however often it restarts.
CREATE TABLE token_expiry_marks (
    token_kind       TEXT COLLATE "C" NOT NULL,
    token_id         TEXT COLLATE "C" NOT NULL,
    threshold_days   BIGINT NOT NULL,
    marked_at        BIGINT NOT NULL,
    PRIMARY KEY (token_kind, token_id, threshold_days)
);
