//! Read endpoints the operator console needs beyond the plain ops API (all `GET`, JSON
//! `{"error"}` on failure like the rest of `/ops/*`; times are unix ms):
//!
//! * `GET /ops/users?q=<text>&limit=` — users by mobile prefix, openid prefix or
//!   nickname substring;
//! * `GET /ops/users/{id}/sessions?limit=` — a user's sessions;
//! * `GET /ops/devices/{code}` — one device (with `price_now`, fen for a unit beginning
//!   now, and the `plan` it comes from, `null` for the flat `charge_mode`) with its
//!   running session, session history and commands (pending first, with their
//!   acknowledgement);
//! * `GET /ops/alerts` — the wire time zone (`time_zone`), running sessions with their deadlines and what on-call must
//!   look at: sessions past `paid_until` or their heartbeat deadline, kiosks offline,
//!   failing outbox sends, payments whose notification is overdue;
//! * `GET /ops/reports?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|site|device[&format=csv]` —
//!   revenue (ledger), sessions and utilisation for a period (days in the wire time
//!   zone, `to` inclusive; both default to today: the shift view).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::OpsPath;
use super::ops::{Operator, OpsError, OpsResult};
use crate::reports::{self, Alert, By, GroupTotals, Rows, SessionHistoryRow, WindowTotals};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/users", get(search_users))
        .route("/ops/users/{id}/sessions", get(user_sessions))
        .route("/ops/devices/{code}", get(device))
        .route("/ops/alerts", get(alerts))
        .route("/ops/reports", get(reports))
}

fn bad_query() -> OpsError {
    OpsError::bad("bad query string")
}

fn session_json(r: &SessionHistoryRow) -> Value {
    json!({
        "id": r.id,
        "user_id": r.user_id,
        "nick_name": r.nickname,
        "mobile": r.mobile,
        "device_code": r.device_code,
        "device_name": r.device_name,
        "location": r.location,
        "billing_mode": r.billing_mode,
        "charge_mode": r.charge_mode,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "end_reason": r.end_reason,
        "cost_money": r.cost_money,
        "billed_ms": r.billed_ms,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: String,
    limit: Option<i64>,
}

async fn search_users(
    _: Operator,
    State(s): State<AppState>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> OpsResult {
    let Ok(Query(q)) = q else {
        return Err(OpsError::bad("bad query: q (1-64 characters), limit"));
    };
    let users = reports::search_users(&s, &q.q, q.limit).await?;
    Ok(Json(json!({
        "total": users.len(),
        "data": users.iter().map(|u| json!({
            "id": u.id,
            "openid": u.openid,
            "nick_name": u.nickname,
            "mobile": u.mobile,
            "state": u.state,
            "balance_account": u.balance_account,
            "total_account": u.total_account,
            "used_account": u.used_account,
            "ctime": u.ctime,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<i64>,
}

async fn user_sessions(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> OpsResult {
    let Ok(Query(q)) = q else {
        return Err(bad_query());
    };
    let rows = reports::user_sessions(&s, id, q.limit).await?;
    Ok(Json(json!({
        "total": rows.len(),
        "data": rows.iter().map(session_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn device(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(code): OpsPath<String>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> OpsResult {
    let Ok(Query(q)) = q else {
        return Err(bad_query());
    };
    let v = reports::device(&s, &code, q.limit).await?;
    let d = &v.device;
    Ok(Json(json!({
        "device": {
            "id": d.id,
            "device_code": d.code,
            "client_id": d.client_id,
            "name": d.name,
            "province": d.province,
            "city": d.city,
            "area": d.area,
            "location": d.location,
            "charge_mode": d.charge_mode,
            "price_now": v.price_now,
            "plan": v.plan,
            "billing_mode": d.billing_mode.as_str(),
            "status": v.seen.status,
            "online": v.seen.online,
            "last_seen": v.seen.last_heard,
            "maintainer": d.maintainer,
            "updating": d.updating,
        },
        "session_id": v.session_id,
        "sessions": v.sessions.iter().map(session_json).collect::<Vec<_>>(),
        "pending_commands": v.pending_commands,
        "commands": v.commands,
        "server_time": v.now,
    }))
    .into_response())
}

fn alert_json(a: &Alert) -> Value {
    match a {
        Alert::SessionOverduePaid {
            device_code,
            session_id,
            since,
        } => json!({
            "kind": "session_overdue_paid", "severity": "critical",
            "target": device_code, "session_id": session_id, "since": since,
            "message": format!("会话 {} 已超过已付时间仍在运行", session_id),
        }),
        Alert::SessionOverdueHeartbeat {
            device_code,
            session_id,
            since,
        } => json!({
            "kind": "session_overdue_heartbeat", "severity": "critical",
            "target": device_code, "session_id": session_id, "since": since,
            "message": format!("会话 {} 已超过心跳期限仍在运行", session_id),
        }),
        Alert::DeviceOffline {
            code,
            name,
            location,
            since,
        } => json!({
            "kind": "device_offline", "severity": "warning",
            "target": code, "since": since,
            "message": format!("{}（{}）离线", name, location),
        }),
        Alert::OutboxFailed { count, detail } => json!({
            "kind": "outbox_failed", "severity": "critical", "target": "outbox",
            "count": count,
            "message": format!("{} 条上游发送已失败，需要处理", count),
            "detail": detail,
        }),
        Alert::OutboxRetrying { count, detail } => json!({
            "kind": "outbox_retrying", "severity": "warning", "target": "outbox",
            "count": count,
            "message": format!("{} 条上游发送正在重试", count),
            "detail": detail,
        }),
        Alert::PaymentNotificationOverdue { count, since } => json!({
            "kind": "payment_notification_overdue", "severity": "warning", "target": "payments",
            "count": count, "since": since,
            "message": format!("{} 笔微信支付充值超过 10 分钟未收到支付通知", count),
        }),
        Alert::OrderPaymentOverdue { count } => json!({
            "kind": "order_payment_overdue", "severity": "warning", "target": "payments",
            "count": count,
            "message": format!("{} 笔后付费订单支付超过 10 分钟未结清", count),
        }),
    }
}

async fn alerts(_: Operator, State(s): State<AppState>) -> OpsResult {
    let a = reports::alerts(&s).await?;
    let sessions: Vec<Value> = a
        .sessions
        .iter()
        .map(|r| {
            let mut j = session_json(&r.row);
            j["cost_money"] = json!(r.cost_money);
            j["cost_time"] = json!(r.cost_time);
            j["balance_account"] = json!(r.balance);
            j["paid_until"] = json!(r.paid_until);
            j["last_heard"] = json!(r.last_heard);
            j["heartbeat_deadline"] = json!(r.heartbeat_deadline);
            j["time_left_ms"] = json!(r.time_left_ms);
            j["overdue_paid"] = json!(r.overdue_paid);
            j["overdue_heartbeat"] = json!(r.overdue_heartbeat);
            j
        })
        .collect();
    Ok(Json(json!({
        "server_time": a.now,
        "time_zone": s.tz.name(),
        "unit_ms": a.unit_ms,
        "heartbeat_timeout_ms": a.heartbeat_timeout_ms,
        "devices_offline": a.devices_offline,
        "sessions": sessions,
        "alerts": a.alerts.iter().map(alert_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    format: Option<String>,
}

/// Busy over available, to 4 places (a ratio, not money); None with nothing available.
fn utilisation(busy: i64, available: i64) -> Option<f64> {
    (available > 0).then(|| (busy as f64 / available as f64 * 10_000.0).round() / 10_000.0)
}

/// One report row as JSON and as CSV cells.
struct Row {
    key: String,
    name: String,
    devices: Option<i64>,
    sessions: i64,
    busy_ms: i64,
    available_ms: i64,
    consumption: i64,
    recharges: Option<i64>,
    adjustments: Option<i64>,
}

impl Row {
    fn of_window(key: String, t: &WindowTotals) -> Self {
        Row {
            key,
            name: String::new(),
            devices: None,
            sessions: t.sessions,
            busy_ms: t.busy_ms,
            available_ms: t.available_ms,
            consumption: t.consumption,
            recharges: Some(t.recharges),
            adjustments: Some(t.adjustments),
        }
    }

    fn of_group(g: &GroupTotals) -> Self {
        Row {
            key: g.key.clone(),
            name: g.name.clone(),
            devices: Some(g.devices),
            sessions: g.sessions,
            busy_ms: g.busy_ms,
            available_ms: g.available_ms,
            consumption: g.consumption,
            recharges: None,
            adjustments: None,
        }
    }

    fn json(&self) -> Value {
        let mut v = json!({
            "key": self.key,
            "sessions": self.sessions,
            "busy_ms": self.busy_ms,
            "available_ms": self.available_ms,
            "utilisation": utilisation(self.busy_ms, self.available_ms),
            "consumption": self.consumption,
        });
        if !self.name.is_empty() {
            v["name"] = json!(self.name);
        }
        if let Some(d) = self.devices {
            v["devices"] = json!(d);
        }
        if let Some(r) = self.recharges {
            v["recharges"] = json!(r);
        }
        if let Some(a) = self.adjustments {
            v["adjustments"] = json!(a);
        }
        v
    }
}

/// A CSV cell: quoted when needed, and a leading `= + - @` neutralised so a spreadsheet
/// never runs a device name as a formula.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv(by: &str, rows: &[Row], total: &Row) -> String {
    let first = match by {
        "day" => "date",
        "site" => "site",
        _ => "device_code",
    };
    let mut out = String::from("\u{feff}");
    out.push_str(first);
    if by == "device" {
        out.push_str(",name");
    }
    out.push_str(",sessions,busy_minutes,available_minutes,utilisation,consumption_fen");
    if by == "day" {
        out.push_str(",recharges_fen,adjustments_fen");
    }
    out.push_str("\r\n");
    for r in rows.iter().chain(std::iter::once(total)) {
        out.push_str(&csv_cell(&r.key));
        if by == "device" {
            out.push(',');
            out.push_str(&csv_cell(&r.name));
        }
        let util = utilisation(r.busy_ms, r.available_ms)
            .map(|u| format!("{u:.4}"))
            .unwrap_or_default();
        out.push_str(&format!(
            ",{},{},{},{},{}",
            r.sessions,
            r.busy_ms / 60_000,
            r.available_ms / 60_000,
            util,
            r.consumption
        ));
        if by == "day" {
            out.push_str(&format!(
                ",{},{}",
                r.recharges.unwrap_or(0),
                r.adjustments.unwrap_or(0)
            ));
        }
        out.push_str("\r\n");
    }
    out
}

async fn reports(
    _: Operator,
    State(s): State<AppState>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> OpsResult {
    let Ok(Query(q)) = q else {
        return Err(OpsError::bad(
            "bad query: from, to (YYYY-MM-DD), by (day, site, device), format (json, csv)",
        ));
    };
    let date = |v: Option<&str>| -> Result<Option<NaiveDate>, OpsError> {
        match v.filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| OpsError::bad("from and to are dates: YYYY-MM-DD")),
        }
    };
    let from = date(q.from.as_deref())?;
    let to = date(q.to.as_deref())?;
    let by = By::parse(q.by.as_deref().unwrap_or("day"))
        .ok_or_else(|| OpsError::bad("by must be day, site or device"))?;
    let as_csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(OpsError::bad("format must be json or csv")),
    };
    let r = reports::report(&s, from, to, by).await?;
    let rows: Vec<Row> = match &r.rows {
        Rows::Days(days) => days
            .iter()
            .map(|(d, t)| Row::of_window(d.format("%Y-%m-%d").to_string(), t))
            .collect(),
        Rows::Groups(g) => g.iter().map(Row::of_group).collect(),
    };
    let by = by.as_str();
    let total = Row::of_window("合计".into(), &r.totals);
    let (f, t) = (
        r.from.format("%Y-%m-%d").to_string(),
        r.to.format("%Y-%m-%d").to_string(),
    );
    if as_csv {
        let name = format!("kioskd-report-{by}-{f}-{t}.csv");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            csv(by, &rows, &total),
        )
            .into_response());
    }
    let (a, b) = r.window;
    Ok(Json(json!({
        "from": f,
        "to": t,
        "by": by,
        "window": {"from": a, "to": b},
        "server_time": r.now,
        "totals": total.json(),
        "data": rows.iter().map(Row::json).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_cell("A1"), "A1");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("-1,2"), "\"'-1,2\"");
    }

    #[test]
    fn utilisation_is_a_bounded_ratio() {
        assert_eq!(utilisation(0, 0), None);
        assert_eq!(utilisation(30, 120), Some(0.25));
        assert_eq!(utilisation(1, 3), Some(0.3333));
    }
}
