//! What the operator console reads beyond the plain ops API: user search, a device's and
//! a user's session history, a device's commands, the on-call alerts that live in the
//! database (outbox, payments), and the reports — revenue, sessions and utilisation for
//! a period, from the ledger and sessions tables, in integer fen.
//!
//! Report windows are half-open `[from, to)` in unix ms. A session counts in the window
//! it started in; its busy time is the part of `[started_at, ended_at or now)` inside the
//! window. Money counts by the ledger row's `created_at`: consumption is the negated sum
//! of `debit` and `refund` rows (so a refund lowers it), recharges the sum of `recharge`
//! rows (postpaid order payments included: they are `recharge` rows too), adjustments
//! the sum of `adjust` rows. Available time of a device is the part of the window after
//! it was registered and before now.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::devices::billing_mode;
use super::users::{USER_COLS, user_from_row};
use super::{Db, RowExt, se};
use crate::store::UserRow;
use kioskd_actors::ports::StoreError;

type R<T> = Result<T, StoreError>;

/// One session as the console lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionHistoryRow {
    /// Session id.
    pub id: i64,
    /// User id.
    pub user_id: i64,
    /// User's nickname.
    pub nickname: String,
    /// User's mobile.
    pub mobile: Option<String>,
    /// Device code.
    pub device_code: String,
    /// Device name.
    pub device_name: String,
    /// Device location (site).
    pub location: String,
    /// `prepaid` or `postpaid`.
    pub billing_mode: String,
    /// Fen per unit.
    pub charge_mode: i64,
    /// Start (unix ms).
    pub started_at: i64,
    /// End (unix ms), None while running.
    pub ended_at: Option<i64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Final cost (fen; reserved so far while running).
    pub cost_money: i64,
    /// Billed time (ms).
    pub billed_ms: i64,
}

/// One kiosk command.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommandRow {
    /// Command id.
    pub id: i64,
    /// `lock`, `unlock`, `restart`, `message`, `update_games`.
    pub name: String,
    /// Text, for `message`.
    pub text: Option<String>,
    /// Created (unix ms).
    pub created_at: i64,
    /// Acknowledged by the kiosk (unix ms); None: pending.
    pub acked_at: Option<i64>,
}

/// Outbox and payment state for the alerts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BackgroundAlerts {
    /// Outbox sends that gave up (`failed`).
    pub outbox_failed: i64,
    /// Outbox sends still pending after at least one failed attempt.
    pub outbox_retrying: i64,
    /// The latest outbox error, if any.
    pub outbox_last_error: Option<String>,
    /// WeChat Pay recharges created before the cut-off, neither paid nor closed (their
    /// notification never came).
    pub payments_unsettled: i64,
    /// The oldest of those (unix ms).
    pub payments_oldest: Option<i64>,
    /// WeChat Pay payments of postpaid orders before the cut-off still open while the
    /// order is unpaid.
    pub order_payments_unsettled: i64,
}

/// Totals of one report window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WindowTotals {
    /// Sessions started.
    pub sessions: i64,
    /// Busy time inside the window (ms).
    pub busy_ms: i64,
    /// Device time available inside the window (ms).
    pub available_ms: i64,
    /// Consumption (fen): debits net of refunds.
    pub consumption: i64,
    /// Recharges (fen), postpaid order payments included.
    pub recharges: i64,
    /// Operator adjustments (fen, signed).
    pub adjustments: i64,
}

/// One device's (or one site's) report row.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GroupTotals {
    /// Device code, or the site (device `location`).
    pub key: String,
    /// Device name (empty for a site).
    pub name: String,
    /// Devices in the group.
    pub devices: i64,
    /// Sessions started.
    pub sessions: i64,
    /// Busy time inside the window (ms).
    pub busy_ms: i64,
    /// Device time available inside the window (ms).
    pub available_ms: i64,
    /// Consumption on these devices (fen).
    pub consumption: i64,
}

const HISTORY_SELECT: &str =
    "SELECT s.id AS id, s.user_id AS user_id, u.nickname AS nickname, u.mobile AS mobile,
    d.code AS device_code, d.name AS device_name, d.location AS location,
    s.billing_mode AS billing_mode, s.charge_mode AS charge_mode, s.started_at AS started_at,
    s.ended_at AS ended_at, s.end_reason AS end_reason, s.cost_money AS cost_money,
    s.billed_ms AS billed_ms
    FROM sessions s JOIN users u ON u.id = s.user_id JOIN devices d ON d.id = s.device_id";

fn history_from_row(r: &AnyRow) -> R<SessionHistoryRow> {
    let mode: String = r.col("billing_mode")?;
    Ok(SessionHistoryRow {
        id: r.col("id")?,
        user_id: r.col("user_id")?,
        nickname: r.col("nickname")?,
        mobile: r.col("mobile")?,
        device_code: r.col("device_code")?,
        device_name: r.col("device_name")?,
        location: r.col("location")?,
        billing_mode: billing_mode("sessions.billing_mode", &mode)?
            .as_str()
            .to_string(),
        charge_mode: r.col("charge_mode")?,
        started_at: r.col("started_at")?,
        ended_at: r.col("ended_at")?,
        end_reason: r.col("end_reason")?,
        cost_money: r.col("cost_money")?,
        billed_ms: r.col("billed_ms")?,
    })
}

/// `LIKE` pattern text with `\`, `%` and `_` escaped (used with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The busy part (ms) of session `s` inside `[$1, $2)`, sessions still running counted
/// up to `$3` (now). Portable SQL (no LEAST/GREATEST, which SQLite lacks).
const BUSY_END: &str =
    "(CASE WHEN COALESCE(s.ended_at, $3) < $2 THEN COALESCE(s.ended_at, $3) ELSE $2 END)";
const BUSY_START: &str = "(CASE WHEN s.started_at > $1 THEN s.started_at ELSE $1 END)";

fn busy_expr() -> String {
    format!("(CASE WHEN {BUSY_END} > {BUSY_START} THEN {BUSY_END} - {BUSY_START} ELSE 0 END)")
}

/// The available part (ms) of device `d` inside `[$1, $2)`, after its registration and
/// before `$3` (now).
fn available_expr() -> String {
    let end = "(CASE WHEN $3 < $2 THEN $3 ELSE $2 END)";
    let start = "(CASE WHEN d.ctime > $1 THEN d.ctime ELSE $1 END)";
    format!("(CASE WHEN {end} > {start} THEN {end} - {start} ELSE 0 END)")
}

/// Per device, for `[$1, $2)` at `$3`: id, code, name, location, sessions, busy,
/// available, consumption.
fn per_device_sql() -> String {
    let busy = busy_expr();
    let avail = available_expr();
    format!(
        "SELECT d.id AS id, d.code AS code, d.name AS name, d.location AS location,
           (SELECT COUNT(*) FROM sessions s WHERE s.device_id = d.id AND s.started_at >= $1 AND s.started_at < $2) AS sessions,
           (SELECT CAST(COALESCE(SUM({busy}), 0) AS BIGINT) FROM sessions s
              WHERE s.device_id = d.id AND s.started_at < $2 AND (s.ended_at IS NULL OR s.ended_at > $1)) AS busy,
           CAST({avail} AS BIGINT) AS available,
           (SELECT CAST(COALESCE(SUM(-l.amount), 0) AS BIGINT) FROM ledger l JOIN sessions s ON s.id = l.session_id
              WHERE s.device_id = d.id AND l.kind IN ('debit', 'refund') AND l.created_at >= $1 AND l.created_at < $2) AS consumption
         FROM devices d"
    )
}

impl Db {
    /// Users whose mobile starts with `q`, whose openid is `q` or starts with it, or
    /// whose nickname contains it; newest first, at most `limit`.
    pub async fn search_users(&self, q: &str, limit: i64) -> R<Vec<UserRow>> {
        let esc = like_escape(q);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users
             WHERE mobile LIKE $1 ESCAPE '\\' OR openid LIKE $1 ESCAPE '\\' OR nickname LIKE $2 ESCAPE '\\'
             ORDER BY id DESC LIMIT $3"
        )))
        .bind(format!("{esc}%"))
        .bind(format!("%{esc}%"))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(user_from_row).collect()
    }

    /// A user's sessions, newest first.
    pub async fn user_sessions(&self, user_id: i64, limit: i64) -> R<Vec<SessionHistoryRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{HISTORY_SELECT} WHERE s.user_id = $1 ORDER BY s.id DESC LIMIT $2"
        )))
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(history_from_row).collect()
    }

    /// Every running session.
    pub async fn running_sessions(&self) -> R<Vec<SessionHistoryRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{HISTORY_SELECT} WHERE s.ended_at IS NULL ORDER BY s.id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(history_from_row).collect()
    }

    /// A device's sessions, newest first.
    pub async fn device_sessions(&self, device_id: i64, limit: i64) -> R<Vec<SessionHistoryRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{HISTORY_SELECT} WHERE s.device_id = $1 ORDER BY s.id DESC LIMIT $2"
        )))
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(history_from_row).collect()
    }

    /// A device's commands: every pending one, then the latest acknowledged ones, newest
    /// first, at most `limit` in all.
    pub async fn device_commands(&self, device_id: i64, limit: i64) -> R<Vec<CommandRow>> {
        let rows = sqlx::query(
            "SELECT id, name, text, created_at, acked_at FROM device_commands
             WHERE device_id = $1
             ORDER BY CASE WHEN acked_at IS NULL THEN 0 ELSE 1 END, id DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(CommandRow {
                    id: r.col("id")?,
                    name: r.col("name")?,
                    text: r.col("text")?,
                    created_at: r.col("created_at")?,
                    acked_at: r.col("acked_at")?,
                })
            })
            .collect()
    }

    /// Outbox failures and payments whose notification is overdue (created before
    /// `cutoff`).
    pub async fn background_alerts(&self, cutoff: i64) -> R<BackgroundAlerts> {
        let mut a = BackgroundAlerts::default();
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
                    COALESCE(SUM(CASE WHEN status IN ('pending', 'sending') AND attempts > 0 THEN 1 ELSE 0 END), 0) AS retrying
             FROM outbox",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        a.outbox_failed = row.col("failed")?;
        a.outbox_retrying = row.col("retrying")?;
        a.outbox_last_error = sqlx::query_scalar(
            "SELECT last_error FROM outbox WHERE status <> 'sent' AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?
        .flatten();
        let row = sqlx::query(
            "SELECT COUNT(*) AS unsettled, MIN(ctime) AS oldest FROM recharges
             WHERE status = 'pending' AND provider = 'wechatpay' AND closed_at IS NULL AND ctime < $1",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        a.payments_unsettled = row.col("unsettled")?;
        a.payments_oldest = row.col("oldest")?;
        a.order_payments_unsettled = sqlx::query_scalar(
            "SELECT COUNT(*) FROM order_payments p JOIN orders o ON o.id = p.order_id
             WHERE p.closed_at IS NULL AND o.status = 'unpaid' AND p.ctime < $1",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        Ok(a)
    }

    /// The totals of `[from, to)` at `now`.
    pub async fn report_window(&self, from: i64, to: i64, now: i64) -> R<WindowTotals> {
        let busy = busy_expr();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT
               (SELECT COUNT(*) FROM sessions s WHERE s.started_at >= $1 AND s.started_at < $2) AS sessions,
               (SELECT CAST(COALESCE(SUM({busy}), 0) AS BIGINT) FROM sessions s
                  WHERE s.started_at < $2 AND (s.ended_at IS NULL OR s.ended_at > $1)) AS busy_ms,
               (SELECT CAST(COALESCE(SUM(CASE WHEN kind IN ('debit', 'refund') THEN -amount ELSE 0 END), 0) AS BIGINT)
                  FROM ledger WHERE created_at >= $1 AND created_at < $2) AS consumption,
               (SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'recharge' THEN amount ELSE 0 END), 0) AS BIGINT)
                  FROM ledger WHERE created_at >= $1 AND created_at < $2) AS recharges,
               (SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'adjust' THEN amount ELSE 0 END), 0) AS BIGINT)
                  FROM ledger WHERE created_at >= $1 AND created_at < $2) AS adjustments,
               (SELECT CAST(COALESCE(SUM({avail}), 0) AS BIGINT) FROM devices d) AS available_ms",
            avail = available_expr(),
        )))
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        Ok(WindowTotals {
            sessions: row.col("sessions")?,
            busy_ms: row.col("busy_ms")?,
            consumption: row.col("consumption")?,
            recharges: row.col("recharges")?,
            adjustments: row.col("adjustments")?,
            available_ms: row.col("available_ms")?,
        })
    }

    /// Per device totals of `[from, to)` at `now`, by device code.
    pub async fn report_devices(&self, from: i64, to: i64, now: i64) -> R<Vec<GroupTotals>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT x.code AS group_key, x.name AS name, CAST(1 AS BIGINT) AS devices, x.sessions AS sessions,
                    x.busy AS busy_ms, x.available AS available_ms, x.consumption AS consumption
             FROM ({}) x ORDER BY x.code",
            per_device_sql()
        )))
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(group_from_row).collect()
    }

    /// Per site (device `location`) totals of `[from, to)` at `now`.
    pub async fn report_sites(&self, from: i64, to: i64, now: i64) -> R<Vec<GroupTotals>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT x.location AS group_key, '' AS name, COUNT(*) AS devices,
                    CAST(SUM(x.sessions) AS BIGINT) AS sessions, CAST(SUM(x.busy) AS BIGINT) AS busy_ms,
                    CAST(SUM(x.available) AS BIGINT) AS available_ms,
                    CAST(SUM(x.consumption) AS BIGINT) AS consumption
             FROM ({}) x GROUP BY x.location ORDER BY x.location",
            per_device_sql()
        )))
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(group_from_row).collect()
    }
}

fn group_from_row(r: &AnyRow) -> R<GroupTotals> {
    Ok(GroupTotals {
        key: r.col("group_key")?,
        name: r.col("name")?,
        devices: r.col("devices")?,
        sessions: r.col("sessions")?,
        busy_ms: r.col("busy_ms")?,
        available_ms: r.col("available_ms")?,
        consumption: r.col("consumption")?,
    })
}

#[cfg(test)]
mod tests {
    use super::like_escape;
    use crate::store::NewDevice;
    use kioskd_actors::ports::{BillingMode, StoreError};

    /// A session's unknown stored billing mode is an error naming the column and the
    /// value, not a string passed on to the console.
    #[tokio::test]
    async fn an_unknown_billing_mode_in_the_history_is_corrupt() {
        let (_dir, db) = crate::store::scratch_db().await;
        let dev = db
            .add_device(
                &NewDevice {
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
                },
                1,
            )
            .await
            .unwrap();
        let user = db.ensure_user("o1", "n", "", 1).await.unwrap();
        sqlx::query(
            "INSERT INTO sessions (token, user_id, device_id, charge_mode, billing_mode, started_at, last_heard_at, utime)
             VALUES ('t', $1, $2, 100, 'prepaid', 1, 1, 1)",
        )
        .bind(user.id)
        .bind(dev.id)
        .execute(db.pool())
        .await
        .unwrap();
        let rows = db.running_sessions().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].billing_mode, "prepaid");
        assert_eq!(rows[0].device_code, "AA-BB");
        // sessions.billing_mode has no CHECK constraint: a stray value can be stored.
        sqlx::query("UPDATE sessions SET billing_mode = 'weekly'")
            .execute(db.pool())
            .await
            .unwrap();
        let corrupt = StoreError::corrupt("sessions.billing_mode", "weekly");
        assert_eq!(db.running_sessions().await.unwrap_err(), corrupt);
        assert_eq!(db.user_sessions(user.id, 10).await.unwrap_err(), corrupt);
        assert_eq!(db.device_sessions(dev.id, 10).await.unwrap_err(), corrupt);
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(like_escape("138"), "138");
    }
}
