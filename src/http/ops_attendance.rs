//! The operator API for attendance (SPEC §11): registering terminals, queueing their
//! commands, the staff roster, and reading punches, quarantined lines and error logs.
//! Same conventions as `/ops/*`: bearer token, JSON, `{"error": ...}` with a fitting status,
//! lists as `{"total": N, "data": [...]}`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use kioskd_actors::terminal::{CommandRow, TermError, TerminalRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::extract::{EnvJson, EnvQuery, OpsPath};
use super::ops::Operator;
use super::ops::{body, err, internal};
use crate::attendance::{self as ops, OpError};
use crate::store::{PunchFilter, StaffRow, TerminalCounts};
use crate::timefmt::{parse, wire};

/// A native terminal polls every `Delay` seconds; allow a few missed polls.
pub const NATIVE_SILENT_AFTER_MS: i64 = 6 * super::iclock::POLL_DELAY_SECONDS * 1000;
/// The legacy bridge asks for commands once an hour; allow one missed poll.
pub const BRIDGE_SILENT_AFTER_MS: i64 = 2 * 3600 * 1000;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/terminals", post(add_terminal).get(list_terminals))
        .route(
            "/ops/terminals/{sn}/commands",
            post(add_command).get(list_commands),
        )
        .route("/ops/terminals/{sn}/iclock", post(set_iclock))
        .route("/ops/terminals/{sn}/quarantine", get(quarantine))
        .route("/ops/terminals/{sn}/errors", get(errors))
        .route("/ops/punches", get(punches))
        .route("/ops/staff", post(put_staff).get(list_staff))
        .route("/ops/staff/{pin}", delete(delete_staff))
}

fn op_error(e: OpError) -> Response {
    match e {
        OpError::Invalid(m) => err(StatusCode::BAD_REQUEST, m),
        OpError::NotFound(m) => err(StatusCode::NOT_FOUND, m),
        OpError::Exists => err(StatusCode::CONFLICT, e.to_string()),
        OpError::Store(m) => internal(m),
    }
}

fn terminal_json(t: &TerminalRecord, n: TerminalCounts, s: &AppState) -> Value {
    let now = s.terminals.clock().now_ms();
    let expected = match t.last_seen_via.as_deref() {
        Some("iclock") => NATIVE_SILENT_AFTER_MS,
        _ => BRIDGE_SILENT_AFTER_MS,
    };
    let silent = t.last_seen_at.is_none_or(|at| now - at > expected);
    json!({
        "sn": t.sn,
        "name": t.name,
        "timezone": t.timezone,
        "last_seen": t.last_seen_at.map(|at| wire(at, s.tz)),
        "last_seen_via": t.last_seen_via,
        "silent": silent,
        "silent_after_seconds": expected / 1000,
        "roster_version": t.roster_version,
        "punches": n.punches,
        "quarantined": n.quarantined,
        "open_commands": n.open_commands,
        "failed_commands": n.failed_commands,
        "info": t.info,
    })
}

fn command_json(c: &CommandRow, s: &AppState) -> Value {
    json!({
        "id": c.id,
        "sn": c.sn,
        "name": c.name,
        "args": serde_json::from_str::<Value>(&c.args).unwrap_or(Value::Null),
        "channel": c.channel.as_str(),
        "state": c.state.as_str(),
        "destructive": c.destructive,
        "attempts": c.attempts,
        "wire_id": c.wire_id,
        "return_code": c.return_code,
        "result": c.result,
        "created_at": wire(c.created_at, s.tz),
        "sent_at": c.sent_at.map(|t| wire(t, s.tz)),
        "acked_at": c.acked_at.map(|t| wire(t, s.tz)),
        "via": c.via,
        "delivered_at": c.delivered_at.map(|t| wire(t, s.tz)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddTerminal {
    sn: String,
    token: String,
    name: Option<String>,
    timezone: Option<String>,
    /// `native` (default) or `bridge` (refused on `/iclock`).
    kind: Option<String>,
    /// The `pushcommkey` a native terminal's handshake must carry.
    comm_key: Option<String>,
}

#[derive(Deserialize)]
struct SetIclock {
    kind: String,
    comm_key: Option<String>,
}

/// `native` → false, `bridge` → true; a comm key is 1-64 printable ASCII characters.
fn iclock_settings(
    kind: Option<&str>,
    key: Option<&str>,
) -> Result<(bool, Option<String>), Response> {
    let bridge = match kind {
        None | Some("native") => false,
        Some("bridge") => true,
        Some(_) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "kind must be \"native\" or \"bridge\"",
            ));
        }
    };
    let key = key.filter(|k| !k.is_empty());
    if key.is_some_and(|k| k.len() > 64 || !k.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "comm_key must be 1-64 printable ASCII characters",
        ));
    }
    Ok((bridge, key.map(str::to_string)))
}

/// `POST /ops/terminals/<sn>/iclock {kind, comm_key}`: how the terminal may use
/// `/iclock` (a new comm key must be presented again before user secrets are sent).
async fn set_iclock(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
    b: Result<EnvJson<SetIclock>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (bridge, key) = match iclock_settings(Some(&req.kind), req.comm_key.as_deref()) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match s.db.set_terminal_iclock(&sn, bridge, key.as_deref()).await {
        Ok(true) => {
            Json(json!({"sn": sn, "kind": req.kind, "comm_key_set": key.is_some()})).into_response()
        }
        Ok(false) => err(StatusCode::NOT_FOUND, "no such terminal"),
        Err(e) => internal(e),
    }
}

async fn add_terminal(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddTerminal>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (bridge, key) = match iclock_settings(req.kind.as_deref(), req.comm_key.as_deref()) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now = s.terminals.clock().now_ms();
    let r = ops::register_terminal(
        &s.db,
        &req.sn,
        &req.token,
        req.name.as_deref(),
        req.timezone.as_deref(),
        s.tz.name(),
        now,
    )
    .await;
    if let Ok(t) = &r
        && (bridge || key.is_some())
        && let Err(e) =
            s.db.set_terminal_iclock(&t.sn, bridge, key.as_deref())
                .await
    {
        return internal(e);
    }
    match r {
        Ok(t) => (
            StatusCode::CREATED,
            Json(terminal_json(&t, TerminalCounts::default(), &s)),
        )
            .into_response(),
        Err(e) => op_error(e),
    }
}

async fn list_terminals(_: Operator, State(s): State<AppState>) -> Response {
    match s.db.list_terminals().await {
        Ok(ts) => {
            let data: Vec<Value> = ts.iter().map(|(t, n)| terminal_json(t, *n, &s)).collect();
            Json(json!({"total": data.len(), "data": data})).into_response()
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCommand {
    name: String,
    args: Option<Map<String, Value>>,
}

async fn add_command(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
    b: Result<EnvJson<AddCommand>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match s
        .terminals
        .enqueue(&sn, &req.name, req.args.unwrap_or_default())
        .await
    {
        Ok(c) => (StatusCode::CREATED, Json(command_json(&c, &s))).into_response(),
        Err(TermError::NoSuchTerminal) => err(StatusCode::NOT_FOUND, "no such terminal"),
        Err(TermError::BadCommand(m)) => err(StatusCode::BAD_REQUEST, m),
        Err(e) => internal(e),
    }
}

async fn known_terminal(s: &AppState, sn: &str) -> Result<(), Response> {
    use kioskd_actors::terminal::TerminalStore;
    match s.db.terminal(sn).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(err(StatusCode::NOT_FOUND, "no such terminal")),
        Err(e) => Err(internal(e)),
    }
}

async fn list_commands(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
) -> Response {
    if let Err(r) = known_terminal(&s, &sn).await {
        return r;
    }
    match (
        s.db.list_commands(&sn).await,
        s.db.command_errors(&sn).await,
    ) {
        (Ok(cs), Ok(mut logs)) => {
            let data: Vec<Value> = cs
                .iter()
                .map(|c| {
                    let mut v = command_json(c, &s);
                    // Error logs linked to it (bridge CMD_FAILED logs, native failures).
                    let errors: Vec<Value> = logs
                        .remove(&c.id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(kind, content)| json!({"type": kind, "content": content}))
                        .collect();
                    v["errors"] = Value::Array(errors);
                    v
                })
                .collect();
            Json(json!({"total": data.len(), "data": data})).into_response()
        }
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

async fn quarantine(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
) -> Response {
    if let Err(r) = known_terminal(&s, &sn).await {
        return r;
    }
    match s.db.quarantined(&sn).await {
        Ok(q) => {
            let data: Vec<Value> = q
                .iter()
                .map(|q| json!({"sn": q.sn, "source": q.source, "raw": q.raw, "reason": q.reason}))
                .collect();
            Json(json!({"total": data.len(), "data": data})).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn errors(_: Operator, State(s): State<AppState>, OpsPath(sn): OpsPath<String>) -> Response {
    if let Err(r) = known_terminal(&s, &sn).await {
        return r;
    }
    match s.db.error_logs(Some(&sn)).await {
        Ok(l) => {
            let data: Vec<Value> = l
                .iter()
                .map(|(sn, kind, content, cmd)| {
                    json!({"sn": sn, "type": kind, "content": content, "command_id": cmd})
                })
                .collect();
            Json(json!({"total": data.len(), "data": data})).into_response()
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PunchQuery {
    sn: Option<String>,
    pin: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<String>,
    size: Option<String>,
}

async fn punches(
    _: Operator,
    State(s): State<AppState>,
    q: Result<EnvQuery<PunchQuery>, Response>,
) -> Response {
    let q = match q {
        Ok(EnvQuery(q)) => q,
        Err(_) => {
            return err(
                StatusCode::BAD_REQUEST,
                "query parameters: sn, pin, from, to, page, size",
            );
        }
    };
    let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, Response> {
        match v.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => parse(t, s.tz).map(Some).ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    format!("{what} must be YYYY-MM-DD HH:MM:SS"),
                )
            }),
        }
    };
    let num = |v: &Option<String>, what: &str, default: i64, max: i64| -> Result<i64, Response> {
        match v.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(default),
            Some(t) => t
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| err(StatusCode::BAD_REQUEST, format!("{what} must be 1-{max}"))),
        }
    };
    let (from, to, page, size) = match (
        time(&q.from, "from"),
        time(&q.to, "to"),
        num(&q.page, "page", 1, 1_000_000),
        num(&q.size, "size", 50, 1000),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => return r,
    };
    let f = PunchFilter {
        sn: q.sn.filter(|v| !v.is_empty()),
        pin: q.pin.filter(|v| !v.is_empty()),
        from,
        to,
    };
    match s.db.punches(&f, page, size).await {
        Ok((total, rows)) => {
            let data: Vec<Value> = rows
                .iter()
                .map(|p| {
                    json!({
                        "sn": p.sn,
                        "pin": p.pin,
                        "time": p.local_time,
                        "utc_ms": p.at,
                        "status": p.status,
                        "verify": p.verify,
                        "workcode": p.workcode,
                        "reserved1": p.reserved1,
                        "reserved2": p.reserved2,
                        "source": p.source,
                        "received_at": wire(p.received_at, s.tz),
                    })
                })
                .collect();
            Json(json!({"total": total, "page": page, "size": size, "data": data})).into_response()
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutStaff {
    pin: String,
    name: String,
    pri: i64,
    passwd: Option<String>,
    card: Option<String>,
    grp: Option<String>,
    tz: Option<String>,
    terminals: Option<Vec<String>>,
}

fn staff_json(st: &StaffRow, terminals: &[String]) -> Value {
    json!({
        "pin": st.pin, "name": st.name, "pri": st.pri, "passwd": st.passwd, "card": st.card,
        "grp": st.grp, "tz": st.tz, "deleted": st.deleted, "version": st.version,
        "terminals": if st.all_terminals { Value::Null } else { json!(terminals) },
    })
}

async fn put_staff(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<PutStaff>, Response>,
) -> Response {
    let r = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let st = match ops::check_staff(
        r.pin,
        r.name,
        r.pri,
        r.passwd,
        r.card,
        r.grp,
        r.tz,
        r.terminals,
    ) {
        Ok(st) => st,
        Err(e) => return op_error(e),
    };
    let now = s.terminals.clock().now_ms();
    match ops::put_staff(&s.db, &st, now).await {
        Ok(version) => {
            s.terminals.roster_changed();
            (
            StatusCode::CREATED,
            Json(json!({
                "pin": st.pin, "name": st.name, "pri": st.pri, "passwd": st.passwd, "card": st.card,
                "grp": st.grp, "tz": st.tz, "terminals": st.terminals, "version": version,
            })),
        )
            .into_response()
        }
        Err(e) => op_error(e),
    }
}

async fn list_staff(_: Operator, State(s): State<AppState>) -> Response {
    match (s.db.all_staff().await, s.db.roster_version().await) {
        (Ok(all), Ok(version)) => {
            let data: Vec<Value> = all.iter().map(|(st, t)| staff_json(st, t)).collect();
            Json(json!({"total": data.len(), "version": version, "data": data})).into_response()
        }
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

async fn delete_staff(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(pin): OpsPath<String>,
) -> Response {
    let now = s.terminals.clock().now_ms();
    match ops::delete_staff(&s.db, &pin, now).await {
        Ok(version) => {
            s.terminals.roster_changed();
            Json(json!({"deleted": pin, "version": version})).into_response()
        }
        Err(e) => op_error(e),
    }
}
