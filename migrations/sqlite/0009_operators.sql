-- Operators are people (issue 12): each signs in with a password (argon2id PHC string),
-- has one role, and may be limited to some sites (device locations). The audit log
-- names them; the shared ops token remains for automation and is audited as "service".
CREATE TABLE operators (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL UNIQUE,
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'staff', 'viewer')),
    -- JSON array of site names (device locations); empty array: every site.
    sites           TEXT    NOT NULL DEFAULT '[]',
    disabled        INTEGER NOT NULL DEFAULT 0,
    -- Consecutive failed sign-ins, and until when (unix ms) sign-in is refused: a timed
    -- backoff, never a permanent lock a stranger could cause.
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER,
    created_at      INTEGER NOT NULL
);

-- Console sessions (kind 'session', from the sign-in cookie) and personal API tokens
-- (kind 'api', for kioskd ops). Only a SHA-256 of the secret is stored.
CREATE TABLE operator_tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    operator_id     INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('session', 'api')),
    token_hash      TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    -- Unix ms; NULL: does not expire (API tokens until revoked).
    expires_at      INTEGER,
    last_used_at    INTEGER
);
CREATE INDEX operator_tokens_operator ON operator_tokens (operator_id, kind);
