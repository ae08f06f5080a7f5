//! The operator audit log below the adapters: what an entry keeps of a request (the
//! body with secrets redacted, its `reason`, what it names), recording an entry (a
//! failed write is logged, never fails the action), and reading the log. The HTTP
//! middleware (`http::audit`) and `kioskd ops` (the reason header) both use it.

use crate::service_error::ServiceError;
use crate::services::Services;
pub use crate::store::{AuditEntry, AuditQuery, NewAudit};
use serde_json::Value;

/// The header giving the reason for an action (the body's `reason` wins).
pub const REASON_HEADER: &str = "x-kioskd-reason";

/// Longest body kept in an entry.
const BODY_KEEP: usize = 4096;

/// Most entries one read returns when the caller does not say.
pub const DEFAULT_LIMIT: i64 = 100;

/// A header value made safe for the log: printable, at most 64 characters.
pub fn clean(v: &str) -> Option<String> {
    let v: String = v
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect::<String>()
        .trim()
        .to_string();
    (!v.is_empty()).then_some(v)
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
pub struct Summary {
    /// The body as kept (redacted, cut).
    pub body: Option<String>,
    /// The `reason` it carries.
    pub reason: Option<String>,
    /// The thing a registration names (`device_code`, `sn`, `pin`, ...).
    pub target: Option<String>,
}

/// The body as kept in the log, the `reason` it carries and what it names.
pub fn summarize(bytes: &[u8]) -> Summary {
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
pub fn target(pattern: &str, path: &str) -> Option<String> {
    pattern
        .split('/')
        .zip(path.split('/'))
        .find(|(p, _)| p.starts_with('{'))
        .and_then(|(_, v)| clean(v))
}

/// Records an entry. A failed write is logged (the action already happened) and never
/// fails the request.
pub async fn record(s: &Services, entry: &NewAudit) {
    if let Err(e) = s.db.add_audit(entry).await {
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
}

/// Reads the log, newest first.
pub async fn list(s: &Services, q: &AuditQuery) -> Result<Vec<AuditEntry>, ServiceError> {
    Ok(s.db.audit(q).await?)
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
