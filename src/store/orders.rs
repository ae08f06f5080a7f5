//! Postpaid orders (SPEC §3, §7): what a dialect-B session's end left to pay, how it is
//! paid (once, whoever calls), and what the kiosk's `/rest/*` polls read about a device's
//! last session. Orders are created by `end_session` (in `mod.rs`), in the same
//! transaction as the session's end.

use sqlx::any::AnyRow;

use super::{Db, Page, RowExt, se};
use kioskd_actors::ports::{StoreError, StoreResult};

/// A postpaid order with its session and device.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    /// Order id (URL-safe).
    pub id: String,
    /// The session it bills.
    pub session_id: i64,
    /// Who owes it.
    pub user_id: i64,
    /// The device.
    pub device_id: i64,
    /// The device's code.
    pub device_code: String,
    /// The device's dialect-B client id.
    pub client_id: Option<String>,
    /// Fen due.
    pub amount: i64,
    /// Paid (or free).
    pub paid: bool,
    /// Session start (unix ms).
    pub started_at: i64,
    /// Session end (unix ms).
    pub ended_at: i64,
    /// Billed milliseconds.
    pub billed_ms: i64,
    /// Fen per unit.
    pub charge_mode: i64,
    /// The payment's transaction id.
    pub transaction_id: Option<String>,
    /// When it was paid (unix ms).
    pub pay_time: Option<i64>,
}

/// A device's most recent session (running or ended) and its order, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSession {
    /// Session id.
    pub session_id: i64,
    /// The user.
    pub user_id: i64,
    /// Start (unix ms).
    pub started_at: i64,
    /// End (unix ms), `None` while running.
    pub ended_at: Option<i64>,
    /// Billed milliseconds.
    pub billed_ms: i64,
    /// Final cost (fen).
    pub cost_money: i64,
    /// Fen per unit.
    pub charge_mode: i64,
    /// The order of a postpaid session.
    pub order: Option<OrderRef>,
}

/// An order's id and whether it is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRef {
    /// Order id.
    pub id: String,
    /// Paid (or free).
    pub paid: bool,
}

/// A stored order status: paid or not. An unknown value is [`StoreError::Corrupt`],
/// never "unpaid".
fn order_paid(status: &str) -> Result<bool, StoreError> {
    match status {
        "paid" => Ok(true),
        "unpaid" => Ok(false),
        _ => Err(StoreError::corrupt("orders.status", status)),
    }
}

/// The outcome of paying an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSettle {
    /// Paid now.
    Paid {
        /// Who paid.
        user_id: i64,
    },
    /// This transaction paid it before (or it was free): nothing changed.
    AlreadyPaid {
        /// The user.
        user_id: i64,
    },
    /// Another transaction paid it: nothing changed.
    AlreadyPaidOtherwise,
    /// No such order.
    UnknownOrder,
    /// The amount does not match the order: nothing changed.
    AmountMismatch,
}

const ORDER_SELECT: &str =
    "SELECT o.id AS id, o.session_id AS session_id, o.user_id AS user_id, o.device_id AS device_id,
    d.code AS code, d.client_id AS client_id, o.amount AS amount, o.status AS status,
    s.started_at AS started_at, s.ended_at AS ended_at, s.billed_ms AS billed_ms,
    s.charge_mode AS charge_mode, o.transaction_id AS transaction_id, o.pay_time AS pay_time
    FROM orders o JOIN sessions s ON s.id = o.session_id JOIN devices d ON d.id = o.device_id";

fn order_from_row(r: &AnyRow) -> Result<OrderRow, StoreError> {
    let status: String = r.col("status")?;
    Ok(OrderRow {
        id: r.col("id")?,
        session_id: r.col("session_id")?,
        user_id: r.col("user_id")?,
        device_id: r.col("device_id")?,
        device_code: r.col("code")?,
        client_id: r.col("client_id")?,
        amount: r.col("amount")?,
        paid: order_paid(&status)?,
        started_at: r.col("started_at")?,
        ended_at: r.col::<Option<i64>>("ended_at")?.unwrap_or(0),
        billed_ms: r.col("billed_ms")?,
        charge_mode: r.col("charge_mode")?,
        transaction_id: r.col("transaction_id")?,
        pay_time: r.col("pay_time")?,
    })
}

impl Db {
    /// The unpaid postpaid order left by the device's most recent session, if any.
    pub async fn unpaid_order_of_device(&self, device_id: i64) -> StoreResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT o.id FROM orders o
             WHERE o.status = 'unpaid'
               AND o.session_id = (SELECT MAX(id) FROM sessions WHERE device_id = $1)",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)
    }

    /// An order by id.
    pub async fn order(&self, id: &str) -> StoreResult<Option<OrderRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE o.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// The order of a session, if it has one.
    pub async fn order_of_session(&self, session_id: i64) -> StoreResult<Option<OrderRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE o.session_id = $1"
        )))
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// A page of a user's orders: unpaid first, then newest first.
    pub async fn orders_page(
        &self,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<OrderRow>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .map_err(se)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE o.user_id = $1
             ORDER BY CASE WHEN o.status = 'unpaid' THEN 0 ELSE 1 END, o.ctime DESC, o.id DESC
             LIMIT $2 OFFSET $3"
        )))
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let data = rows.iter().map(order_from_row).collect::<Result<_, _>>()?;
        Ok(Page { total, rows: data })
    }

    /// How many unpaid orders a user has.
    pub async fn unpaid_orders(&self, user_id: i64) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1 AND status = 'unpaid'")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .map_err(se)
    }

    /// The most recent session of a device, with its order.
    pub async fn last_session_of_device(&self, device_id: i64) -> StoreResult<Option<LastSession>> {
        let row = sqlx::query(
            "SELECT s.id AS session_id, s.user_id AS user_id, s.started_at AS started_at,
                    s.ended_at AS ended_at, s.billed_ms AS billed_ms, s.cost_money AS cost_money,
                    s.charge_mode AS charge_mode, o.id AS order_id, o.status AS order_status
             FROM sessions s LEFT JOIN orders o ON o.session_id = s.id
             WHERE s.device_id = $1 ORDER BY s.started_at DESC, s.id DESC LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        let Some(r) = row else { return Ok(None) };
        let order_id: Option<String> = r.col("order_id")?;
        let order = match order_id {
            Some(id) => {
                let status: String = r.col("order_status")?;
                Some(OrderRef {
                    id,
                    paid: order_paid(&status)?,
                })
            }
            None => None,
        };
        Ok(Some(LastSession {
            session_id: r.col("session_id")?,
            user_id: r.col("user_id")?,
            started_at: r.col("started_at")?,
            ended_at: r.col("ended_at")?,
            billed_ms: r.col("billed_ms")?,
            cost_money: r.col("cost_money")?,
            charge_mode: r.col("charge_mode")?,
            order,
        }))
    }

    /// How many devices speak dialect B (have a client id).
    pub async fn dialect_b_devices(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE client_id IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(se)
    }

    /// Pays an order once, in one transaction: the ledger rows `order:<id>` (the payment
    /// in) and `order:<id>:debit` (the session's charge out), the user's totals and the
    /// order's status. The entry point for every way an order gets paid: sandbox mode
    /// calls it at once, a verified WeChat Pay notification calls it with the
    /// notification's `transaction_id` and `amount` (fen). Safe to call concurrently and
    /// repeatedly: a second call with the same transaction changes nothing.
    pub async fn settle_order(
        &self,
        order_id: &str,
        provider: &str,
        transaction_id: &str,
        amount: i64,
        now: i64,
    ) -> StoreResult<OrderSettle> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        // The UPDATE takes the row lock on PostgreSQL, so concurrent payments of one
        // order queue here and the second sees it paid.
        let row = sqlx::query(
            "UPDATE orders SET utime = $1 WHERE id = $2 RETURNING user_id, amount, status, transaction_id, session_id",
        )
        .bind(now)
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        let Some(row) = row else {
            return Ok(OrderSettle::UnknownOrder);
        };
        let user_id: i64 = row.col("user_id")?;
        let due: i64 = row.col("amount")?;
        let status: String = row.col("status")?;
        let paid_tx: Option<String> = row.col("transaction_id")?;
        let session_id: i64 = row.col("session_id")?;
        if order_paid(&status)? {
            return Ok(if due == 0 || paid_tx.as_deref() == Some(transaction_id) {
                OrderSettle::AlreadyPaid { user_id }
            } else {
                OrderSettle::AlreadyPaidOtherwise
            });
        }
        if due != amount {
            return Ok(OrderSettle::AmountMismatch);
        }
        let r = sqlx::query(
            "UPDATE orders SET status = 'paid', provider = $1, transaction_id = $2, pay_time = $3, utime = $3
             WHERE id = $4 AND status = 'unpaid'",
        )
        .bind(provider)
        .bind(transaction_id)
        .bind(now)
        .bind(order_id)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => return Ok(OrderSettle::AlreadyPaid { user_id }),
            Err(e) if super::is_unique_violation(&e) => {
                return Ok(OrderSettle::AlreadyPaidOtherwise);
            }
            Err(e) => return Err(se(e)),
        }
        let inserted = sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, reason, created_at) VALUES ($1, $2, $3, 'recharge', $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(format!("order:{order_id}"))
        .bind(user_id)
        .bind(amount)
        .bind(format!("order payment {transaction_id}"))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        if inserted.is_none() {
            tx.rollback().await.map_err(se)?;
            return Ok(OrderSettle::AlreadyPaid { user_id });
        }
        sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, session_id, reason, created_at) VALUES ($1, $2, $3, 'debit', $4, $5, $6)",
        )
        .bind(format!("order:{order_id}:debit"))
        .bind(user_id)
        .bind(-amount)
        .bind(session_id)
        .bind(format!("postpaid order {order_id}"))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        sqlx::query(
            "UPDATE users SET total_account = total_account + $1, used_account = used_account + $1, utime = $2 WHERE id = $3",
        )
        .bind(amount)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        tx.commit().await.map_err(se)?;
        Ok(OrderSettle::Paid { user_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDevice;
    use kioskd_actors::billing::EndReason;
    use kioskd_actors::ports::{BillingMode, NewSession, SessionEnd};

    /// An unknown stored order status is an error naming the column and the value (it
    /// used to read as unpaid).
    #[tokio::test]
    async fn an_unknown_order_status_is_corrupt_not_unpaid() {
        let (_dir, db) = crate::store::scratch_db().await;
        let dev = db
            .add_device(
                &NewDevice {
                    code: "AA-BB".into(),
                    client_id: Some("7".into()),
                    name: "k".into(),
                    province: String::new(),
                    city: String::new(),
                    area: String::new(),
                    location: String::new(),
                    charge_mode: 100,
                    billing_mode: BillingMode::Postpaid,
                    secret: None,
                    legacy_unsigned: None,
                },
                1,
            )
            .await
            .unwrap();
        let user = db.ensure_user("o1", "n", "", 1).await.unwrap();
        let started = db
            .start_session(NewSession {
                token: "t".into(),
                user_id: user.id,
                device_id: dev.id,
                charge_mode: 100,
                billing_mode: BillingMode::Postpaid,
                started_at: 1,
                first: None,
            })
            .await
            .unwrap();
        db.end_session(SessionEnd {
            session_id: started.session.id,
            user_id: user.id,
            ended_at: 2,
            reason: EndReason::UserLogout,
            billed_ms: 1,
            cost: 100,
            refund: 0,
            order_id: Some("ord1".into()),
            package_returns: Vec::new(),
        })
        .await
        .unwrap();
        let o = db.order("ord1").await.unwrap().unwrap();
        assert!(!o.paid);
        let last = db.last_session_of_device(dev.id).await.unwrap().unwrap();
        assert_eq!(
            last.order,
            Some(OrderRef {
                id: "ord1".into(),
                paid: false
            })
        );
        // orders.status has a CHECK constraint; SQLite lets a test bypass it (one
        // connection, so the pragma holds for the update).
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE orders SET status = 'refunded' WHERE id = 'ord1'")
            .execute(db.pool())
            .await
            .unwrap();
        let corrupt = StoreError::corrupt("orders.status", "refunded");
        assert_eq!(db.order("ord1").await.unwrap_err(), corrupt);
        assert_eq!(
            db.last_session_of_device(dev.id).await.unwrap_err(),
            corrupt
        );
        assert_eq!(
            db.settle_order("ord1", "sandbox", "tx1", 100, 3)
                .await
                .unwrap_err(),
            corrupt
        );
        let ledger: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE id LIKE 'order:%'")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(ledger, 0, "nothing was paid");
    }
}
