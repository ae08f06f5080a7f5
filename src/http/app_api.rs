//! Small reads the phone app (`/app/`) needs beyond the seed's API, in the phone's
//! envelope dialect (documented in `protocol/README.md`):
//!
//! - `GET /wechat/app/config`: the identity and payments modes and the billing unit, so
//!   the page knows whether to show the dev sign-in form or the WeChat sign-in link, and
//!   whether a recharge settles at once or goes through JSAPI pay;
//! - `GET /wechat/app/device/<code>`: what the QR landing shows about a kiosk (name,
//!   location, the price in force now, billing mode, status, online) — public, nothing
//!   about its user; signed in, also what a start would reserve and how long the
//!   caller's balance and packages last there;
//! - `GET /wechat/app/packages`: the packages on sale and (signed in) those held;
//! - `POST /wechat/app/packages/buy {package_id, pay}`: buys one from the balance
//!   (`pay: "balance"`) or by WeChat Pay (`"wechat"`, the recharge path);
//! - `GET /wechat/app/package-order/<out_trade_no>`: the state of the caller's own
//!   package order, polled after JSAPI pay like a recharge;
//! - `GET /wechat/app/package-history?page&size`: package purchases, uses and returns;
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
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kioskd_actors::DeviceStatus;
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::BillingMode;
use serde::{Deserialize, Serialize};

use super::extract::{EnvJson, EnvPath, EnvQuery};
use super::{ApiError, ApiResult, AppState, codes, csrf, ok};
use crate::config::{IdentityMode, PaymentsMode};
use crate::devices::DeviceError;
use crate::identity::Refusal;
use crate::packages::{self, BuyError, PackageHistoryRow, PackageRow, UserPackageRow};
use crate::payments::Payment;
use crate::{identity, payments};
use kioskd_protocol::windows::LoginCode;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wechat/app/config", get(config))
        .route("/wechat/app/device/{code}", get(device))
        .route("/wechat/app/recharge/{out_trade_no}", get(recharge))
        .route("/wechat/app/packages", get(packages_list))
        .route("/wechat/app/packages/buy", post(buy_package))
        .route(
            "/wechat/app/package-order/{out_trade_no}",
            get(package_order),
        )
        .route("/wechat/app/package-history", get(package_history))
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
    /// Fen per unit: the device's flat price (`devices.charge_mode`); `price_now` is
    /// what a unit beginning now costs.
    charge_mode: i64,
    /// Fen for a unit beginning now for the caller (anyone, when not signed in): the
    /// plan in force (member group, device, zone) with the group's discount.
    price_now: i64,
    /// The plan in force, if any.
    plan: Option<String>,
    /// The caller's group discount in percent.
    discount_pct: i64,
    /// The plan's minimum charge per session, fen.
    min_charge: i64,
    /// Signed in: fen a start now reserves (0 when a package covers the first unit).
    #[serde(skip_serializing_if = "Option::is_none")]
    first_debit: Option<i64>,
    /// Signed in: units (minutes) the balance and packages buy from now on at the
    /// upcoming prices, packages first (1000000: unlimited, as `minutes_left`).
    #[serde(skip_serializing_if = "Option::is_none")]
    minutes: Option<i64>,
    /// Signed in: the user package that would cover the first unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    package_now: Option<i64>,
    /// Signed in: the caller's packages usable on this device, soonest expiry first.
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<Vec<UserPackageRow>>,
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

async fn device(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvPath(raw): EnvPath<String>,
) -> ApiResult {
    let code = normalize_device_code(&raw).ok_or_else(no_device)?;
    // A signed-in caller sees their own price; a blocked or unknown one, anyone's.
    let user = identity::known(&s, &jar).await?.filter(|u| u.state == 0);
    let d = match packages::priced_device(&s, &code, user.as_ref()).await {
        Ok(d) => d,
        Err(DeviceError::NoSuchDevice) => return Err(no_device()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let (rec, q) = (d.rec, d.quote);
    let signed = user.is_some();
    Ok(ok(DeviceCard {
        device_code: rec.code,
        name: rec.name,
        province: rec.province,
        city: rec.city,
        area: rec.area,
        location: rec.location,
        charge_mode: rec.charge_mode,
        price_now: q.price,
        plan: q.plan,
        discount_pct: q.discount_pct,
        min_charge: q.min_charge,
        first_debit: signed.then_some(q.first_debit),
        minutes: q.units,
        package_now: q.package_now,
        packages: signed.then_some(d.packages),
        billing_mode: match rec.billing_mode {
            BillingMode::Prepaid => "prepaid",
            BillingMode::Postpaid => "postpaid",
        },
        available: d.available,
        status: d.status,
        online: d.online,
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

/// `GET /wechat/app/packages`.
#[derive(Serialize)]
struct Packages {
    /// On sale.
    on_sale: Vec<PackageRow>,
    /// Held with time left, soonest expiry first (signed in only).
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<Vec<UserPackageRow>>,
}

async fn packages_list(State(s): State<AppState>, jar: SignedCookieJar) -> ApiResult {
    let on_sale = packages::on_sale(&s).await?;
    let held = match identity::known(&s, &jar).await? {
        Some(u) => Some(packages::held(&s, u.id).await?),
        None => None,
    };
    Ok(ok(Packages { on_sale, held }))
}

#[derive(Deserialize)]
struct BuyRequest {
    package_id: i64,
    /// `balance` or `wechat`.
    pay: String,
}

/// `POST /wechat/app/packages/buy`: balance → `{user_package_id, balance_account}`;
/// WeChat Pay → the JSAPI parameters (with `out_trade_no`), or `"success"` in sandbox.
#[derive(Serialize)]
struct Bought {
    user_package_id: i64,
    balance_account: i64,
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::NotSignedIn | Refusal::NotRegistered => {
            ApiError::fail(codes::NOT_SIGNED_IN, "当前用户没有登录")
        }
        Refusal::Deleted => ApiError::fail(-2, "用户已被删除"),
        Refusal::Disabled => ApiError::fail(-3, "用户已被禁用"),
        Refusal::Store(e) => ApiError::internal(e),
    }
}

fn not_on_sale() -> ApiError {
    ApiError::fail(codes::NO_SUCH_PACKAGE, "套餐不存在或已下架")
}

async fn buy_package(
    State(s): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<BuyRequest>,
) -> ApiResult {
    let u = identity::registered(&s, &jar).await.map_err(refusal)?;
    csrf::check(&s, &headers)?;
    match req.pay.as_str() {
        "balance" => match packages::buy_with_balance(&s, &u, req.package_id).await {
            Ok((user_package_id, balance_account)) => Ok(ok(Bought {
                user_package_id,
                balance_account,
            })),
            Err(BuyError::NotOnSale) => Err(not_on_sale()),
            Err(BuyError::Insufficient) => Err(ApiError::fail(
                LoginCode::BalanceTooLow as i32,
                LoginCode::BalanceTooLow.message(),
            )),
            Err(BuyError::Store(e)) => Err(ApiError::internal(e)),
        },
        "wechat" => match payments::pay_package(&s, &u, req.package_id)
            .await
            .map_err(super::wechat::pay_err)?
        {
            Payment::Done => Ok(ok("success")),
            Payment::Pay(params) => Ok(ok(params)),
        },
        _ => Err(ApiError::bad_request(
            axum::http::StatusCode::BAD_REQUEST,
            "pay must be \"balance\" or \"wechat\"",
        )),
    }
}

/// `GET /wechat/app/package-order/<out_trade_no>`: the caller's own package order.
#[derive(Serialize)]
struct PackageOrderState {
    out_trade_no: String,
    /// Fen.
    amount: i64,
    /// `pending`, `paid` or `closed` (given up unpaid).
    status: &'static str,
}

async fn package_order(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvPath(out_trade_no): EnvPath<String>,
) -> ApiResult {
    let u = identity::known(&s, &jar)
        .await?
        .ok_or_else(|| ApiError::fail(codes::NOT_SIGNED_IN, "当前用户没有登录"))?;
    let (amount, status) = payments::package_order_of(&s, u.id, &out_trade_no)
        .await?
        .ok_or_else(|| ApiError::fail(codes::NO_SUCH_ORDER, "套餐订单不存在"))?;
    Ok(ok(PackageOrderState {
        out_trade_no,
        amount,
        status: status.as_str(),
    }))
}

#[derive(Deserialize)]
struct HistoryQuery {
    page: Option<u32>,
    size: Option<u32>,
}

/// `GET /wechat/app/package-history`.
#[derive(Serialize)]
struct History {
    total: i64,
    data: Vec<PackageHistoryRow>,
}

async fn package_history(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvQuery(q): EnvQuery<HistoryQuery>,
) -> ApiResult {
    let u = identity::known(&s, &jar)
        .await?
        .ok_or_else(|| ApiError::fail(codes::NOT_SIGNED_IN, "当前用户没有登录"))?;
    let crate::services::Page { total, rows: data } = packages::history(
        &s,
        u.id,
        i64::from(q.page.unwrap_or(1)),
        i64::from(q.size.unwrap_or(10)),
    )
    .await?;
    Ok(ok(History { total, data }))
}
