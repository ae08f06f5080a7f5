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
use super::ops::{Operator, OpsError, OpsResult, body};
use crate::attendance::{self as ops, NewTerminal};
use crate::attendance::{PunchFilter, StaffRow, TerminalCounts};
use crate::timefmt::{parse, wire};

pub use crate::attendance::{BRIDGE_SILENT_AFTER_MS, NATIVE_SILENT_AFTER_MS};

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

impl From<TermError> for OpsError {
    fn from(e: TermError) -> Self {
        match e {
            TermError::NoSuchTerminal => OpsError::not_found("no such terminal"),
            TermError::BadCommand(m) => OpsError::bad(m),
            e => OpsError::unavailable(e),
        }
    }
}

fn terminal_json(t: &TerminalRecord, n: TerminalCounts, s: &AppState) -> Value {
    let (silent, expected) = ops::silence(t, s.terminals.clock().now_ms());
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

/// `POST /ops/terminals/<sn>/iclock {kind, comm_key}`: how the terminal may use
/// `/iclock` (a new comm key must be presented again before user secrets are sent).
async fn set_iclock(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
    b: Result<EnvJson<SetIclock>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let key_set = ops::set_iclock(&s, &sn, &req.kind, req.comm_key.as_deref()).await?;
    Ok(Json(json!({"sn": sn, "kind": req.kind, "comm_key_set": key_set})).into_response())
}

async fn add_terminal(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddTerminal>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let t = ops::add_terminal(
        &s,
        NewTerminal {
            sn: req.sn,
            token: req.token,
            name: req.name,
            timezone: req.timezone,
            kind: req.kind,
            comm_key: req.comm_key,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(terminal_json(&t, TerminalCounts::default(), &s)),
    )
        .into_response())
}

async fn list_terminals(_: Operator, State(s): State<AppState>) -> OpsResult {
    let ts = ops::terminals(&s).await?;
    let data: Vec<Value> = ts
        .iter()
        .map(|t| terminal_json(&t.terminal, t.counts, &s))
        .collect();
    Ok(Json(json!({"total": data.len(), "data": data})).into_response())
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
) -> OpsResult {
    let req = body(b).await?;
    let c = s
        .terminals
        .enqueue(&sn, &req.name, req.args.unwrap_or_default())
        .await?;
    Ok((StatusCode::CREATED, Json(command_json(&c, &s))).into_response())
}

async fn list_commands(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
) -> OpsResult {
    let cs = ops::commands(&s, &sn).await?;
    let data: Vec<Value> = cs
        .iter()
        .map(|c| {
            let mut v = command_json(&c.command, &s);
            // Error logs linked to it (bridge CMD_FAILED logs, native failures).
            let errors: Vec<Value> = c
                .errors
                .iter()
                .map(|e| json!({"type": e.kind, "content": e.content}))
                .collect();
            v["errors"] = Value::Array(errors);
            v
        })
        .collect();
    Ok(Json(json!({"total": data.len(), "data": data})).into_response())
}

async fn quarantine(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(sn): OpsPath<String>,
) -> OpsResult {
    let q = ops::quarantine(&s, &sn).await?;
    let data: Vec<Value> = q
        .iter()
        .map(|q| json!({"sn": q.sn, "source": q.source, "raw": q.raw, "reason": q.reason}))
        .collect();
    Ok(Json(json!({"total": data.len(), "data": data})).into_response())
}

async fn errors(_: Operator, State(s): State<AppState>, OpsPath(sn): OpsPath<String>) -> OpsResult {
    let l = ops::error_logs(&s, &sn).await?;
    let data: Vec<Value> = l
        .iter()
        .map(|e| {
            json!({"sn": e.sn, "type": e.kind, "content": e.content, "command_id": e.command_id})
        })
        .collect();
    Ok(Json(json!({"total": data.len(), "data": data})).into_response())
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
) -> OpsResult {
    let Ok(EnvQuery(q)) = q else {
        return Err(OpsError::bad(
            "query parameters: sn, pin, from, to, page, size",
        ));
    };
    let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, OpsError> {
        match v.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => parse(t, s.tz)
                .map(Some)
                .ok_or_else(|| OpsError::bad(format!("{what} must be YYYY-MM-DD HH:MM:SS"))),
        }
    };
    let num = |v: &Option<String>, what: &str, default: i64, max: i64| -> Result<i64, OpsError> {
        match v.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(default),
            Some(t) => t
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| OpsError::bad(format!("{what} must be 1-{max}"))),
        }
    };
    let from = time(&q.from, "from")?;
    let to = time(&q.to, "to")?;
    let page = num(&q.page, "page", 1, 1_000_000)?;
    let size = num(&q.size, "size", 50, 1000)?;
    let f = PunchFilter {
        sn: q.sn.filter(|v| !v.is_empty()),
        pin: q.pin.filter(|v| !v.is_empty()),
        from,
        to,
    };
    let (total, rows) = ops::punches(&s, &f, page, size).await?;
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
    Ok(Json(json!({"total": total, "page": page, "size": size, "data": data})).into_response())
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
) -> OpsResult {
    let r = body(b).await?;
    let (st, version) = ops::save_staff(
        &s,
        r.pin,
        r.name,
        r.pri,
        r.passwd,
        r.card,
        r.grp,
        r.tz,
        r.terminals,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "pin": st.pin, "name": st.name, "pri": st.pri, "passwd": st.passwd, "card": st.card,
            "grp": st.grp, "tz": st.tz, "terminals": st.terminals, "version": version,
        })),
    )
        .into_response())
}

async fn list_staff(_: Operator, State(s): State<AppState>) -> OpsResult {
    let (all, version) = ops::staff(&s).await?;
    let data: Vec<Value> = all
        .iter()
        .map(|e| staff_json(&e.staff, &e.terminals))
        .collect();
    Ok(Json(json!({"total": data.len(), "version": version, "data": data})).into_response())
}

async fn delete_staff(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(pin): OpsPath<String>,
) -> OpsResult {
    let version = ops::remove_staff(&s, &pin).await?;
    Ok(Json(json!({"deleted": pin, "version": version})).into_response())
}
