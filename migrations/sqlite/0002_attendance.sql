-- Attendance terminals (issue 5, SPEC §8). Times are unix milliseconds (UTC) unless a
-- column says it is a terminal's local wall-clock string. Booleans are 0/1 integers.

-- Registered terminals. `token_hash` is the SHA-256 (hex) of the bridge token, which one
-- bridge shares between all its terminals (hence not unique).
CREATE TABLE terminals (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    sn             TEXT    NOT NULL UNIQUE,
    token_hash     TEXT    NOT NULL,
    name           TEXT    NOT NULL DEFAULT '',
    timezone       TEXT    NOT NULL,
    last_seen_at   INTEGER,
    -- 'bridge' or 'iclock': how it was last heard
    last_seen_via  TEXT,
    -- roster version last delivered through the bridge (0 = never)
    roster_version INTEGER NOT NULL DEFAULT 0,
    -- roster version turned into native USERINFO commands (kept apart, so a native
    -- terminal sharing a bridge's token still gets its commands)
    native_roster_version INTEGER NOT NULL DEFAULT 0,
    -- iclock per-table resume markers, echoed in the handshake
    attlog_stamp   TEXT,
    operlog_stamp  TEXT,
    -- the last iclock INFO (getrequest) as text
    info           TEXT,
    -- the iclock handshake's language (83 = Chinese: names travel as GBK)
    language       TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX terminals_token ON terminals (token_hash);

-- One roster version for all staff: bumped on every staff change and carried by each
-- changed row, so "what changed since version v" is one indexed query and `timeStamp`
-- (compared for equality by bridges) changes with every change.
CREATE TABLE roster (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO roster (id, version) VALUES (1, 0);

CREATE TABLE staff (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    pin           TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    pri           INTEGER NOT NULL,
    passwd        TEXT    NOT NULL DEFAULT '',
    card          TEXT    NOT NULL DEFAULT '',
    grp           TEXT    NOT NULL DEFAULT '1',
    tz            TEXT    NOT NULL DEFAULT '0000000000000000',
    -- 1: on every terminal; 0: only those in staff_terminals
    all_terminals INTEGER NOT NULL DEFAULT 1,
    -- tombstone: kept so deletions reach terminals that were offline
    deleted       INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX staff_version ON staff (version);

CREATE TABLE staff_terminals (
    pin TEXT NOT NULL,
    sn  TEXT NOT NULL,
    PRIMARY KEY (pin, sn)
);

-- Punches, stored once per (terminal, PIN, device-local time) however often re-sent.
CREATE TABLE punches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT    NOT NULL,
    pin         TEXT    NOT NULL,
    -- as the terminal reported it: YYYY-MM-DD HH:MM:SS, its own wall clock
    local_time  TEXT    NOT NULL,
    -- the UTC instant of local_time in the terminal's zone
    at          INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    verify      INTEGER NOT NULL,
    workcode    TEXT    NOT NULL DEFAULT '',
    reserved1   TEXT    NOT NULL DEFAULT '',
    reserved2   TEXT    NOT NULL DEFAULT '',
    -- bridge-new, bridge-sync, iclock
    source      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (sn, pin, local_time)
);
CREATE INDEX punches_at ON punches (at);
CREATE INDEX punches_pin_at ON punches (pin, at);

-- Lines that could not be read, kept with the reason (never failing their batch).
CREATE TABLE punch_quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    raw         TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (sn, raw)
);

-- The durable command queue. `wire_id` is the id of the latest attempt on the native
-- protocol (`<id>a<attempt>`); bridges never acknowledge, so their commands stay `sent`.
CREATE TABLE terminal_commands (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    -- 'bridge' (getCommand poll) or 'native' (iclock getrequest poll)
    channel     TEXT    NOT NULL CHECK (channel IN ('bridge', 'native')),
    args        TEXT    NOT NULL DEFAULT '{}',
    state       TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'acked', 'failed')),
    destructive INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    wire_id     TEXT,
    return_code INTEGER,
    result      TEXT,
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    acked_at    INTEGER
);
CREATE INDEX terminal_commands_sn_state ON terminal_commands (sn, channel, state, id);

-- Error logs: bridge uploads (no SN on the request; per log maybe), CMD_FAILED results.
CREATE TABLE terminal_errors (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT,
    kind        TEXT    NOT NULL,
    content     TEXT    NOT NULL,
    command_id  INTEGER,
    device_time INTEGER,
    received_at INTEGER NOT NULL
);

-- Users a native terminal reported (OPERLOG USER lines): observed state, never the
-- master roster.
CREATE TABLE terminal_users_seen (
    sn      TEXT    NOT NULL,
    pin     TEXT    NOT NULL,
    name    TEXT    NOT NULL DEFAULT '',
    pri     TEXT    NOT NULL DEFAULT '',
    card    TEXT    NOT NULL DEFAULT '',
    raw     TEXT    NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (sn, pin)
);
