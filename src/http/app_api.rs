//! Small reads the phone app (`/app/`) needs beyond the seed's API, in the phone's
//! envelope dialect (documented in `protocol/README.md`):
//!
//! - `GET /wechat/app/config`: the identity and payments modes and the billing unit, so
//!   the page knows whether to show the dev sign-in form or the WeChat sign-in link, and
//!   whether a recharge settles at once or goes through JSAPI pay;
//! - `GET /wechat/app/device/<code>`: what the QR landing shows about a kiosk (name,
//!   location, price, billing mode, status, online) — public, nothing about its user;
//! - `GET /wechat/app/recharge/<out_trade_no>`: the state of the caller's own recharge,
//!   which the page polls after JSAPI pay (the JS result is a hint, the server's word is
//!   the proof);
//! - `GET /wechat/app/signin?back=/app/...`: starts the open189 sign-in and returns to
//!   the page (dev mode, or already signed in: straight back).
//!
//! Every route is rate limited per client address.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kioskd_actors::DeviceStatus;
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::BillingMode;
use serde::{Deserialize, Serialize};

use super::extract::{EnvPath, EnvQuery};
use super::{ApiError, ApiResult, AppState, codes, ok};
use crate::config::{IdentityMode, PaymentsMode};
use crate::devices::{self, DeviceError};
use crate::{identity, payments};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wechat/app/config", get(config))
        .route("/wechat/app/device/{code}", get(device))
        .route("/wechat/app/recharge/{out_trade_no}", get(recharge))
        .route("/wechat/app/signin", get(signin))
        .route_layer(axum::middleware::from_fn(limit))
}

/// Requests per second per client address (burst as large).
const PER_SECOND: u32 = 20;

static LIMITER: LazyLock<DefaultKeyedRateLimiter<IpAddr>> = LazyLock::new(|| {
    let n = NonZeroU32::new(PER_SECOND).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(n))
});

async fn limit(req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip {
        if LIMITER.len() > 100_000 {
            LIMITER.retain_recent();
        }
        if LIMITER.check_key(&ip).is_err() {
            return ApiError::status(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                "请求过于频繁，请稍后再试",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// `GET /wechat/app/config`.
#[derive(Serialize)]
struct AppConfig {
    /// `dev` or `open189`.
    identity_mode: &'static str,
    /// `sandbox` or `wechatpay`.
    payments_mode: &'static str,
    /// Seconds per billing unit ("minute"; 60 in production).
    unit_seconds: u64,
    /// The low-balance warning threshold, in units.
    low_balance_minutes: i64,
    /// The largest recharge, fen.
    max_recharge_fen: i64,
    /// Seconds before another SMS code may be asked for (the resend countdown).
    sms_resend_seconds: i64,
}

async fn config(State(s): State<AppState>) -> Response {
    ok(AppConfig {
        identity_mode: match s.cfg.identity.mode {
            IdentityMode::Dev => "dev",
            IdentityMode::Open189 => "open189",
        },
        payments_mode: match s.cfg.payments.mode {
            PaymentsMode::Sandbox => "sandbox",
            PaymentsMode::Wechatpay => "wechatpay",
        },
        unit_seconds: s.cfg.billing.unit_seconds,
        low_balance_minutes: s.cfg.billing.low_balance_minutes,
        max_recharge_fen: s.cfg.payments.max_recharge_fen,
        sms_resend_seconds: s.cfg.sms.resend_seconds,
    })
}

/// `GET /wechat/app/device/<code>`: public facts about a kiosk.
#[derive(Serialize)]
struct DeviceCard {
    device_code: String,
    name: String,
    province: String,
    city: String,
    area: String,
    location: String,
    /// Fen per unit.
    charge_mode: i64,
    /// `prepaid` or `postpaid`.
    billing_mode: &'static str,
    /// `free`, `busy`, `lock`, `maintain`.
    status: DeviceStatus,
    /// Heard from within the heartbeat timeout.
    online: bool,
    /// A session could start now (free, online, not updating).
    available: bool,
}

fn no_device() -> ApiError {
    ApiError::fail(codes::NO_SUCH_DEVICE, "设备不存在")
}

async fn device(State(s): State<AppState>, EnvPath(raw): EnvPath<String>) -> ApiResult {
    let code = normalize_device_code(&raw).ok_or_else(no_device)?;
    let (rec, view) = match devices::card(&s, &code).await {
        Ok(c) => c,
        Err(DeviceError::NoSuchDevice) => return Err(no_device()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    Ok(ok(DeviceCard {
        device_code: rec.code,
        name: rec.name,
        province: rec.province,
        city: rec.city,
        area: rec.area,
        location: rec.location,
        charge_mode: rec.charge_mode,
        billing_mode: match rec.billing_mode {
            BillingMode::Prepaid => "prepaid",
            BillingMode::Postpaid => "postpaid",
        },
        available: view.status == DeviceStatus::Free && view.online && !view.updating,
        status: view.status,
        online: view.online,
    }))
}

/// `GET /wechat/app/recharge/<out_trade_no>`: the caller's own recharge.
#[derive(Serialize)]
struct RechargeState {
    out_trade_no: String,
    /// Fen.
    amount: i64,
    /// `pending`, `paid` or `closed` (given up unpaid).
    status: &'static str,
    /// The caller's balance now, fen.
    balance_account: i64,
}

async fn recharge(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvPath(out_trade_no): EnvPath<String>,
) -> ApiResult {
    let u = identity::known(&s, &jar)
        .await?
        .ok_or_else(|| ApiError::fail(codes::NOT_SIGNED_IN, "当前用户没有登录"))?;
    // Someone else's recharge is as unknown as a missing one.
    let (amount, status) = payments::recharge_of(&s, u.id, &out_trade_no)
        .await?
        .ok_or_else(|| ApiError::fail(codes::NO_SUCH_ORDER, "充值订单不存在"))?;
    Ok(ok(RechargeState {
        out_trade_no,
        amount,
        status: status.as_str(),
        balance_account: u.balance_account,
    }))
}

#[derive(Deserialize)]
struct SigninQuery {
    back: Option<String>,
}

/// `GET /wechat/app/signin?back=`: open189 sign-in that comes back to a phone page.
async fn signin(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvQuery(q): EnvQuery<SigninQuery>,
) -> Response {
    let wanted = q.back.unwrap_or_else(|| "/app/".to_string());
    // Only our own phone pages: never an open redirect.
    let back = if wanted.starts_with("/app/")
        && !wanted.contains("//")
        && !wanted.contains('\\')
        && wanted.len() <= 512
        && !wanted.chars().any(|c| c.is_control())
    {
        wanted
    } else {
        "/app/".to_string()
    };
    if s.cfg.identity.mode == IdentityMode::Dev || identity::openid(&jar).is_some() {
        return Redirect::to(&back).into_response();
    }
    let back = super::oauth::safe_return(&s, &back);
    super::oauth::start(&s, jar, back, 0).await.into_response()
}
