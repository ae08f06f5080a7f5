-- Rate plans, zones, member groups and packages (issue 16). A device with neither a
-- plan nor a zone with a plan keeps its flat `charge_mode`; nothing here changes how such
-- a device bills.

-- A plan's weekly grid is 336 half-hour rates (fen per minute, Monday 00:00 first) as a
-- comma-separated list: it is always read and written whole, and validated in Rust.
CREATE TABLE rate_plans (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    week       TEXT    NOT NULL,
    min_charge INTEGER NOT NULL DEFAULT 0 CHECK (min_charge >= 0),
    ctime      INTEGER NOT NULL,
    utime      INTEGER NOT NULL
);

-- A local date (YYYY-MM-DD in the venue's zone) with its own 48 rates (holidays).
CREATE TABLE rate_plan_days (
    plan_id INTEGER NOT NULL REFERENCES rate_plans (id) ON DELETE CASCADE,
    day     TEXT    NOT NULL,
    slots   TEXT    NOT NULL,
    PRIMARY KEY (plan_id, day)
);

CREATE TABLE zones (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT    NOT NULL UNIQUE,
    plan_id INTEGER REFERENCES rate_plans (id),
    ctime   INTEGER NOT NULL
);

-- A device's own plan wins over its zone's.
ALTER TABLE devices ADD COLUMN zone_id INTEGER REFERENCES zones (id);
ALTER TABLE devices ADD COLUMN plan_id INTEGER REFERENCES rate_plans (id);

CREATE TABLE member_groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    discount_pct INTEGER NOT NULL DEFAULT 0 CHECK (discount_pct BETWEEN 0 AND 100),
    plan_id      INTEGER REFERENCES rate_plans (id),
    ctime        INTEGER NOT NULL
);

-- At most one group per user.
ALTER TABLE users ADD COLUMN group_id INTEGER REFERENCES member_groups (id);

-- What operators sell. `zones`: comma-separated zone ids ('' = any device); `windows`:
-- comma-separated local `HH:MM-HH:MM` ('' = all day; a window may cross midnight).
CREATE TABLE packages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    minutes    INTEGER NOT NULL CHECK (minutes > 0),
    price      INTEGER NOT NULL CHECK (price >= 0),
    zones      TEXT    NOT NULL DEFAULT '',
    windows    TEXT    NOT NULL DEFAULT '',
    valid_days INTEGER NOT NULL CHECK (valid_days > 0),
    on_sale    INTEGER NOT NULL DEFAULT 1,
    ctime      INTEGER NOT NULL
);

-- What users hold. Time is kept in seconds so that any unit length divides it; the zones
-- and windows are copied from the package when bought (what was sold is what is held).
-- `transaction_id`: the WeChat Pay transaction that paid it (one package per transaction).
CREATE TABLE user_packages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    package_id     INTEGER NOT NULL REFERENCES packages (id),
    seconds_left   INTEGER NOT NULL CHECK (seconds_left >= 0),
    valid_from     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    zones          TEXT    NOT NULL DEFAULT '',
    windows        TEXT    NOT NULL DEFAULT '',
    source         TEXT    NOT NULL CHECK (source IN ('balance', 'wechat', 'operator')),
    transaction_id TEXT    UNIQUE,
    ctime          INTEGER NOT NULL
);
CREATE INDEX user_packages_user ON user_packages (user_id, expires_at);

-- The package time ledger, like the money ledger: deterministic ids
-- (`<session>:<unit>:pkg`, `<session>:<user package>:pkgback`, `pkg:<user package>`), so a
-- replay writes nothing twice; seconds_left = sum(seconds) per user package.
CREATE TABLE package_ledger (
    id              TEXT    PRIMARY KEY,
    user_package_id INTEGER NOT NULL REFERENCES user_packages (id),
    user_id         INTEGER NOT NULL REFERENCES users (id),
    seconds         INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('purchase', 'use', 'return')),
    session_id      INTEGER REFERENCES sessions (id),
    created_at      INTEGER NOT NULL
);
CREATE INDEX package_ledger_user ON package_ledger (user_id, created_at);

-- How each reserved unit of a priced session was paid: its real price and the fen
-- debited for it (unit 1's debit includes the minimum charge's top-up; a unit covered
-- by a package debits nothing and names the package). Written in the unit's own
-- transaction, so a restarted session refunds exactly.
CREATE TABLE session_units (
    session_id      INTEGER NOT NULL REFERENCES sessions (id),
    unit            INTEGER NOT NULL,
    price           INTEGER NOT NULL,
    debit           INTEGER NOT NULL,
    user_package_id INTEGER REFERENCES user_packages (id),
    PRIMARY KEY (session_id, unit)
);

-- Packages bought by WeChat Pay: settled once per transaction, like recharges.
CREATE TABLE package_orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no    TEXT    NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    package_id      INTEGER NOT NULL REFERENCES packages (id),
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid')),
    transaction_id  TEXT    UNIQUE,
    user_package_id INTEGER REFERENCES user_packages (id),
    ctime           INTEGER NOT NULL,
    utime           INTEGER NOT NULL
);
