-- The audit trail: one row per change, written in the transaction that
-- makes the change (created_at: when it happened). organization_id is NULL for changes outside any
-- organization (the root credential).
CREATE TABLE audit_events (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT,
    created_at       INTEGER NOT NULL,
    actor_id         TEXT NOT NULL,
    actor_type       TEXT NOT NULL,
    actor_name       TEXT,
    action           TEXT NOT NULL,
    target_type      TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    request_id       TEXT,
    source_ip        TEXT
);
CREATE INDEX audit_events_by_organization ON audit_events (organization_id, created_at, id);
