//! The operator console's reads (`/ops/users`, `/ops/users/{id}/sessions`,
//! `/ops/devices/{code}`, `/ops/alerts`, `/ops/reports`) over `store::reports`: user
//! search, session histories, one device with its live state, what on-call must look at
//! (sessions past their paid time or heartbeat deadline, kiosks offline, failing outbox
//! sends, overdue payment notifications), and revenue/utilisation reports by day, site
//! or device in the wire time zone.

use std::collections::HashMap;

use chrono::{Duration as Days, NaiveDate, TimeZone};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::DeviceRecord;
use kioskd_actors::session::SessionView;

use crate::fleet::{Seen, persisted_status};
use crate::service_error::ServiceError;
use crate::services::Services;
pub use crate::store::{
    BackgroundAlerts, CommandRow, GroupTotals, SessionHistoryRow, UserRow, WindowTotals,
};

/// How long a WeChat Pay order may wait for its notification before it is an alert.
pub const PAYMENT_ALERT_MS: i64 = 10 * 60 * 1000;
/// Longest report period (days).
pub const MAX_DAYS: i64 = 366;
/// Longest period reported day by day.
pub const MAX_DAY_ROWS: i64 = 92;

/// A list limit: `default` when absent, else 1-500.
pub fn limit(l: Option<i64>, default: i64) -> Result<i64, ServiceError> {
    match l {
        None => Ok(default),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(ServiceError::invalid("limit must be 1-500")),
    }
}

/// Users by mobile prefix, openid prefix or nickname substring (`q`: 1-64 characters).
pub async fn search_users(
    s: &Services,
    q: &str,
    limit_: Option<i64>,
) -> Result<Vec<UserRow>, ServiceError> {
    let text = q.trim();
    if text.is_empty() || text.chars().count() > 64 {
        return Err(ServiceError::invalid("q must be 1-64 characters"));
    }
    let n = limit(limit_, 50)?;
    Ok(s.db.search_users(text, n).await?)
}

/// A user's sessions, newest first.
pub async fn user_sessions(
    s: &Services,
    id: i64,
    limit_: Option<i64>,
) -> Result<Vec<SessionHistoryRow>, ServiceError> {
    let n = limit(limit_, 100)?;
    s.db.user_by_id(id)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such user"))?;
    Ok(s.db.user_sessions(id, n).await?)
}

/// One device as the console shows it.
#[derive(Debug)]
pub struct DeviceDetail {
    /// The stored device.
    pub device: DeviceRecord,
    /// Its state now (last heard: the live view's, else storage's).
    pub seen: Seen,
    /// The running session, when its actor has one.
    pub session_id: Option<i64>,
    /// Its sessions, newest first.
    pub sessions: Vec<SessionHistoryRow>,
    /// Its commands (pending first).
    pub commands: Vec<CommandRow>,
    /// How many are not acknowledged.
    pub pending_commands: usize,
    /// Server time (unix ms).
    pub now: i64,
    /// Fen for a unit beginning now on this device, before any member group's discount
    /// or package: the plan in force (its own, else its zone's), else its flat
    /// `charge_mode` (`Coordinator::quote` without a user).
    pub price_now: i64,
    /// The plan that price comes from; `None`: the flat price.
    pub plan: Option<String>,
}

/// One device with its running session, session history and commands.
pub async fn device(
    s: &Services,
    raw_code: &str,
    limit_: Option<i64>,
) -> Result<DeviceDetail, ServiceError> {
    let n = limit(limit_, 50)?;
    let code =
        normalize_device_code(raw_code).ok_or_else(|| ServiceError::invalid("bad device code"))?;
    let d = kioskd_actors::ports::Store::device_by_code(&s.db, &code)
        .await?
        .ok_or_else(|| ServiceError::not_found("no such device"))?;
    let (sessions, commands) =
        tokio::try_join!(s.db.device_sessions(d.id, n), s.db.device_commands(d.id, n))?;
    let live = s.coord.live_devices().await;
    let v = live.get(&d.code);
    let now = s.coord.clock().now_ms();
    let timeout = s.coord.config().heartbeat_timeout_ms;
    let seen = Seen {
        status: match v {
            Some(v) => v.status.as_str().to_string(),
            None => persisted_status(&d).to_string(),
        },
        online: match v {
            Some(v) => v.online,
            None => d.last_seen_at.is_some_and(|t| now - t < timeout),
        },
        last_heard: v.and_then(|v| v.last_heard).or(d.last_seen_at),
    };
    let session_id = v.and_then(|v| v.session.as_ref().map(|(id, _, _)| *id));
    let pending_commands = commands.iter().filter(|c| c.acked_at.is_none()).count();
    let quote = s.coord.quote(&d, None, now).await?;
    Ok(DeviceDetail {
        price_now: quote.price,
        plan: quote.plan,
        device: d,
        seen,
        session_id,
        sessions,
        commands,
        pending_commands,
        now,
    })
}

/// A running session with what its actor knows now.
#[derive(Debug)]
pub struct Running {
    /// The stored session.
    pub row: SessionHistoryRow,
    /// Cost so far (the actor's, else storage's).
    pub cost_money: i64,
    /// Billed time (from the actor).
    pub cost_time: Option<i64>,
    /// The user's balance (from the actor).
    pub balance: Option<i64>,
    /// Paid up to (from the actor).
    pub paid_until: Option<i64>,
    /// Last heartbeat (from the actor).
    pub last_heard: Option<i64>,
    /// When the heartbeat runs out.
    pub heartbeat_deadline: Option<i64>,
    /// Prepaid: paid time still ahead plus what the balance buys.
    pub time_left_ms: Option<i64>,
    /// Prepaid and running past its paid time (beyond the grace).
    pub overdue_paid: bool,
    /// Running past its heartbeat deadline (beyond the grace).
    pub overdue_heartbeat: bool,
}

/// Something on-call must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A prepaid session runs past its paid time.
    SessionOverduePaid {
        /// Its device.
        device_code: String,
        /// The session.
        session_id: i64,
        /// Paid until.
        since: Option<i64>,
    },
    /// A session runs past its heartbeat deadline.
    SessionOverdueHeartbeat {
        /// Its device.
        device_code: String,
        /// The session.
        session_id: i64,
        /// The deadline.
        since: Option<i64>,
    },
    /// A kiosk that was heard once is offline.
    DeviceOffline {
        /// Code.
        code: String,
        /// Name.
        name: String,
        /// Site.
        location: String,
        /// Last heard.
        since: Option<i64>,
    },
    /// Outbox sends that gave up.
    OutboxFailed {
        /// How many.
        count: i64,
        /// The latest error.
        detail: Option<String>,
    },
    /// Outbox sends being retried.
    OutboxRetrying {
        /// How many.
        count: i64,
        /// The latest error.
        detail: Option<String>,
    },
    /// Recharges whose payment notification is overdue.
    PaymentNotificationOverdue {
        /// How many.
        count: i64,
        /// The oldest.
        since: Option<i64>,
    },
    /// Postpaid order payments still open.
    OrderPaymentOverdue {
        /// How many.
        count: i64,
    },
}

/// The alerts view.
#[derive(Debug)]
pub struct Alerts {
    /// Server time (unix ms).
    pub now: i64,
    /// Billing unit.
    pub unit_ms: i64,
    /// Heartbeat timeout.
    pub heartbeat_timeout_ms: i64,
    /// Kiosks offline.
    pub devices_offline: usize,
    /// Running sessions.
    pub sessions: Vec<Running>,
    /// In order: per session, per device, background.
    pub alerts: Vec<Alert>,
}

/// Running sessions with their deadlines, and what on-call must look at.
pub async fn alerts(s: &Services) -> Result<Alerts, ServiceError> {
    let cfg = s.coord.config();
    let now = s.coord.clock().now_ms();
    let grace = s.cfg.metrics.overdue_grace_seconds as i64 * 1000;
    let (running, background, devices) = tokio::try_join!(
        s.db.running_sessions(),
        s.db.background_alerts(now - PAYMENT_ALERT_MS),
        s.db.list_devices()
    )?;
    let views: HashMap<i64, SessionView> = s
        .coord
        .sessions()
        .await
        .into_iter()
        .map(|v| (v.id, v))
        .collect();
    let live = s.coord.live_devices().await;
    let mut alerts = Vec::new();
    let mut sessions = Vec::new();
    for r in running {
        let v = views.get(&r.id);
        let paid_until = v.map(|v| v.paid_until);
        let last_heard = v.map(|v| v.last_heard);
        let balance = v.map(|v| v.balance);
        let deadline = last_heard.map(|t| t + cfg.heartbeat_timeout_ms);
        let prepaid = r.billing_mode == "prepaid";
        let overdue_paid = prepaid && paid_until.is_some_and(|p| p + grace < now);
        let overdue_heartbeat = deadline.is_some_and(|d| d + grace < now);
        let time_left = match (prepaid, paid_until, balance) {
            (true, Some(p), Some(b)) if r.charge_mode > 0 => {
                Some((p - now).max(0) + (b / r.charge_mode) * cfg.unit_ms)
            }
            _ => None,
        };
        if overdue_paid {
            alerts.push(Alert::SessionOverduePaid {
                device_code: r.device_code.clone(),
                session_id: r.id,
                since: paid_until,
            });
        }
        if overdue_heartbeat {
            alerts.push(Alert::SessionOverdueHeartbeat {
                device_code: r.device_code.clone(),
                session_id: r.id,
                since: deadline,
            });
        }
        sessions.push(Running {
            cost_money: v.map(|v| v.cost_money).unwrap_or(r.cost_money),
            cost_time: v.map(|v| v.cost_time),
            balance,
            paid_until,
            last_heard,
            heartbeat_deadline: deadline,
            time_left_ms: time_left,
            overdue_paid,
            overdue_heartbeat,
            row: r,
        });
    }
    let mut offline = 0;
    for d in devices {
        let (online, last) = match live.get(&d.code) {
            Some(v) => (v.online, v.last_heard.or(d.last_seen_at)),
            None => (
                d.last_seen_at
                    .is_some_and(|t| now - t < cfg.heartbeat_timeout_ms),
                d.last_seen_at,
            ),
        };
        // A kiosk that was never heard is not installed yet rather than down.
        if !online && last.is_some() {
            offline += 1;
            alerts.push(Alert::DeviceOffline {
                code: d.code,
                name: d.name,
                location: d.location,
                since: last,
            });
        }
    }
    let b = background;
    if b.outbox_failed > 0 {
        alerts.push(Alert::OutboxFailed {
            count: b.outbox_failed,
            detail: b.outbox_last_error.clone(),
        });
    }
    if b.outbox_retrying > 0 {
        alerts.push(Alert::OutboxRetrying {
            count: b.outbox_retrying,
            detail: b.outbox_last_error.clone(),
        });
    }
    if b.payments_unsettled > 0 {
        alerts.push(Alert::PaymentNotificationOverdue {
            count: b.payments_unsettled,
            since: b.payments_oldest,
        });
    }
    if b.order_payments_unsettled > 0 {
        alerts.push(Alert::OrderPaymentOverdue {
            count: b.order_payments_unsettled,
        });
    }
    Ok(Alerts {
        now,
        unit_ms: cfg.unit_ms,
        heartbeat_timeout_ms: cfg.heartbeat_timeout_ms,
        devices_offline: offline,
        sessions,
        alerts,
    })
}

/// How a report is broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// One row per day.
    Day,
    /// One row per site.
    Site,
    /// One row per device.
    Device,
}

impl By {
    /// `day`, `site` or `device`.
    pub fn parse(v: &str) -> Option<By> {
        match v {
            "day" => Some(By::Day),
            "site" => Some(By::Site),
            "device" => Some(By::Device),
            _ => None,
        }
    }
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Site => "site",
            By::Device => "device",
        }
    }
}

/// A report's rows.
#[derive(Debug)]
pub enum Rows {
    /// Per day.
    Days(Vec<(NaiveDate, WindowTotals)>),
    /// Per site or device.
    Groups(Vec<GroupTotals>),
}

/// A report for a period.
#[derive(Debug)]
pub struct Report {
    /// First day.
    pub from: NaiveDate,
    /// Last day (inclusive).
    pub to: NaiveDate,
    /// The period in unix ms: `[from, to)`.
    pub window: (i64, i64),
    /// Server time.
    pub now: i64,
    /// The whole period.
    pub totals: WindowTotals,
    /// Broken down.
    pub rows: Rows,
}

/// Today in the wire time zone.
pub fn today(s: &Services) -> NaiveDate {
    let now = s.coord.clock().now_ms();
    s.tz.timestamp_millis_opt(now)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// Revenue (ledger), sessions and utilisation for `from..=to` (days in the wire time
/// zone; both default to today: the shift view).
pub async fn report(
    s: &Services,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    by: By,
) -> Result<Report, ServiceError> {
    let now = s.coord.clock().now_ms();
    let today = today(s);
    let (from, to) = (from.unwrap_or(today), to.unwrap_or(today));
    let days = (to - from).num_days() + 1;
    if days < 1 {
        return Err(ServiceError::invalid("to is before from"));
    }
    if days > MAX_DAYS || (by == By::Day && days > MAX_DAY_ROWS) {
        return Err(ServiceError::invalid(format!(
            "the period is too long: at most {MAX_DAY_ROWS} days by day, {MAX_DAYS} otherwise"
        )));
    }
    let start_of = |d: NaiveDate| -> i64 {
        let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        s.tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
    };
    let (a, b) = (start_of(from), start_of(to + Days::days(1)));
    let totals = s.db.report_window(a, b, now).await?;
    let rows = match by {
        By::Day => {
            let mut out = Vec::with_capacity(days as usize);
            let mut d = from;
            while d <= to {
                let (da, db) = (start_of(d), start_of(d + Days::days(1)));
                out.push((d, s.db.report_window(da, db, now).await?));
                d += Days::days(1);
            }
            Rows::Days(out)
        }
        By::Site => Rows::Groups(s.db.report_sites(a, b, now).await?),
        By::Device => Rows::Groups(s.db.report_devices(a, b, now).await?),
    };
    Ok(Report {
        from,
        to,
        window: (a, b),
        now,
        totals,
        rows,
    })
}
