-- Packages bought by WeChat Pay (issue 16 item 3): the WeChat Pay side of a package
-- order, exactly as 0005 gave recharges theirs — the provider ('sandbox' settles at once,
-- 'wechatpay' only by a verified notification or the reconciler's query), the prepay id,
-- what the payer paid, when the reconciler last asked and when the order was given up.
ALTER TABLE package_orders ADD COLUMN provider TEXT NOT NULL DEFAULT 'wechatpay' CHECK (provider IN ('wechatpay', 'sandbox'));
ALTER TABLE package_orders ADD COLUMN prepay_id TEXT;
ALTER TABLE package_orders ADD COLUMN payer_total INTEGER;
ALTER TABLE package_orders ADD COLUMN checked_at INTEGER;
ALTER TABLE package_orders ADD COLUMN closed_at INTEGER;
CREATE INDEX package_orders_pending ON package_orders (status, provider, ctime);
CREATE INDEX package_orders_user ON package_orders (user_id, ctime);
