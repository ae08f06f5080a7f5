//! The operator API (`/ops/*`, SPEC §11): bearer-token JSON for registering devices and
//! maintainers, watching sessions, adjusting balances and commanding devices. Errors are
//! `{"error": "..."}` with a fitting HTTP status.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kioskd_actors::CoordError;
use kioskd_actors::device::{OperatorCommand, SendCommand};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::BillingMode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{EnvJson, OpsPath};
use crate::store::{NewDevice, WriteError};
use crate::timefmt::wire;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/devices", post(add_device).get(list_devices))
        .route("/ops/devices/{code}/command", post(command))
        .route("/ops/devices/{code}/legacy", post(set_legacy))
        .route("/ops/devices/{code}/games/{game_id}", put(want_game))
        .route("/ops/broadcast", post(broadcast))
        .route("/ops/sessions", get(sessions))
        .route("/ops/sessions/{id}/end", post(end_session))
        .route(
            "/ops/maintainers",
            post(add_maintainer).get(list_maintainers),
        )
        .route("/ops/users/{id}", get(user))
        .route("/ops/users/{id}/ledger", get(ledger))
        .route("/ops/users/{id}/adjust", post(adjust))
        .route("/ops/users/{id}/state", post(set_state))
        .route("/ops/games", post(add_game))
}

fn legacy_mode_ok(m: Option<&str>) -> bool {
    matches!(m, None | Some("allow") | Some("refuse"))
}

#[derive(Deserialize)]
struct SetLegacy {
    /// `allow`, `refuse`, or null for the default (refuse when the device has a secret).
    legacy_unsigned: Option<String>,
}

/// `POST /ops/devices/<code>/legacy {legacy_unsigned}`: may a device with a secret still
/// use the unsigned legacy token calls (fleets mid-migration)?
async fn set_legacy(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(raw): OpsPath<String>,
    b: Result<EnvJson<SetLegacy>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(code) = normalize_device_code(&raw) else {
        return err(StatusCode::BAD_REQUEST, "bad device code");
    };
    if !legacy_mode_ok(req.legacy_unsigned.as_deref()) {
        return err(
            StatusCode::BAD_REQUEST,
            "legacy_unsigned must be \"allow\", \"refuse\" or null",
        );
    }
    match s
        .db
        .set_device_legacy(&code, req.legacy_unsigned.as_deref())
        .await
    {
        Ok(true) => Json(json!({"device_code": code, "legacy_unsigned": req.legacy_unsigned}))
            .into_response(),
        Ok(false) => err(StatusCode::NOT_FOUND, "no such device"),
        Err(e) => internal(e),
    }
}

/// An ops error: `{"error": msg}` with `status`.
pub(crate) fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// A storage failure, logged once; the client sees 503.
pub(crate) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "ops request failed");
    err(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
}

/// The authenticated caller of an `/ops/*` route, as the authorisation middleware
/// (`super::authz`) found it: handlers take it to say "operators only".
pub struct Operator(pub crate::operators::Principal);

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        parts
            .extensions
            .get::<crate::operators::Principal>()
            .cloned()
            .map(Operator)
            .ok_or_else(|| {
                err(
                    StatusCode::UNAUTHORIZED,
                    "sign in, or send Authorization: Bearer <token>",
                )
            })
    }
}

/// Ops bodies answer malformed input as `{"error"}` 400 rather than the envelope.
pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    b: Result<EnvJson<T>, Response>,
) -> Result<T, Response> {
    match b {
        Ok(EnvJson(t)) => Ok(t),
        Err(r) => {
            let status = r.status();
            let bytes = axum::body::to_bytes(r.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            let msg = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| "bad request".into());
            Err(err(status, msg))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDevice {
    device_code: String,
    client_id: Option<String>,
    name: String,
    charge_mode: i64,
    billing_mode: Option<String>,
    province: Option<String>,
    city: Option<String>,
    area: Option<String>,
    location: Option<String>,
    secret: Option<String>,
    legacy_unsigned: Option<String>,
}

fn device_json(
    d: &kioskd_actors::ports::DeviceRecord,
    s: &AppState,
    live: Option<&kioskd_actors::device::DeviceView>,
) -> Value {
    let now = s.coord.clock().now_ms();
    let timeout = s.coord.config().heartbeat_timeout_ms;
    let (status, online, last) = match live {
        Some(v) => (v.status.as_str().to_string(), v.online, v.last_heard),
        None => {
            let st = match d.status {
                kioskd_actors::ports::PersistedStatus::Free if d.updating => "lock",
                kioskd_actors::ports::PersistedStatus::Free => "free",
                kioskd_actors::ports::PersistedStatus::OperatorLock => "lock",
                kioskd_actors::ports::PersistedStatus::Maintain => "maintain",
            };
            (
                st.to_string(),
                d.last_seen_at.is_some_and(|t| now - t < timeout),
                d.last_seen_at,
            )
        }
    };
    json!({
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
        "last_seen": last.map(|t| wire(t, s.tz)),
        "session": live.and_then(|v| v.session.as_ref().map(|(id, _, user)| json!({"id": id, "user_id": user}))),
    })
}

async fn add_device(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddDevice>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(code) = normalize_device_code(&req.device_code) else {
        return err(
            StatusCode::BAD_REQUEST,
            "device_code must be a MAC-like code such as 11-22-33-44-55-66",
        );
    };
    if req.name.trim().is_empty() || req.name.chars().count() > 100 {
        return err(StatusCode::BAD_REQUEST, "name must be 1-100 characters");
    }
    if !(0..=100_000).contains(&req.charge_mode) {
        return err(
            StatusCode::BAD_REQUEST,
            "charge_mode must be fen per minute, 0-100000",
        );
    }
    // SPEC §3: postpaid is dialect B's default, prepaid dialect A's.
    let default_mode = if req.client_id.is_some() {
        "postpaid"
    } else {
        "prepaid"
    };
    let Some(mode) = BillingMode::parse(req.billing_mode.as_deref().unwrap_or(default_mode)) else {
        return err(
            StatusCode::BAD_REQUEST,
            "billing_mode must be prepaid or postpaid",
        );
    };
    if req
        .client_id
        .as_deref()
        .is_some_and(|c| c.is_empty() || c.len() > 32 || !c.chars().all(|x| x.is_ascii_digit()))
    {
        return err(StatusCode::BAD_REQUEST, "client_id must be 1-32 digits");
    }
    if req.client_id.is_some() && s.cfg.rest.service_number.trim().is_empty() {
        // kioskd would refuse its next start: the field client needs the number.
        return err(
            StatusCode::BAD_REQUEST,
            "dialect-B devices (client_id) need rest.service_number (KIOSKD_REST__SERVICE_NUMBER) set first",
        );
    }
    if req.secret.as_deref().is_some_and(|x| x.len() < 16) {
        return err(
            StatusCode::BAD_REQUEST,
            "secret must be at least 16 characters",
        );
    }
    if !legacy_mode_ok(req.legacy_unsigned.as_deref()) {
        return err(
            StatusCode::BAD_REQUEST,
            "legacy_unsigned must be \"allow\" or \"refuse\"",
        );
    }
    let d = NewDevice {
        code,
        client_id: req.client_id,
        name: req.name,
        province: req.province.unwrap_or_default(),
        city: req.city.unwrap_or_default(),
        area: req.area.unwrap_or_default(),
        location: req.location.unwrap_or_default(),
        charge_mode: req.charge_mode,
        billing_mode: mode,
        secret: req.secret,
        legacy_unsigned: req.legacy_unsigned,
    };
    match s.db.add_device(&d, s.coord.clock().now_ms()).await {
        Ok(rec) => (StatusCode::CREATED, Json(device_json(&rec, &s, None))).into_response(),
        Err(WriteError::Conflict) => err(
            StatusCode::CONFLICT,
            "a device with that code or client_id exists",
        ),
        Err(e) => internal(e),
    }
}

async fn list_devices(Operator(p): Operator, State(s): State<AppState>) -> Response {
    let devices = match s.db.list_devices().await {
        Ok(d) => d,
        Err(e) => return internal(e),
    };
    let live = s.coord.live_devices().await;
    let out: Vec<Value> = devices
        .iter()
        .filter(|d| p.covers(Some(d.location.as_str())))
        .map(|d| device_json(d, &s, live.get(&d.code)))
        .collect();
    Json(json!({ "total": out.len(), "data": out })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    name: String,
    text: Option<String>,
    /// Why (kept by the audit log; the console asks for one).
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn command(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(code): OpsPath<String>,
    b: Result<EnvJson<Command>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(code) = normalize_device_code(&code) else {
        return err(StatusCode::BAD_REQUEST, "bad device code");
    };
    let cmd = match req.name.as_str() {
        "lock" => OperatorCommand::Lock,
        "unlock" => OperatorCommand::Unlock,
        "maintain" => OperatorCommand::Maintain,
        // Delivered over the kiosk's WebSocket; pending until it acknowledges.
        "restart" | "message" | "update_games" => {
            let text = req.text.clone().filter(|t| !t.trim().is_empty());
            if req.name == "message" && text.as_ref().is_none_or(|t| t.chars().count() > 500) {
                return err(
                    StatusCode::BAD_REQUEST,
                    "message needs a text of 1-500 characters",
                );
            }
            return match s
                .coord
                .ask_device(&code, SendCommand { name: req.name.clone(), text })
                .await
            {
                Ok(Ok((id, delivered))) => (
                    StatusCode::ACCEPTED,
                    Json(json!({"device_code": code, "command": req.name, "id": id, "delivered": delivered})),
                )
                    .into_response(),
                Ok(Err(e)) => internal(e),
                Err(CoordError::NoSuchDevice) => err(StatusCode::NOT_FOUND, "no such device"),
                Err(e) => internal(e),
            };
        }
        other => {
            return err(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown command {other:?}: lock, unlock, maintain, restart, message, update_games"
                ),
            );
        }
    };
    match s.coord.operate(&code, cmd).await {
        Ok(Ok(ended)) => Json(json!({
            "device_code": code,
            "command": req.name,
            "ended_session": ended.map(|e| json!({"id": e.id, "reason": e.reason.as_str(), "cost": e.cost, "refund": e.refund})),
        }))
        .into_response(),
        Ok(Err(e)) => internal(e),
        Err(CoordError::NoSuchDevice) => err(StatusCode::NOT_FOUND, "no such device"),
        Err(e) => internal(e),
    }
}

/// `POST /ops/broadcast {name, text?}`: a `message`, `restart` or `update_games` command
/// to every active device (each kiosk acknowledges its own copy).
async fn broadcast(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<Command>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !matches!(req.name.as_str(), "message" | "restart" | "update_games") {
        return err(
            StatusCode::BAD_REQUEST,
            "broadcast takes message, restart or update_games",
        );
    }
    let text = req.text.clone().filter(|t| !t.trim().is_empty());
    if req.name == "message" && text.as_ref().is_none_or(|t| t.chars().count() > 500) {
        return err(
            StatusCode::BAD_REQUEST,
            "message needs a text of 1-500 characters",
        );
    }
    match s.coord.broadcast(&req.name, text.as_deref()).await {
        Ok(n) => (
            StatusCode::ACCEPTED,
            Json(json!({"command": req.name, "devices": n})),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn sessions(Operator(p): Operator, State(s): State<AppState>) -> Response {
    let mut list = s.coord.sessions().await;
    if !p.sites.is_empty() {
        // Site-limited operators see the sessions on their sites' devices.
        let Ok(devices) = s.db.list_devices().await else {
            return internal("listing devices failed");
        };
        let mine: std::collections::HashSet<&str> = devices
            .iter()
            .filter(|d| p.covers(Some(d.location.as_str())))
            .map(|d| d.code.as_str())
            .collect();
        list.retain(|v| mine.contains(v.device_code.as_str()));
    }
    let data: Vec<Value> = list
        .iter()
        .map(|v| {
            json!({
                "id": v.id,
                "user_id": v.user_id,
                "openid": v.openid,
                "device_id": v.device_id,
                "device_code": v.device_code,
                "started_at": wire(v.started_at, s.tz),
                "cost_money": v.cost_money,
                "cost_time": v.cost_time,
                "charge_mode": v.charge_mode,
                "balance_account": v.balance,
                "paid_until": wire(v.paid_until, s.tz),
                "last_heard": wire(v.last_heard, s.tz),
            })
        })
        .collect();
    Json(json!({ "total": data.len(), "data": data })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndSession {
    /// Why (kept in the audit log).
    reason: String,
}

/// Ends a running session as the operator (`end_reason` `operator`): billed to now, the
/// rest refunded, the kiosk told at once.
async fn end_session(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<EndSession>, Response>,
) -> Response {
    let b = match body(b).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.reason.trim().is_empty() {
        return err(StatusCode::BAD_REQUEST, "reason is required");
    }
    let token = match s.db.running_session_token(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return err(StatusCode::NOT_FOUND, "no such running session"),
        Err(e) => return internal(e),
    };
    match s
        .coord
        .end_by_token(&token, kioskd_actors::billing::EndReason::Operator)
        .await
    {
        Ok(Some(e)) => Json(json!({
            "id": e.id,
            "end_reason": e.reason.as_str(),
            "ended_at": wire(e.ended_at, s.tz),
            "cost_money": e.cost,
            "refund": e.refund,
            "balance_account": e.balance,
        }))
        .into_response(),
        Ok(None) => err(StatusCode::NOT_FOUND, "no such running session"),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMaintainer {
    username: String,
    password: String,
}

async fn add_maintainer(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddMaintainer>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match crate::app::add_maintainer(
        &s.db,
        &req.username,
        &req.password,
        s.coord.clock().now_ms(),
    )
    .await
    {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({ "username": req.username })),
        )
            .into_response(),
        Err(crate::app::AddError::Invalid(m)) => err(StatusCode::BAD_REQUEST, m),
        Err(crate::app::AddError::Exists) => err(StatusCode::CONFLICT, "that username exists"),
        Err(crate::app::AddError::Store(e)) => internal(e),
    }
}

async fn list_maintainers(_: Operator, State(s): State<AppState>) -> Response {
    match s.db.list_maintainers().await {
        Ok(list) => Json(json!({
            "total": list.len(),
            "data": list.iter().map(|m| json!({"username": m.username, "enabled": m.enabled, "failed_attempts": m.failed_attempts, "locked_until": m.locked_until})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn user(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> Response {
    let u = match s.db.user_by_id(id).await {
        Ok(Some(u)) => u,
        Ok(None) => return err(StatusCode::NOT_FOUND, "no such user"),
        Err(e) => return internal(e),
    };
    let sum = match s.db.ledger_sum(id).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    Json(json!({
        "id": u.id,
        "openid": u.openid,
        "nick_name": u.nickname,
        "mobile": u.mobile,
        "state": u.state,
        "total_account": u.total_account,
        "used_account": u.used_account,
        "balance_account": u.balance_account,
        "ledger_sum": sum,
        "ctime": wire(u.ctime, s.tz),
    }))
    .into_response()
}

async fn ledger(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> Response {
    match s.db.user_by_id(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return err(StatusCode::NOT_FOUND, "no such user"),
        Err(e) => return internal(e),
    }
    match s.db.ledger(id).await {
        Ok(rows) => Json(json!({
            "total": rows.len(),
            "data": rows.iter().map(|r| json!({
                "id": r.id, "amount": r.amount, "kind": r.kind, "session_id": r.session_id,
                "reason": r.reason, "time": wire(r.created_at, s.tz),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Adjust {
    amount: i64,
    reason: String,
}

/// The `Idempotency-Key` header: 1-64 of `[A-Za-z0-9_.:-]`.
fn idempotency_key(h: &axum::http::HeaderMap) -> Result<Option<String>, Response> {
    let Some(v) = h.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)) =>
        {
            Ok(Some(k.to_string()))
        }
        _ => Err(err(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be 1-64 of [A-Za-z0-9_.:-]",
        )),
    }
}

/// `POST /ops/users/<id>/adjust {amount, reason}`. With an `Idempotency-Key` header the
/// ledger id is `adjust:key:<key>`, so a retried request changes nothing and answers
/// the same (`"replayed": true`); a key reused for a different adjustment is refused.
async fn adjust(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    headers: axum::http::HeaderMap,
    b: Result<EnvJson<Adjust>, Response>,
) -> Response {
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.amount == 0 || req.amount.unsigned_abs() > 100_000_000 {
        return err(
            StatusCode::BAD_REQUEST,
            "amount must be non-zero fen, at most 100000000 either way",
        );
    }
    if req.reason.trim().is_empty() || req.reason.chars().count() > 200 {
        return err(StatusCode::BAD_REQUEST, "reason must be 1-200 characters");
    }
    if let Ok(None) = s.db.user_by_id(id).await {
        return err(StatusCode::NOT_FOUND, "no such user");
    }
    let ledger_id = match &key {
        Some(k) => format!("adjust:key:{k}"),
        None => format!("adjust:{}", kioskd_actors::ids::new_token()),
    };
    match s
        .db
        .adjust(
            id,
            req.amount,
            &req.reason,
            &ledger_id,
            s.coord.clock().now_ms(),
        )
        .await
    {
        Ok(balance) => {
            s.coord.balance_changed(id, balance).await;
            Json(json!({ "user_id": id, "balance_account": balance, "ledger_id": ledger_id }))
                .into_response()
        }
        Err(WriteError::Refused) => err(StatusCode::CONFLICT, "the balance would go below zero"),
        Err(WriteError::NotFound) => err(StatusCode::NOT_FOUND, "no such user"),
        Err(WriteError::Conflict) if key.is_some() => match s.db.ledger_entry(&ledger_id).await {
            Ok(Some((user, amount))) if user == id && amount == req.amount => {
                match s.db.user_by_id(id).await {
                    Ok(Some(u)) => Json(json!({
                        "user_id": id,
                        "balance_account": u.balance_account,
                        "ledger_id": ledger_id,
                        "replayed": true,
                    }))
                    .into_response(),
                    Ok(None) => err(StatusCode::NOT_FOUND, "no such user"),
                    Err(e) => internal(e),
                }
            }
            Ok(_) => err(
                StatusCode::CONFLICT,
                "Idempotency-Key already used for a different adjustment",
            ),
            Err(e) => internal(e),
        },
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetState {
    state: i32,
    /// Why (kept by the audit log; the console asks for one).
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn set_state(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<SetState>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !(0..=2).contains(&req.state) {
        return err(
            StatusCode::BAD_REQUEST,
            "state must be 0 (active), 1 (disabled) or 2 (deleted)",
        );
    }
    match s
        .db
        .set_user_state(id, req.state, s.coord.clock().now_ms())
        .await
    {
        Ok(true) => Json(json!({ "user_id": id, "state": req.state })).into_response(),
        Ok(false) => err(StatusCode::NOT_FOUND, "no such user"),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddGame {
    name: String,
    version: String,
    url: String,
    md5: String,
}

async fn add_game(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddGame>, Response>,
) -> Response {
    let req = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.name.trim().is_empty() || req.version.trim().is_empty() || req.url.trim().is_empty() {
        return err(
            StatusCode::BAD_REQUEST,
            "name, version and url are required",
        );
    }
    if req.md5.len() != 32 || !req.md5.chars().all(|c| c.is_ascii_hexdigit()) {
        return err(StatusCode::BAD_REQUEST, "md5 must be 32 hex digits");
    }
    match s
        .db
        .add_game(
            &req.name,
            &req.version,
            &req.url,
            &req.md5.to_ascii_lowercase(),
            s.coord.clock().now_ms(),
        )
        .await
    {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({ "id": id, "name": req.name, "version": req.version })),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn want_game(
    _: Operator,
    State(s): State<AppState>,
    OpsPath((code, game)): OpsPath<(String, String)>,
) -> Response {
    let Some(code) = normalize_device_code(&code) else {
        return err(StatusCode::BAD_REQUEST, "bad device code");
    };
    let Ok(game) = game.parse::<i64>() else {
        return err(StatusCode::BAD_REQUEST, "game id must be an integer");
    };
    let dev = match kioskd_actors::ports::Store::device_by_code(&s.db, &code).await {
        Ok(Some(d)) => d,
        Ok(None) => return err(StatusCode::NOT_FOUND, "no such device"),
        Err(e) => return internal(e),
    };
    match s.db.want_game(dev.id, game).await {
        Ok(()) => Json(json!({ "device_code": code, "game_id": game, "need_update": true }))
            .into_response(),
        Err(WriteError::NotFound) => err(StatusCode::NOT_FOUND, "no such game"),
        Err(e) => internal(e),
    }
}
