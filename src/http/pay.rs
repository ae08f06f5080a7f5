//! `POST /wechat/notify`: WeChat Pay's payment notifications (`wechat.md` §5). The raw
//! body is verified before anything is parsed; a verified successful transaction is
//! checked against our order and credited once per `transaction_id` however often and
//! concurrently it arrives. Answers: 204 (accepted, duplicates included) or 4xx/5xx with
//! `{"code":"FAIL","message":...}`, which makes WeChat Pay retry.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kioskd_actors::catalog;
use serde_json::json;

use super::AppState;
use crate::payments::{Verdict, settle_transaction};
use crate::upstream::wxpay::Notified;

/// Routes (only with `payments.mode = "wechatpay"`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/wechat/notify", post(notify))
}

fn answer(status: StatusCode, outcome: &'static str, msg: &str) -> Response {
    metrics::counter!(catalog::PAYMENT_NOTIFICATIONS, "outcome" => outcome).increment(1);
    if status.is_success() {
        return status.into_response();
    }
    (status, axum::Json(json!({"code": "FAIL", "message": msg}))).into_response()
}

async fn notify(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(pay) = &s.upstream.pay else {
        return answer(
            StatusCode::NOT_FOUND,
            "refused",
            "payments are not WeChat Pay",
        );
    };
    let now = s.coord.clock().now_ms() / 1000;
    let t = match pay.verify_notification(&headers, &body, now) {
        Ok(Notified::Transaction(t)) => t,
        Ok(Notified::Other(event)) => {
            tracing::info!(%event, "verified WeChat Pay notification of another kind");
            return answer(StatusCode::NO_CONTENT, "other_event", "");
        }
        Err(e) => {
            tracing::warn!(error = %e, "WeChat Pay notification refused");
            return answer(StatusCode::UNAUTHORIZED, "refused", &e.to_string());
        }
    };
    match settle_transaction(&s, &t).await {
        Ok(Verdict::Credited) => answer(StatusCode::NO_CONTENT, "credited", ""),
        Ok(Verdict::Duplicate) => answer(StatusCode::NO_CONTENT, "duplicate", ""),
        Ok(Verdict::Mismatch(m)) => {
            tracing::error!(out_trade_no = %t.out_trade_no, reason = %m, "verified notification does not match its order");
            answer(StatusCode::BAD_REQUEST, "mismatch", &m)
        }
        Ok(Verdict::Unknown) => {
            tracing::error!(out_trade_no = %t.out_trade_no, "verified notification for an unknown order");
            answer(
                StatusCode::BAD_REQUEST,
                "unknown_order",
                "unknown out_trade_no",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "settling a notification failed");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "storage unavailable",
            )
        }
    }
}
