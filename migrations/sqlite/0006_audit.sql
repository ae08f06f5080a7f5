-- Every operator action (a state-changing /ops/* request): who, what, when, why, and how
-- it ended. Written by the ops middleware after the action; read by GET /ops/audit.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    operator   TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT,
    reason     TEXT,
    body       TEXT,
    status     INTEGER NOT NULL,
    source     TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
