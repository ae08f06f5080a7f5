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
use kioskd_actors::{CoordError, EndReason, catalog};
use kioskd_protocol::rest::*;

use super::AppState;
use crate::orders::{billed_minutes, valid_order_id};
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
) -> Result<HashMap<String, String>, Response> {
    params(s, req)
        .await
        .map_err(|m| refuse(route, StatusCode::BAD_REQUEST, m))
}

/// A registered dialect-B device: (device code, client id).
async fn device_of(
    s: &AppState,
    route: &'static str,
    p: &HashMap<String, String>,
) -> Result<(String, String), Response> {
    let Some(raw) = p.get("clientId").map(|v| v.trim()) else {
        return Err(refuse(
            route,
            StatusCode::BAD_REQUEST,
            "clientId is required",
        ));
    };
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(
            route,
            StatusCode::BAD_REQUEST,
            "clientId must be 1-32 digits",
        ));
    }
    if let Some(code) = s.client_ids.get(raw) {
        return Ok((code.clone(), raw.to_string()));
    }
    match s.db.device_by_client_id(raw).await {
        Ok(Some(d)) => {
            // Client ids never change once registered: remember the mapping.
            s.client_ids.insert(raw.to_string(), d.code.clone());
            Ok((d.code, raw.to_string()))
        }
        Ok(None) => Err(miss(refuse(route, StatusCode::OK, "no such clientId"))),
        Err(e) => Err(internal(route, e)),
    }
}

fn coord_fail(route: &'static str, e: CoordError) -> Response {
    match e {
        CoordError::NoSuchDevice => miss(refuse(route, StatusCode::OK, "no such clientId")),
        e => internal(route, e),
    }
}

/// `GET /rest/serviceNum`.
async fn service_num(State(s): State<AppState>) -> Response {
    let n = s.cfg.rest.service_number.trim();
    if n.is_empty() {
        return refuse(
            "serviceNum",
            StatusCode::OK,
            "no service number configured (rest.service_number)",
        );
    }
    outcome("serviceNum", "ok");
    reply(
        StatusCode::OK,
        ServiceNum {
            data: 1,
            service_num: n.to_string(),
        }
        .flat(),
    )
}

/// What a device's last session left: (user id, that session, its order unpaid?).
enum Last {
    /// A session runs now (view from its actor).
    Running(kioskd_actors::session::SessionView),
    /// The last session ended; `unpaid`: its order is still due.
    Ended {
        rec: crate::store::LastSession,
        unpaid: bool,
    },
    /// The device never had a session.
    Never,
}

async fn last_of(s: &AppState, code: &str) -> Result<Last, CoordError> {
    let info = s.coord.device_info(code).await?;
    if let Some((id, _, user)) = info.session
        && let Some(v) = s.coord.user_session(user).await?
        && v.id == id
    {
        return Ok(Last::Running(v));
    }
    match s.db.last_session_of_device(info.id).await? {
        None => Ok(Last::Never),
        Some(rec) if rec.ended_at.is_none() => {
            // Between the database and the actor (starting or ending right now): ask again.
            match s.coord.device_info(code).await?.session {
                Some((_, _, user)) => match s.coord.user_session(user).await? {
                    Some(v) => Ok(Last::Running(v)),
                    None => Ok(Last::Ended { rec, unpaid: false }),
                },
                None => Ok(Last::Ended { rec, unpaid: false }),
            }
        }
        Some(rec) => {
            let unpaid = rec.order.as_ref().is_some_and(|(_, paid)| !paid);
            Ok(Last::Ended { rec, unpaid })
        }
    }
}

/// `GET /rest/clientStatus?clientId&clientStatus`: the kiosk's heartbeat on every screen
/// but E. `data` 1 in session (or before any session), 0 last session ended and paid, 2
/// ended and unpaid.
async fn client_status(State(s): State<AppState>, req: Request) -> Response {
    const R: &str = "clientStatus";
    let p = match read(&s, R, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (code, _) = match device_of(&s, R, &p).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Err(e) = s.coord.heard(&code).await {
        return coord_fail(R, e);
    }
    let data = match last_of(&s, &code).await {
        Ok(Last::Running(_)) | Ok(Last::Never) => CLIENT_OK,
        Ok(Last::Ended { unpaid: true, .. }) => CLIENT_ENDED_UNPAID,
        Ok(Last::Ended { .. }) => CLIENT_ENDED_PAID,
        Err(e) => return coord_fail(R, e),
    };
    outcome(R, "ok");
    reply(StatusCode::OK, ClientStatusReply { data }.flat())
}

/// `GET /rest/status_client?clientId`: the session on this client, or what its last
/// user owes.
async fn status_client(State(s): State<AppState>, req: Request) -> Response {
    const R: &str = "status_client";
    let p = match read(&s, R, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (code, client_id) = match device_of(&s, R, &p).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let cfg = s.coord.config();
    let out = match last_of(&s, &code).await {
        Ok(Last::Running(v)) => StatusClient {
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
        Ok(Last::Ended { rec, unpaid: true }) => StatusClient {
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
        Ok(Last::Ended { rec, unpaid: false }) => {
            StatusClient::idle(1, rec.user_id.to_string(), client_id)
        }
        // SPEC §6: data 0 only for a client that never had a session (still its own
        // clientId and onlineStatus 1: nothing for the kiosk to act on).
        Ok(Last::Never) => StatusClient::idle(0, String::new(), client_id),
        Err(e) => return coord_fail(R, e),
    };
    outcome(R, "ok");
    reply(StatusCode::OK, out.flat())
}

/// `GET /rest/offline?clientId`: the user ends the session at the kiosk. Answers the
/// order to pay; asked again after the session ended (a retry, or the phone ended it
/// first) it answers the same order while that end is recent.
async fn offline(State(s): State<AppState>, req: Request) -> Response {
    const R: &str = "offline";
    let p = match read(&s, R, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (code, _) = match device_of(&s, R, &p).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let info = match s.coord.device_info(&code).await {
        Ok(i) => i,
        Err(e) => return coord_fail(R, e),
    };
    if let Some((_, token, _)) = &info.session {
        match s.coord.end_by_token(token, EndReason::UserLogout).await {
            Ok(Some(v)) => {
                outcome(R, "ok");
                return reply(
                    StatusCode::OK,
                    OfflineReply {
                        data: 1,
                        order_id: v.order_id.unwrap_or_default(),
                    }
                    .flat(),
                );
            }
            Ok(None) => {}
            Err(e) => return internal(R, e),
        }
    }
    let now = s.coord.clock().now_ms();
    let recent = s.coord.config().heartbeat_timeout_ms;
    match s.db.last_session_of_device(info.id).await {
        Ok(Some(rec)) if rec.ended_at.is_some_and(|t| now - t <= recent) => {
            outcome(R, "ok");
            reply(
                StatusCode::OK,
                OfflineReply {
                    data: 1,
                    order_id: rec.order.map(|(id, _)| id).unwrap_or_default(),
                }
                .flat(),
            )
        }
        Ok(_) => refuse(R, StatusCode::OK, "no session on this client"),
        Err(e) => internal(R, e),
    }
}

/// `GET /rest/orderStatus?orderId`: the kiosk's payment screen (E) waits for 1.
async fn order_status(State(s): State<AppState>, req: Request) -> Response {
    const R: &str = "orderStatus";
    let p = match read(&s, R, req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(id) = p.get("orderId").map(|v| v.trim()) else {
        return refuse(R, StatusCode::BAD_REQUEST, "orderId is required");
    };
    if !valid_order_id(id) {
        return refuse(
            R,
            StatusCode::BAD_REQUEST,
            "orderId must be 2-64 of [A-Za-z0-9_-]",
        );
    }
    let o = match s.db.order(id).await {
        Ok(Some(o)) => o,
        Ok(None) => return refuse(R, StatusCode::OK, "no such order"),
        Err(e) => return internal(R, e),
    };
    outcome(R, "ok");
    reply(
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
    )
}
