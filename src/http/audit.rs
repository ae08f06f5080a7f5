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
use serde_json::{Value, json};

use super::AppState;
use super::ops::{Operator, err, internal};
use crate::store::{AuditQuery, NewAudit};

/// The header giving the reason for an action (the body's `reason` wins).
pub const REASON_HEADER: &str = "x-kioskd-reason";

/// Longest body kept in an entry.
const BODY_KEEP: usize = 4096;

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
) -> Response {
    let Ok(Query(q)) = q else {
        return err(
            StatusCode::BAD_REQUEST,
            "bad query: after, operator, target, limit",
        );
    };
    let q = AuditQuery {
        after: q.after,
        operator: q.operator.filter(|o| !o.is_empty()),
        target: q.target.filter(|t| !t.is_empty()),
        limit: q.limit.unwrap_or(100),
    };
    match s.db.audit(&q).await {
        Ok(rows) => Json(json!({ "data": rows })).into_response(),
        Err(e) => internal(e),
    }
}

fn mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// A header value made safe for the log: printable, at most 64 characters.
fn clean(v: &str) -> Option<String> {
    let v: String = v
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
        .trim()
        .to_string();
    (!v.is_empty()).then_some(v)
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(clean)
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["secret", "password", "passwd", "token", "key"]
        .iter()
        .any(|s| k.contains(s))
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = Value::String("***".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// What the log keeps of a body.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    body: Option<String>,
    reason: Option<String>,
    /// The thing a registration names (`device_code`, `sn`, `pin`, ...).
    target: Option<String>,
}

/// The body as kept in the log, the `reason` it carries and what it names.
fn summarize(bytes: &[u8]) -> Summary {
    if bytes.is_empty() {
        return Summary::default();
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            let reason = v
                .get("reason")
                .and_then(|r| r.as_str())
                .map(|r| r.chars().take(500).collect());
            let target = ["device_code", "sn", "pin", "username", "openid", "name"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|x| x.as_str()).and_then(clean));
            redact(&mut v);
            let mut s = v.to_string();
            if s.len() > BODY_KEEP {
                let mut cut = BODY_KEEP;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            Summary {
                body: Some(s),
                reason,
                target,
            }
        }
        Err(_) => Summary {
            body: Some(format!("<{} bytes, not JSON>", bytes.len())),
            ..Summary::default()
        },
    }
}

/// The value of the route's first `{param}` in the request's path.
fn target(pattern: &str, path: &str) -> Option<String> {
    pattern
        .split('/')
        .zip(path.split('/'))
        .find(|(p, _)| p.starts_with('{'))
        .and_then(|(_, v)| clean(v))
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
    if let Err(e) = s.db.add_audit(&entry).await {
        tracing::error!(error = %e, action = %entry.action, operator = %entry.operator, "audit log write failed");
    } else {
        tracing::info!(
            operator = %entry.operator,
            action = %entry.action,
            target = entry.target.as_deref().unwrap_or(""),
            status = entry.status,
            "operator action"
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_reason_is_kept() {
        let s = summarize(
            br#"{"device_code":"A","secret":"s3cret-s3cret-s3","nested":{"password":"p"},"reason":"refund"}"#,
        );
        let body = s.body.unwrap();
        assert_eq!(s.target.as_deref(), Some("A"));
        assert!(!body.contains("s3cret"), "{body}");
        assert!(!body.contains("\"p\""), "{body}");
        assert!(body.contains("\"device_code\":\"A\""));
        assert_eq!(s.reason.as_deref(), Some("refund"));
        assert_eq!(
            summarize(b"not json").body.as_deref(),
            Some("<8 bytes, not JSON>")
        );
        assert_eq!(summarize(b""), Summary::default());
    }

    #[test]
    fn target_is_the_first_path_parameter() {
        assert_eq!(
            target("/ops/devices/{code}/command", "/ops/devices/AA-BB/command").as_deref(),
            Some("AA-BB")
        );
        assert_eq!(
            target("/ops/users/{id}/adjust", "/ops/users/7/adjust").as_deref(),
            Some("7")
        );
        assert_eq!(target("/ops/devices", "/ops/devices"), None);
    }

    #[test]
    fn header_values_are_cleaned() {
        assert_eq!(clean("  alice\n "), Some("alice".into()));
        assert_eq!(clean("\u{7}"), None);
        assert_eq!(clean(&"x".repeat(100)).unwrap().len(), 64);
    }
}
