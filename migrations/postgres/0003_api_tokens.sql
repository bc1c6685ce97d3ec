-- Organization API tokens, PostgreSQL flavour: the same tables, columns and
-- indexes as migrations/sqlite/0003 (text COLLATE "C", times BIGINT).
-- Management credentials with roles. Secrets are stored only as the hex
-- SHA-256 of the whole token. `scope` and `entity_id` name what the token
-- was created for (its organization, a workspace or a deployment); its
-- roles are rows of api_token_roles, one per entity.

CREATE TABLE api_tokens (
    id                    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id       TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    name                  TEXT COLLATE "C" NOT NULL,
    description           TEXT COLLATE "C" NOT NULL,
    short_token           TEXT COLLATE "C" NOT NULL,
    secret_digest         TEXT COLLATE "C" NOT NULL UNIQUE,
    scope                 TEXT COLLATE "C" NOT NULL,
    entity_id             TEXT COLLATE "C" NOT NULL,
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
    last_rotated_at       BIGINT
);
CREATE INDEX api_tokens_by_organization ON api_tokens (organization_id, created_at, id);

-- entity_id is an organization, workspace or deployment id (entity_type
-- says which), so it has no foreign key. A role on a deployment that is
-- later deleted grants nothing.
CREATE TABLE api_token_roles (
    token_id     TEXT COLLATE "C" NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    entity_type  TEXT COLLATE "C" NOT NULL,
    entity_id    TEXT COLLATE "C" NOT NULL,
    role         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (token_id, entity_type, entity_id)
);
CREATE INDEX api_token_roles_by_entity ON api_token_roles (entity_type, entity_id, token_id);
