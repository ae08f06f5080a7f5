-- Upstreams (issue 6): the telecom open platform's access tokens, kept here so restarts
-- and other nodes reuse them (the platform's daily fetch quota is small); the WeChat Pay
-- side of recharge orders; payment openids; the durable outbox of upstream sends.

-- One row per token kind ('open189', 'mp', 'mp_ticket'). lease_until/lease_owner make
-- one node at a time the fetcher; the others wait for its result.
CREATE TABLE upstream_tokens (
    name        TEXT    PRIMARY KEY,
    token       TEXT    NOT NULL DEFAULT '',
    expires_at  INTEGER NOT NULL DEFAULT 0,
    fetched_at  INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT    NOT NULL DEFAULT ''
);

-- The openid under wechatpay.appid when it differs from the sign-in openid.
ALTER TABLE users ADD COLUMN pay_openid TEXT;

-- WeChat Pay state of an order: the prepay id, what the payer paid (coupons make it
-- smaller), when the reconciler last asked, and when it was given up (closed).
ALTER TABLE recharges ADD COLUMN prepay_id TEXT;
ALTER TABLE recharges ADD COLUMN payer_total INTEGER;
ALTER TABLE recharges ADD COLUMN checked_at INTEGER;
ALTER TABLE recharges ADD COLUMN closed_at INTEGER;
CREATE INDEX recharges_pending ON recharges (status, provider, ctime);

-- Sends to the open platform that must happen once: recorded first, then sent by the
-- worker. status: pending (next_attempt_at says when), sending (claimed until
-- next_attempt_at), sent, failed. dedupe_key makes a re-submitted event one row.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ('prize_notice', 'week_bind', 'flow_order')),
    dedupe_key      TEXT    UNIQUE,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    result          TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
