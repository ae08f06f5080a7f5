-- WeChat Pay orders created to pay a postpaid order (out_trade_no 'O' + the order id
-- without its leading 'o'), so that the reconciler can settle one whose notification
-- never came, exactly as it does for recharges.
CREATE TABLE order_payments (
    out_trade_no TEXT    PRIMARY KEY,
    order_id     TEXT    NOT NULL REFERENCES orders (id),
    amount       BIGINT NOT NULL,
    prepay_id    TEXT,
    ctime        BIGINT NOT NULL,
    checked_at   BIGINT,
    closed_at    BIGINT
);
CREATE INDEX order_payments_open ON order_payments (ctime) WHERE closed_at IS NULL;
