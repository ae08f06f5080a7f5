//! Ops routes for the upstreams (SPEC §11, issue 6): `POST /ops/notices/prize` (seed
//! 004's prize notice, through the outbox), `POST /ops/callbacks/flow-order` (爱流量
//! order callback, when `open189.report_flow_orders`), `GET /ops/outbox` (pending and
//! failed sends) and `POST /ops/outbox/<id>/retry`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::extract::{EnvJson, EnvQuery, OpsPath};
use super::ops::{Operator, body, err, internal};
use crate::identity::valid_openid;
use crate::upstream::open189::{FlowOrder, PrizeNotice};
use crate::upstream::outbox::kind;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/notices/prize", post(prize))
        .route("/ops/callbacks/flow-order", post(flow_order))
        .route("/ops/outbox", get(list))
        .route("/ops/outbox/{id}/retry", post(retry))
}

/// `POST /ops/outbox/<id>/retry`: a failed send is tried again (409 unless it failed).
async fn retry(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> Response {
    let now = s.coord.clock().now_ms();
    match s.db.outbox_retry(id, now).await {
        Ok(true) => {
            s.upstream.outbox_wake.notify_one();
            axum::Json(json!({"id": id, "status": "pending"})).into_response()
        }
        Ok(false) => err(StatusCode::CONFLICT, "no failed outbox row with that id"),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrizeReq {
    openid: String,
    first: String,
    activity: String,
    prize: String,
    #[serde(default)]
    remark: String,
    #[serde(default)]
    url: String,
    /// Makes a re-submitted notice one send.
    idempotency_key: Option<String>,
}

fn text_ok(v: &str, max: usize, required: bool) -> bool {
    (!required || !v.trim().is_empty())
        && v.chars().count() <= max
        && !v.chars().any(char::is_control)
}

fn key_ok(k: &Option<String>) -> bool {
    k.as_deref()
        .is_none_or(|k| !k.is_empty() && k.len() <= 128 && !k.chars().any(char::is_control))
}

async fn record(s: &AppState, kind: &str, key: Option<String>, payload: String) -> Response {
    let key = key.map(|k| format!("{kind}:{k}"));
    let now = s.coord.clock().now_ms();
    match s.db.outbox_add(kind, key.as_deref(), &payload, now).await {
        Ok((id, fresh)) => {
            s.upstream.outbox_wake.notify_one();
            (
                if fresh {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                },
                axum::Json(json!({"id": id, "duplicate": !fresh})),
            )
                .into_response()
        }
        Err(e) => internal(e),
    }
}

/// `POST /ops/notices/prize {openid, first, activity, prize, remark, url, idempotency_key?}`
/// → 202 `{id}`: recorded; the outbox sends it.
async fn prize(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<PrizeReq>, Response>,
) -> Response {
    let r = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !valid_openid(&r.openid) {
        return err(
            StatusCode::BAD_REQUEST,
            "openid must be 1-64 of [A-Za-z0-9_-]",
        );
    }
    if !text_ok(&r.first, 200, true)
        || !text_ok(&r.activity, 100, true)
        || !text_ok(&r.prize, 100, true)
        || !text_ok(&r.remark, 200, false)
    {
        return err(
            StatusCode::BAD_REQUEST,
            "first, activity and prize are required (at most 200/100/100 characters), remark at most 200",
        );
    }
    if !(r.url.is_empty()
        || ((r.url.starts_with("http://") || r.url.starts_with("https://"))
            && text_ok(&r.url, 512, false)))
    {
        return err(StatusCode::BAD_REQUEST, "url must be an http(s) URL");
    }
    if !key_ok(&r.idempotency_key) {
        return err(
            StatusCode::BAD_REQUEST,
            "idempotency_key must be 1-128 characters",
        );
    }
    let n = PrizeNotice {
        openid: r.openid,
        first: r.first,
        activity: r.activity,
        prize: r.prize,
        remark: r.remark,
        url: r.url,
    };
    let payload = serde_json::to_string(&n).unwrap_or_default();
    record(&s, kind::PRIZE_NOTICE, r.idempotency_key, payload).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowReq {
    openid: String,
    deviceno: String,
    traffic_package_name: String,
    #[serde(default)]
    transaction_date: String,
    idempotency_key: Option<String>,
}

/// `POST /ops/callbacks/flow-order` → 202: the 爱流量 order callback, through the outbox.
async fn flow_order(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<FlowReq>, Response>,
) -> Response {
    if !s.cfg.open189.report_flow_orders {
        return err(
            StatusCode::CONFLICT,
            "flow-order callbacks are off (open189.report_flow_orders)",
        );
    }
    let r = match body(b).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !valid_openid(&r.openid)
        || !text_ok(&r.deviceno, 32, true)
        || !text_ok(&r.traffic_package_name, 100, true)
        || !text_ok(&r.transaction_date, 32, false)
        || !key_ok(&r.idempotency_key)
    {
        return err(
            StatusCode::BAD_REQUEST,
            "openid, deviceno and traffic_package_name are required",
        );
    }
    let o = FlowOrder {
        openid: r.openid,
        deviceno: r.deviceno,
        traffic_package_name: r.traffic_package_name,
        transaction_date: r.transaction_date,
    };
    let payload = serde_json::to_string(&o).unwrap_or_default();
    record(&s, kind::FLOW_ORDER, r.idempotency_key, payload).await
}

#[derive(Deserialize)]
struct ListQ {
    status: Option<String>,
}

/// `GET /ops/outbox[?status=pending|sending|sent|failed]` → `{depth, data:[...]}`
/// (without `status`: everything not yet sent, failures included).
async fn list(
    _: Operator,
    State(s): State<AppState>,
    q: Result<EnvQuery<ListQ>, Response>,
) -> Response {
    let Ok(EnvQuery(q)) = q else {
        return err(StatusCode::BAD_REQUEST, "bad query");
    };
    let status = q.status.filter(|x| !x.is_empty());
    if status
        .as_deref()
        .is_some_and(|x| !["pending", "sending", "sent", "failed"].contains(&x))
    {
        return err(
            StatusCode::BAD_REQUEST,
            "status must be pending, sending, sent or failed",
        );
    }
    let rows = match s.db.outbox_list(status.as_deref(), 500).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let depth = match s.db.outbox_depth().await {
        Ok(d) => d,
        Err(e) => return internal(e),
    };
    axum::Json(json!({"depth": depth, "data": rows})).into_response()
}
