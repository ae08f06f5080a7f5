//! Upstream storage (issue 6): the open platform's access tokens with a fetch lease (one
//! fetcher across nodes), payment openids and profiles, the WeChat Pay side of recharge
//! orders (prepay id, reconciliation), and the durable outbox.

use kioskd_actors::ports::StoreError;
use sqlx::any::AnyRow;

use super::{Db, RowExt, WriteError, se};

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The token.
    pub token: String,
    /// When it runs out (unix ms).
    pub expires_at: i64,
}

/// A recharge order as payments see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RechargeOrder {
    /// The user.
    pub user_id: i64,
    /// Fen.
    pub amount: i64,
    /// `pending` or `paid`.
    pub status: String,
    /// `sandbox` or `wechatpay`.
    pub provider: String,
    /// WeChat Pay prepay id, once ordered.
    pub prepay_id: Option<String>,
    /// Created (unix ms).
    pub ctime: i64,
    /// Given up (unix ms).
    pub closed_at: Option<i64>,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxRow {
    /// Id.
    pub id: i64,
    /// `prize_notice`, `week_bind` or `flow_order`.
    pub kind: String,
    /// Caller's idempotency key.
    pub dedupe_key: Option<String>,
    /// The call's parameters (JSON text).
    pub payload: String,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Next attempt (pending) or end of the claim (sending), unix ms.
    pub next_attempt_at: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The platform's answer when it was accepted.
    pub result: Option<String>,
    /// Recorded (unix ms).
    pub created_at: i64,
    /// Accepted (unix ms).
    pub sent_at: Option<i64>,
}

/// What recording a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxAdded {
    /// The row's id (the existing row's, for a repeated dedupe key).
    pub id: i64,
    /// False when the dedupe key was seen before and nothing was added.
    pub fresh: bool,
}

/// A stored text enum checked against its known values: an unknown one is
/// [`StoreError::Corrupt`], never passed on.
fn known(what: &str, v: String, allowed: &[&str]) -> Result<String, StoreError> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(StoreError::corrupt(what, v))
    }
}

const OUTBOX_KINDS: &[&str] = &["prize_notice", "week_bind", "flow_order"];
const OUTBOX_STATUSES: &[&str] = &["pending", "sending", "sent", "failed"];
const RECHARGE_STATUSES: &[&str] = &["pending", "paid"];

const OUTBOX_COLS: &str = "id, kind, dedupe_key, payload, status, attempts, next_attempt_at, last_error, result, created_at, sent_at";

fn outbox_from_row(r: &AnyRow) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: r.col("id")?,
        kind: known("outbox.kind", r.col("kind")?, OUTBOX_KINDS)?,
        dedupe_key: r.col("dedupe_key")?,
        payload: r.col("payload")?,
        status: known("outbox.status", r.col("status")?, OUTBOX_STATUSES)?,
        attempts: r.col("attempts")?,
        next_attempt_at: r.col("next_attempt_at")?,
        last_error: r.col("last_error")?,
        result: r.col("result")?,
        created_at: r.col("created_at")?,
        sent_at: r.col("sent_at")?,
    })
}

/// A WeChat Pay order (recharge, postpaid order payment or package) the reconciler asks
/// about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidOrder {
    /// Our `out_trade_no`.
    pub out_trade_no: String,
    /// When it was created (unix ms).
    pub created_at: i64,
}

impl Db {
    // ---- tokens --------------------------------------------------------------------

    /// The stored token of `name`, if any was ever fetched.
    pub async fn token(&self, name: &str) -> Result<Option<StoredToken>, StoreError> {
        let row = sqlx::query("SELECT token, expires_at FROM upstream_tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            Ok(StoredToken {
                token: r.col("token")?,
                expires_at: r.col("expires_at")?,
            })
        })
        .transpose()
        .map(|t: Option<StoredToken>| t.filter(|t| !t.token.is_empty()))
    }

    /// Takes the right to fetch `name` until `now + lease_ms`; false while another
    /// owner's lease runs, and false while the stored token is still fresh (it expires
    /// after `now + margin_ms`): a node that read no token just before another stored
    /// one and released its lease must not fetch a second time.
    pub async fn token_lease(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
        margin_ms: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query("INSERT INTO upstream_tokens (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        let r = sqlx::query(
            "UPDATE upstream_tokens SET lease_until = $1, lease_owner = $2
             WHERE name = $3 AND (lease_until < $4 OR lease_owner = $2)
               AND (token = '' OR expires_at <= $5)",
        )
        .bind(now + lease_ms)
        .bind(owner)
        .bind(name)
        .bind(now)
        .bind(now + margin_ms)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores a fetched token and ends the lease.
    pub async fn token_store(
        &self,
        name: &str,
        token: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE upstream_tokens SET token = $1, expires_at = $2, fetched_at = $3, lease_until = 0, lease_owner = ''
             WHERE name = $4",
        )
        .bind(token)
        .bind(expires_at)
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// Ends `owner`'s lease without a token (the fetch failed).
    pub async fn token_release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE upstream_tokens SET lease_until = 0, lease_owner = '' WHERE name = $1 AND lease_owner = $2",
        )
        .bind(name)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// Marks `token` of `name` as dead (the platform rejected it) unless a newer one
    /// replaced it already.
    pub async fn token_invalidate(&self, name: &str, token: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE upstream_tokens SET expires_at = 0 WHERE name = $1 AND token = $2")
            .bind(name)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    // ---- users -----------------------------------------------------------------------

    /// Nickname and head image from the platform.
    pub async fn set_profile(
        &self,
        user_id: i64,
        nickname: &str,
        head_img_url: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET nickname = $1, head_img_url = $2, utime = $3 WHERE id = $4")
            .bind(nickname)
            .bind(head_img_url)
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// The user's openid under the merchant's appid, when it differs from the sign-in one.
    pub async fn pay_openid(&self, user_id: i64) -> Result<Option<String>, StoreError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT pay_openid FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(se)?;
        Ok(v.flatten().filter(|s| !s.is_empty()))
    }

    /// Stores the payment openid.
    pub async fn set_pay_openid(
        &self,
        user_id: i64,
        openid: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET pay_openid = $1, utime = $2 WHERE id = $3")
            .bind(openid)
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    // ---- WeChat Pay orders -------------------------------------------------------------

    /// A recharge order by its `out_trade_no`.
    pub async fn recharge_order(
        &self,
        out_trade_no: &str,
    ) -> Result<Option<RechargeOrder>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, amount, status, provider, prepay_id, ctime, closed_at FROM recharges WHERE out_trade_no = $1",
        )
        .bind(out_trade_no)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.map(|r| {
            Ok(RechargeOrder {
                user_id: r.col("user_id")?,
                amount: r.col("amount")?,
                status: known("recharges.status", r.col("status")?, RECHARGE_STATUSES)?,
                provider: r.col("provider")?,
                prepay_id: r.col("prepay_id")?,
                ctime: r.col("ctime")?,
                closed_at: r.col("closed_at")?,
            })
        })
        .transpose()
    }

    /// Records the prepay id WeChat Pay gave the order.
    pub async fn set_prepay_id(
        &self,
        out_trade_no: &str,
        prepay_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE recharges SET prepay_id = $1, utime = $2 WHERE out_trade_no = $3")
            .bind(prepay_id)
            .bind(now)
            .bind(out_trade_no)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Records what the payer paid (smaller than the amount with a coupon).
    pub async fn set_payer_total(
        &self,
        out_trade_no: &str,
        payer_total: i64,
    ) -> Result<(), StoreError> {
        // The order number names one table; the other matches nothing.
        for sql in [
            "UPDATE recharges SET payer_total = $1 WHERE out_trade_no = $2",
            "UPDATE package_orders SET payer_total = $1 WHERE out_trade_no = $2",
        ] {
            sqlx::query(sql)
                .bind(payer_total)
                .bind(out_trade_no)
                .execute(&self.pool)
                .await
                .map_err(se)?;
        }
        Ok(())
    }

    /// WeChat Pay orders still unpaid and open, created before `created_before` and not
    /// asked about since `checked_before`: what the reconciler queries (oldest first).
    pub async fn unpaid_wechat_orders(
        &self,
        created_before: i64,
        checked_before: i64,
        limit: i64,
    ) -> Result<Vec<UnpaidOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT out_trade_no, ctime FROM (
               SELECT out_trade_no, ctime FROM recharges
               WHERE status = 'pending' AND provider = 'wechatpay' AND closed_at IS NULL
                 AND ctime <= $1 AND (checked_at IS NULL OR checked_at <= $2)
               UNION ALL
               SELECT p.out_trade_no, p.ctime FROM order_payments p JOIN orders o ON o.id = p.order_id
               WHERE o.status = 'unpaid' AND p.closed_at IS NULL
                 AND p.ctime <= $1 AND (p.checked_at IS NULL OR p.checked_at <= $2)
               UNION ALL
               SELECT out_trade_no, ctime FROM package_orders
               WHERE status = 'pending' AND provider = 'wechatpay' AND closed_at IS NULL
                 AND ctime <= $1 AND (checked_at IS NULL OR checked_at <= $2)
             ) t
             ORDER BY ctime LIMIT $3",
        )
        .bind(created_before)
        .bind(checked_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(UnpaidOrder {
                    out_trade_no: r.col("out_trade_no")?,
                    created_at: r.col("ctime")?,
                })
            })
            .collect()
    }

    /// The reconciler asked about this order now.
    pub async fn mark_checked(&self, out_trade_no: &str, now: i64) -> Result<(), StoreError> {
        for sql in [
            "UPDATE recharges SET checked_at = $1 WHERE out_trade_no = $2",
            "UPDATE order_payments SET checked_at = $1 WHERE out_trade_no = $2",
            "UPDATE package_orders SET checked_at = $1 WHERE out_trade_no = $2",
        ] {
            sqlx::query(sql)
                .bind(now)
                .bind(out_trade_no)
                .execute(&self.pool)
                .await
                .map_err(se)?;
        }
        Ok(())
    }

    /// Gives up on an unpaid order.
    pub async fn mark_closed(&self, out_trade_no: &str, now: i64) -> Result<(), StoreError> {
        for sql in [
            "UPDATE recharges SET closed_at = $1, utime = $1 WHERE out_trade_no = $2 AND status = 'pending'",
            "UPDATE order_payments SET closed_at = $1 WHERE out_trade_no = $2 AND closed_at IS NULL",
            "UPDATE package_orders SET closed_at = $1, utime = $1 WHERE out_trade_no = $2 AND status = 'pending'",
        ] {
            sqlx::query(sql)
                .bind(now)
                .bind(out_trade_no)
                .execute(&self.pool)
                .await
                .map_err(se)?;
        }
        Ok(())
    }

    /// Records the WeChat Pay order made to pay a postpaid order (again: a new attempt
    /// reopens it for the reconciler).
    pub async fn add_order_payment(
        &self,
        out_trade_no: &str,
        order_id: &str,
        amount: i64,
        prepay_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO order_payments (out_trade_no, order_id, amount, prepay_id, ctime) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (out_trade_no) DO UPDATE SET prepay_id = $4, ctime = $5, checked_at = NULL, closed_at = NULL",
        )
        .bind(out_trade_no)
        .bind(order_id)
        .bind(amount)
        .bind(prepay_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    // ---- outbox --------------------------------------------------------------------

    /// Records a send. With a `dedupe_key` seen before, nothing is added and the existing
    /// row's id comes back with `false`.
    pub async fn outbox_add(
        &self,
        kind: &str,
        dedupe_key: Option<&str>,
        payload: &str,
        now: i64,
    ) -> Result<OutboxAdded, WriteError> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO outbox (kind, dedupe_key, payload, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(kind)
        .bind(dedupe_key)
        .bind(payload)
        .bind(now)
        .fetch_optional(&self.pool)
        .await.map_err(se)?;
        if let Some(id) = id {
            return Ok(OutboxAdded { id, fresh: true });
        }
        let id: i64 = sqlx::query_scalar("SELECT id FROM outbox WHERE dedupe_key = $1")
            .bind(dedupe_key)
            .fetch_one(&self.pool)
            .await
            .map_err(se)?;
        Ok(OutboxAdded { id, fresh: false })
    }

    /// Claims the next due send until `now + lease_ms` (a crashed sender's claim runs
    /// out and the row is due again) and counts the attempt.
    pub async fn outbox_claim(
        &self,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox SET status = 'sending', next_attempt_at = $1, attempts = attempts + 1
             WHERE id = (SELECT id FROM outbox WHERE status IN ('pending', 'sending') AND next_attempt_at <= $2
                         ORDER BY next_attempt_at, id LIMIT 1)
               AND status IN ('pending', 'sending') AND next_attempt_at <= $2
             RETURNING {OUTBOX_COLS}"
        )))
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(outbox_from_row).transpose()
    }

    /// The platform accepted the send.
    pub async fn outbox_sent(&self, id: i64, result: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', result = $1, sent_at = $2, last_error = NULL WHERE id = $3",
        )
        .bind(result)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// The attempt failed: try again at `next_attempt_at`, or give up (`failed`) when
    /// `next_attempt_at` is `None`.
    pub async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let (status, next) = match next_attempt_at {
            Some(t) => ("pending", t),
            None => ("failed", i64::MAX),
        };
        sqlx::query(
            "UPDATE outbox SET status = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4 AND status = 'sending'",
        )
        .bind(status)
        .bind(next)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// Outbox rows, newest first; `status` filters (empty: pending, sending and failed,
    /// what operators need to see).
    pub async fn outbox_list(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = match status {
            Some(s) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {OUTBOX_COLS} FROM outbox WHERE status = $1 ORDER BY id DESC LIMIT $2"
            )))
            .bind(s.to_string())
            .bind(limit),
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {OUTBOX_COLS} FROM outbox WHERE status <> 'sent' ORDER BY id DESC LIMIT $1"
            )))
            .bind(limit),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// An operator asks for a failed send to be tried again: due now, attempts from 0.
    /// False when the row is not `failed`.
    pub async fn outbox_retry(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(r.rows_affected() == 1)
    }

    /// Sends not yet accepted (pending or in flight).
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')")
            .fetch_one(&self.pool)
            .await
            .map_err(se)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interleaving `two_nodes_on_one_database_fetch_the_token_once` hit once: node B
    /// read no token, node A fetched, stored it and released its lease, then B asked for
    /// the lease. B must get none while the stored token is fresh; it gets one again
    /// once the token is within the margin of its expiry, or was rejected.
    #[tokio::test]
    async fn no_fetch_lease_while_a_fresh_token_is_stored() {
        let (_dir, db) = crate::store::scratch_db().await;
        let (lease, margin) = (5_000, 60_000);
        assert!(
            db.token_lease("open189", "a", 1_000, lease, margin)
                .await
                .unwrap()
        );
        assert!(
            !db.token_lease("open189", "b", 1_000, lease, margin)
                .await
                .unwrap()
        );
        db.token_store("open189", "T1", 1_000 + 7_200_000, 1_200)
            .await
            .unwrap();
        assert!(
            !db.token_lease("open189", "b", 1_300, lease, margin)
                .await
                .unwrap(),
            "a fresh token is stored: no second fetch"
        );
        let late = 1_000 + 7_200_000 - margin;
        assert!(
            db.token_lease("open189", "b", late, lease, margin)
                .await
                .unwrap()
        );
        db.token_store("open189", "T2", late + 7_200_000, late)
            .await
            .unwrap();
        db.token_invalidate("open189", "T2").await.unwrap();
        assert!(
            db.token_lease("open189", "a", late + 10, lease, margin)
                .await
                .unwrap(),
            "a rejected token is fetched again"
        );
    }

    /// Unknown stored outbox kinds and statuses and recharge statuses are errors naming
    /// the column and the value, not strings passed on.
    #[tokio::test]
    async fn unknown_stored_enums_are_corrupt() {
        let (_dir, db) = crate::store::scratch_db().await;
        let added = db
            .outbox_add("week_bind", Some("k1"), "{}", 1)
            .await
            .unwrap();
        assert!(added.fresh);
        let again = db
            .outbox_add("week_bind", Some("k1"), "{}", 2)
            .await
            .unwrap();
        assert_eq!(
            again,
            OutboxAdded {
                id: added.id,
                fresh: false
            }
        );
        assert_eq!(db.outbox_list(None, 10).await.unwrap()[0].kind, "week_bind");
        let user = db.ensure_user("o1", "n", "", 1).await.unwrap();
        db.create_recharge(user.id, 100, "wechatpay", "r1", 1)
            .await
            .unwrap();
        assert_eq!(
            db.recharge_order("r1").await.unwrap().unwrap().status,
            "pending"
        );
        // The columns have CHECK constraints; SQLite lets a test bypass them (one
        // connection, so the pragma holds for the updates).
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE outbox SET kind = 'fax'")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.outbox_list(None, 10).await.unwrap_err(),
            StoreError::corrupt("outbox.kind", "fax")
        );
        sqlx::query("UPDATE outbox SET kind = 'week_bind', status = 'lost'")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.outbox_list(Some("lost"), 10).await.unwrap_err(),
            StoreError::corrupt("outbox.status", "lost")
        );
        sqlx::query("UPDATE recharges SET status = 'refunded'")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.recharge_order("r1").await.unwrap_err(),
            StoreError::corrupt("recharges.status", "refunded")
        );
    }
}
