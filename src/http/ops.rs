//! The operator API (`/ops/*`, SPEC §11): bearer-token JSON for registering devices and
//! maintainers, watching sessions, adjusting balances and commanding devices. Errors are
//! `{"error": "..."}` with a fitting HTTP status ([`OpsError`], the dialect's one
//! boundary). Each handler decodes, makes one call into a service
//! ([`crate::fleet`], [`crate::accounts`]) and encodes.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{EnvJson, OpsPath};
use crate::fleet::{self, Commanded};
use crate::operators::OperatorError;
use crate::service_error::ServiceError;
use crate::timefmt::wire;

/// An `/ops/*` failure. Every handler of the ops dialect answers with it through `?`:
/// `{"error": msg}` with the status; a failure below (storage, actors) is logged once
/// and answered 503 `storage unavailable`.
#[derive(Debug)]
pub enum OpsError {
    /// A refusal the client can act on.
    Status(StatusCode, String),
    /// Storage or an actor failed (logged, never shown).
    Unavailable(String),
    /// An operator-account refusal (sign-in lockouts carry `Retry-After`).
    Operator(OperatorError),
}

impl OpsError {
    /// A refusal with `status`.
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        OpsError::Status(status, msg.into())
    }
    /// 400.
    pub fn bad(msg: impl Into<String>) -> Self {
        OpsError::new(StatusCode::BAD_REQUEST, msg)
    }
    /// 404.
    pub fn not_found(msg: impl Into<String>) -> Self {
        OpsError::new(StatusCode::NOT_FOUND, msg)
    }
    /// 409.
    pub fn conflict(msg: impl Into<String>) -> Self {
        OpsError::new(StatusCode::CONFLICT, msg)
    }
    /// A failure below, with what failed (for the log).
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        OpsError::Unavailable(e.to_string())
    }
}

impl IntoResponse for OpsError {
    fn into_response(self) -> Response {
        match self {
            OpsError::Status(status, msg) => err(status, msg),
            OpsError::Unavailable(e) => internal(e),
            OpsError::Operator(e) => e.into_response(),
        }
    }
}

impl From<ServiceError> for OpsError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => OpsError::bad(m),
            ServiceError::NotFound(m) => OpsError::not_found(m),
            ServiceError::Conflict(m) => OpsError::conflict(m),
            ServiceError::Unavailable(m) => OpsError::Unavailable(m),
        }
    }
}

impl From<OperatorError> for OpsError {
    fn from(e: OperatorError) -> Self {
        OpsError::Operator(e)
    }
}

impl From<crate::attendance::OpError> for OpsError {
    fn from(e: crate::attendance::OpError) -> Self {
        use crate::attendance::OpError;
        match e {
            OpError::Invalid(m) => OpsError::bad(m),
            OpError::NotFound(m) => OpsError::not_found(m),
            OpError::Exists => OpsError::conflict(e.to_string()),
            OpError::Store(e) => OpsError::Unavailable(e.to_string()),
        }
    }
}

/// What an ops handler returns.
pub type OpsResult = Result<Response, OpsError>;

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
) -> OpsResult {
    let req = body(b).await?;
    let code = fleet::set_legacy(&s, &raw, req.legacy_unsigned.as_deref()).await?;
    Ok(Json(json!({"device_code": code, "legacy_unsigned": req.legacy_unsigned})).into_response())
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
) -> Result<T, OpsError> {
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
            Err(OpsError::new(status, msg))
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
    let seen = fleet::seen(s, d, live);
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
        "status": seen.status,
        "online": seen.online,
        "last_seen": seen.last_heard.map(|t| wire(t, s.tz)),
        "session": live.and_then(|v| v.session.as_ref().map(|(id, _, user)| json!({"id": id, "user_id": user}))),
    })
}

async fn add_device(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddDevice>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let rec = fleet::register(
        &s,
        fleet::Registration {
            device_code: req.device_code,
            client_id: req.client_id,
            name: req.name,
            charge_mode: req.charge_mode,
            billing_mode: req.billing_mode,
            province: req.province,
            city: req.city,
            area: req.area,
            location: req.location,
            secret: req.secret,
            legacy_unsigned: req.legacy_unsigned,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(device_json(&rec, &s, None))).into_response())
}

async fn list_devices(Operator(p): Operator, State(s): State<AppState>) -> OpsResult {
    let (devices, live) = fleet::list(&s, &p).await?;
    let out: Vec<Value> = devices
        .iter()
        .map(|d| device_json(d, &s, live.get(&d.code)))
        .collect();
    Ok(Json(json!({ "total": out.len(), "data": out })).into_response())
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
) -> OpsResult {
    let req = body(b).await?;
    let (code, done) = fleet::command(&s, &code, &req.name, req.text).await?;
    Ok(match done {
        Commanded::Sent { id, delivered } => (
            StatusCode::ACCEPTED,
            Json(json!({"device_code": code, "command": req.name, "id": id, "delivered": delivered})),
        )
            .into_response(),
        Commanded::State(ended) => Json(json!({
            "device_code": code,
            "command": req.name,
            "ended_session": ended.map(|e| json!({"id": e.id, "reason": e.reason.as_str(), "cost": e.cost, "refund": e.refund})),
        }))
        .into_response(),
    })
}

/// `POST /ops/broadcast {name, text?}`: a `message`, `restart` or `update_games` command
/// to every active device (each kiosk acknowledges its own copy).
async fn broadcast(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<Command>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let n = fleet::broadcast(&s, &req.name, req.text).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"command": req.name, "devices": n})),
    )
        .into_response())
}

async fn sessions(Operator(p): Operator, State(s): State<AppState>) -> OpsResult {
    let list = fleet::sessions(&s, &p).await?;
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
    Ok(Json(json!({ "total": data.len(), "data": data })).into_response())
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
) -> OpsResult {
    let b = body(b).await?;
    let e = fleet::end_session(&s, id, &b.reason).await?;
    Ok(Json(json!({
        "id": e.id,
        "end_reason": e.reason.as_str(),
        "ended_at": wire(e.ended_at, s.tz),
        "cost_money": e.cost,
        "refund": e.refund,
        "balance_account": e.balance,
    }))
    .into_response())
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
) -> OpsResult {
    let req = body(b).await?;
    crate::accounts::add_maintainer(&s, &req.username, &req.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": req.username })),
    )
        .into_response())
}

async fn list_maintainers(_: Operator, State(s): State<AppState>) -> OpsResult {
    let list = crate::accounts::maintainers(&s).await?;
    Ok(Json(json!({
        "total": list.len(),
        "data": list.iter().map(|m| json!({"username": m.username, "enabled": m.enabled, "failed_attempts": m.failed_attempts, "locked_until": m.locked_until})).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn user(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> OpsResult {
    let d = crate::accounts::user(&s, id).await?;
    let (u, sum, group_id) = (d.user, d.ledger_sum, d.group_id);
    Ok(Json(json!({
        "id": u.id,
        "openid": u.openid,
        "nick_name": u.nickname,
        "mobile": u.mobile,
        "state": u.state,
        "total_account": u.total_account,
        "used_account": u.used_account,
        "balance_account": u.balance_account,
        "ledger_sum": sum,
        "group_id": group_id,
        "ctime": wire(u.ctime, s.tz),
    }))
    .into_response())
}

async fn ledger(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> OpsResult {
    let rows = crate::accounts::ledger(&s, id).await?;
    Ok(Json(json!({
        "total": rows.len(),
        "data": rows.iter().map(|r| json!({
            "id": r.id, "amount": r.amount, "kind": r.kind, "session_id": r.session_id,
            "reason": r.reason, "time": wire(r.created_at, s.tz),
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Adjust {
    amount: i64,
    reason: String,
}

/// The `Idempotency-Key` header: 1-64 of `[A-Za-z0-9_.:-]`.
fn idempotency_key(h: &axum::http::HeaderMap) -> Result<Option<String>, OpsError> {
    let Some(v) = h.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if crate::accounts::idempotency_key_ok(k) => Ok(Some(k.to_string())),
        _ => Err(OpsError::bad(
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
) -> OpsResult {
    let key = idempotency_key(&headers)?;
    let req = body(b).await?;
    let a = crate::accounts::adjust(&s, id, req.amount, &req.reason, key.as_deref()).await?;
    let mut v = json!({ "user_id": id, "balance_account": a.balance, "ledger_id": a.ledger_id });
    if a.replayed {
        v["replayed"] = json!(true);
    }
    Ok(Json(v).into_response())
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
) -> OpsResult {
    let req = body(b).await?;
    crate::accounts::set_state(&s, id, req.state).await?;
    Ok(Json(json!({ "user_id": id, "state": req.state })).into_response())
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
) -> OpsResult {
    let req = body(b).await?;
    let id = fleet::add_game(&s, &req.name, &req.version, &req.url, &req.md5).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": req.name, "version": req.version })),
    )
        .into_response())
}

async fn want_game(
    _: Operator,
    State(s): State<AppState>,
    OpsPath((code, game)): OpsPath<(String, String)>,
) -> OpsResult {
    let (code, game) = fleet::want_game(&s, &code, &game).await?;
    Ok(Json(json!({ "device_code": code, "game_id": game, "need_update": true })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(e: OpsError) -> (StatusCode, String) {
        let r = e.into_response();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_ops_boundary_answers_error_objects_with_their_status() {
        assert_eq!(
            parts(ServiceError::not_found("no such device").into()).await,
            (
                StatusCode::NOT_FOUND,
                r#"{"error":"no such device"}"#.into()
            )
        );
        assert_eq!(
            parts(ServiceError::invalid("bad device code").into()).await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"error":"bad device code"}"#.into()
            )
        );
        assert_eq!(
            parts(ServiceError::conflict("exists").into()).await.0,
            StatusCode::CONFLICT
        );
        // What failed below is logged, never shown.
        assert_eq!(
            parts(ServiceError::unavailable("pool timed out: secret-host").into()).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"storage unavailable"}"#.into()
            )
        );
        let (status, _) = parts(OperatorError::Locked(30).into()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
}
