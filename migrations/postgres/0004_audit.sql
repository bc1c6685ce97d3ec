-- The audit trail: one row per change, written in the transaction that
-- makes the change (created_at: when it happened). organization_id is NULL for changes outside any
-- organization (the root credential).
CREATE TABLE audit_events (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id  TEXT COLLATE "C",
    created_at       BIGINT NOT NULL,
    actor_id         TEXT COLLATE "C" NOT NULL,
    actor_type       TEXT COLLATE "C" NOT NULL,
    actor_name       TEXT COLLATE "C",
    action           TEXT COLLATE "C" NOT NULL,
    target_type      TEXT COLLATE "C" NOT NULL,
    target_id        TEXT COLLATE "C" NOT NULL,
    request_id       TEXT COLLATE "C",
    source_ip        TEXT COLLATE "C"
);
CREATE INDEX audit_events_by_organization ON audit_events (organization_id, created_at, id);
