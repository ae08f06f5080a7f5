//! The error boundary of the envelope dialect (`/windows/*`, `/wechat/*`, the phone
//! app's reads): every failure a phone or dialect-A handler can answer is an
//! [`ApiError`], returned with `?` and turned into the envelope here, once. The bytes are
//! those of the helpers below (`fail`, `bad_request`, `internal`), which stay for the
//! code that builds a `Response` directly.
//!
//! Services below the HTTP layer return their own typed errors; a `From` impl per
//! error maps storage and actor failures to [`ApiError::Internal`] (logged once, a clean
//! message to the client). Refusals that have a dialect meaning are mapped by the
//! handler's module, which knows the dialect's codes and messages.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kioskd_actors::CoordError;
use kioskd_actors::ports::StoreError;
use kioskd_protocol::Envelope;
use serde::Serialize;

use super::{codes, limits};

/// A failure answered in the envelope dialect.
#[derive(Debug)]
pub enum ApiError {
    /// A business refusal: HTTP 200, `success:false`, `code` and `msg` (the rate limits
    /// read the code: `limits::FailCode`).
    Fail {
        /// The envelope's code.
        code: i32,
        /// The envelope's message.
        msg: Cow<'static, str>,
    },
    /// Malformed input: `BAD_REQUEST` with an HTTP 4xx status.
    BadRequest {
        /// HTTP status.
        status: StatusCode,
        /// The envelope's message.
        msg: Cow<'static, str>,
    },
    /// A refusal with its own HTTP status (403 cross-site, 401 unsigned, 503 upstream).
    Status {
        /// HTTP status.
        status: StatusCode,
        /// The envelope's code.
        code: i32,
        /// The envelope's message.
        msg: Cow<'static, str>,
    },
    /// Storage or actor failure: the cause is logged once, the client hears a clean
    /// message (HTTP 503, `INTERNAL`).
    Internal(String),
}

impl ApiError {
    /// A business refusal (HTTP 200).
    pub fn fail(code: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Fail {
            code,
            msg: msg.into(),
        }
    }

    /// Malformed input.
    pub fn bad_request(status: StatusCode, msg: impl Into<Cow<'static, str>>) -> Self {
        ApiError::BadRequest {
            status,
            msg: msg.into(),
        }
    }

    /// A refusal with its own HTTP status.
    pub fn status(status: StatusCode, code: i32, msg: impl Into<Cow<'static, str>>) -> Self {
        ApiError::Status {
            status,
            code,
            msg: msg.into(),
        }
    }

    /// An internal failure with its cause (logged, never shown).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Fail { code, msg } => fail(code, msg),
            ApiError::BadRequest { status, msg } => bad_request(status, msg),
            ApiError::Status { status, code, msg } => {
                (status, axum::Json(Envelope::fail(code, msg))).into_response()
            }
            ApiError::Internal(cause) => internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> Self {
        ApiError::internal(e)
    }
}

/// What an envelope handler returns.
pub type ApiResult = Result<Response, ApiError>;

/// `{"success":true,"result":..,"error":null}`, HTTP 200.
pub fn ok<T: Serialize>(result: T) -> Response {
    axum::Json(Envelope::ok(result)).into_response()
}

/// A business failure: HTTP 200 with `success:false`, a numeric code and a message.
pub fn fail(code: i32, msg: impl Into<String>) -> Response {
    let mut r = axum::Json(Envelope::fail(code, msg)).into_response();
    // The rate limits read it (an unknown device code counts as a lookup miss).
    r.extensions_mut().insert(limits::FailCode(code));
    r
}

/// Malformed input: the envelope with `BAD_REQUEST` and an HTTP 4xx status.
pub fn bad_request(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(Envelope::fail(codes::BAD_REQUEST, msg))).into_response()
}

/// Storage or actor failure: logged once here, a clean message to the client.
pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(Envelope::fail(
            codes::INTERNAL,
            "服务暂时不可用，请稍后再试",
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, Option<i32>, String) {
        let status = r.status();
        let fc = r.extensions().get::<limits::FailCode>().map(|c| c.0);
        let b = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, fc, String::from_utf8(b.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_typed_errors_answer_the_bytes_of_the_helpers() {
        assert_eq!(
            body(ApiError::fail(-4, "设备不存在").into_response()).await,
            body(fail(-4, "设备不存在")).await
        );
        assert_eq!(
            body(ApiError::fail(-4, "x").into_response()).await.1,
            Some(-4)
        );
        assert_eq!(
            body(ApiError::bad_request(StatusCode::BAD_REQUEST, "bad").into_response()).await,
            body(bad_request(StatusCode::BAD_REQUEST, "bad")).await
        );
        assert_eq!(
            body(ApiError::internal("db down").into_response()).await,
            body(internal("db down")).await
        );
        let (status, fc, text) =
            body(ApiError::status(StatusCode::FORBIDDEN, codes::CROSS_SITE, "no").into_response())
                .await;
        assert_eq!((status, fc), (StatusCode::FORBIDDEN, None));
        assert!(text.contains("-20"), "{text}");
    }
}
