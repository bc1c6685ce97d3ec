-- Organization API tokens: management credentials with roles. Secrets are
-- stored only as the hex SHA-256 of the whole token. `scope` and
-- `entity_id` name what the token was created for (its organization, a
-- workspace or a deployment); its roles are rows of api_token_roles,
-- one per entity.

CREATE TABLE api_tokens (
    id                    TEXT PRIMARY KEY NOT NULL,
    organization_id       TEXT NOT NULL REFERENCES organizations (id),
    name                  TEXT NOT NULL,
    description           TEXT NOT NULL,
    short_token           TEXT NOT NULL,
    secret_digest         TEXT NOT NULL UNIQUE,
    scope                 TEXT NOT NULL,
    entity_id             TEXT NOT NULL,
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
    last_rotated_at       INTEGER
);
CREATE INDEX api_tokens_by_organization ON api_tokens (organization_id, created_at, id);

-- entity_id is an organization, workspace or deployment id (entity_type
-- says which), so it has no foreign key. A role on a deployment that is
-- later deleted grants nothing.
CREATE TABLE api_token_roles (
    token_id     TEXT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    entity_type  TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    role         TEXT NOT NULL,
    PRIMARY KEY (token_id, entity_type, entity_id)
);
CREATE INDEX api_token_roles_by_entity ON api_token_roles (entity_type, entity_id, token_id);
