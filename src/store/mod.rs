//! Storage: every SQL statement kioskd runs, over SQLite (the embedded default) or
//! PostgreSQL through sqlx's `Any` driver. The statements are written once in the
//! dialect both accept (`$n` parameters, `ON CONFLICT`, `RETURNING`, partial unique
//! indexes); only the migrations differ per backend (`migrations/<backend>/`).
//!
//! Money rules live here as much as in the schema: every money change is one
//! transaction that writes its ledger row (with a deterministic id, so a replay inserts
//! nothing) and the user's totals together.

mod attendance;
mod audit;
mod operators;
mod orders;
mod pricing;
mod reports;
mod rows;
mod upstream;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use kioskd_actors::ports::*;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use attendance::*;
pub use audit::*;
pub use operators::*;
pub use orders::*;
pub use pricing::*;
pub use reports::*;
pub use rows::*;
pub use upstream::*;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (single writer connection).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

fn se(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_check_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_check_violation())
}

/// A unique key was already taken.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A unique constraint refused the row.
    #[error("already exists")]
    Conflict,
    /// A check constraint refused the row (e.g. a balance would go negative).
    #[error("refused by a constraint")]
    Refused,
    /// The row the write needs does not exist.
    #[error("not found")]
    NotFound,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        if is_unique_violation(&e) {
            WriteError::Conflict
        } else if is_check_violation(&e) {
            WriteError::Refused
        } else {
            WriteError::Store(se(e))
        }
    }
}

const DEVICE_COLS: &str = "id, code, client_id, name, province, city, area, location, charge_mode, billing_mode, status, maintainer, updating, last_seen_at";
const USER_COLS: &str = "id, openid, nickname, head_img_url, mobile, total_account, used_account, balance_account, state, ctime, utime";
/// A session joined with its device's location, as `expense_from_row` reads it.
const EXPENSE_SELECT: &str =
    "SELECT s.id, s.user_id, s.device_id, d.province, d.city, d.area, d.location, s.cost_money,
    s.started_at, s.utime, s.ended_at, s.billed_ms, d.code, s.end_reason
    FROM sessions s JOIN devices d ON d.id = s.device_id";
const SESSION_COLS: &str = "s.id, s.token, s.user_id, u.openid, s.device_id, d.code, s.charge_mode, s.billing_mode, s.started_at, s.reserved_units, s.last_heard_at";

impl Db {
    /// Connects (creating an SQLite file and its folder if needed) and runs migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError(format!(
                "unsupported database url (want sqlite:// or postgres://): {}",
                redact_url(url)
            )));
        };
        let url = if backend == Backend::Sqlite {
            prepare_sqlite_url(url)?
        } else {
            url.to_string()
        };
        let opts = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            // SQLite allows one writer; one connection avoids lock upgrades entirely.
            .max_connections(if backend == Backend::Sqlite {
                1
            } else {
                max_connections.max(2)
            });
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(&url).await.map_err(se)?;
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let r = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
        };
        r.map_err(|e| StoreError(format!("migration failed: {e}")))
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool (tests inspect tables directly).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A trivial round trip (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    // ---- devices -------------------------------------------------------------------

    /// Registers a device.
    pub async fn add_device(&self, d: &NewDevice, now: i64) -> Result<DeviceRecord, WriteError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO devices (code, client_id, name, province, city, area, location, charge_mode, billing_mode, secret, legacy_unsigned, ctime, utime)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $11, $11) RETURNING {DEVICE_COLS}"
        )))
        .bind(&d.code)
        .bind(&d.client_id)
        .bind(&d.name)
        .bind(&d.province)
        .bind(&d.city)
        .bind(&d.area)
        .bind(&d.location)
        .bind(d.charge_mode)
        .bind(d.billing_mode.as_str())
        .bind(&d.secret)
        .bind(now)
        .bind(&d.legacy_unsigned)
        .fetch_one(&self.pool)
        .await?;
        device_from_row(&row).map_err(WriteError::Store)
    }

    /// Every device.
    pub async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(device_from_row).collect()
    }

    /// A device by dialect B client id.
    pub async fn device_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE client_id = $1"
        )))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// A device's WebSocket secret, if it has one.
    pub async fn device_secret(&self, device_id: i64) -> Result<Option<String>, StoreError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT secret FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(se)?;
        Ok(v.flatten().filter(|s| !s.is_empty()))
    }

    /// A device's legacy-call policy by code: its secret (if any) and its
    /// `legacy_unsigned` setting (`allow`, `refuse`, or `None` for the default). `None`
    /// for an unknown device.
    pub async fn device_legacy(
        &self,
        code: &str,
    ) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
        let row = sqlx::query("SELECT secret, legacy_unsigned FROM devices WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            let secret: Option<String> = r.try_get(0).map_err(se)?;
            Ok((secret.filter(|s| !s.is_empty()), r.try_get(1).map_err(se)?))
        })
        .transpose()
    }

    /// Sets a device's `legacy_unsigned` (`None`: back to the default). False when the
    /// device is unknown.
    pub async fn set_device_legacy(
        &self,
        code: &str,
        mode: Option<&str>,
    ) -> Result<bool, WriteError> {
        let r = sqlx::query("UPDATE devices SET legacy_unsigned = $1 WHERE code = $2")
            .bind(mode)
            .bind(code)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The running session holding `token`: its device's code and its user.
    pub async fn running_session_by_token(
        &self,
        token: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT d.code, s.user_id FROM sessions s JOIN devices d ON d.id = s.device_id
             WHERE s.token = $1 AND s.ended_at IS NULL",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.map(|r| Ok((r.try_get(0).map_err(se)?, r.try_get(1).map_err(se)?)))
            .transpose()
    }

    // ---- users ---------------------------------------------------------------------

    /// The user with this openid, created if new (a phone that signed in).
    pub async fn ensure_user(
        &self,
        openid: &str,
        nickname: &str,
        head_img_url: &str,
        now: i64,
    ) -> Result<UserRow, StoreError> {
        sqlx::query(
            "INSERT INTO users (openid, nickname, head_img_url, ctime, utime) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (openid) DO NOTHING",
        )
        .bind(openid)
        .bind(nickname)
        .bind(head_img_url)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        self.user_by_openid(openid)
            .await?
            .ok_or_else(|| StoreError("user vanished after insert".into()))
    }

    /// A user by openid.
    pub async fn user_by_openid(&self, openid: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE openid = $1"
        )))
        .bind(openid)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user by mobile.
    pub async fn user_by_mobile(&self, mobile: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE mobile = $1"
        )))
        .bind(mobile)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Binds a mobile to a user that has none (registration). `Conflict`: the mobile
    /// belongs to another user; `Refused`: this user has another mobile.
    pub async fn bind_mobile(
        &self,
        user_id: i64,
        mobile: &str,
        now: i64,
    ) -> Result<UserRow, WriteError> {
        let user = self
            .user_by_id(user_id)
            .await?
            .ok_or(WriteError::NotFound)?;
        match user.mobile.as_deref() {
            Some(m) if m == mobile => return Ok(user),
            Some(_) => return Err(WriteError::Refused),
            None => {}
        }
        let r = sqlx::query(
            "UPDATE users SET mobile = $1, utime = $2 WHERE id = $3 AND mobile IS NULL",
        )
        .bind(mobile)
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(WriteError::Refused);
        }
        self.user_by_id(user_id).await?.ok_or(WriteError::NotFound)
    }

    /// Sets a user's state (0 active, 1 disabled, 2 deleted).
    pub async fn set_user_state(
        &self,
        user_id: i64,
        state: i32,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE users SET state = $1, utime = $2 WHERE id = $3")
            .bind(state as i64)
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(r.rows_affected() > 0)
    }

    // ---- money -----------------------------------------------------------------------

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
        .await?;
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
        let user_id: i64 = order.try_get(0).map_err(se)?;
        let order_amount: i64 = order.try_get(1).map_err(se)?;
        let status: String = order.try_get(2).map_err(se)?;
        let paid_tx: Option<String> = order.try_get(3).map_err(se)?;
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
        .await?;
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
        .await?;
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

    /// The token of the running session with this id (None: no such running session).
    pub async fn running_session_token(&self, id: i64) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT token FROM sessions WHERE id = $1 AND ended_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)
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
                    id: r.try_get(0).map_err(se)?,
                    amount: r.try_get(1).map_err(se)?,
                    kind: r.try_get(2).map_err(se)?,
                    session_id: r.try_get(3).map_err(se)?,
                    reason: r.try_get(4).map_err(se)?,
                    created_at: r.try_get(5).map_err(se)?,
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
    ) -> Result<(i64, Vec<RechargeRow>), StoreError> {
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
                    id: r.try_get(0).map_err(se)?,
                    amount: r.try_get(1).map_err(se)?,
                    transaction_id: r
                        .try_get::<Option<String>, _>(2)
                        .map_err(se)?
                        .unwrap_or_default(),
                    pay_time: r.try_get::<Option<i64>, _>(3).map_err(se)?.unwrap_or(0),
                    utime: r.try_get(4).map_err(se)?,
                    ctime: r.try_get(5).map_err(se)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((total, data))
    }

    /// A page of ended sessions (the expense list).
    pub async fn expense_page(
        &self,
        user_id: i64,
        q: &PageQuery,
    ) -> Result<(i64, Vec<ExpenseRow>), StoreError> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND ended_at IS NOT NULL AND started_at >= $2 AND started_at <= $3",
        )
        .bind(user_id)
        .bind(q.from)
        .bind(q.to)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        let rows = sqlx::query(
            sqlx::AssertSqlSafe(format!("{EXPENSE_SELECT}
             WHERE s.user_id = $1 AND s.ended_at IS NOT NULL AND s.started_at >= $2 AND s.started_at <= $3
             ORDER BY s.started_at DESC, s.id DESC LIMIT $4 OFFSET $5"
            )),
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
            .map(expense_from_row)
            .collect::<Result<_, StoreError>>()?;
        Ok((total, data))
    }

    /// A session with its device's location, by id (ended or not).
    pub async fn session_by_id(&self, id: i64) -> Result<Option<ExpenseRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{EXPENSE_SELECT} WHERE s.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(expense_from_row).transpose()
    }

    // ---- maintainers -------------------------------------------------------------------

    /// Adds a maintainer (password already hashed).
    pub async fn add_maintainer(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), WriteError> {
        sqlx::query("INSERT INTO maintainers (username, password_hash, ctime) VALUES ($1, $2, $3)")
            .bind(username)
            .bind(hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A maintainer by username.
    pub async fn maintainer(&self, username: &str) -> Result<Option<MaintainerRow>, StoreError> {
        let row = sqlx::query("SELECT username, password_hash, enabled, failed_attempts, locked_until FROM maintainers WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            Ok(MaintainerRow {
                username: r.try_get(0).map_err(se)?,
                password_hash: r.try_get(1).map_err(se)?,
                enabled: r.try_get::<i64, _>(2).map_err(se)? != 0,
                failed_attempts: r.try_get(3).map_err(se)?,
                locked_until: r.try_get(4).map_err(se)?,
            })
        })
        .transpose()
    }

    /// Claims one sign-in attempt for a maintainer whose backoff has run out, counting
    /// it as a failure until [`Db::maintainer_succeeded`] clears it, in one conditional
    /// statement: the attempt that reaches `max_failures` (and every later one) starts a
    /// backoff of `base_ms`, doubling per failure up to `cap_ms`. Returns the account
    /// (password hash, enabled) when the attempt may be judged, `None` when the account
    /// does not exist or is backing off.
    pub async fn maintainer_claim_attempt(
        &self,
        username: &str,
        now: i64,
        max_failures: i64,
        base_ms: i64,
        cap_ms: i64,
    ) -> Result<Option<MaintainerRow>, StoreError> {
        let row = sqlx::query(
            "UPDATE maintainers SET
                failed_attempts = failed_attempts + 1,
                lock_ms = CASE WHEN failed_attempts + 1 < $3 THEN lock_ms
                               WHEN lock_ms = 0 THEN $4
                               WHEN lock_ms * 2 > $5 THEN $5
                               ELSE lock_ms * 2 END,
                locked_until = CASE WHEN failed_attempts + 1 < $3 THEN locked_until
                               ELSE $2 + (CASE WHEN lock_ms = 0 THEN $4
                                              WHEN lock_ms * 2 > $5 THEN $5
                                              ELSE lock_ms * 2 END) END
             WHERE username = $1 AND locked_until <= $2
             RETURNING username, password_hash, enabled, failed_attempts, locked_until",
        )
        .bind(username)
        .bind(now)
        .bind(max_failures)
        .bind(base_ms)
        .bind(cap_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.map(|r| {
            Ok(MaintainerRow {
                username: r.try_get(0).map_err(se)?,
                password_hash: r.try_get(1).map_err(se)?,
                enabled: r.try_get::<i64, _>(2).map_err(se)? != 0,
                failed_attempts: r.try_get(3).map_err(se)?,
                locked_until: r.try_get(4).map_err(se)?,
            })
        })
        .transpose()
    }

    /// A correct password: the failure count and any backoff are cleared.
    pub async fn maintainer_succeeded(&self, username: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE maintainers SET failed_attempts = 0, lock_ms = 0, locked_until = 0 WHERE username = $1",
        )
        .bind(username)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// Every maintainer (username, enabled, failed attempts).
    pub async fn list_maintainers(&self) -> Result<Vec<MaintainerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, '', enabled, failed_attempts, locked_until FROM maintainers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(MaintainerRow {
                    username: r.try_get(0).map_err(se)?,
                    password_hash: String::new(),
                    enabled: r.try_get::<i64, _>(2).map_err(se)? != 0,
                    failed_attempts: r.try_get(3).map_err(se)?,
                    locked_until: r.try_get(4).map_err(se)?,
                })
            })
            .collect()
    }

    /// Enables or disables a maintainer.
    pub async fn set_maintainer_enabled(
        &self,
        username: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE maintainers SET enabled = $1, failed_attempts = 0, lock_ms = 0, locked_until = 0 WHERE username = $2",
        )
        .bind(enabled as i64)
        .bind(username)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(r.rows_affected() > 0)
    }

    // ---- games ---------------------------------------------------------------------------

    /// Adds a game (or a new version of one with the same name).
    pub async fn add_game(
        &self,
        name: &str,
        version: &str,
        url: &str,
        md5: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM games WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        if let Some(id) = existing {
            sqlx::query(
                "UPDATE games SET version = $1, url = $2, md5 = $3, utime = $4 WHERE id = $5",
            )
            .bind(version)
            .bind(url)
            .bind(md5)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
            return Ok(id);
        }
        sqlx::query_scalar(
            "INSERT INTO games (name, version, url, md5, ctime, utime) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(name)
        .bind(version)
        .bind(url)
        .bind(md5)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)
    }

    /// Puts a game on a device, wanting its newest version installed.
    pub async fn want_game(&self, device_id: i64, game_id: i64) -> Result<(), WriteError> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM games WHERE id = $1")
            .bind(game_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        if exists.is_none() {
            return Err(WriteError::NotFound);
        }
        sqlx::query(
            "INSERT INTO device_games (device_id, game_id, current_version) VALUES ($1, $2, NULL)
             ON CONFLICT (device_id, game_id) DO UPDATE SET current_version = NULL",
        )
        .bind(device_id)
        .bind(game_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A device's games.
    pub async fn device_games(&self, device_id: i64) -> Result<Vec<DeviceGameRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.id, g.name, dg.current_version, g.version, g.url, g.md5 FROM device_games dg
             JOIN games g ON g.id = dg.game_id WHERE dg.device_id = $1 ORDER BY g.id",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceGameRow {
                    id: r.try_get(0).map_err(se)?,
                    name: r.try_get(1).map_err(se)?,
                    current_version: r.try_get(2).map_err(se)?,
                    newest_version: r.try_get(3).map_err(se)?,
                    url: r.try_get(4).map_err(se)?,
                    md5: r.try_get(5).map_err(se)?,
                })
            })
            .collect()
    }

    /// Marks every game of a device as current (its update finished).
    pub async fn games_current(&self, device_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE device_games SET current_version = (SELECT version FROM games WHERE games.id = device_games.game_id)
             WHERE device_id = $1",
        )
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    // ---- captchas ------------------------------------------------------------------------

    /// Takes one send from the quota `key` at `now`, or refuses: at least `gap_ms` since
    /// the last send, fewer than `hourly` sends in the current hour window and fewer
    /// than `daily` in the current day window. One conditional upsert decides (on
    /// PostgreSQL the conflicting row is locked and the condition re-read), so parallel
    /// callers can never take more than the quota allows.
    pub async fn take_send_quota(
        &self,
        key: &str,
        now: i64,
        gap_ms: i64,
        hourly: i64,
        daily: i64,
    ) -> Result<bool, StoreError> {
        if hourly <= 0 || daily <= 0 {
            return Ok(false);
        }
        let row = sqlx::query(
            "INSERT INTO send_quota (key, last_at, hour_start, hour_count, day_start, day_count)
             VALUES ($1, $2, $2, 1, $2, 1)
             ON CONFLICT (key) DO UPDATE SET
                last_at = $2,
                hour_start = CASE WHEN send_quota.hour_start <= $2 - 3600000 THEN $2 ELSE send_quota.hour_start END,
                hour_count = CASE WHEN send_quota.hour_start <= $2 - 3600000 THEN 1 ELSE send_quota.hour_count + 1 END,
                day_start = CASE WHEN send_quota.day_start <= $2 - 86400000 THEN $2 ELSE send_quota.day_start END,
                day_count = CASE WHEN send_quota.day_start <= $2 - 86400000 THEN 1 ELSE send_quota.day_count + 1 END
             WHERE send_quota.last_at <= $2 - $3
               AND (send_quota.hour_start <= $2 - 3600000 OR send_quota.hour_count < $4)
               AND (send_quota.day_start <= $2 - 86400000 OR send_quota.day_count < $5)
             RETURNING key",
        )
        .bind(key)
        .bind(now)
        .bind(gap_ms)
        .bind(hourly)
        .bind(daily)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        Ok(row.is_some())
    }

    /// Stores a sent captcha (hashed).
    pub async fn insert_captcha(
        &self,
        mobile: &str,
        code_hash: &str,
        client: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO captchas (mobile, code_hash, client, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(mobile)
            .bind(code_hash)
            .bind(client)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Counts one guess against the newest unused, unexpired code of a mobile with
    /// fewer than `max_attempts` guesses, and burns it when `hash` matches or the guesses
    /// run out, in one conditional statement: parallel guesses can never be compared
    /// more than `max_attempts` times. Returns the code's stored hash when a guess was
    /// counted (the caller compares it in constant time), `None` when no code could take
    /// a guess.
    pub async fn captcha_guess(
        &self,
        mobile: &str,
        hash: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "UPDATE captchas SET attempts = attempts + 1,
                used = CASE WHEN code_hash = $2 OR attempts + 1 >= $4 THEN 1 ELSE 0 END
             WHERE id = (SELECT id FROM captchas WHERE mobile = $1 AND used = 0
                         ORDER BY created_at DESC, id DESC LIMIT 1)
               AND used = 0 AND attempts < $4 AND expires_at >= $3
             RETURNING code_hash",
        )
        .bind(mobile)
        .bind(hash)
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)
    }
}

impl Db {
    /// PostgreSQL: locks the user's row for the rest of the transaction (a no-op on
    /// SQLite, whose single connection already serialises transactions).
    async fn lock_user(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        user_id: i64,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(se)?;
        }
        Ok(())
    }
}

fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((_, rest)) => format!("…@{rest}"),
        None => url.to_string(),
    }
}

/// Makes sure the folder of an SQLite file exists and the URL creates the file.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") {
        return Err(StoreError(
            "an in-memory SQLite database would vanish on restart; give a file path".into(),
        ));
    }
    if let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

fn device_from_row(r: &AnyRow) -> Result<DeviceRecord, StoreError> {
    let billing: String = r.try_get(9).map_err(se)?;
    let status: String = r.try_get(10).map_err(se)?;
    Ok(DeviceRecord {
        id: r.try_get(0).map_err(se)?,
        code: r.try_get(1).map_err(se)?,
        client_id: r.try_get(2).map_err(se)?,
        name: r.try_get(3).map_err(se)?,
        province: r.try_get(4).map_err(se)?,
        city: r.try_get(5).map_err(se)?,
        area: r.try_get(6).map_err(se)?,
        location: r.try_get(7).map_err(se)?,
        charge_mode: r.try_get(8).map_err(se)?,
        billing_mode: BillingMode::parse(&billing)
            .ok_or_else(|| StoreError(format!("bad billing_mode {billing}")))?,
        status: match status.as_str() {
            "lock" => PersistedStatus::OperatorLock,
            "maintain" => PersistedStatus::Maintain,
            _ => PersistedStatus::Free,
        },
        maintainer: r.try_get(11).map_err(se)?,
        updating: r.try_get::<i64, _>(12).map_err(se)? != 0,
        last_seen_at: r.try_get(13).map_err(se)?,
    })
}

fn expense_from_row(r: &AnyRow) -> Result<ExpenseRow, StoreError> {
    Ok(ExpenseRow {
        id: r.try_get(0).map_err(se)?,
        user_id: r.try_get(1).map_err(se)?,
        device_id: r.try_get(2).map_err(se)?,
        province: r.try_get(3).map_err(se)?,
        city: r.try_get(4).map_err(se)?,
        area: r.try_get(5).map_err(se)?,
        location: r.try_get(6).map_err(se)?,
        cost_money: r.try_get(7).map_err(se)?,
        started_at: r.try_get(8).map_err(se)?,
        utime: r.try_get(9).map_err(se)?,
        ended_at: r.try_get::<Option<i64>, _>(10).map_err(se)?.unwrap_or(0),
        billed_ms: r.try_get(11).map_err(se)?,
        device_code: r.try_get(12).map_err(se)?,
        end_reason: r
            .try_get::<Option<String>, _>(13)
            .map_err(se)?
            .unwrap_or_default(),
    })
}

fn user_from_row(r: &AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: r.try_get(0).map_err(se)?,
        openid: r.try_get(1).map_err(se)?,
        nickname: r.try_get(2).map_err(se)?,
        head_img_url: r.try_get(3).map_err(se)?,
        mobile: r.try_get(4).map_err(se)?,
        total_account: r.try_get(5).map_err(se)?,
        used_account: r.try_get(6).map_err(se)?,
        balance_account: r.try_get(7).map_err(se)?,
        state: r.try_get::<i64, _>(8).map_err(se)? as i32,
        ctime: r.try_get(9).map_err(se)?,
        utime: r.try_get(10).map_err(se)?,
    })
}

fn session_from_row(r: &AnyRow) -> Result<SessionRecord, StoreError> {
    let billing: String = r.try_get(7).map_err(se)?;
    Ok(SessionRecord {
        id: r.try_get(0).map_err(se)?,
        token: r.try_get(1).map_err(se)?,
        user_id: r.try_get(2).map_err(se)?,
        openid: r.try_get(3).map_err(se)?,
        device_id: r.try_get(4).map_err(se)?,
        device_code: r.try_get(5).map_err(se)?,
        charge_mode: r.try_get(6).map_err(se)?,
        billing_mode: BillingMode::parse(&billing).unwrap_or(BillingMode::Prepaid),
        started_at: r.try_get(8).map_err(se)?,
        reserved_units: r.try_get(9).map_err(se)?,
        last_heard_at: r.try_get(10).map_err(se)?,
    })
}

fn status_str(s: PersistedStatus) -> &'static str {
    match s {
        PersistedStatus::Free => "free",
        PersistedStatus::OperatorLock => "lock",
        PersistedStatus::Maintain => "maintain",
    }
}

#[async_trait]
impl Store for Db {
    async fn device_by_code(&self, code: &str) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE code = $1"
        )))
        .bind(code)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn set_device_status(
        &self,
        device_id: i64,
        status: PersistedStatus,
        maintainer: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET status = $1, maintainer = $2 WHERE id = $3")
            .bind(status_str(status))
            .bind(maintainer)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    async fn set_device_updating(&self, device_id: i64, updating: bool) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET updating = $1 WHERE id = $2")
            .bind(updating as i64)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    async fn start_session(&self, new: NewSession) -> Result<Started, StartError> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        // SPEC §3: a user with an unpaid postpaid order is blocked until it is paid. The
        // order is written in the transaction that ends its session. On PostgreSQL
        // (several nodes, READ COMMITTED) both transactions first lock the user's row, so
        // an end committing on another node is either seen by the read below or waits
        // for this start (whose insert then meets the running session's unique index).
        // SQLite runs one connection: transactions never interleave.
        self.lock_user(&mut tx, new.user_id).await?;
        let unpaid: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE user_id = $1 AND status = 'unpaid'",
        )
        .bind(new.user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(se)?;
        if unpaid > 0 {
            return Err(StartError::UnpaidOrder);
        }
        let ins = sqlx::query_scalar::<_, i64>(
            "INSERT INTO sessions (token, user_id, device_id, charge_mode, billing_mode, started_at, reserved_units, last_heard_at, utime)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $6, $6) RETURNING id",
        )
        .bind(&new.token)
        .bind(new.user_id)
        .bind(new.device_id)
        .bind(new.charge_mode)
        .bind(new.billing_mode.as_str())
        .bind(new.started_at)
        .fetch_one(&mut *tx)
        .await;
        let id = match ins {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                let busy: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL",
                )
                .bind(new.user_id)
                .fetch_one(&self.pool)
                .await
                .map_err(se)?;
                return Err(if busy > 0 {
                    StartError::UserBusy
                } else {
                    StartError::DeviceBusy
                });
            }
            Err(e) => return Err(se(e).into()),
        };
        if new.billing_mode == BillingMode::Postpaid {
            // Nothing is reserved: the cost becomes an order at the end.
            let balance: Option<i64> =
                sqlx::query_scalar("SELECT balance_account FROM users WHERE id = $1 AND state = 0")
                    .bind(new.user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(se)?;
            let Some(balance) = balance else {
                return Err(StartError::UserNotAllowed);
            };
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLS} FROM sessions s JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id WHERE s.id = $1"
            )))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(se)?;
            let session = session_from_row(&row)?;
            tx.commit().await.map_err(se)?;
            return Ok(Started { session, balance });
        }
        // A priced first unit (issue 16) is recorded with how it is paid; one covered by a
        // package debits nothing (a zero-fen ledger row keeps `<session>:1` present).
        let debit = match new.first {
            Some(first) => {
                pricing::record_unit(&mut tx, id, first).await?;
                if let Some((up, secs)) = first.package
                    && !pricing::use_package(&mut tx, id, new.user_id, 1, up, secs, new.started_at)
                        .await?
                {
                    return Err(StartError::Store(StoreError(
                        "the package has no time left".into(),
                    )));
                }
                first.debit
            }
            None => new.charge_mode,
        };
        sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, session_id, created_at) VALUES ($1, $2, $3, 'debit', $4, $5)",
        )
        .bind(format!("{id}:1"))
        .bind(new.user_id)
        .bind(-debit)
        .bind(id)
        .bind(new.started_at)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET used_account = used_account + $1, balance_account = balance_account - $1, utime = $2
             WHERE id = $3 AND state = 0 AND balance_account >= $1 RETURNING balance_account",
        )
        .bind(debit)
        .bind(new.started_at)
        .bind(new.user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        let Some(balance) = balance else {
            drop(tx);
            let state: Option<i64> = sqlx::query_scalar("SELECT state FROM users WHERE id = $1")
                .bind(new.user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(se)?;
            return Err(match state {
                Some(0) => StartError::InsufficientBalance,
                _ => StartError::UserNotAllowed,
            });
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions s JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id WHERE s.id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(se)?;
        let session = session_from_row(&row)?;
        tx.commit().await.map_err(se)?;
        Ok(Started { session, balance })
    }

    async fn reserve_unit(
        &self,
        session_id: i64,
        user_id: i64,
        unit: i64,
        price: i64,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        let active = sqlx::query(
            "UPDATE sessions SET
                reserved_units = CASE WHEN reserved_units > $1 THEN reserved_units ELSE $1 END,
                last_heard_at = CASE WHEN last_heard_at > $2 THEN last_heard_at ELSE $2 END,
                utime = $4
             WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(unit)
        .bind(last_heard_at)
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        if active.rows_affected() == 0 {
            return Ok(Reserve::SessionEnded);
        }
        let inserted = sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, session_id, created_at) VALUES ($1, $2, $3, 'debit', $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(format!("{session_id}:{unit}"))
        .bind(user_id)
        .bind(-price)
        .bind(session_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        if inserted.is_none() {
            // Reserved before (a replayed step): nothing more to do.
            tx.commit().await.map_err(se)?;
            return Ok(Reserve::Reserved {
                balance: self.user_balance(user_id).await?,
            });
        }
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET used_account = used_account + $1, balance_account = balance_account - $1, utime = $2
             WHERE id = $3 AND balance_account >= $1 RETURNING balance_account",
        )
        .bind(price)
        .bind(now)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        match balance {
            Some(balance) => {
                tx.commit().await.map_err(se)?;
                Ok(Reserve::Reserved { balance })
            }
            None => {
                tx.rollback().await.map_err(se)?;
                Ok(Reserve::Insufficient {
                    balance: self.user_balance(user_id).await?,
                })
            }
        }
    }

    async fn end_session(&self, end: SessionEnd) -> StoreResult<Ended> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        // Serialised per user with `start_session` (see there).
        self.lock_user(&mut tx, end.user_id).await?;
        let r = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2, billed_ms = $3, cost_money = $4, utime = $1
             WHERE id = $5 AND ended_at IS NULL",
        )
        .bind(end.ended_at)
        .bind(end.reason.as_str())
        .bind(end.billed_ms)
        .bind(end.cost)
        .bind(end.session_id)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        if r.rows_affected() == 0 {
            drop(tx);
            return Ok(Ended {
                changed: false,
                balance: self.user_balance(end.user_id).await?,
            });
        }
        if let Some(order_id) = &end.order_id {
            // A free session (within the free start) owes nothing: its order is born paid.
            let status = if end.cost == 0 { "paid" } else { "unpaid" };
            sqlx::query(
                "INSERT INTO orders (id, session_id, user_id, device_id, amount, status, provider, pay_time, ctime, utime)
                 SELECT $1, id, user_id, device_id, $2, $3, $4, $5, $6, $6 FROM sessions WHERE id = $7",
            )
            .bind(order_id)
            .bind(end.cost)
            .bind(status)
            .bind((end.cost == 0).then_some("free"))
            .bind((end.cost == 0).then_some(end.ended_at))
            .bind(end.ended_at)
            .bind(end.session_id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        pricing::return_package_time(
            &mut tx,
            end.session_id,
            end.user_id,
            &end.package_returns,
            end.ended_at,
        )
        .await?;
        if end.refund > 0 {
            sqlx::query(
                "INSERT INTO ledger (id, user_id, amount, kind, session_id, created_at) VALUES ($1, $2, $3, 'refund', $4, $5)",
            )
            .bind(format!("{}:refund", end.session_id))
            .bind(end.user_id)
            .bind(end.refund)
            .bind(end.session_id)
            .bind(end.ended_at)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
            sqlx::query(
                "UPDATE users SET used_account = used_account - $1, balance_account = balance_account + $1, utime = $2 WHERE id = $3",
            )
            .bind(end.refund)
            .bind(end.ended_at)
            .bind(end.user_id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        let balance: i64 = sqlx::query_scalar("SELECT balance_account FROM users WHERE id = $1")
            .bind(end.user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(se)?;
        tx.commit().await.map_err(se)?;
        Ok(Ended {
            changed: true,
            balance,
        })
    }

    async fn active_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions s JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id
             WHERE s.ended_at IS NULL ORDER BY s.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn active_session(&self, key: ActiveKey<'_>) -> StoreResult<Option<SessionRecord>> {
        let cond = match key {
            ActiveKey::Device(_) => "s.device_id = $1",
            ActiveKey::User(_) => "s.user_id = $1",
            ActiveKey::Token(_) => "s.token = $1",
        };
        let q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions s JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id
             WHERE s.ended_at IS NULL AND {cond}"
        )));
        let q = match key {
            ActiveKey::Device(id) | ActiveKey::User(id) => q.bind(id),
            ActiveKey::Token(t) => q.bind(t.to_string()),
        };
        let row = q.fetch_optional(&self.pool).await.map_err(se)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn record_heartbeats(
        &self,
        devices: &[(i64, i64)],
        sessions: &[(i64, i64)],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(se)?;
        for (id, at) in devices {
            sqlx::query(
                "UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND (last_seen_at IS NULL OR last_seen_at < $1)",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        for (id, at) in sessions {
            sqlx::query(
                "UPDATE sessions SET last_heard_at = $1 WHERE id = $2 AND ended_at IS NULL AND last_heard_at < $1",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        Ok(())
    }

    async fn user_balance(&self, user_id: i64) -> StoreResult<i64> {
        let b: Option<i64> = sqlx::query_scalar("SELECT balance_account FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        Ok(b.unwrap_or(0))
    }

    async fn add_command(
        &self,
        device_id: i64,
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO device_commands (device_id, name, text, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(device_id)
        .bind(name)
        .bind(text)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)
    }

    async fn add_commands(
        &self,
        device_ids: &[i64],
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<i64>> {
        // Multi-row inserts in chunks: one round trip per 500 devices, not per device.
        let mut tx = self.pool.begin().await.map_err(se)?;
        let mut ids = Vec::with_capacity(device_ids.len());
        for chunk in device_ids.chunks(500) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, $1, $2, $3)", i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO device_commands (device_id, name, text, created_at) VALUES {} RETURNING id, device_id",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .bind(text)
                .bind(now);
            for d in chunk {
                q = q.bind(*d);
            }
            let rows = q.fetch_all(&mut *tx).await.map_err(se)?;
            // RETURNING order is not promised: match ids back to devices.
            let mut by_device = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                let id: i64 = r.try_get(0).map_err(se)?;
                let dev: i64 = r.try_get(1).map_err(se)?;
                by_device.insert(dev, id);
            }
            for d in chunk {
                ids.push(
                    *by_device
                        .get(d)
                        .ok_or_else(|| StoreError("a broadcast row went missing".into()))?,
                );
            }
        }
        tx.commit().await.map_err(se)?;
        Ok(ids)
    }

    async fn pending_commands(
        &self,
        device_id: i64,
    ) -> StoreResult<Vec<(i64, String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, name, text FROM device_commands WHERE device_id = $1 AND acked_at IS NULL ORDER BY id",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(se)?,
                    r.try_get(1).map_err(se)?,
                    r.try_get(2).map_err(se)?,
                ))
            })
            .collect()
    }

    async fn ack_commands(&self, ids: &[i64], now: i64) -> StoreResult<()> {
        for id in ids {
            sqlx::query(
                "UPDATE device_commands SET acked_at = $1 WHERE id = $2 AND acked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        }
        Ok(())
    }

    async fn reserve_priced_unit(
        &self,
        session_id: i64,
        user_id: i64,
        charge: UnitCharge,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve> {
        self.reserve_priced(session_id, user_id, charge, last_heard_at, now)
            .await
    }

    async fn session_units(&self, session_id: i64) -> StoreResult<Vec<UnitCharge>> {
        self.session_units_of(session_id).await
    }

    async fn held_packages(
        &self,
        user_id: i64,
        now: i64,
    ) -> StoreResult<Vec<kioskd_actors::pricing::HeldPackage>> {
        self.held_packages_of(user_id, now).await
    }

    async fn user_group(&self, user_id: i64) -> StoreResult<Option<i64>> {
        self.group_of_user(user_id).await
    }

    async fn unpaid_order_of_device(&self, device_id: i64) -> StoreResult<Option<String>> {
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
}
