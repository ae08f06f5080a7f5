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
use super::ops::{Operator, OpsError, OpsResult, body};
use crate::upstream::notices::{self, Recorded};
use crate::upstream::open189::{FlowOrder, PrizeNotice};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/notices/prize", post(prize))
        .route("/ops/callbacks/flow-order", post(flow_order))
        .route("/ops/outbox", get(list))
        .route("/ops/outbox/{id}/retry", post(retry))
}

/// `POST /ops/outbox/<id>/retry`: a failed send is tried again (409 unless it failed).
async fn retry(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> OpsResult {
    notices::retry(&s, id).await?;
    Ok(axum::Json(json!({"id": id, "status": "pending"})).into_response())
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

/// 202 for a new send, 200 for one recorded before.
fn recorded(r: Recorded) -> Response {
    (
        if r.fresh {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        axum::Json(json!({"id": r.id, "duplicate": !r.fresh})),
    )
        .into_response()
}

/// `POST /ops/notices/prize {openid, first, activity, prize, remark, url, idempotency_key?}`
/// → 202 `{id}`: recorded; the outbox sends it.
async fn prize(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<PrizeReq>, Response>,
) -> OpsResult {
    let r = body(b).await?;
    let n = PrizeNotice {
        openid: r.openid,
        first: r.first,
        activity: r.activity,
        prize: r.prize,
        remark: r.remark,
        url: r.url,
    };
    Ok(recorded(notices::prize(&s, n, r.idempotency_key).await?))
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
) -> OpsResult {
    // Off means off whatever the body holds.
    notices::flow_orders_on(&s)?;
    let r = body(b).await?;
    let o = FlowOrder {
        openid: r.openid,
        deviceno: r.deviceno,
        traffic_package_name: r.traffic_package_name,
        transaction_date: r.transaction_date,
    };
    Ok(recorded(
        notices::flow_order(&s, o, r.idempotency_key).await?,
    ))
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
) -> OpsResult {
    let Ok(EnvQuery(q)) = q else {
        return Err(OpsError::bad("bad query"));
    };
    let status = q.status.filter(|x| !x.is_empty());
    let (depth, rows) = notices::list(&s, status.as_deref()).await?;
    Ok(axum::Json(json!({"depth": depth, "data": rows})).into_response())
}
