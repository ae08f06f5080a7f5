-- Hardening of the legacy paths (issue 13). Times are unix milliseconds.

-- Send quotas decided by one conditional upsert each (captcha sends per mobile and per
-- client address): the minimum gap, and fixed hourly and daily windows.
CREATE TABLE send_quota (
    key        TEXT   PRIMARY KEY,
    last_at    BIGINT NOT NULL,
    hour_start BIGINT NOT NULL,
    hour_count BIGINT NOT NULL,
    day_start  BIGINT NOT NULL,
    day_count  BIGINT NOT NULL
);

-- Maintainer sign-in: a timed backoff after too many failures (lock_ms doubles per
-- failure up to a cap) instead of a permanent lock.
ALTER TABLE maintainers ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE maintainers ADD COLUMN lock_ms BIGINT NOT NULL DEFAULT 0;

-- Devices with a secret: may their kiosks still use the unsigned legacy calls that
-- reveal or use the session token? NULL = the default (refuse when a secret is set).
ALTER TABLE devices ADD COLUMN legacy_unsigned TEXT CHECK (legacy_unsigned IN ('allow', 'refuse'));

-- Attendance terminals: 'native' (iclock PUSH) or 'bridge' (behind a Pi bridge; refused
-- on /iclock); the comm key a native terminal must present in its handshake; the
-- address that last presented it (user secrets go only there).
ALTER TABLE terminals ADD COLUMN kind TEXT NOT NULL DEFAULT 'native' CHECK (kind IN ('native', 'bridge'));
ALTER TABLE terminals ADD COLUMN comm_key TEXT;
ALTER TABLE terminals ADD COLUMN proven_addr TEXT;
UPDATE terminals SET kind = 'bridge' WHERE last_seen_via = 'bridge';
