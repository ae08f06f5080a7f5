//! The reply envelope shared by `/windows/*` and `/wechat/*`.

use serde::{Deserialize, Serialize};

/// Every dialect A and phone reply: `{"success": bool, "result": T, "error": string|null}`.
///
/// Business failures are HTTP 200 with `success: false`, a (usually numeric) `result`
/// code and a readable `error`. `error` is always serialized, as `null` when absent.
/// Keys are serialized in the order `success`, `result`, `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Whether the call succeeded as a business operation.
    pub success: bool,
    /// The payload, or the failure code when `success` is false.
    pub result: T,
    /// Readable error message; `null` on success.
    pub error: Option<String>,
}

impl<T> Envelope<T> {
    /// A successful reply: `success: true`, `error: null`.
    pub fn ok(result: T) -> Self {
        Self {
            success: true,
            result,
            error: None,
        }
    }

    /// A business failure: `success: false` with a result code and a readable message.
    pub fn fail(result: T, error: impl Into<String>) -> Self {
        Self {
            success: false,
            result,
            error: Some(error.into()),
        }
    }

    /// `success: true` with the given (possibly present) error text; rare.
    pub fn soft(result: T, error: Option<String>) -> Self {
        Self {
            success: true,
            result,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_serializes_null_error_in_order() {
        let s = serde_json::to_string(&Envelope::ok("success")).unwrap();
        assert_eq!(s, r#"{"success":true,"result":"success","error":null}"#);
    }

    #[test]
    fn fail_and_soft() {
        let f = Envelope::fail(-5, "余额不足");
        assert!(!f.success);
        assert_eq!(f.error.as_deref(), Some("余额不足"));
        let s = Envelope::soft(0, Some("x".to_owned()));
        assert!(s.success);
        assert_eq!(s.error.as_deref(), Some("x"));
    }

    #[test]
    fn missing_error_reads_as_none() {
        let e: Envelope<i32> = serde_json::from_str(r#"{"success":true,"result":1}"#).unwrap();
        assert_eq!(e, Envelope::ok(1));
    }
}
