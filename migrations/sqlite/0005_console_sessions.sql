-- Console sessions: the browser holds a random session id in a cookie; only
-- its SHA-256 digest is stored. A session names the credential that signed
-- in by that credential's digest (the same digest its own table keeps), so
-- every request re-checks the credential: deleted, rotated or expired ends
-- the session.
CREATE TABLE console_sessions (
    id_digest          TEXT PRIMARY KEY NOT NULL,
    credential_kind    TEXT NOT NULL,
    credential_digest  TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    last_seen_at       INTEGER NOT NULL
);
CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen_at);

-- Forms that reveal a secret carry a one-time nonce; a nonce used once is
-- kept here so a reload or a resubmission never creates (or shows) twice.
CREATE TABLE console_form_nonces (
    session_digest  TEXT NOT NULL,
    nonce_digest    TEXT NOT NULL,
    used_at         INTEGER NOT NULL,
    PRIMARY KEY (session_digest, nonce_digest)
);
CREATE INDEX console_form_nonces_by_used_at ON console_form_nonces (used_at);
