//! Sessions: start (with the first reservation), reservations, end (refund, postpaid
//! order), recovery lookups, heartbeats and the expense list.

use super::RowExt;
use sqlx::any::AnyRow;

use super::rows::*;
use super::{Backend, Db, is_unique_violation, se};
use kioskd_actors::ports::*;

/// A session joined with its device's location, as `expense_from_row` reads it.
pub(super) const EXPENSE_SELECT: &str =
    "SELECT s.id, s.user_id, s.device_id, d.province, d.city, d.area, d.location, s.cost_money,
    s.started_at, s.utime, s.ended_at, s.billed_ms, d.code, s.end_reason
    FROM sessions s JOIN devices d ON d.id = s.device_id";
pub(super) const SESSION_COLS: &str = "s.id, s.token, s.user_id, u.openid, s.device_id, d.code, s.charge_mode, s.billing_mode, s.started_at, s.reserved_units, s.last_heard_at";

impl Db {
    /// The running session holding `token`: its device's code and its user.
    pub async fn running_session_by_token(
        &self,
        token: &str,
    ) -> Result<Option<RunningSession>, StoreError> {
        let row = sqlx::query(
            "SELECT d.code, s.user_id FROM sessions s JOIN devices d ON d.id = s.device_id
             WHERE s.token = $1 AND s.ended_at IS NULL",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.map(|r| {
            Ok(RunningSession {
                device_code: r.col("code")?,
                user_id: r.col("user_id")?,
            })
        })
        .transpose()
    }

    /// The token of the running session with this id (None: no such running session).
    pub async fn running_session_token(&self, id: i64) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT token FROM sessions WHERE id = $1 AND ended_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)
    }

    /// A page of ended sessions (the expense list).
    pub async fn expense_page(
        &self,
        user_id: i64,
        q: &PageQuery,
    ) -> Result<Page<ExpenseRow>, StoreError> {
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
        Ok(Page { total, rows: data })
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

    /// Creates a session and reserves its first unit in one transaction (postpaid: no reservation and no balance check). Refused while the user has an unpaid order.
    pub async fn start_session(&self, new: NewSession) -> Result<Started, StartError> {
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
                super::pricing::record_unit(&mut tx, id, first).await?;
                if let Some(kioskd_actors::pricing::PackageTime {
                    user_package: up,
                    seconds: secs,
                }) = first.package
                    && !super::pricing::use_package(
                        &mut tx,
                        id,
                        new.user_id,
                        1,
                        up,
                        secs,
                        new.started_at,
                    )
                    .await?
                {
                    // The package has no time left after all: nothing is written.
                    return Err(StartError::Store(StoreError::Refused));
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

    /// Reserves unit `unit` of a session (ledger id `<session>:<unit>`) and records the last heartbeat, in one transaction.
    pub async fn reserve_unit(
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

    /// Ends a session and refunds unused reservations (postpaid: creates its order), in one transaction.
    pub async fn end_session(&self, end: SessionEnd) -> StoreResult<Ended> {
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
        super::pricing::return_package_time(
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

    /// Every session that has not ended.
    pub async fn active_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions s JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id
             WHERE s.ended_at IS NULL ORDER BY s.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(session_from_row).collect()
    }

    /// The running session of a device, a token or a user.
    pub async fn active_session(&self, key: ActiveKey<'_>) -> StoreResult<Option<SessionRecord>> {
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

    /// PostgreSQL: locks the user's row for the rest of the transaction (a no-op on
    /// SQLite, whose single connection already serialises transactions).
    pub(super) async fn lock_user(
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

pub(super) fn expense_from_row(r: &AnyRow) -> Result<ExpenseRow, StoreError> {
    Ok(ExpenseRow {
        id: r.col("id")?,
        user_id: r.col("user_id")?,
        device_id: r.col("device_id")?,
        province: r.col("province")?,
        city: r.col("city")?,
        area: r.col("area")?,
        location: r.col("location")?,
        cost_money: r.col("cost_money")?,
        started_at: r.col("started_at")?,
        utime: r.col("utime")?,
        ended_at: r.col::<Option<i64>>("ended_at")?.unwrap_or(0),
        billed_ms: r.col("billed_ms")?,
        device_code: r.col("code")?,
        end_reason: r.col::<Option<String>>("end_reason")?.unwrap_or_default(),
    })
}

pub(super) fn session_from_row(r: &AnyRow) -> Result<SessionRecord, StoreError> {
    let billing: String = r.col("billing_mode")?;
    Ok(SessionRecord {
        id: r.col("id")?,
        token: r.col("token")?,
        user_id: r.col("user_id")?,
        openid: r.col("openid")?,
        device_id: r.col("device_id")?,
        device_code: r.col("code")?,
        charge_mode: r.col("charge_mode")?,
        billing_mode: super::devices::billing_mode("sessions.billing_mode", &billing)?,
        started_at: r.col("started_at")?,
        reserved_units: r.col("reserved_units")?,
        last_heard_at: r.col("last_heard_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db(dir: &tempfile::TempDir) -> Db {
        Db::connect(&format!("sqlite://{}/k.db", dir.path().display()), 1)
            .await
            .unwrap()
    }

    /// An unknown enum value in the database is an error naming the column and the
    /// value, never a silent default (it used to become prepaid / free).
    #[tokio::test]
    async fn unknown_stored_enums_are_corrupt_not_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let dev = NewDevice {
            code: "AA-BB".into(),
            client_id: None,
            name: "k".into(),
            province: String::new(),
            city: String::new(),
            area: String::new(),
            location: String::new(),
            charge_mode: 100,
            billing_mode: BillingMode::Prepaid,
            secret: None,
            legacy_unsigned: None,
        };
        let dev = db.add_device(&dev, 1).await.unwrap();
        let user = db.ensure_user("o1", "n", "", 1).await.unwrap();
        // sessions.billing_mode has no CHECK constraint: a stray value can be stored.
        sqlx::query(
            "INSERT INTO sessions (token, user_id, device_id, charge_mode, billing_mode, started_at, last_heard_at, utime)
             VALUES ('t', $1, $2, 100, 'weekly', 1, 1, 1)",
        )
        .bind(user.id)
        .bind(dev.id)
        .execute(db.pool())
        .await
        .unwrap();
        let corrupt = StoreError::corrupt("sessions.billing_mode", "weekly");
        assert_eq!(db.active_sessions().await.unwrap_err(), corrupt);
        assert_eq!(
            db.active_session(ActiveKey::Token("t")).await.unwrap_err(),
            corrupt
        );
        assert!(
            db.active_sessions()
                .await
                .unwrap_err()
                .to_string()
                .contains("weekly")
        );

        // devices.status has a CHECK constraint; SQLite lets a test bypass it (one
        // connection, so the pragma holds for the update).
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE devices SET status = 'busy' WHERE id = $1")
            .bind(dev.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.device_by_code("AA-BB").await.unwrap_err(),
            StoreError::corrupt("devices.status", "busy")
        );
        sqlx::query("UPDATE devices SET status = 'free', billing_mode = 'monthly' WHERE id = $1")
            .bind(dev.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.device_by_code("AA-BB").await.unwrap_err(),
            StoreError::corrupt("devices.billing_mode", "monthly")
        );

        // The legacy-call policy: allow, refuse or unset; anything else is corrupt, not
        // "refuse".
        assert_eq!(
            db.device_legacy("AA-BB").await.unwrap(),
            Some(DeviceLegacy {
                secret: None,
                allow_unsigned: false
            })
        );
        sqlx::query("UPDATE devices SET legacy_unsigned = 'allow' WHERE id = $1")
            .bind(dev.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert!(
            db.device_legacy("AA-BB")
                .await
                .unwrap()
                .unwrap()
                .allow_unsigned
        );
        sqlx::query("UPDATE devices SET legacy_unsigned = 'sometimes' WHERE id = $1")
            .bind(dev.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(
            db.device_legacy("AA-BB").await.unwrap_err(),
            StoreError::corrupt("devices.legacy_unsigned", "sometimes")
        );
    }
}
