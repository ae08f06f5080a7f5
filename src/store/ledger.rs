//! Money: recharges, operator adjustments, the ledger and balances. Every change is one
//! transaction that writes its ledger row and the user's totals together.

use super::RowExt;

use super::rows::*;
use super::{Db, WriteError, is_unique_violation, se};
use kioskd_actors::ports::*;

impl Db {
    /// Creates a pending recharge order.
    pub async fn create_recharge(
        &self,
        user_id: i64,
        amount: i64,
        provider: &str,
        out_trade_no: &str,
        now: i64,
    ) -> Result<(), WriteError> {
        sqlx::query(
            "INSERT INTO recharges (out_trade_no, user_id, amount, provider, ctime, utime) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(out_trade_no)
        .bind(user_id)
        .bind(amount)
        .bind(provider)
        .bind(now)
        .execute(&self.pool)
        .await.map_err(se)?;
        Ok(())
    }

    /// Credits a paid recharge once per `transaction_id`, in one transaction: the ledger
    /// row `recharge:<transaction_id>`, the user's totals and the order's status.
    pub async fn settle_recharge(
        &self,
        out_trade_no: &str,
        transaction_id: &str,
        amount: i64,
        now: i64,
    ) -> Result<Settle, StoreError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let order = sqlx::query(
            "UPDATE recharges SET utime = $1 WHERE out_trade_no = $2 RETURNING user_id, amount, status, transaction_id",
        )
        .bind(now)
        .bind(out_trade_no)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        let Some(order) = order else {
            return Ok(Settle::UnknownOrder);
        };
        let user_id: i64 = order.col("user_id")?;
        let order_amount: i64 = order.col("amount")?;
        let status: String = order.col("status")?;
        let paid_tx: Option<String> = order.col("transaction_id")?;
        if order_amount != amount {
            return Ok(Settle::AmountMismatch);
        }
        if status == "paid" {
            return Ok(if paid_tx.as_deref() == Some(transaction_id) {
                Settle::AlreadyCredited { user_id }
            } else {
                Settle::AlreadyPaidOtherwise
            });
        }
        let inserted = sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, reason, created_at) VALUES ($1, $2, $3, 'recharge', $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(format!("recharge:{transaction_id}"))
        .bind(user_id)
        .bind(amount)
        .bind(out_trade_no)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        if inserted.is_none() {
            return Ok(Settle::AlreadyCredited { user_id });
        }
        let r = sqlx::query(
            "UPDATE recharges SET status = 'paid', transaction_id = $1, pay_time = $2, utime = $2 WHERE out_trade_no = $3 AND status = 'pending'",
        )
        .bind(transaction_id)
        .bind(now)
        .bind(out_trade_no)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => return Ok(Settle::AlreadyCredited { user_id }),
            Err(e) if is_unique_violation(&e) => return Ok(Settle::AlreadyPaidOtherwise),
            Err(e) => return Err(se(e)),
        }
        let balance: i64 = sqlx::query_scalar(
            "UPDATE users SET total_account = total_account + $1, balance_account = balance_account + $1, utime = $2
             WHERE id = $3 RETURNING balance_account",
        )
        .bind(amount)
        .bind(now)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(se)?;
        tx.commit().await.map_err(se)?;
        Ok(Settle::Credited { user_id, balance })
    }

    /// An operator adjustment (positive credits, negative debits) with a reason, in one
    /// transaction with its ledger row. `Refused`: the balance would go negative.
    pub async fn adjust(
        &self,
        user_id: i64,
        amount: i64,
        reason: &str,
        ledger_id: &str,
        now: i64,
    ) -> Result<i64, WriteError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let inserted = sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, reason, created_at) VALUES ($1, $2, $3, 'adjust', $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(ledger_id)
        .bind(user_id)
        .bind(amount)
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await.map_err(se)?;
        if inserted.is_none() {
            return Err(WriteError::Conflict);
        }
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET total_account = total_account + $1, balance_account = balance_account + $1, utime = $2
             WHERE id = $3 AND balance_account + $1 >= 0 RETURNING balance_account",
        )
        .bind(amount)
        .bind(now)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await.map_err(se)?;
        let Some(balance) = balance else {
            // Release the (possibly only) connection before looking the user up.
            tx.rollback().await.map_err(se)?;
            return Err(if self.user_by_id(user_id).await?.is_some() {
                WriteError::Refused
            } else {
                WriteError::NotFound
            });
        };
        tx.commit().await.map_err(se)?;
        Ok(balance)
    }

    /// A user's ledger, newest first.
    pub async fn ledger(&self, user_id: i64) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, amount, kind, session_id, reason, created_at FROM ledger WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(LedgerRow {
                    id: r.col("id")?,
                    amount: r.col("amount")?,
                    kind: r.col("kind")?,
                    session_id: r.col("session_id")?,
                    reason: r.col("reason")?,
                    created_at: r.col("created_at")?,
                })
            })
            .collect()
    }

    /// The sum of a user's ledger rows (always equal to the balance).
    pub async fn ledger_sum(&self, user_id: i64) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT CAST(SUM(amount) AS BIGINT) FROM ledger WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await
                .map_err(se)?;
        Ok(v.unwrap_or(0))
    }

    /// A page of paid recharges.
    pub async fn recharge_page(
        &self,
        user_id: i64,
        q: &PageQuery,
    ) -> Result<Page<RechargeRow>, StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recharges WHERE user_id = $1 AND status = 'paid' AND pay_time >= $2 AND pay_time <= $3",
        )
        .bind(user_id)
        .bind(q.from)
        .bind(q.to)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        let rows = sqlx::query(
            "SELECT id, amount, transaction_id, pay_time, utime, ctime FROM recharges
             WHERE user_id = $1 AND status = 'paid' AND pay_time >= $2 AND pay_time <= $3
             ORDER BY pay_time DESC, id DESC LIMIT $4 OFFSET $5",
        )
        .bind(user_id)
        .bind(q.from)
        .bind(q.to)
        .bind(q.limit())
        .bind(q.offset())
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let data = rows
            .iter()
            .map(|r| {
                Ok(RechargeRow {
                    id: r.col("id")?,
                    amount: r.col("amount")?,
                    transaction_id: r
                        .col::<Option<String>>("transaction_id")?
                        .unwrap_or_default(),
                    pay_time: r.col::<Option<i64>>("pay_time")?.unwrap_or(0),
                    utime: r.col("utime")?,
                    ctime: r.col("ctime")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { total, rows: data })
    }

    /// The current balance of a user (0 for an unknown user).
    pub async fn user_balance(&self, user_id: i64) -> StoreResult<i64> {
        let b: Option<i64> = sqlx::query_scalar("SELECT balance_account FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        Ok(b.unwrap_or(0))
    }
}
