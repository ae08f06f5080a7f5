-- Postpaid orders (SPEC §3, dialect B). A postpaid session reserves nothing; its end
-- creates the order for its cost in the same transaction (paid at once when the cost is
-- 0). Paying it writes two ledger rows in one transaction — the payment in,
-- 'order:<id>' (+amount, kind 'recharge'), and the charge out, 'order:<id>:debit'
-- (-amount, kind 'debit', with the session) — so the balance is untouched while
-- total_account and used_account both grow, and a repeated payment inserts nothing.
-- A user with an unpaid order starts no session (orders_unpaid answers that).
CREATE TABLE orders (
    id             TEXT    PRIMARY KEY,
    session_id     BIGINT  NOT NULL UNIQUE REFERENCES sessions (id),
    user_id        BIGINT  NOT NULL REFERENCES users (id),
    device_id      BIGINT  NOT NULL REFERENCES devices (id),
    amount         BIGINT  NOT NULL CHECK (amount >= 0),
    status         TEXT    NOT NULL CHECK (status IN ('unpaid', 'paid')),
    provider       TEXT,
    transaction_id TEXT    UNIQUE,
    pay_time       BIGINT,
    ctime          BIGINT  NOT NULL,
    utime          BIGINT  NOT NULL
);
CREATE INDEX orders_unpaid ON orders (user_id) WHERE status = 'unpaid';
CREATE INDEX orders_user ON orders (user_id, ctime);
-- status_client answers for a device's last session.
CREATE INDEX sessions_device_started ON sessions (device_id, started_at);
