-- Allowed IP address ranges, PostgreSQL flavour: the same table, columns and
-- indexes as migrations/sqlite/0006 (text COLLATE "C", times BIGINT).
-- An organization's allowlist: when it has at least one range, its
-- management API answers only clients inside one of them (the root
-- credential excepted). Ranges are stored normalised (host bits zero); a
-- range appears at most once per organization.
CREATE TABLE allowed_ip_ranges (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    organization_id   TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    ip_address_range  TEXT COLLATE "C" NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    created_by_id     TEXT COLLATE "C" NOT NULL,
    created_by_type   TEXT COLLATE "C" NOT NULL,
    created_by_name   TEXT COLLATE "C",
    updated_by_id     TEXT COLLATE "C" NOT NULL,
    updated_by_type   TEXT COLLATE "C" NOT NULL,
    updated_by_name   TEXT COLLATE "C",
    UNIQUE (organization_id, ip_address_range)
);
CREATE INDEX allowed_ip_ranges_by_organization
    ON allowed_ip_ranges (organization_id, created_at, id);

-- Per agent token: the networks it may be presented from, normalised and
-- separated by single spaces; NULL when the token is not bound.
ALTER TABLE agent_tokens ADD COLUMN allowed_ip_ranges TEXT COLLATE "C";
