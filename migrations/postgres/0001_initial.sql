-- agentkey schema, PostgreSQL flavour: the same tables, columns and indexes
-- as migrations/sqlite. Times are Unix seconds (BIGINT); secrets are stored
-- only as the hex SHA-256 of the whole token.
--
-- Every text column is COLLATE "C": comparisons and ORDER BY then go by
-- bytes, exactly as SQLite compares TEXT, whatever the database's default
-- collation. Both backends list in the same order.

CREATE TABLE organizations (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id  TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    name             TEXT COLLATE "C" NOT NULL,
    description      TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX workspaces_by_organization ON workspaces (organization_id, created_at, id);

CREATE TABLE deployments (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id  TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    workspace_id     TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    name             TEXT COLLATE "C" NOT NULL,
    description      TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX deployments_by_organization ON deployments (organization_id, created_at, id);

CREATE TABLE agent_tokens (
    id                    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id       TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    deployment_id         TEXT COLLATE "C" NOT NULL REFERENCES deployments (id),
    name                  TEXT COLLATE "C" NOT NULL,
    description           TEXT COLLATE "C" NOT NULL,
    short_token           TEXT COLLATE "C" NOT NULL,
    secret_digest         TEXT COLLATE "C" NOT NULL UNIQUE,
    role                  TEXT COLLATE "C" NOT NULL,
    expiry_period_in_days BIGINT,
    start_at              BIGINT NOT NULL,
    end_at                BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    created_by_id         TEXT COLLATE "C" NOT NULL,
    created_by_type       TEXT COLLATE "C" NOT NULL,
    created_by_name       TEXT COLLATE "C",
    updated_by_id         TEXT COLLATE "C" NOT NULL,
    updated_by_type       TEXT COLLATE "C" NOT NULL,
    updated_by_name       TEXT COLLATE "C",
    last_used_at          BIGINT,
    last_rotated_at       BIGINT
);
CREATE INDEX agent_tokens_by_deployment ON agent_tokens (deployment_id, created_at, id);

-- At most one row: the generated root credential, when none is configured.
CREATE TABLE root_credential (
    singleton      SMALLINT PRIMARY KEY NOT NULL CHECK (singleton = 1),
    id             TEXT COLLATE "C" NOT NULL,
    secret_digest  TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL
);
