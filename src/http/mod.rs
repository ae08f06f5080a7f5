//! HTTP adapters. Each dialect decodes its wire format (the `kioskd-protocol` types),
//! calls the coordinator or the store, and answers in the same dialect. Bad input of any
//! kind gets an answer in the dialect's envelope; nothing here panics on input.

// Helpers return a ready `Response` as their error so handlers can answer early; boxing
// it would only add an allocation on the error path.
#![allow(clippy::result_large_err)]

pub mod app_api;
pub mod attendance;
pub mod audit;
pub mod authz;
pub mod body;
pub mod csrf;
pub mod dev;
pub mod envelope;
pub mod extract;
pub mod files;
pub mod fuzz_replay;
pub mod health;
pub mod iclock;
pub mod legacy;
pub mod limits;
pub mod oauth;
pub mod operators;
pub mod ops;
pub mod ops_attendance;
pub mod ops_console;
pub mod ops_upstream;
pub mod pay;
pub mod rest;
pub mod web;
pub mod wechat;
pub mod windows;
pub mod ws;
pub mod ws_attendance;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::Key;
use kioskd_protocol::Envelope;

use crate::services::Services;
pub use envelope::{ApiError, ApiResult, bad_request, fail, internal, ok};

/// Shared by every handler: the composition root (`Services`, reached through `Deref`)
/// and what only the HTTP edge keeps — cookies, connection counts, rate limits.
pub struct AppInner {
    /// Configuration, storage, the actors and the named services.
    pub services: Arc<Services>,
    /// Signs the phone's session cookie.
    pub cookie_key: Key,
    /// Open WebSocket connections (all kinds), for the cap.
    pub ws_connections: std::sync::atomic::AtomicUsize,
    /// Connection ids.
    pub next_conn_id: std::sync::atomic::AtomicU64,
    /// Signed-upgrade nonces seen (key → expiry, unix seconds), when there is no Redis.
    pub nonces: dashmap::DashMap<String, i64>,
    /// What the unsigned legacy kiosk calls looked like (the address rule).
    pub legacy: legacy::LegacyState,
    /// Connection caps and the trusted proxies (the client address every limiter uses).
    pub edge: Arc<crate::net::Edge>,
    /// Open `/ws/user` sockets per user.
    pub ws_per_user: dashmap::DashMap<i64, usize>,
    /// Open non-kiosk sockets per client address.
    pub ws_per_address: dashmap::DashMap<std::net::IpAddr, usize>,
    /// Downloads (`/files/*`) in progress per client address.
    pub downloads: dashmap::DashMap<std::net::IpAddr, usize>,
    /// The rate limits per client address.
    pub limits: limits::Limits,
    /// The byte budget (in KiB permits) of large request bodies being read.
    pub large_bodies: Arc<tokio::sync::Semaphore>,
    /// The whole budget in KiB (one body never asks for more).
    pub large_body_kib: usize,
}

impl std::ops::Deref for AppInner {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

impl AppInner {
    /// Remembers a nonce until `expiry`; false if it was seen before. With Redis, the
    /// check holds across nodes.
    pub async fn remember_nonce(&self, key: String, expiry: i64) -> bool {
        if let Some(b) = &self.broker {
            let ttl = (expiry - self.coord.clock().now_ms() / 1000).max(1) as u64;
            return match b.set_once(&format!("kioskd:nonce:{key}"), ttl).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    metrics::counter!(kioskd_actors::catalog::BROKER_ERRORS, "op" => "nonce")
                        .increment(1);
                    tracing::warn!(error = %e, "nonce check in redis failed; refusing");
                    false
                }
            };
        }
        let now = self.coord.clock().now_ms() / 1000;
        if self.nonces.len() > 100_000 {
            self.nonces.retain(|_, exp| *exp > now);
        }
        match self.nonces.entry(key) {
            dashmap::Entry::Occupied(mut e) if *e.get() <= now => {
                e.insert(expiry);
                true
            }
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(expiry);
                true
            }
        }
    }
}

/// Handler state.
#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(s: &AppState) -> Key {
        s.0.cookie_key.clone()
    }
}

/// Result codes of the envelope dialect (`/windows/*`, `/wechat/*`) beyond the login
/// codes of SPEC §5. Documented in `protocol/README.md`.
pub mod codes {
    /// Not signed in / not registered.
    pub const NOT_SIGNED_IN: i32 = -1;
    /// Unknown device.
    pub const NO_SUCH_DEVICE: i32 = -4;
    /// Internal failure (storage down); nothing changed.
    pub const INTERNAL: i32 = -6;
    /// Device offline, busy or otherwise unavailable.
    pub const DEVICE_UNAVAILABLE: i32 = -9;
    /// Malformed request (HTTP 400/413).
    pub const BAD_REQUEST: i32 = -10;
    /// Wrong, expired or used captcha.
    pub const BAD_CAPTCHA: i32 = -11;
    /// Too many requests.
    pub const RATE_LIMITED: i32 = -12;
    /// Mobile or openid already bound otherwise.
    pub const BINDING_CONFLICT: i32 = -13;
    /// Amount out of range.
    pub const BAD_AMOUNT: i32 = -14;
    /// Maintainer credentials refused.
    pub const BAD_CREDENTIALS: i32 = -15;
    /// An upstream (open platform, WeChat, WeChat Pay) is unavailable, not configured,
    /// or refused; the message says which (HTTP 503 when retrying may help).
    pub const UPSTREAM: i32 = -16;
    /// WeChat Pay needs the user's payment openid, which a fresh sign-in gets.
    pub const NO_PAY_OPENID: i32 = -17;
    /// Postpaid order unknown (or another user's).
    pub const NO_SUCH_ORDER: i32 = -19;
    /// A state-changing phone request that did not come from kioskd's own pages
    /// (HTTP 403; `http::csrf`).
    pub const CROSS_SITE: i32 = -20;
    /// A legacy token call for a device with a secret, unsigned (HTTP 401; `http::legacy`).
    pub const SIGNATURE_REQUIRED: i32 = -21;
    /// A logout by token from an address that is not the kiosk's (`http::legacy`).
    pub const NOT_THE_KIOSK: i32 = -22;
    /// No such package on sale (`/wechat/app/packages/buy`).
    pub const NO_SUCH_PACKAGE: i32 = -23;
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let max_body = state.cfg.server.max_body_bytes;
    let request_timeout = std::time::Duration::from_secs(state.cfg.server.request_timeout_seconds);
    let edge = state.edge.clone();
    let mode = state.cfg.identity.mode;
    let dev_mode = mode == crate::config::IdentityMode::Dev;
    let mut phone = Router::new()
        .merge(windows::routes())
        .merge(wechat::routes())
        .merge(oauth::routes(mode));
    if mode == crate::config::IdentityMode::Open189 {
        phone = phone.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            oauth::require_sign_in,
        ));
    }
    if state.cfg.payments.mode == crate::config::PaymentsMode::Wechatpay {
        phone = phone.merge(pay::routes());
    }
    let mut r = Router::new()
        .merge(phone)
        .merge(app_api::routes())
        .merge(ops_upstream::routes())
        .merge(ops::routes())
        .merge(ops_console::routes())
        .merge(operators::routes())
        .merge(audit::routes())
        .merge(health::routes())
        .merge(ws::routes())
        .merge(ws_attendance::routes())
        .merge(files::routes())
        .merge(web::routes())
        .nest("/rest", rest::routes())
        .merge(rest::bare_routes())
        .merge(
            attendance::routes()
                .merge(iclock::routes(&state))
                .merge(ops_attendance::routes()),
        );
    if dev_mode {
        r = r.merge(dev::routes());
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(|| async {
            bad_request(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn(crate::telemetry::track))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::limit,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            edge,
            crate::net::resolve_client,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(Envelope::fail(codes::BAD_REQUEST, "no such endpoint")),
    )
        .into_response()
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(Envelope::fail(codes::INTERNAL, "internal error")),
    )
        .into_response()
}

#[cfg(test)]
mod lint {
    //! `src/http` adapts: it holds no SQL and reaches no storage. Storage is reached
    //! through the coordinator and the named services (`crate::identity`, `devices`,
    //! `games`, `payments`, …); this test fails on a storage handle (`.db`), the store
    //! module or sqlx in any adapter file.

    /// Files not converted yet: none (svc-ops converted the ops and attendance side);
    /// nothing may be added to it.
    const NOT_YET_CONVERTED: &[&str] = &[];

    /// The first storage use in `src` (comments and this lint module skipped): (line
    /// number, line).
    fn storage_use(src: &str) -> Option<(usize, String)> {
        const HANDLE: &str = ".db";
        src.lines()
            .enumerate()
            .take_while(|(_, line)| line.trim() != "mod lint {")
            .find_map(|(i, line)| {
                let code = line.trim_start();
                if code.starts_with("//") {
                    return None;
                }
                let handle_use = code.match_indices(HANDLE).any(|(at, _)| {
                    !code[at + HANDLE.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                (handle_use || code.contains("crate::store") || code.contains("sqlx"))
                    .then(|| (i + 1, line.to_string()))
            })
    }

    #[test]
    fn the_lint_sees_storage_uses() {
        assert!(storage_use("    let u = s.db.user(1).await?;").is_some());
        assert!(storage_use("    identity::caller(&s.db, &jar)").is_some());
        assert!(storage_use("use crate::store::UserRow;").is_some());
        assert!(storage_use("    sqlx::query(\"SELECT 1\")").is_some());
        assert!(storage_use("    // s.db.user(1) in a comment").is_none());
        assert!(storage_use("    let d = s.dbg_value;").is_none());
        assert!(storage_use("mod lint {\n    s.db.user(1)").is_none());
    }

    #[test]
    fn http_adapters_hold_no_storage_calls() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut offenders = Vec::new();
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("src/http is readable") {
            let path = entry.expect("a directory entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            seen += 1;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let src = std::fs::read_to_string(&path).expect("a readable source file");
            if let Some((n, line)) = storage_use(&src)
                && !NOT_YET_CONVERTED.contains(&name)
            {
                offenders.push(format!("{name}:{n}: {}", line.trim()));
            }
        }
        assert!(seen > 10, "found only {seen} files in {}", dir.display());
        assert!(
            offenders.is_empty(),
            "storage reached from src/http (call the coordinator or a service instead):\n{}",
            offenders.join("\n")
        );
    }
}
