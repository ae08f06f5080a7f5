//! The operator audit log: every state-changing `/ops/*` request (POST, PUT, PATCH,
//! DELETE) by an authenticated caller is recorded after it ran — who (the operator
//! the authorisation middleware authenticated, `service` for the shared ops token;
//! never a name the client declares), what (route, target,
//! the body with secrets redacted), when, why (`reason` in the body or
//! `X-Kioskd-Reason`), and the status it ended with. `GET /ops/audit` reads it.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::ops::{Operator, OpsError, OpsResult, err};
use crate::audit::{AuditQuery, NewAudit, clean, summarize, target};

pub use crate::audit::REASON_HEADER;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ops/audit", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<i64>,
    operator: Option<String>,
    target: Option<String>,
    limit: Option<i64>,
}

async fn list(
    _: Operator,
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> OpsResult {
    let Ok(Query(q)) = q else {
        return Err(OpsError::bad("bad query: after, operator, target, limit"));
    };
    let q = AuditQuery {
        after: q.after,
        operator: q.operator.filter(|o| !o.is_empty()),
        target: q.target.filter(|t| !t.is_empty()),
        limit: q.limit.unwrap_or(crate::audit::DEFAULT_LIMIT),
    };
    let rows = crate::audit::list(&s, &q).await?;
    Ok(Json(json!({ "data": rows })).into_response())
}

fn mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(clean)
}

/// The middleware (on the whole router; it acts on mutating `/ops/*` requests only).
pub async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/ops/") || !mutating(req.method()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let limit = s.cfg.server.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return err(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let at = s.coord.clock().now_ms();
    let header_reason = header(&parts.headers, REASON_HEADER);
    let method = parts.method.to_string();
    let path = parts.uri.path().chars().take(500).collect::<String>();
    let action_pattern = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let source = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let summary = summarize(&bytes);
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = resp.status();
    // Requests nobody authenticated are not operator actions (and must not let anyone
    // fill the log); an unmatched path changed nothing.
    let Some(who) = resp.extensions().get::<crate::operators::Principal>() else {
        return resp;
    };
    let operator = who.username.clone();
    if action_pattern.is_none() {
        return resp;
    }
    let pattern = action_pattern.unwrap_or_default();
    let entry = NewAudit {
        at,
        operator,
        action: format!("{method} {pattern}"),
        target: target(&pattern, &path).or(summary.target),
        method,
        path,
        reason: summary.reason.or(header_reason),
        body: summary.body,
        status: status.as_u16(),
        source,
    };
    crate::audit::record(&s, &entry).await;
    resp
}
