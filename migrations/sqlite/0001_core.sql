-- kioskd core schema (SQLite). Times are unix milliseconds (UTC); money is integer fen.
-- The database enforces the money invariants itself (SPEC §3), so no bug above it can
-- break them: one active session per user and per device, one ledger row per
-- deterministic id, no negative balance, balance = total - used.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    openid          TEXT    NOT NULL UNIQUE,
    nickname        TEXT    NOT NULL DEFAULT '',
    head_img_url    TEXT    NOT NULL DEFAULT '',
    mobile          TEXT    UNIQUE,
    total_account   INTEGER NOT NULL DEFAULT 0,
    used_account    INTEGER NOT NULL DEFAULT 0,
    balance_account INTEGER NOT NULL DEFAULT 0,
    -- 0 active, 1 disabled, 2 deleted
    state           INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 2)),
    ctime           INTEGER NOT NULL,
    utime           INTEGER NOT NULL,
    CHECK (balance_account >= 0),
    CHECK (balance_account = total_account - used_account)
);

CREATE TABLE devices (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    code         TEXT    NOT NULL UNIQUE,
    client_id    TEXT    UNIQUE,
    name         TEXT    NOT NULL,
    province     TEXT    NOT NULL DEFAULT '',
    city         TEXT    NOT NULL DEFAULT '',
    area         TEXT    NOT NULL DEFAULT '',
    location     TEXT    NOT NULL DEFAULT '',
    charge_mode  INTEGER NOT NULL CHECK (charge_mode >= 0),
    billing_mode TEXT    NOT NULL CHECK (billing_mode IN ('prepaid', 'postpaid')),
    -- persisted part of the status; busy is derived from sessions
    status       TEXT    NOT NULL DEFAULT 'free' CHECK (status IN ('free', 'lock', 'maintain')),
    maintainer   TEXT,
    updating     INTEGER NOT NULL DEFAULT 0,
    secret       TEXT,
    last_seen_at INTEGER,
    ctime        INTEGER NOT NULL,
    utime        INTEGER NOT NULL
);

CREATE TABLE sessions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    token          TEXT    NOT NULL UNIQUE,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    device_id      INTEGER NOT NULL REFERENCES devices (id),
    charge_mode    INTEGER NOT NULL,
    billing_mode   TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    reserved_units INTEGER NOT NULL DEFAULT 0,
    last_heard_at  INTEGER NOT NULL,
    ended_at       INTEGER,
    end_reason     TEXT,
    billed_ms      INTEGER NOT NULL DEFAULT 0,
    cost_money     INTEGER NOT NULL DEFAULT 0,
    utime          INTEGER NOT NULL
);
CREATE UNIQUE INDEX sessions_one_active_per_user ON sessions (user_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX sessions_one_active_per_device ON sessions (device_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_user_started ON sessions (user_id, started_at);

-- Every money movement. Ids are deterministic so a replay inserts nothing:
-- '<session>:<unit>' debits, '<session>:refund', 'recharge:<transaction_id>', 'adjust:<uuid>'.
CREATE TABLE ledger (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    amount     INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('recharge', 'debit', 'refund', 'adjust')),
    session_id INTEGER REFERENCES sessions (id),
    reason     TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX ledger_user ON ledger (user_id, created_at);

CREATE TABLE recharges (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no   TEXT    NOT NULL UNIQUE,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    provider       TEXT    NOT NULL,
    status         TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid')),
    transaction_id TEXT    UNIQUE,
    pay_time       INTEGER,
    ctime          INTEGER NOT NULL,
    utime          INTEGER NOT NULL
);
CREATE INDEX recharges_user ON recharges (user_id, ctime);

CREATE TABLE maintainers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL UNIQUE,
    password_hash   TEXT    NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    ctime           INTEGER NOT NULL
);

CREATE TABLE games (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT    NOT NULL,
    version TEXT    NOT NULL,
    url     TEXT    NOT NULL,
    md5     TEXT    NOT NULL,
    ctime   INTEGER NOT NULL,
    utime   INTEGER NOT NULL
);

CREATE TABLE device_games (
    device_id       INTEGER NOT NULL REFERENCES devices (id),
    game_id         INTEGER NOT NULL REFERENCES games (id),
    current_version TEXT,
    PRIMARY KEY (device_id, game_id)
);

CREATE TABLE captchas (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    mobile     TEXT    NOT NULL,
    code_hash  TEXT    NOT NULL,
    client     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX captchas_mobile ON captchas (mobile, created_at);
CREATE INDEX captchas_client ON captchas (client, created_at);
