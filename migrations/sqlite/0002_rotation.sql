-- Rotation with a grace window: the secret a rotation replaced keeps
-- verifying until previous_valid_until (Unix seconds). Stored as a digest,
-- with when it was issued (for introspection's `iat`).
ALTER TABLE agent_tokens ADD COLUMN previous_digest TEXT;
ALTER TABLE agent_tokens ADD COLUMN previous_valid_until INTEGER;
ALTER TABLE agent_tokens ADD COLUMN previous_issued_at INTEGER;
CREATE UNIQUE INDEX agent_tokens_by_previous_digest
    ON agent_tokens (previous_digest) WHERE previous_digest IS NOT NULL;
