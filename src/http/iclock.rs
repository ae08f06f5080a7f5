//! Native ZKTeco "PUSH" terminals (`/iclock/*`, see `reference/attendance-terminals.md`
//! §1): the handshake with options (stamps, delays, the terminal's `TimeZone`), ATTLOG and
//! OPERLOG uploads, the `getrequest` command poll and `devicecmd` results.
//!
//! Every reply is `text/plain` (hyper adds the `Date` header the firmware sets its clock
//! from). Terminals treat an upload as delivered only on 200 with `OK` in the body, so
//! `OK:<n>` is sent only after the rows are committed; anything else keeps the batch on
//! the terminal, which re-sends it. Bodies are read as raw bytes, never as forms.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Offset;
use chrono::TimeZone as _;
use kioskd_actors::terminal::{
    CmdResult, NativeCommand, Quarantined, RawPunch, StampTable, TermError,
};

use super::AppState;
use crate::attendance as att;
use crate::attendance::SeenUser;

pub use crate::attendance::{CHINESE, POLL_DELAY_SECONDS};

/// An `/iclock` refusal or failure: plain text with a status (the dialect's one
/// boundary). Anything but 200 with `OK` keeps the batch on the terminal.
#[derive(Debug)]
pub enum IclockError {
    /// A refusal the terminal is told as is.
    Text(StatusCode, String),
    /// From the terminals' actors or storage: an unknown terminal is `403 UNKNOWN
    /// DEVICE`, a failure (logged) `503 ERROR`.
    Term(TermError),
}

impl IclockError {
    fn text(status: StatusCode, body: impl Into<String>) -> Self {
        IclockError::Text(status, body.into())
    }
}

impl From<TermError> for IclockError {
    fn from(e: TermError) -> Self {
        IclockError::Term(e)
    }
}

impl From<super::body::BodyError> for IclockError {
    fn from(e: super::body::BodyError) -> Self {
        match e {
            super::body::BodyError::TooLarge => {
                IclockError::text(StatusCode::PAYLOAD_TOO_LARGE, "ERROR: body too large")
            }
            super::body::BodyError::Broken => {
                IclockError::text(StatusCode::BAD_REQUEST, "ERROR: cannot read body")
            }
        }
    }
}

impl IntoResponse for IclockError {
    fn into_response(self) -> Response {
        match self {
            IclockError::Text(status, body) => text(status, body),
            IclockError::Term(e) => failed(e),
        }
    }
}

type IclockResult = Result<Response, IclockError>;

/// Routes (with the `.aspx` spellings older firmware uses).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/iclock/cdata", get(handshake).post(upload))
        .route("/iclock/cdata.aspx", get(handshake).post(upload))
        .route("/iclock/getrequest", get(getrequest))
        .route("/iclock/getrequest.aspx", get(getrequest))
        .route(
            "/iclock/devicecmd",
            axum::routing::post(devicecmd)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BODY)),
        )
        .route(
            "/iclock/devicecmd.aspx",
            axum::routing::post(devicecmd)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BODY)),
        )
        .route("/iclock/ping", get(ping))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_bridge_terminals,
        ))
}

/// Middleware on every `/iclock` route, before any body is read: a terminal registered
/// as `bridge` (behind a Pi bridge, which authenticates with its token) is refused here,
/// where anyone may claim its SN.
async fn refuse_bridge_terminals(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let q = query(req.uri().query());
    if let Ok(sn) = sn_of(&q) {
        match att::is_bridge_terminal(&s, &sn).await {
            Ok(true) => return text(StatusCode::FORBIDDEN, "UNKNOWN DEVICE"),
            Ok(false) => {}
            Err(e) => return failed(e),
        }
    }
    next.run(req).await
}

/// A command for a terminal that has not proven itself: `USERINFO` lines lose their
/// non-empty `Passwd=` and `Card=` fields (the user is still created or updated and
/// keeps what the terminal had; the secrets wait for a proven terminal — an operator
/// re-sends the user after configuring a comm key).
pub fn without_user_secrets(text: &str) -> String {
    if !text.contains("USERINFO") {
        return text.to_string();
    }
    text.split('\t')
        .filter(|f| {
            let f = f.trim();
            !((f.starts_with("Passwd=") && f.len() > 7) || (f.starts_with("Card=") && f.len() > 5))
        })
        .collect::<Vec<_>>()
        .join("\t")
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

fn failed(e: TermError) -> Response {
    match e {
        TermError::NoSuchTerminal => text(StatusCode::FORBIDDEN, "UNKNOWN DEVICE"),
        e => {
            tracing::error!(error = %e, "iclock request failed");
            text(StatusCode::SERVICE_UNAVAILABLE, "ERROR")
        }
    }
}

/// Query parameters, keys lower-cased (firmware differs in case); the first value wins.
fn query(q: Option<&str>) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(q.unwrap_or("")).unwrap_or_default();
    let mut m = HashMap::new();
    for (k, v) in pairs {
        m.entry(k.to_ascii_lowercase()).or_insert(v);
    }
    m
}

/// The SN parameter: 1-64 letters, digits, `-` or `_`.
fn sn_of(q: &HashMap<String, String>) -> Result<String, IclockError> {
    match q.get("sn") {
        Some(sn)
            if !sn.is_empty()
                && sn.len() <= 64
                && sn
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(sn.clone())
        }
        _ => Err(IclockError::text(
            StatusCode::BAD_REQUEST,
            "missing or bad SN",
        )),
    }
}

/// The firmware's `TimeZone` option: whole hours as hours, other offsets in minutes.
pub fn timezone_option(tz: chrono_tz::Tz, now_ms: i64) -> i64 {
    let now = chrono::Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .unwrap_or_default();
    let secs = tz
        .offset_from_utc_datetime(&now.naive_utc())
        .fix()
        .local_minus_utc() as i64;
    let minutes = secs / 60;
    if minutes % 60 == 0 {
        minutes / 60
    } else {
        minutes
    }
}

async fn handshake(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
) -> IclockResult {
    let q = query(q.as_deref());
    let sn = sn_of(&q)?;
    // Remote attendance (the terminal asks about an unknown user): not offered.
    let remote_att = q
        .get("table")
        .is_some_and(|t| t.eq_ignore_ascii_case("RemoteAtt"));
    let Some(h) = att::handshake(
        &s,
        &sn,
        q.get("pushcommkey").map(String::as_str),
        peer.ip(),
        q.get("language").map(String::as_str),
        remote_att,
    )
    .await?
    else {
        return Ok(text(StatusCode::OK, "NONE"));
    };
    let now = s.terminals.clock().now_ms();
    let (zone, attlog, operlog) = (h.zone, h.attlog, h.operlog);
    let none = || "None".to_string();
    let mut lines = vec![
        format!("GET OPTION FROM: {sn}"),
        format!("ATTLOGStamp={}", attlog.clone().unwrap_or_else(none)),
        format!("OPERLOGStamp={}", operlog.clone().unwrap_or_else(none)),
        "ATTPHOTOStamp=None".to_string(),
        "ErrorDelay=30".to_string(),
        format!("Delay={POLL_DELAY_SECONDS}"),
        "TransTimes=00:00;14:05".to_string(),
        "TransInterval=1".to_string(),
        "TransFlag=TransData AttLog\tOpLog\tEnrollUser\tChgUser".to_string(),
        format!("TimeZone={}", timezone_option(zone, now)),
        "Realtime=1".to_string(),
        "Encrypt=None".to_string(),
        "ServerVer=2.4.1".to_string(),
        "PushProtVer=2.4.1".to_string(),
    ];
    if !q.contains_key("pushver") {
        // Firmware before PUSH 2.x knows the stamps by their old names.
        lines.push(format!("Stamp={}", attlog.unwrap_or_else(none)));
        lines.push(format!("OpStamp={}", operlog.unwrap_or_else(none)));
    }
    Ok(text(StatusCode::OK, lines.join("\n") + "\n"))
}

/// ATTLOG lines into raw punches; lines with fewer than two columns are quarantined.
pub fn attlog_lines(body: &str) -> (Vec<RawPunch>, Vec<Quarantined>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for line in body.split(['\n', '\r']) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 2 {
            bad.push(Quarantined::new(line, "fewer than 2 TAB-separated columns"));
            continue;
        }
        let col = |i: usize| {
            cols.get(i)
                .map(|c| c.trim().to_string())
                .unwrap_or_default()
        };
        good.push(RawPunch {
            pin: col(0),
            time: col(1),
            status: col(2),
            verify: col(3),
            workcode: col(4),
            reserved1: col(5),
            reserved2: col(6),
            raw: line.to_string(),
        });
    }
    (good, bad)
}

/// `Key=Value` pairs of a TAB-separated OPERLOG `USER` line.
fn kv(line: &str) -> HashMap<&str, &str> {
    line.split('\t')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// OPERLOG lines: the `USER` records (keypad enrolments) and how many lines in all.
pub fn operlog_lines(body: &str) -> (Vec<SeenUser>, u64) {
    let mut users = Vec::new();
    let mut n = 0;
    for line in body.split(['\n', '\r']) {
        if line.trim().is_empty() {
            continue;
        }
        n += 1;
        if let Some(rest) = line.strip_prefix("USER ") {
            let m = kv(rest);
            if let Some(pin) = m
                .get("PIN")
                .filter(|p| kioskd_actors::terminal::valid_pin(p))
            {
                users.push(SeenUser {
                    pin: pin.to_string(),
                    name: m.get("Name").unwrap_or(&"").chars().take(64).collect(),
                    pri: m.get("Pri").unwrap_or(&"").chars().take(8).collect(),
                    card: m.get("Card").unwrap_or(&"").chars().take(32).collect(),
                    raw: line.chars().take(500).collect(),
                });
            }
        }
    }
    (users, n)
}

/// Largest upload body: real terminals post about 128 lines (a few KiB) at a time.
pub const MAX_UPLOAD_BODY: usize = 2 * 1024 * 1024;

/// Most lines in one upload: more is refused with 413 (nothing stored, the terminal
/// keeps its records).
pub const MAX_UPLOAD_LINES: usize = 20_000;

async fn upload(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> IclockResult {
    let q = query(q.as_deref());
    let sn = sn_of(&q)?;
    let table = q.get("table").map(String::as_str).unwrap_or("");
    // Refuse before reading anything for an unknown terminal (it keeps its data).
    if let Err(e) = s.terminals.get(&sn).await {
        if matches!(e, TermError::NoSuchTerminal) {
            metrics::counter!(kioskd_actors::catalog::BODIES_REFUSED, "reason" => "unknown_device")
                .increment(1);
        }
        return Err(e.into());
    }
    let reader = super::body::BodyReader::new(&s, &headers, body, MAX_UPLOAD_BODY).await?;
    let body = reader.finish().await?;
    let lines = body
        .split(|b| *b == b'\n' || *b == b'\r')
        .filter(|l| !l.trim_ascii().is_empty())
        .count();
    if lines > MAX_UPLOAD_LINES {
        metrics::counter!(kioskd_actors::catalog::BODIES_REFUSED, "reason" => "too_many_lines")
            .increment(1);
        return Err(IclockError::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("ERROR: at most {MAX_UPLOAD_LINES} lines per upload"),
        ));
    }
    let body = decode(&body);
    match table.to_ascii_uppercase().as_str() {
        "ATTLOG" => {
            let (good, bad) = attlog_lines(&body);
            let c = att::ingest_batched(
                &s.terminals,
                &sn,
                "iclock",
                good,
                bad,
                super::attendance::INGEST_BATCH,
            )
            .await?;
            if let Some(stamp) = q.get("stamp") {
                s.terminals
                    .set_stamp(&sn, StampTable::AttLog, stamp.chars().take(32).collect())
                    .await?;
            }
            Ok(text(StatusCode::OK, format!("OK:{}", c.processed())))
        }
        "OPERLOG" => {
            let (users, n) = operlog_lines(&body);
            att::seen_users(&s, &sn, &users).await?;
            // Advance the stamp on every accepted post, or the terminal re-sends forever.
            if let Some(stamp) = q.get("stamp") {
                s.terminals
                    .set_stamp(&sn, StampTable::OperLog, stamp.chars().take(32).collect())
                    .await?;
            }
            Ok(text(StatusCode::OK, format!("OK:{n}")))
        }
        "ERRORLOG" => {
            let n = att::native_error_logs(&s, &sn, &body).await?;
            Ok(text(StatusCode::OK, format!("OK:{n}")))
        }
        // Capability flags and photos: accepted, not kept (photos are not stored yet).
        "OPTIONS" | "ATTPHOTO" => Ok(text(StatusCode::OK, "OK")),
        // Anything else (access-control `rtlog`, biometrics) is refused rather than
        // acknowledged and lost: the terminal keeps it.
        _ => Err(IclockError::text(
            StatusCode::BAD_REQUEST,
            format!("ERROR: table {table:?} is not supported"),
        )),
    }
}

async fn getrequest(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
) -> IclockResult {
    let q = query(q.as_deref());
    let sn = sn_of(&q)?;
    let info = q.get("info").map(|i| i.chars().take(1000).collect());
    let poll = att::native_poll(&s, &sn, peer.ip(), info).await?;
    if poll.commands.is_empty() {
        return Ok(text(StatusCode::OK, "OK"));
    }
    let mut body = render_commands(&poll.commands);
    if !poll.trusted {
        body = body
            .lines()
            .map(|l| without_user_secrets(l) + "\n")
            .collect();
    }
    let bytes = if poll.gbk {
        to_gbk(&body)
    } else {
        body.into_bytes()
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        bytes,
    )
        .into_response())
}

/// Text for a Chinese-language terminal: GBK, with `?` for what GBK cannot hold (never
/// an HTML character reference inside a command).
pub fn to_gbk(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut tmp = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c as u8);
            continue;
        }
        let one: &str = c.encode_utf8(&mut tmp);
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(one);
        if unmappable {
            out.push(b'?');
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    out
}

/// A terminal's body as text: UTF-8 if it is valid UTF-8, else GBK (Chinese firmware
/// sends names so); punch lines are ASCII either way.
pub fn decode(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GBK
            .decode_without_bom_handling(body)
            .0
            .into_owned(),
    }
}

/// `C:<id>:<command>` lines.
pub fn render_commands(cmds: &[NativeCommand]) -> String {
    cmds.iter()
        .map(|c| format!("C:{}:{}\n", c.wire_id, c.text))
        .collect()
}

/// `devicecmd` bodies: `ID=..&Return=..&CMD=..` lines, each followed by any payload lines
/// (INFO's `Key=Value` lines) up to the next `ID=` line.
pub fn result_lines(body: &str) -> Vec<CmdResult> {
    let mut out: Vec<CmdResult> = Vec::new();
    for line in body.split(['\n', '\r']) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("ID=") {
            let fields: HashMap<&str, &str> =
                line.split('&').filter_map(|p| p.split_once('=')).collect();
            let code = fields
                .get("Return")
                .and_then(|r| r.trim().parse::<i64>().ok())
                .unwrap_or(i64::MIN);
            out.push(CmdResult {
                wire_id: fields.get("ID").unwrap_or(&"").trim().to_string(),
                code,
                text: line.to_string(),
            });
        } else if let Some(last) = out.last_mut() {
            last.text.push('\n');
            last.text.push_str(line);
        }
    }
    out
}

async fn devicecmd(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> IclockResult {
    let q = query(q.as_deref());
    let sn = sn_of(&q)?;
    let body = b.map_err(|e| IclockError::text(e.status(), "ERROR: cannot read body"))?;
    let results = result_lines(&decode(&body));
    s.terminals.native_results(&sn, results).await?;
    Ok(text(StatusCode::OK, "OK"))
}

async fn ping(State(s): State<AppState>, RawQuery(q): RawQuery) -> IclockResult {
    let q = query(q.as_deref());
    let sn = sn_of(&q)?;
    match s.terminals.heard(&sn, "iclock").await {
        Ok(_) | Err(TermError::NoSuchTerminal) => Ok(text(StatusCode::OK, "OK")),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attlog_lines_tolerate_short_long_and_crlf_lines() {
        let body = "1001\t2026-08-20 09:15:00\t0\t1\t0\t0\t0\r\n1002\t2026-10-04 08:30:00\t0\t15\r\n1003\t2026-08-20 09:16:30\t1\t15\t0\t0\t0\t0\t36.5\t0\t+28800\tZXg=\ngarbage\n\n";
        let (good, bad) = attlog_lines(body);
        assert_eq!(good.len(), 3);
        assert_eq!(good[1].verify, "15");
        assert_eq!(good[1].workcode, "");
        assert_eq!(good[2].reserved2, "0");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].raw, "garbage");
    }

    #[test]
    fn operlog_user_lines_are_read() {
        let body = "OPLOG 30\t0\t2026-08-20 09:20:00\t1003\t0\t0\t0\nUSER PIN=1003\tName=Bob\tPri=0\tPasswd=\tCard=[15CD5B07]\tGrp=1\tTZ=0000000000000000\tVerify=0\tViceCard=\n";
        let (users, n) = operlog_lines(body);
        assert_eq!(n, 2);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].pin, "1003");
        assert_eq!(users[0].name, "Bob");
        assert_eq!(users[0].card, "[15CD5B07]");
    }

    #[test]
    fn devicecmd_results_keep_their_payload_lines() {
        let body = "ID=101&Return=0&CMD=DATA\nID=102&Return=-10&CMD=DATA\nID=103&Return=0&CMD=INFO\n~DeviceName=K40\nFWVersion=Ver 6.60\nUserCount=12\nTransactionCount=4031\n";
        let r = result_lines(body);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].wire_id.as_str(), r[0].code), ("101", 0));
        assert_eq!(r[1].code, -10);
        assert!(r[2].text.contains("TransactionCount=4031"));
        assert!(!r[1].text.contains("DeviceName"));
        let r = result_lines(
            "ID=202&Return=0&CMD=VERIFY SUM ATTLOG&StartTime=2026-08-01 00:00:00&EndTime=2026-08-20 23:59:59&AttlogCount=1234\n",
        );
        assert_eq!(r[0].wire_id, "202");
        assert!(r[0].text.contains("AttlogCount=1234"));
    }

    #[test]
    fn chinese_names_travel_as_gbk_both_ways() {
        let line = "C:11:DATA UPDATE USERINFO PIN=1\tName=陈\n";
        let bytes = to_gbk(line);
        assert!(
            bytes.windows(2).any(|w| w == [0xB3, 0xC2]),
            "陈 is B3C2 in GBK"
        );
        assert_eq!(decode(&bytes), line);
        assert_eq!(to_gbk("a😀b"), b"a?b");
        let upload = [b"USER PIN=7\tName=".as_slice(), &[0xB3, 0xC2], b"\tPri=0\n"].concat();
        let (users, _) = operlog_lines(&decode(&upload));
        assert_eq!(users[0].name, "陈");
        assert_eq!(decode("ünï".as_bytes()), "ünï");
    }

    #[test]
    fn timezone_option_uses_hours_or_minutes() {
        let now = 1_800_000_000_000;
        assert_eq!(timezone_option(chrono_tz::Asia::Shanghai, now), 8);
        assert_eq!(timezone_option(chrono_tz::Asia::Kolkata, now), 330);
        assert_eq!(timezone_option(chrono_tz::America::St_Johns, now), -210);
        assert_eq!(timezone_option(chrono_tz::UTC, now), 0);
    }
}

#[cfg(test)]
mod boundary {
    use super::*;

    async fn parts(e: IclockError) -> (StatusCode, String) {
        let r = e.into_response();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn iclock_failures_are_plain_text_that_keeps_the_batch_on_the_terminal() {
        assert_eq!(
            parts(TermError::NoSuchTerminal.into()).await,
            (StatusCode::FORBIDDEN, "UNKNOWN DEVICE".into())
        );
        assert_eq!(
            parts(
                TermError::Store(kioskd_actors::ports::StoreError::Unavailable("down".into()))
                    .into()
            )
            .await,
            (StatusCode::SERVICE_UNAVAILABLE, "ERROR".into())
        );
        assert_eq!(
            parts(super::super::body::BodyError::TooLarge.into()).await,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "ERROR: body too large".into()
            )
        );
    }
}
