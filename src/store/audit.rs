//! The operator audit log (who did what, when and why) and the periodic readings the
//! metric sampler takes from the database (sessions past their deadlines, devices heard,
//! command queues).

use serde::Serialize;

use super::{Db, RowExt, se};
use kioskd_actors::ports::StoreError;

/// One operator action to record.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// Unix ms.
    pub at: i64,
    /// Who: the authenticated operator (`service` for the shared ops token).
    pub operator: String,
    /// HTTP method.
    pub method: String,
    /// Request path (as sent).
    pub path: String,
    /// The action: the route pattern, e.g. `POST /ops/devices/{code}/command`.
    pub action: String,
    /// What it acted on (device code, user id, sn ...), when the path names one.
    pub target: Option<String>,
    /// Why (`reason` in the body, or `X-Kioskd-Reason`).
    pub reason: Option<String>,
    /// The request body with secrets redacted (truncated).
    pub body: Option<String>,
    /// The HTTP status the action ended with.
    pub status: u16,
    /// The client's address.
    pub source: Option<String>,
}

/// A stored audit entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Row id (increasing).
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    /// Who.
    pub operator: String,
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Route pattern.
    pub action: String,
    /// Target.
    pub target: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Redacted body.
    pub body: Option<String>,
    /// Outcome (HTTP status).
    pub status: i64,
    /// Client address.
    pub source: Option<String>,
}

/// Filters for `GET /ops/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries with a larger id (for following the log).
    pub after: Option<i64>,
    /// Only this operator.
    pub operator: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// A ledger row's owner and amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The user.
    pub user_id: i64,
    /// Signed fen.
    pub amount: i64,
}

/// Running sessions of one billing mode (as stored: the sampler labels unknown modes
/// `other`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeCount {
    /// `prepaid`, `postpaid`, or whatever else is stored.
    pub billing_mode: String,
    /// Sessions running.
    pub sessions: i64,
}

/// Readings for the metric sampler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readings {
    /// Running sessions by billing mode.
    pub active_by_mode: Vec<ModeCount>,
    /// Prepaid sessions still running more than the grace past the instant they are paid
    /// up to (their meter should have reserved the next unit or ended them).
    pub overdue_paid: i64,
    /// Sessions still running more than the grace past their heartbeat deadline.
    pub overdue_heartbeat: i64,
    /// Devices heard within the heartbeat timeout.
    pub devices_online: i64,
    /// Devices registered.
    pub devices_registered: i64,
    /// Kiosk commands not yet acknowledged, and the age (ms) of the oldest.
    pub kiosk_commands_pending: i64,
    /// Age in ms of the oldest unacknowledged kiosk command (0 when none).
    pub kiosk_commands_oldest_ms: i64,
    /// Attendance terminal commands pending or sent without a result.
    pub terminal_commands_pending: i64,
    /// Age in ms of the oldest of those (0 when none).
    pub terminal_commands_oldest_ms: i64,
    /// Attendance terminals registered.
    pub terminals_registered: i64,
}

impl Db {
    /// Records one operator action.
    pub async fn add_audit(&self, a: &NewAudit) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO audit_log (at, operator, method, path, action, target, reason, body, status, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(a.at)
        .bind(&a.operator)
        .bind(&a.method)
        .bind(&a.path)
        .bind(&a.action)
        .bind(a.target.as_deref())
        .bind(a.reason.as_deref())
        .bind(a.body.as_deref())
        .bind(i64::from(a.status))
        .bind(a.source.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        row.col("id")
    }

    /// A ledger row's user and amount (to answer a repeated idempotent request).
    pub async fn ledger_entry(&self, id: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let row = sqlx::query("SELECT user_id, amount FROM ledger WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            Ok(LedgerEntry {
                user_id: r.col("user_id")?,
                amount: r.col("amount")?,
            })
        })
        .transpose()
    }

    /// Audit entries, newest first.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, operator, method, path, action, target, reason, body, status, source
             FROM audit_log
             WHERE id > $1
               AND ($2 = '' OR operator = $2)
               AND ($3 = '' OR target = $3)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(q.after.unwrap_or(0))
        .bind(q.operator.as_deref().unwrap_or(""))
        .bind(q.target.as_deref().unwrap_or(""))
        .bind(q.limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.col("id")?,
                    at: r.col("at")?,
                    operator: r.col("operator")?,
                    method: r.col("method")?,
                    path: r.col("path")?,
                    action: r.col("action")?,
                    target: r.col("target")?,
                    reason: r.col("reason")?,
                    body: r.col("body")?,
                    status: r.col("status")?,
                    source: r.col("source")?,
                })
            })
            .collect()
    }

    /// What the metric sampler reads from the database at `now`.
    pub async fn readings(
        &self,
        now: i64,
        unit_ms: i64,
        heartbeat_timeout_ms: i64,
        grace_ms: i64,
    ) -> Result<Readings, StoreError> {
        let mut r = Readings::default();
        let rows = sqlx::query(
            "SELECT billing_mode, COUNT(*) AS sessions FROM sessions WHERE ended_at IS NULL GROUP BY billing_mode",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        for row in rows {
            r.active_by_mode.push(ModeCount {
                billing_mode: row.col("billing_mode")?,
                sessions: row.col("sessions")?,
            });
        }
        let cutoff = now - grace_ms;
        let row = sqlx::query(
            "SELECT
               COALESCE(SUM(CASE WHEN billing_mode = 'prepaid' AND started_at + reserved_units * $1 < $2 THEN 1 ELSE 0 END), 0) AS overdue_paid,
               COALESCE(SUM(CASE WHEN last_heard_at + $3 < $2 THEN 1 ELSE 0 END), 0) AS overdue_heartbeat
             FROM sessions WHERE ended_at IS NULL",
        )
        .bind(unit_ms)
        .bind(cutoff)
        .bind(heartbeat_timeout_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        r.overdue_paid = row.col("overdue_paid")?;
        r.overdue_heartbeat = row.col("overdue_heartbeat")?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS registered, COALESCE(SUM(CASE WHEN last_seen_at > $1 THEN 1 ELSE 0 END), 0) AS online FROM devices",
        )
        .bind(now - heartbeat_timeout_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        r.devices_registered = row.col("registered")?;
        r.devices_online = row.col("online")?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, COALESCE(MIN(created_at), 0) AS oldest FROM device_commands WHERE acked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        r.kiosk_commands_pending = row.col("pending")?;
        let oldest: i64 = row.col("oldest")?;
        r.kiosk_commands_oldest_ms = if r.kiosk_commands_pending > 0 {
            (now - oldest).max(0)
        } else {
            0
        };
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, COALESCE(MIN(created_at), 0) AS oldest FROM terminal_commands WHERE state = 'pending' OR (state = 'sent' AND channel = 'native')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(se)?;
        r.terminal_commands_pending = row.col("pending")?;
        let oldest: i64 = row.col("oldest")?;
        r.terminal_commands_oldest_ms = if r.terminal_commands_pending > 0 {
            (now - oldest).max(0)
        } else {
            0
        };
        r.terminals_registered = sqlx::query_scalar("SELECT COUNT(*) FROM terminals")
            .fetch_one(&self.pool)
            .await
            .map_err(se)?;
        Ok(r)
    }
}
