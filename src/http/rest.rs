//! Dialect B (`/rest/*`, seed 002, SPEC §6): kiosks identified by a numeric `clientId`,
//! billed postpaid, driven by a Windows client that reads every reply into a flat string
//! map. Every reply under `/rest/` — success, refusal, bad input, unknown path, wrong
//! method, a failure inside — is a flat JSON object with every key of its endpoint
//! (`guard` makes sure of it), written by `kioskd_protocol::rest`.
//!
//! Inputs come as the query string, a form body or a JSON object body (numbers accepted
//! where strings are expected: `clientId=370011` and `{"clientId":370011}` are the same).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use kioskd_actors::catalog;
use kioskd_protocol::rest::*;

use super::AppState;
use crate::devices::{self, DeviceError, Last};
use crate::orders::{self, billed_minutes, valid_order_id};
use crate::timefmt::wire;

/// Routes, nested under `/rest`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/serviceNum", get(service_num).post(service_num))
        .route("/clientStatus", get(client_status).post(client_status))
        .route("/status_client", get(status_client).post(status_client))
        .route("/offline", get(offline).post(offline))
        .route("/orderStatus", get(order_status).post(order_status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(guard))
}

/// `/rest` and `/rest/` themselves (the nested router sees neither): a flat 404.
pub fn bare_routes() -> Router<AppState> {
    Router::new()
        .route("/rest", axum::routing::any(bare))
        .route("/rest/", axum::routing::any(bare))
}

async fn bare() -> Response {
    reply(
        StatusCode::NOT_FOUND,
        fallback("/rest/", "no such endpoint"),
    )
}

/// Marks a reply written here, so `guard` leaves it alone.
#[derive(Clone, Copy)]
struct Ours;

fn reply(status: StatusCode, f: Flat) -> Response {
    let mut r = (status, f.to_json()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.extensions_mut().insert(Ours);
    r
}

/// Marks an unknown client id for the lookup rate limit.
fn miss(mut r: Response) -> Response {
    r.extensions_mut().insert(super::limits::LookupMiss);
    r
}

/// A rate-limit refusal in the endpoint's shape (HTTP 429; dialect B reads the body
/// whatever the status).
pub fn rate_limited(path: &str) -> Response {
    reply(
        StatusCode::TOO_MANY_REQUESTS,
        fallback(path, "too many requests; retry later"),
    )
}

fn outcome(route: &'static str, outcome: &'static str) {
    metrics::counter!(catalog::REST_REQUESTS, "route" => route, "outcome" => outcome).increment(1);
}

/// A refusal in the endpoint's shape plus `msg` (HTTP `status`).
fn refuse(route: &'static str, status: StatusCode, msg: &str) -> Response {
    outcome(
        route,
        match status.as_u16() {
            200 => "refused",
            400..=499 => "bad_request",
            _ => "error",
        },
    );
    reply(status, fallback(&format!("/rest/{route}"), msg))
}

fn internal(route: &'static str, e: impl std::fmt::Display) -> Response {
    tracing::error!(route, error = %e, "dialect B request failed");
    refuse(
        route,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; retry",
    )
}

/// The error boundary of dialect B: every failure a handler answers, as the endpoint's
/// flat object (with every key of the endpoint) plus `msg`.
#[derive(Debug)]
enum RestError {
    /// A refusal (HTTP 200) or bad input (HTTP 4xx).
    Refuse {
        route: &'static str,
        status: StatusCode,
        msg: &'static str,
    },
    /// An unknown client id (HTTP 200; counts as a lookup miss for the rate limit).
    NoClient { route: &'static str },
    /// Storage or the actors failed: the cause is logged once, HTTP 500.
    Internal { route: &'static str, cause: String },
}

impl RestError {
    fn refuse(route: &'static str, status: StatusCode, msg: &'static str) -> Self {
        RestError::Refuse { route, status, msg }
    }

    fn internal(route: &'static str, e: impl std::fmt::Display) -> Self {
        RestError::Internal {
            route,
            cause: e.to_string(),
        }
    }

    /// A device operation's failure: an unknown device is an unknown client id.
    fn device(route: &'static str, e: impl Into<DeviceError>) -> Self {
        match e.into() {
            DeviceError::NoSuchDevice => RestError::NoClient { route },
            e => RestError::internal(route, e),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        match self {
            RestError::Refuse { route, status, msg } => refuse(route, status, msg),
            RestError::NoClient { route } => {
                miss(refuse(route, StatusCode::OK, "no such clientId"))
            }
            RestError::Internal { route, cause } => internal(route, cause),
        }
    }
}

/// What a dialect B handler returns.
type RestResult = Result<Response, RestError>;

/// Whatever leaves the `/rest` router is a flat object: replies from the handlers pass;
/// anything else (axum's rejections, 404, 405, 413, a panic) becomes the fallback object
/// of the endpoint the path names, with the same status.
async fn guard(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) if r.extensions().get::<Ours>().is_some() => r,
        Ok(r) => {
            let status = r.status();
            let msg = match status {
                StatusCode::NOT_FOUND => "no such endpoint",
                StatusCode::METHOD_NOT_ALLOWED => "method not allowed; use GET or POST",
                StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
                s if s.is_client_error() => "bad request",
                _ => "internal error; retry",
            };
            let status = if status.is_success() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                status
            };
            reply(status, fallback(&path, msg))
        }
        Err(_) => {
            tracing::error!(path, "a dialect B handler panicked");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                fallback(&path, "internal error; retry"),
            )
        }
    }
}

async fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

async fn method_not_allowed(OriginalUri(uri): OriginalUri) -> Response {
    reply(
        StatusCode::METHOD_NOT_ALLOWED,
        fallback(uri.path(), "method not allowed; use GET or POST"),
    )
}

/// Query string, then a form or JSON object body (body values win).
async fn params(s: &AppState, req: Request) -> Result<HashMap<String, String>, &'static str> {
    let mut out: HashMap<String, String> = match req.uri().query() {
        Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .map_err(|_| "invalid query string")?
            .into_iter()
            .collect(),
        None => HashMap::new(),
    };
    let bytes = axum::body::to_bytes(req.into_body(), s.cfg.server.max_body_bytes)
        .await
        .map_err(|_| "request body too large or unreadable")?;
    let body = bytes.trim_ascii();
    if body.is_empty() {
        return Ok(out);
    }
    if body.first() == Some(&b'{') {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|_| "invalid JSON body")?;
        for (k, v) in v {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err("JSON values must be strings or numbers"),
            };
            out.insert(k, text);
        }
    } else {
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| "invalid form body")?;
        out.extend(form);
    }
    Ok(out)
}

/// The request's parameters, or the endpoint's 400.
async fn read(
    s: &AppState,
    route: &'static str,
    req: Request,
) -> Result<HashMap<String, String>, RestError> {
    params(s, req)
        .await
        .map_err(|m| RestError::refuse(route, StatusCode::BAD_REQUEST, m))
}

/// A registered dialect-B device: (device code, client id).
async fn device_of(
    s: &AppState,
    route: &'static str,
    p: &HashMap<String, String>,
) -> Result<(String, String), RestError> {
    let Some(raw) = p.get("clientId").map(|v| v.trim()) else {
        return Err(RestError::refuse(
            route,
            StatusCode::BAD_REQUEST,
            "clientId is required",
        ));
    };
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RestError::refuse(
            route,
            StatusCode::BAD_REQUEST,
            "clientId must be 1-32 digits",
        ));
    }
    match devices::code_by_client_id(s, raw).await {
        Ok(Some(code)) => Ok((code, raw.to_string())),
        Ok(None) => Err(RestError::NoClient { route }),
        Err(e) => Err(RestError::internal(route, e)),
    }
}

/// `GET /rest/serviceNum`.
async fn service_num(State(s): State<AppState>) -> RestResult {
    let n = s.cfg.rest.service_number.trim();
    if n.is_empty() {
        return Err(RestError::refuse(
            "serviceNum",
            StatusCode::OK,
            "no service number configured (rest.service_number)",
        ));
    }
    outcome("serviceNum", "ok");
    Ok(reply(
        StatusCode::OK,
        ServiceNum {
            data: 1,
            service_num: n.to_string(),
        }
        .flat(),
    ))
}

/// `GET /rest/clientStatus?clientId&clientStatus`: the kiosk's heartbeat on every screen
/// but E. `data` 1 in session (or before any session), 0 last session ended and paid, 2
/// ended and unpaid.
async fn client_status(State(s): State<AppState>, req: Request) -> RestResult {
    const R: &str = "clientStatus";
    let p = read(&s, R, req).await?;
    let (code, _) = device_of(&s, R, &p).await?;
    s.coord
        .heard(&code)
        .await
        .map_err(|e| RestError::device(R, e))?;
    let data = match devices::last_session(&s, &code)
        .await
        .map_err(|e| RestError::device(R, e))?
    {
        Last::Running(_) | Last::Never => CLIENT_OK,
        Last::Ended { unpaid: true, .. } => CLIENT_ENDED_UNPAID,
        Last::Ended { .. } => CLIENT_ENDED_PAID,
    };
    outcome(R, "ok");
    Ok(reply(StatusCode::OK, ClientStatusReply { data }.flat()))
}

/// `GET /rest/status_client?clientId`: the session on this client, or what its last
/// user owes.
async fn status_client(State(s): State<AppState>, req: Request) -> RestResult {
    const R: &str = "status_client";
    let p = read(&s, R, req).await?;
    let (code, client_id) = device_of(&s, R, &p).await?;
    let cfg = s.coord.config();
    // Idle, `charging` is the price a unit beginning now costs there (plan and zone);
    // the service gives it for an idle device only.
    let (last, price_now) = crate::packages::last_session_and_price(&s, &code)
        .await
        .map_err(|e| RestError::device(R, e))?;
    let out = match last {
        Last::Running(v) => StatusClient {
            data: 1,
            duration: billed_minutes(cfg, v.now - v.started_at),
            union_id: v.user_id.to_string(),
            client_id,
            cost_fen: v.cost_money,
            online_status: ONLINE_PLAYING,
            charging_fen: v.charge_mode,
            start_time: wire(v.started_at, s.tz),
            end_time: wire(v.now, s.tz),
        },
        Last::Ended { rec, unpaid: true } => StatusClient {
            data: 1,
            duration: billed_minutes(cfg, rec.billed_ms),
            union_id: rec.user_id.to_string(),
            client_id,
            cost_fen: rec.cost_money,
            online_status: ONLINE_BLOCKED,
            charging_fen: rec.charge_mode,
            start_time: wire(rec.started_at, s.tz),
            end_time: rec.ended_at.map(|t| wire(t, s.tz)).unwrap_or_default(),
        },
        Last::Ended { rec, unpaid: false } => StatusClient {
            charging_fen: price_now.unwrap_or_default(),
            ..StatusClient::idle(1, rec.user_id.to_string(), client_id)
        },
        // SPEC §6: data 0 only for a client that never had a session (still its own
        // clientId and onlineStatus 1: nothing for the kiosk to act on).
        Last::Never => StatusClient {
            charging_fen: price_now.unwrap_or_default(),
            ..StatusClient::idle(0, String::new(), client_id)
        },
    };
    outcome(R, "ok");
    Ok(reply(StatusCode::OK, out.flat()))
}

/// `GET /rest/offline?clientId`: the user ends the session at the kiosk. Answers the
/// order to pay; asked again after the session ended (a retry, or the phone ended it
/// first) it answers the same order while that end is recent (`devices::end_at_kiosk`).
async fn offline(State(s): State<AppState>, req: Request) -> RestResult {
    const R: &str = "offline";
    let p = read(&s, R, req).await?;
    let (code, _) = device_of(&s, R, &p).await?;
    match devices::end_at_kiosk(&s, &code)
        .await
        .map_err(|e| RestError::device(R, e))?
    {
        Some(order_id) => {
            outcome(R, "ok");
            Ok(reply(
                StatusCode::OK,
                OfflineReply { data: 1, order_id }.flat(),
            ))
        }
        None => Err(RestError::refuse(
            R,
            StatusCode::OK,
            "no session on this client",
        )),
    }
}

/// `GET /rest/orderStatus?orderId`: the kiosk's payment screen (E) waits for 1.
async fn order_status(State(s): State<AppState>, req: Request) -> RestResult {
    const R: &str = "orderStatus";
    let p = read(&s, R, req).await?;
    let Some(id) = p.get("orderId").map(|v| v.trim()) else {
        return Err(RestError::refuse(
            R,
            StatusCode::BAD_REQUEST,
            "orderId is required",
        ));
    };
    if !valid_order_id(id) {
        return Err(RestError::refuse(
            R,
            StatusCode::BAD_REQUEST,
            "orderId must be 2-64 of [A-Za-z0-9_-]",
        ));
    }
    let o = orders::get(&s, id)
        .await
        .map_err(|e| RestError::internal(R, e))?
        .ok_or_else(|| RestError::refuse(R, StatusCode::OK, "no such order"))?;
    outcome(R, "ok");
    Ok(reply(
        StatusCode::OK,
        OrderStatusReply {
            data: 1,
            order_id: o.id,
            order_status: if o.paid { ORDER_PAID } else { ORDER_UNPAID },
            cost_fen: o.amount,
            duration: billed_minutes(s.coord.config(), o.billed_ms),
            client_id: o.client_id.unwrap_or_default(),
            union_id: o.user_id.to_string(),
            charging_fen: o.charge_mode,
            start_time: wire(o.started_at, s.tz),
            end_time: wire(o.ended_at, s.tz),
        }
        .flat(),
    ))
}
