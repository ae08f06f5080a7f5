//! Read endpoints the operator console needs beyond the plain ops API (all `GET`, JSON
//! `{"error"}` on failure like the rest of `/ops/*`; times are unix ms):
//!
//! * `GET /ops/users?q=<text>&limit=` — users by mobile prefix, openid prefix or
//!   nickname substring;
//! * `GET /ops/users/{id}/sessions?limit=` — a user's sessions;
//! * `GET /ops/devices/{code}` — one device with its running session, session history
//!   and commands (pending first, with their acknowledgement);
//! * `GET /ops/alerts` — the wire time zone (`time_zone`), running sessions with their deadlines and what on-call must
//!   look at: sessions past `paid_until` or their heartbeat deadline, kiosks offline,
//!   failing outbox sends, payments whose notification is overdue;
//! * `GET /ops/reports?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|site|device[&format=csv]` —
//!   revenue (ledger), sessions and utilisation for a period (days in the wire time
//!   zone, `to` inclusive; both default to today: the shift view).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Duration as Days, NaiveDate, TimeZone};
use kioskd_actors::ids::normalize_device_code;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::OpsPath;
use super::ops::{Operator, err, internal};
use crate::store::{GroupTotals, SessionHistoryRow, WindowTotals};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/users", get(search_users))
        .route("/ops/users/{id}/sessions", get(user_sessions))
        .route("/ops/devices/{code}", get(device))
        .route("/ops/alerts", get(alerts))
        .route("/ops/reports", get(reports))
}

/// How long a WeChat Pay order may wait for its notification before it is an alert.
const PAYMENT_ALERT_MS: i64 = 10 * 60 * 1000;
/// Longest report period (days).
const MAX_DAYS: i64 = 366;
/// Longest period reported day by day.
const MAX_DAY_ROWS: i64 = 92;

fn bad_query() -> Response {
    err(StatusCode::BAD_REQUEST, "bad query string")
}

fn limit(l: Option<i64>, default: i64) -> Result<i64, Response> {
    match l {
        None => Ok(default),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(err(StatusCode::BAD_REQUEST, "limit must be 1-500")),
    }
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
) -> Response {
    let Ok(Query(q)) = q else {
        return err(
            StatusCode::BAD_REQUEST,
            "bad query: q (1-64 characters), limit",
        );
    };
    let text = q.q.trim();
    if text.is_empty() || text.chars().count() > 64 {
        return err(StatusCode::BAD_REQUEST, "q must be 1-64 characters");
    }
    let n = match limit(q.limit, 50) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match s.db.search_users(text, n).await {
        Ok(users) => Json(json!({
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
        .into_response(),
        Err(e) => internal(e),
    }
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
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_query();
    };
    let n = match limit(q.limit, 100) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match s.db.user_by_id(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return err(StatusCode::NOT_FOUND, "no such user"),
        Err(e) => return internal(e),
    }
    match s.db.user_sessions(id, n).await {
        Ok(rows) => Json(json!({
            "total": rows.len(),
            "data": rows.iter().map(session_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn device(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(code): OpsPath<String>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad_query();
    };
    let n = match limit(q.limit, 50) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let Some(code) = normalize_device_code(&code) else {
        return err(StatusCode::BAD_REQUEST, "bad device code");
    };
    let d = match kioskd_actors::ports::Store::device_by_code(&s.db, &code).await {
        Ok(Some(d)) => d,
        Ok(None) => return err(StatusCode::NOT_FOUND, "no such device"),
        Err(e) => return internal(e),
    };
    let (sessions, commands) =
        match tokio::try_join!(s.db.device_sessions(d.id, n), s.db.device_commands(d.id, n)) {
            Ok(v) => v,
            Err(e) => return internal(e),
        };
    let live = s.coord.live_devices().await;
    let v = live.get(&d.code);
    let now = s.coord.clock().now_ms();
    let timeout = s.coord.config().heartbeat_timeout_ms;
    let status = match v {
        Some(v) => v.status.as_str().to_string(),
        None => match d.status {
            kioskd_actors::ports::PersistedStatus::Free if d.updating => "lock".into(),
            kioskd_actors::ports::PersistedStatus::Free => "free".into(),
            kioskd_actors::ports::PersistedStatus::OperatorLock => "lock".into(),
            kioskd_actors::ports::PersistedStatus::Maintain => "maintain".into(),
        },
    };
    let last_seen = v.and_then(|v| v.last_heard).or(d.last_seen_at);
    let online = match v {
        Some(v) => v.online,
        None => d.last_seen_at.is_some_and(|t| now - t < timeout),
    };
    let pending = commands.iter().filter(|c| c.acked_at.is_none()).count();
    Json(json!({
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
            "billing_mode": d.billing_mode.as_str(),
            "status": status,
            "online": online,
            "last_seen": last_seen,
            "maintainer": d.maintainer,
            "updating": d.updating,
        },
        "session_id": v.and_then(|v| v.session.as_ref().map(|(id, _, _)| *id)),
        "sessions": sessions.iter().map(session_json).collect::<Vec<_>>(),
        "pending_commands": pending,
        "commands": commands,
        "server_time": now,
    }))
    .into_response()
}

async fn alerts(_: Operator, State(s): State<AppState>) -> Response {
    let cfg = s.coord.config();
    let now = s.coord.clock().now_ms();
    let grace = s.cfg.metrics.overdue_grace_seconds as i64 * 1000;
    let (running, background, devices) = match tokio::try_join!(
        s.db.running_sessions(),
        s.db.background_alerts(now - PAYMENT_ALERT_MS),
        s.db.list_devices()
    ) {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let views: std::collections::HashMap<i64, kioskd_actors::session::SessionView> = s
        .coord
        .sessions()
        .await
        .into_iter()
        .map(|v| (v.id, v))
        .collect();
    let live = s.coord.live_devices().await;
    let mut alerts: Vec<Value> = Vec::new();
    let mut sessions: Vec<Value> = Vec::new();
    for r in &running {
        let v = views.get(&r.id);
        let paid_until = v.map(|v| v.paid_until);
        let last_heard = v.map(|v| v.last_heard);
        let balance = v.map(|v| v.balance);
        let deadline = last_heard.map(|t| t + cfg.heartbeat_timeout_ms);
        let prepaid = r.billing_mode == "prepaid";
        let overdue_paid = prepaid && paid_until.is_some_and(|p| p + grace < now);
        let overdue_heartbeat = deadline.is_some_and(|d| d + grace < now);
        // Paid time still ahead plus what the balance buys.
        let time_left = match (prepaid, paid_until, balance) {
            (true, Some(p), Some(b)) if r.charge_mode > 0 => {
                Some((p - now).max(0) + (b / r.charge_mode) * cfg.unit_ms)
            }
            _ => None,
        };
        if overdue_paid {
            alerts.push(json!({
                "kind": "session_overdue_paid", "severity": "critical",
                "target": r.device_code, "session_id": r.id, "since": paid_until,
                "message": format!("会话 {} 已超过已付时间仍在运行", r.id),
            }));
        }
        if overdue_heartbeat {
            alerts.push(json!({
                "kind": "session_overdue_heartbeat", "severity": "critical",
                "target": r.device_code, "session_id": r.id, "since": deadline,
                "message": format!("会话 {} 已超过心跳期限仍在运行", r.id),
            }));
        }
        let mut j = session_json(r);
        j["cost_money"] = json!(v.map(|v| v.cost_money).unwrap_or(r.cost_money));
        j["cost_time"] = json!(v.map(|v| v.cost_time));
        j["balance_account"] = json!(balance);
        j["paid_until"] = json!(paid_until);
        j["last_heard"] = json!(last_heard);
        j["heartbeat_deadline"] = json!(deadline);
        j["time_left_ms"] = json!(time_left);
        j["overdue_paid"] = json!(overdue_paid);
        j["overdue_heartbeat"] = json!(overdue_heartbeat);
        sessions.push(j);
    }
    let mut offline = 0;
    for d in &devices {
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
            alerts.push(json!({
                "kind": "device_offline", "severity": "warning",
                "target": d.code, "since": last,
                "message": format!("{}（{}）离线", d.name, d.location),
            }));
        }
    }
    if background.outbox_failed > 0 {
        alerts.push(json!({
            "kind": "outbox_failed", "severity": "critical", "target": "outbox",
            "count": background.outbox_failed,
            "message": format!("{} 条上游发送已失败，需要处理", background.outbox_failed),
            "detail": background.outbox_last_error,
        }));
    }
    if background.outbox_retrying > 0 {
        alerts.push(json!({
            "kind": "outbox_retrying", "severity": "warning", "target": "outbox",
            "count": background.outbox_retrying,
            "message": format!("{} 条上游发送正在重试", background.outbox_retrying),
            "detail": background.outbox_last_error,
        }));
    }
    if background.payments_unsettled > 0 {
        alerts.push(json!({
            "kind": "payment_notification_overdue", "severity": "warning", "target": "payments",
            "count": background.payments_unsettled, "since": background.payments_oldest,
            "message": format!("{} 笔微信支付充值超过 10 分钟未收到支付通知", background.payments_unsettled),
        }));
    }
    if background.order_payments_unsettled > 0 {
        alerts.push(json!({
            "kind": "order_payment_overdue", "severity": "warning", "target": "payments",
            "count": background.order_payments_unsettled,
            "message": format!("{} 笔后付费订单支付超过 10 分钟未结清", background.order_payments_unsettled),
        }));
    }
    Json(json!({
        "server_time": now,
        "time_zone": s.tz.name(),
        "unit_ms": cfg.unit_ms,
        "heartbeat_timeout_ms": cfg.heartbeat_timeout_ms,
        "devices_offline": offline,
        "sessions": sessions,
        "alerts": alerts,
    }))
    .into_response()
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
) -> Response {
    let Ok(Query(q)) = q else {
        return err(
            StatusCode::BAD_REQUEST,
            "bad query: from, to (YYYY-MM-DD), by (day, site, device), format (json, csv)",
        );
    };
    let now = s.coord.clock().now_ms();
    let today =
        s.tz.timestamp_millis_opt(now)
            .single()
            .map(|t| t.date_naive())
            .unwrap_or_default();
    let date = |v: Option<&str>| -> Result<NaiveDate, Response> {
        match v.filter(|v| !v.is_empty()) {
            None => Ok(today),
            Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| err(StatusCode::BAD_REQUEST, "from and to are dates: YYYY-MM-DD")),
        }
    };
    let (from, to) = match (date(q.from.as_deref()), date(q.to.as_deref())) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let by = q.by.as_deref().unwrap_or("day");
    if !matches!(by, "day" | "site" | "device") {
        return err(StatusCode::BAD_REQUEST, "by must be day, site or device");
    }
    let as_csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return err(StatusCode::BAD_REQUEST, "format must be json or csv"),
    };
    let days = (to - from).num_days() + 1;
    if days < 1 {
        return err(StatusCode::BAD_REQUEST, "to is before from");
    }
    if days > MAX_DAYS || (by == "day" && days > MAX_DAY_ROWS) {
        return err(
            StatusCode::BAD_REQUEST,
            format!(
                "the period is too long: at most {MAX_DAY_ROWS} days by day, {MAX_DAYS} otherwise"
            ),
        );
    }
    let start_of = |d: NaiveDate| -> i64 {
        let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        s.tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or(0)
    };
    let (a, b) = (start_of(from), start_of(to + Days::days(1)));
    let totals = match s.db.report_window(a, b, now).await {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let rows: Vec<Row> = match by {
        "day" => {
            let mut out = Vec::with_capacity(days as usize);
            let mut d = from;
            while d <= to {
                let (da, db) = (start_of(d), start_of(d + Days::days(1)));
                match s.db.report_window(da, db, now).await {
                    Ok(t) => out.push(Row::of_window(d.format("%Y-%m-%d").to_string(), &t)),
                    Err(e) => return internal(e),
                }
                d += Days::days(1);
            }
            out
        }
        "site" => match s.db.report_sites(a, b, now).await {
            Ok(g) => g.iter().map(Row::of_group).collect(),
            Err(e) => return internal(e),
        },
        _ => match s.db.report_devices(a, b, now).await {
            Ok(g) => g.iter().map(Row::of_group).collect(),
            Err(e) => return internal(e),
        },
    };
    let total = Row::of_window("合计".into(), &totals);
    let (f, t) = (
        from.format("%Y-%m-%d").to_string(),
        to.format("%Y-%m-%d").to_string(),
    );
    if as_csv {
        let name = format!("kioskd-report-{by}-{f}-{t}.csv");
        return (
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
            .into_response();
    }
    Json(json!({
        "from": f,
        "to": t,
        "by": by,
        "window": {"from": a, "to": b},
        "server_time": now,
        "totals": total.json(),
        "data": rows.iter().map(Row::json).collect::<Vec<_>>(),
    }))
    .into_response()
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
