-- Allowed IP address ranges (issue 14). An organization's allowlist: when it
-- has at least one range, its management API answers only clients inside
-- one of them (the root credential excepted). Ranges are stored normalised
-- (`ipnet`'s canonical text, host bits zero, e.g. `10.0.0.0/8`,
-- `2001:db8::/32`); a range appears at most once per organization.
CREATE TABLE allowed_ip_ranges (
    id                TEXT PRIMARY KEY NOT NULL,
    organization_id   TEXT NOT NULL REFERENCES organizations (id),
    ip_address_range  TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    created_by_id     TEXT NOT NULL,
    created_by_type   TEXT NOT NULL,
    created_by_name   TEXT,
    updated_by_id     TEXT NOT NULL,
    updated_by_type   TEXT NOT NULL,
    updated_by_name   TEXT,
    UNIQUE (organization_id, ip_address_range)
);
CREATE INDEX allowed_ip_ranges_by_organization
    ON allowed_ip_ranges (organization_id, created_at, id);

-- Per agent token: the networks it may be presented from, normalised and
-- separated by single spaces; NULL when the token is not bound.
ALTER TABLE agent_tokens ADD COLUMN allowed_ip_ranges TEXT;
