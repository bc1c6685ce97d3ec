-- agentkey schema, SQLite flavour. Times are Unix seconds (INTEGER);
-- secrets are stored only as the hex SHA-256 of the whole token.

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX workspaces_by_organization ON workspaces (organization_id, created_at, id);

CREATE TABLE deployments (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES organizations (id),
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deployments_by_organization ON deployments (organization_id, created_at, id);

CREATE TABLE agent_tokens (
    id                    TEXT PRIMARY KEY NOT NULL,
    organization_id       TEXT NOT NULL REFERENCES organizations (id),
    deployment_id         TEXT NOT NULL REFERENCES deployments (id),
    name                  TEXT NOT NULL,
    description           TEXT NOT NULL,
    short_token           TEXT NOT NULL,
    secret_digest         TEXT NOT NULL UNIQUE,
    role                  TEXT NOT NULL,
    expiry_period_in_days INTEGER,
    start_at              INTEGER NOT NULL,
    end_at                INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    created_by_id         TEXT NOT NULL,
    created_by_type       TEXT NOT NULL,
    created_by_name       TEXT,
    updated_by_id         TEXT NOT NULL,
    updated_by_type       TEXT NOT NULL,
    updated_by_name       TEXT,
    last_used_at          INTEGER,
    last_rotated_at       INTEGER
);
CREATE INDEX agent_tokens_by_deployment ON agent_tokens (deployment_id, created_at, id);

-- At most one row: the generated root credential, when none is configured.
CREATE TABLE root_credential (
    singleton      INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    id             TEXT NOT NULL,
    secret_digest  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
