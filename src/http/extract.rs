//! Extractors that answer malformed input in the envelope dialect instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::bad_request;

/// A JSON body; any failure (too large, not JSON, missing or mistyped field) is an
/// envelope with `BAD_REQUEST`. The content type is not checked: field kiosks do not
/// always send one.
pub struct EnvJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for EnvJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request body too large".to_string()
            } else {
                format!("cannot read body: {}", e.body_text())
            };
            bad_request(status, msg)
        })?;
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(bad_request(
                StatusCode::BAD_REQUEST,
                "invalid JSON body: expected a JSON object",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(EnvJson)
            .map_err(|e| bad_request(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }
}

/// Query parameters with envelope rejections.
pub struct EnvQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for EnvQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(EnvQuery)
            .map_err(|e| bad_request(StatusCode::BAD_REQUEST, format!("invalid query: {e}")))
    }
}

/// A path parameter with envelope rejections (e.g. invalid UTF-8 after decoding).
pub struct EnvPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for EnvPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| EnvPath(p.0))
            .map_err(|e| {
                bad_request(
                    StatusCode::BAD_REQUEST,
                    format!("invalid path: {}", e.body_text()),
                )
            })
    }
}

/// A path parameter for the ops API: rejections are `{"error": ...}` with HTTP 400.
pub struct OpsPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for OpsPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| OpsPath(p.0))
            .map_err(|e| {
                use axum::response::IntoResponse;
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(
                        serde_json::json!({ "error": format!("invalid path: {}", e.body_text()) }),
                    ),
                )
                    .into_response()
            })
    }
}
