//! The phone's side of packages (issue 16 item 3): packages bought by WeChat Pay
//! (`package_orders`, settled once per transaction like recharges) and the package
//! history the phone shows. The catalog, balance purchases and the time ledger's writes
//! during sessions are in `pricing.rs`.
//!
//! A package paid by WeChat Pay moves money exactly like a paid postpaid order: two
//! ledger rows in one transaction, the payment in (`pkgpay:<transaction_id>`, kind
//! `recharge`) and the purchase out (`pkg:<user package>`, kind `debit`, the same id a
//! balance purchase writes), so the balance is untouched while `total_account` and
//! `used_account` both grow; the user package, its time-ledger row and the order's state
//! change are in that same transaction.

use super::pricing::{Granted, Sale, grant, package_debit};
use super::{Db, Page, RowExt, WriteError, is_unique_violation, se};
use kioskd_actors::ports::StoreError;

/// A package order by its `out_trade_no`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageOrder {
    /// The buyer.
    pub user_id: i64,
    /// The package.
    pub package_id: i64,
    /// Fen to pay (the package's price when ordered).
    pub amount: i64,
    /// `pending` or `paid`.
    pub status: String,
    /// `wechatpay` or `sandbox`.
    pub provider: String,
    /// The user package it bought, once paid.
    pub user_package_id: Option<i64>,
    /// When it was given up unpaid.
    pub closed_at: Option<i64>,
}

/// How settling a package order went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSettle {
    /// Paid now: the package is granted.
    Granted {
        /// The buyer.
        user_id: i64,
        /// The user package.
        user_package_id: i64,
    },
    /// Paid before by this same transaction: nothing changed.
    AlreadyGranted,
    /// Paid before by another transaction: nothing changed (needs a refund by hand).
    AlreadyPaidOtherwise,
    /// No such order.
    UnknownOrder,
    /// The amount is not the order's: nothing changed.
    AmountMismatch,
    /// The package no longer exists: nothing changed.
    NoPackage,
}

/// One line of a user's package history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageHistoryRow {
    /// The time-ledger row's id.
    pub id: String,
    /// `purchase` (bought or granted), `use` (a unit of a session) or `return` (unused
    /// time given back at a session's end).
    pub kind: String,
    /// The package's name.
    pub name: String,
    /// Seconds added (purchase, return) or taken (use, negative).
    pub seconds: i64,
    /// For a purchase, fen paid (the money ledger's `pkg:<user package>` row; 0 for an
    /// operator's grant).
    pub amount: i64,
    /// For a purchase: `balance`, `wechat` or `operator`.
    pub source: String,
    /// The session, for use and return.
    pub session_id: Option<i64>,
    /// When (unix ms).
    pub created_at: i64,
}

impl Db {
    /// Creates a pending package order for the package's current price; `None` when the
    /// package is not on sale.
    pub async fn create_package_order(
        &self,
        user_id: i64,
        package_id: i64,
        provider: &str,
        out_trade_no: &str,
        now: i64,
    ) -> Result<Option<i64>, WriteError> {
        let amount: Option<i64> = sqlx::query_scalar(
            "INSERT INTO package_orders (out_trade_no, user_id, package_id, amount, provider, ctime, utime)
             SELECT $1, $2, id, price, $4, $5, $5 FROM packages WHERE id = $3 AND on_sale = 1
             RETURNING amount",
        )
        .bind(out_trade_no)
        .bind(user_id)
        .bind(package_id)
        .bind(provider)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        Ok(amount)
    }

    /// A package order by its `out_trade_no`.
    pub async fn package_order(
        &self,
        out_trade_no: &str,
    ) -> Result<Option<PackageOrder>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, package_id, amount, status, provider, user_package_id, closed_at
             FROM package_orders WHERE out_trade_no = $1",
        )
        .bind(out_trade_no)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.map(|r| {
            Ok(PackageOrder {
                user_id: r.col("user_id")?,
                package_id: r.col("package_id")?,
                amount: r.col("amount")?,
                status: r.col("status")?,
                provider: r.col("provider")?,
                user_package_id: r.col("user_package_id")?,
                closed_at: r.col("closed_at")?,
            })
        })
        .transpose()
    }

    /// Records the prepay id WeChat Pay gave a package order.
    pub async fn set_package_prepay_id(
        &self,
        out_trade_no: &str,
        prepay_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE package_orders SET prepay_id = $1, utime = $2 WHERE out_trade_no = $3")
            .bind(prepay_id)
            .bind(now)
            .bind(out_trade_no)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Settles a paid package order once per `transaction_id`, in one transaction: the
    /// order's state, the user package with its time-ledger row, and the two money
    /// ledger rows with the user's totals. The package is granted as it is now even if it
    /// went off sale after the order (what was paid for is delivered).
    pub async fn settle_package_order(
        &self,
        out_trade_no: &str,
        transaction_id: &str,
        amount: i64,
        now: i64,
    ) -> Result<PackageSettle, StoreError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        // The UPDATE takes the row lock on PostgreSQL: concurrent notifications of one
        // order queue here and the second sees it paid.
        let row = sqlx::query(
            "UPDATE package_orders SET utime = $1 WHERE out_trade_no = $2
             RETURNING user_id, package_id, amount, status, transaction_id",
        )
        .bind(now)
        .bind(out_trade_no)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        let Some(row) = row else {
            return Ok(PackageSettle::UnknownOrder);
        };
        let user_id: i64 = row.col("user_id")?;
        let package_id: i64 = row.col("package_id")?;
        let due: i64 = row.col("amount")?;
        let status: String = row.col("status")?;
        let paid_tx: Option<String> = row.col("transaction_id")?;
        if status == "paid" {
            return Ok(if paid_tx.as_deref() == Some(transaction_id) {
                PackageSettle::AlreadyGranted
            } else {
                PackageSettle::AlreadyPaidOtherwise
            });
        }
        if due != amount {
            return Ok(PackageSettle::AmountMismatch);
        }
        let r = sqlx::query(
            "UPDATE package_orders SET status = 'paid', transaction_id = $1, utime = $2
             WHERE out_trade_no = $3 AND status = 'pending'",
        )
        .bind(transaction_id)
        .bind(now)
        .bind(out_trade_no)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(r) if r.rows_affected() == 1 => {}
            Ok(_) => return Ok(PackageSettle::AlreadyGranted),
            Err(e) if is_unique_violation(&e) => return Ok(PackageSettle::AlreadyPaidOtherwise),
            Err(e) => return Err(se(e)),
        }
        let inserted = sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, reason, created_at) VALUES ($1, $2, $3, 'recharge', $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(format!("pkgpay:{transaction_id}"))
        .bind(user_id)
        .bind(amount)
        .bind(format!("package order {out_trade_no}"))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        if inserted.is_none() {
            tx.rollback().await.map_err(se)?;
            return Ok(PackageSettle::AlreadyGranted);
        }
        let Some(Granted {
            name,
            user_package_id: up,
            ..
        }) = grant(
            &mut tx,
            user_id,
            package_id,
            "wechat",
            Some(transaction_id),
            Sale::PaidOrder,
            now,
        )
        .await?
        else {
            tx.rollback().await.map_err(se)?;
            return Ok(PackageSettle::NoPackage);
        };
        package_debit(&mut tx, user_id, up, &name, amount, now).await?;
        sqlx::query(
            "UPDATE users SET total_account = total_account + $1, used_account = used_account + $1, utime = $2 WHERE id = $3",
        )
        .bind(amount)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        sqlx::query("UPDATE package_orders SET user_package_id = $1 WHERE out_trade_no = $2")
            .bind(up)
            .bind(out_trade_no)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        tx.commit().await.map_err(se)?;
        Ok(PackageSettle::Granted {
            user_id,
            user_package_id: up,
        })
    }

    /// A page of a user's package history (purchases, uses, returns), newest first: the
    /// total and the rows.
    pub async fn package_history(
        &self,
        user_id: i64,
        page: i64,
        size: i64,
    ) -> Result<Page<PackageHistoryRow>, StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM package_ledger WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await
                .map_err(se)?;
        // A purchase's time-ledger row and its money-ledger row share the id `pkg:<up>`.
        let rows = sqlx::query(
            "SELECT pl.id AS id, pl.kind AS kind, p.name AS name, pl.seconds AS seconds,
                    COALESCE(-l.amount, 0) AS amount, up.source AS source,
                    pl.session_id AS session_id, pl.created_at AS created_at
             FROM package_ledger pl
             JOIN user_packages up ON up.id = pl.user_package_id
             JOIN packages p ON p.id = up.package_id
             LEFT JOIN ledger l ON l.id = pl.id AND pl.kind = 'purchase'
             WHERE pl.user_id = $1
             ORDER BY pl.created_at DESC, pl.id DESC LIMIT $2 OFFSET $3",
        )
        .bind(user_id)
        .bind(size)
        .bind((page - 1).max(0).saturating_mul(size))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(PackageHistoryRow {
                    id: r.col("id")?,
                    kind: r.col("kind")?,
                    name: r.col("name")?,
                    seconds: r.col("seconds")?,
                    amount: r.col("amount")?,
                    source: r.col("source")?,
                    session_id: r.col("session_id")?,
                    created_at: r.col("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page { total, rows })
    }
}
