//! The attendance bridge's HTTP protocol (seed 003, SPEC §8) as the deployed Raspberry Pi
//! bridge really speaks it: `POST /weiphp30/index.php?s=/addon/DailyTime/DailyTime/<action>`
//! and the same actions under `/attendance/<action>`, with form-encoded bodies (a `record`
//! that is itself URL-encoded; `records` and `logs` as JSON strings) or the seed's JSON.
//!
//! Replies are ASCII-only JSON (the bridge decodes them as GBK). The bridge erases a
//! terminal's log after any 2xx sync reply carrying `SN`, so every failure (wrong token,
//! unknown SN, bad body, storage down) is non-2xx and stores nothing, and
//! `{"state":"OK","SN":..}` is sent only after the punches are committed.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kioskd_actors::terminal::{
    CommandRow, Quarantined, RawPunch, TermError, TerminalRecord, check_punches, parse_zone,
};
use serde_json::{Map, Value, json};

use super::AppState;
use crate::attendance as att;
use crate::attendance::{NewErrorLog, StaffRow};

/// Largest bridge body: a nightly sync re-sends every punch since the bridge booted.
pub const MAX_BRIDGE_BODY: usize = 64 * 1024 * 1024;

/// Largest JSON body: a parsed JSON tree takes several times its text, and JSON is
/// parsed before the token is known. The real bridge sends large batches form-encoded
/// (whose records stay text until the token is checked).
pub const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

/// Largest body of the small actions (one punch, a poll, a roster request).
pub const MAX_SMALL_BODY: usize = 64 * 1024;

/// Largest error-log upload.
pub const MAX_ERRORLOG_BODY: usize = 4 * 1024 * 1024;

/// Most records in one sync (good and quarantined): more is refused with 413 and
/// nothing stored.
pub const MAX_SYNC_RECORDS: usize = 200_000;

/// Records per transaction when a sync is stored: no request holds the database for
/// long (a batch commits in well under a few hundred milliseconds).
pub const INGEST_BATCH: usize = 1000;

/// How much of a form body is read before its token is checked.
const TOKEN_PREFIX: usize = 4096;

/// The legacy path's action prefix (in the `s` query parameter).
const LEGACY_PREFIX: &str = "/addon/DailyTime/DailyTime";

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/weiphp30/index.php", post(legacy))
        .route("/attendance", post(error_logs_route))
        .route("/attendance/", post(error_logs_route))
        .route("/attendance/{action}", post(modern))
}

pub use crate::attendance::token_hash;

/// JSON with every non-ASCII character escaped as `\uXXXX` (UTF-16 surrogate pairs above
/// U+FFFF), so GBK and UTF-8 readers decode the same text.
pub fn ascii_json(v: &Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn reply(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        ascii_json(&v),
    )
        .into_response()
}

/// A refusal in the bridge dialect: `{"state":"ERROR","error":..}` (ASCII JSON) with a
/// non-2xx status, so the bridge keeps what it sent (the dialect's one boundary).
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    msg: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        reply(self.status, json!({"state": "ERROR", "error": self.msg}))
    }
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal {
        status,
        msg: msg.into(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "attendance request failed");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage unavailable, retry later",
    )
}

impl From<TermError> for Refusal {
    fn from(e: TermError) -> Self {
        match e {
            TermError::NoSuchTerminal => refuse(StatusCode::NOT_FOUND, "unknown SN"),
            TermError::BadCommand(m) => refuse(StatusCode::BAD_REQUEST, m),
            e => unavailable(e),
        }
    }
}

impl From<kioskd_actors::ports::StoreError> for Refusal {
    fn from(e: kioskd_actors::ports::StoreError) -> Self {
        unavailable(e)
    }
}

impl From<super::body::BodyError> for Refusal {
    fn from(e: super::body::BodyError) -> Self {
        match e {
            super::body::BodyError::TooLarge => {
                refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            super::body::BodyError::Broken => refuse(StatusCode::BAD_REQUEST, "cannot read body"),
        }
    }
}

type BridgeResult = Result<Response, Refusal>;

/// The body's fields: a form (every value a string) or a JSON object.
pub(crate) fn fields(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err("empty body".into());
    }
    if trimmed.first() == Some(&b'[') {
        return Err("JSON body must be an object".into());
    }
    if trimmed.first() == Some(&b'{') {
        if trimmed.len() > MAX_JSON_BODY {
            return Err(format!(
                "JSON bodies are limited to {} MiB; send large batches form-encoded",
                MAX_JSON_BODY / 1024 / 1024
            ));
        }
        return match serde_json::from_slice::<Value>(trimmed) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("JSON body must be an object".into()),
            Err(e) => Err(format!("invalid JSON body: {e}")),
        };
    }
    form(trimmed)
}

/// A form string; duplicate keys are refused (which one would count is ambiguous).
fn form(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(bytes).map_err(|e| format!("invalid form body: {e}"))?;
    let mut m = Map::new();
    for (k, v) in pairs {
        if m.insert(k.clone(), Value::String(v)).is_some() {
            return Err(format!("duplicate field {k}"));
        }
    }
    Ok(m)
}

fn text_field<'a>(f: &'a Map<String, Value>, k: &str) -> Result<&'a str, String> {
    match f.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => Err(format!("missing {k}")),
        Some(_) => Err(format!("{k} must be a string")),
    }
}

/// A record field as text (the bridge sends STATUS as a number, the rest as strings).
fn scalar(v: Option<&Value>) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err("record fields must be strings or numbers".into()),
    }
}

/// One record object into a raw punch; `Err` when PIN or TIME is missing or mistyped.
fn raw_punch(m: &Map<String, Value>, raw: String) -> Result<RawPunch, String> {
    let get = |k: &str| scalar(m.get(k));
    let pin = get("PIN")?;
    let time = get("TIME")?;
    if pin.is_empty() || time.is_empty() {
        return Err("record needs PIN and TIME".into());
    }
    Ok(RawPunch {
        pin,
        time,
        status: get("STATUS")?,
        verify: get("VERIFY")?,
        workcode: get("WORKCODE")?,
        reserved1: get("RESERVED1")?,
        reserved2: get("RESERVED2")?,
        raw,
    })
}

/// The `record` of New AttLog: a URL-encoded form string (the real bridge), a JSON
/// string, or a JSON object (the seed).
pub(crate) fn new_record(v: &Value) -> Result<RawPunch, String> {
    match v {
        Value::Object(m) => raw_punch(m, Value::Object(m.clone()).to_string()),
        Value::String(s) if s.trim_start().starts_with('{') => {
            match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => raw_punch(&m, s.clone()),
                _ => Err("record is not a JSON object".into()),
            }
        }
        Value::String(s) => raw_punch(&form(s.as_bytes())?, s.clone()),
        _ => Err("record must be a form string or an object".into()),
    }
}

/// The `records` of Sync AttLog: a JSON array (as a string or inline). Elements that are
/// not readable records are quarantined, never failing the batch.
pub(crate) fn sync_records(v: &Value) -> Result<(Vec<RawPunch>, Vec<Quarantined>), String> {
    let parsed;
    let arr = match v {
        Value::Array(a) => a,
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("records is not valid JSON: {e}"))?;
            parsed
                .as_array()
                .ok_or_else(|| "records must be a JSON array".to_string())?
        }
        _ => return Err("records must be a JSON array".into()),
    };
    let mut good = Vec::with_capacity(arr.len());
    let mut bad = Vec::new();
    for item in arr {
        // Good records keep no raw text (the fields stand in if the actor refuses one):
        // rendering 50,000 records again would double the cost of a nightly sync.
        match item {
            Value::Object(m) => match raw_punch(m, String::new()) {
                Ok(p) => good.push(p),
                Err(e) => bad.push(Quarantined::new(&item.to_string(), e)),
            },
            _ => bad.push(Quarantined::new(
                &item.to_string(),
                "record is not an object",
            )),
        }
    }
    Ok((good, bad))
}

/// The terminals the body's token serves (403 when none).
async fn authorize(s: &AppState, f: &Map<String, Value>) -> Result<Vec<TerminalRecord>, Refusal> {
    let token = text_field(f, "token").map_err(|m| refuse(StatusCode::UNAUTHORIZED, m))?;
    authorize_token(s, token).await
}

async fn authorize_token(s: &AppState, token: &str) -> Result<Vec<TerminalRecord>, Refusal> {
    let ts = att::terminals_for_token(s, token).await?;
    if ts.is_empty() {
        metrics::counter!(kioskd_actors::catalog::BODIES_REFUSED, "reason" => "unauthorized")
            .increment(1);
        return Err(refuse(StatusCode::FORBIDDEN, "wrong token"));
    }
    Ok(ts)
}

/// The SN of the body among the token's terminals (404 when not one of them).
fn terminal<'a>(
    f: &Map<String, Value>,
    ts: &'a [TerminalRecord],
) -> Result<&'a TerminalRecord, Refusal> {
    let sn = text_field(f, "SN").map_err(|m| refuse(StatusCode::BAD_REQUEST, m))?;
    ts.iter()
        .find(|t| t.sn == sn)
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("unknown SN {sn}")))
}

async fn legacy(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> BridgeResult {
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default();
    let Some(route) = params.get("s") else {
        return Err(refuse(StatusCode::NOT_FOUND, "missing s parameter"));
    };
    let Some(action) = route.strip_prefix(LEGACY_PREFIX) else {
        return Err(refuse(StatusCode::NOT_FOUND, "no such action"));
    };
    dispatch(s, action.trim_matches('/'), headers, body).await
}

async fn modern(
    State(s): State<AppState>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> BridgeResult {
    dispatch(s, &action, headers, body).await
}

async fn error_logs_route(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> BridgeResult {
    dispatch(s, "", headers, body).await
}

async fn dispatch(s: AppState, action: &str, headers: HeaderMap, body: Body) -> BridgeResult {
    let (handler, max) = match action {
        "newRecord" => (Action::New, MAX_SMALL_BODY),
        "syncRecord" => (Action::Sync, MAX_BRIDGE_BODY),
        "updateStudent" => (Action::Users, MAX_SMALL_BODY),
        "getCommand" => (Action::Command, MAX_SMALL_BODY),
        "" | "sendErrorLogs" => (Action::Errors, MAX_ERRORLOG_BODY),
        _ => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no such action {action:?}"),
            ));
        }
    };
    // The limit is known before a byte is read; large bodies wait for the byte budget.
    let mut reader = super::body::BodyReader::new(&s, &headers, body, max).await?;
    // The bridge's form bodies start with the token: a wrong one is refused before
    // the rest (up to 64 MiB) is read.
    reader.fill(TOKEN_PREFIX).await?;
    let mut early = None;
    if !reader.complete()
        && reader.prefix().trim_ascii_start().first() != Some(&b'{')
        && let Some(token) = super::body::form_prefix_value(reader.prefix(), "token")
    {
        early = Some(authorize_token(&s, &token).await?);
    }
    let bytes = reader.finish().await?;
    let f = fields(&bytes).map_err(|m| refuse(StatusCode::BAD_REQUEST, m))?;
    drop(bytes);
    let ts = match early {
        // Duplicate keys are refused by `fields`: the prefix's token is the body's.
        Some(ts) => ts,
        None => authorize(&s, &f).await?,
    };
    match handler {
        Action::New => new_attlog(&s, &f, &ts).await,
        Action::Sync => sync_attlog(&s, &f, &ts).await,
        Action::Users => update_users(&s, &f, &ts).await,
        Action::Command => get_command(&s, &f, &ts).await,
        Action::Errors => error_logs(&s, &f, &ts).await,
    }
}

enum Action {
    New,
    Sync,
    Users,
    Command,
    Errors,
}

async fn new_attlog(s: &AppState, f: &Map<String, Value>, ts: &[TerminalRecord]) -> BridgeResult {
    let t = terminal(f, ts)?;
    let rec = f
        .get("record")
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing record"))?;
    let p = new_record(rec).map_err(|m| refuse(StatusCode::BAD_REQUEST, m))?;
    // A single record that cannot be stored is a bad request (nothing stored); the
    // nightly sync brings it again, where it is quarantined with its batch's good lines.
    let tz = parse_zone(&t.timezone).unwrap_or(chrono_tz::UTC);
    let now = s.terminals.clock().now_ms();
    if let Some(q) = check_punches(tz, vec![p.clone()], now).1.first() {
        return Err(refuse(StatusCode::BAD_REQUEST, q.reason.clone()));
    }
    s.terminals
        .ingest(&t.sn, "bridge-new", vec![p], Vec::new())
        .await?;
    Ok(reply(StatusCode::OK, json!({"state": "OK", "SN": t.sn})))
}

async fn sync_attlog(s: &AppState, f: &Map<String, Value>, ts: &[TerminalRecord]) -> BridgeResult {
    let t = terminal(f, ts)?;
    let recs = f
        .get("records")
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing records"))?;
    let (good, bad) = sync_records(recs).map_err(|m| refuse(StatusCode::BAD_REQUEST, m))?;
    if good.len() + bad.len() > MAX_SYNC_RECORDS {
        metrics::counter!(kioskd_actors::catalog::BODIES_REFUSED, "reason" => "too_many_lines")
            .increment(1);
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_SYNC_RECORDS} records per sync"),
        ));
    }
    let c =
        att::ingest_batched(&s.terminals, &t.sn, "bridge-sync", good, bad, INGEST_BATCH).await?;
    tracing::info!(sn = %t.sn, inserted = c.inserted, duplicates = c.duplicates, quarantined = c.quarantined, "sync batch stored");
    Ok(reply(StatusCode::OK, json!({"state": "OK", "SN": t.sn})))
}

fn staff_json(st: &StaffRow) -> Value {
    json!({
        "PIN": st.pin,
        "Name": st.name,
        "Pri": st.pri.to_string(),
        "Passwd": st.passwd,
        "Card": st.card,
        "Grp": st.grp,
        "TZ": st.tz,
    })
}

async fn update_users(s: &AppState, f: &Map<String, Value>, ts: &[TerminalRecord]) -> BridgeResult {
    let sn = text_field(f, "SN").map_err(|m| refuse(StatusCode::BAD_REQUEST, m))?;
    let sns: Vec<String> = if sn == "all_devices" {
        ts.iter().map(|t| t.sn.clone()).collect()
    } else {
        let t = terminal(f, ts)?;
        // A terminal-specific request makes the bridge wipe the terminal (CLEAR DATA,
        // fingerprints included) whenever the reply carries users: only on an
        // operator's `reprovision`. Otherwise say which version it holds, so that a
        // newer roster still reaches it through updatestd and all_devices.
        if !s.terminals.take_reprovision(&t.sn).await? {
            let held = s.terminals.heard(&t.sn, "bridge").await?;
            return Ok(reply(
                StatusCode::OK,
                json!({"state": "OK", "SN": t.sn, "timeStamp": held.roster_version}),
            ));
        }
        vec![t.sn.clone()]
    };
    let roster = att::roster_for(s, &sns).await?;
    let users: Vec<Value> = roster.users.iter().map(staff_json).collect();
    let dele: Vec<Value> = roster.deleted.iter().map(staff_json).collect();
    Ok(reply(
        StatusCode::OK,
        json!({
            "state": "OK",
            "SN": sn,
            "timeStamp": roster.version,
            // The deployed bridge reads `users`; the seed document says `update_users`.
            "users": users,
            "update_users": users,
            "dele_users": dele,
        }),
    ))
}

fn cmd_value(c: &CommandRow) -> Value {
    if c.name == "getErroLog" {
        let args: Map<String, Value> = serde_json::from_str(&c.args).unwrap_or_default();
        json!({
            "s_timeStamp": args.get("s_timeStamp").cloned().unwrap_or(Value::Null),
            "e_timeStamp": args.get("e_timeStamp").cloned().unwrap_or(Value::Null),
        })
    } else {
        Value::String(String::new())
    }
}

async fn get_command(s: &AppState, f: &Map<String, Value>, ts: &[TerminalRecord]) -> BridgeResult {
    let t = terminal(f, ts)?;
    let cmds = s.terminals.bridge_poll(&t.sn).await?;
    let mut list = Map::new();
    for c in &cmds {
        list.insert(c.name.clone(), cmd_value(c));
    }
    let version = att::roster_version(s).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"state": "OK", "timeStamp": version, "SN": t.sn, "cmd_list": list}),
    ))
}

async fn error_logs(s: &AppState, f: &Map<String, Value>, ts: &[TerminalRecord]) -> BridgeResult {
    // The bridge sends `logs` (a JSON array string); the seed shows `log_data`.
    let v = f
        .get("logs")
        .or_else(|| f.get("log_data"))
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing logs"))?;
    let parsed = match v {
        Value::String(t) => serde_json::from_str::<Value>(t)
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("logs is not JSON: {e}")))?,
        other => other.clone(),
    };
    let items = match parsed {
        // ZkPush posts `json.dumps(None)` while its database has no error-log
        // collection: no logs, not an error (a 400 makes the bridge crash later).
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        Value::Object(o) => vec![Value::Object(o)],
        _ => return Err(refuse(StatusCode::BAD_REQUEST, "logs must be an array")),
    };
    let mut logs = Vec::with_capacity(items.len());
    for it in &items {
        let Value::Object(o) = it else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "each log must be an object",
            ));
        };
        let sn = o.get("SN").and_then(Value::as_str);
        // A log naming a terminal of another bridge is kept, but not attributed.
        let sn = sn
            .filter(|sn| ts.iter().any(|t| t.sn == *sn))
            .map(str::to_string);
        let content = match o.get("content") {
            Some(Value::String(c)) => c.clone(),
            Some(v) => v.to_string(),
            None => it.to_string(),
        };
        logs.push(NewErrorLog {
            sn,
            kind: o
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .chars()
                .take(32)
                .collect(),
            content: content.chars().take(4000).collect(),
            device_time: o.get("wTime").and_then(Value::as_i64),
        });
    }
    att::add_error_logs(s, &logs).await?;
    Ok(reply(StatusCode::OK, json!({"state": "OK"})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_escapes_every_non_ascii_character() {
        let v = json!({"Name": "陈", "e": "é😀", "a": "plain"});
        let s = ascii_json(&v);
        assert!(s.is_ascii(), "{s}");
        assert!(s.contains(r"\u9648"), "{s}");
        assert!(s.contains(r"\ud83d\ude00"), "{s}");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_real_bridge_new_record_body_decodes() {
        let body = "token=gh_2837e31e28ed&SN=3637165101475&record=PIN%3D101010101010%26TIME%3D2017-08-03%2B11%253A30%253A28%26STATUS%3D255%26VERIFY%3D2%26WORKCODE%3D0%26RESERVED1%3D0%26RESERVED2%3D0";
        let f = fields(body.as_bytes()).unwrap();
        assert_eq!(f["token"], "gh_2837e31e28ed");
        assert_eq!(f["SN"], "3637165101475");
        let p = new_record(&f["record"]).unwrap();
        assert_eq!(p.pin, "101010101010");
        assert_eq!(p.time, "2017-08-03 11:30:28");
        assert_eq!((p.status.as_str(), p.verify.as_str()), ("255", "2"));
        assert_eq!(p.workcode, "0");
    }

    #[test]
    fn the_real_bridge_sync_body_decodes() {
        let body = "token=gh_2837e31e28ed&SN=3637165101475&records=%5B%7B%22PIN%22%3A+%22101010101010%22%2C+%22TIME%22%3A+%222017-08-03+11%3A30%3A28%22%2C+%22STATUS%22%3A+255%2C+%22VERIFY%22%3A+%222%22%2C+%22WORKCODE%22%3A+%220%22%2C+%22RESERVED1%22%3A+%220%22%2C+%22RESERVED2%22%3A+%220%22%7D%5D";
        let f = fields(body.as_bytes()).unwrap();
        let (good, bad) = sync_records(&f["records"]).unwrap();
        assert!(bad.is_empty());
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].pin, "101010101010");
        assert_eq!(good[0].time, "2017-08-03 11:30:28");
        assert_eq!(good[0].status, "255");
    }

    #[test]
    fn the_seed_json_bodies_decode() {
        let f = fields(br#"{"token":"t","SN":"X","record":{"PIN":"1","TIME":"2017-08-01 13:40:38","STATUS":255,"VERIFY":"2","WORKCODE":"0","RESERVED1":"0","RESERVED2":"0"}}"#).unwrap();
        let p = new_record(&f["record"]).unwrap();
        assert_eq!(
            (p.pin.as_str(), p.time.as_str()),
            ("1", "2017-08-01 13:40:38")
        );
        let f = fields(br#"{"token":"t","SN":"X","records":[{"PIN":"1","TIME":"2017-08-01 13:40:38","STATUS":255},{"PIN":"2","TIME":"2017-08-01 13:41:38","STATUS":255}, 7, {"PIN":"3"}]}"#).unwrap();
        let (good, bad) = sync_records(&f["records"]).unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(
            bad.len(),
            2,
            "a non-object and a record without TIME are quarantined"
        );
    }

    #[test]
    fn broken_bodies_are_refused() {
        assert!(fields(b"").is_err());
        assert!(fields(b"{\"token\":").is_err());
        assert!(fields(b"[1]").is_err());
        assert!(fields(b"token=a&token=b").is_err());
        let f = fields(b"token=t&SN=X&records=%5B%7B%22PIN%22").unwrap();
        assert!(sync_records(&f["records"]).is_err(), "truncated records");
        assert!(sync_records(&json!("{}")).is_err());
        assert!(new_record(&json!(5)).is_err());
        assert!(new_record(&json!("PIN=1")).is_err(), "no TIME");
        let huge = format!("{{\"token\":\"{}\"}}", "x".repeat(MAX_JSON_BODY));
        assert!(
            fields(huge.as_bytes())
                .unwrap_err()
                .contains("form-encoded")
        );
    }
}
