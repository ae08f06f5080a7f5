//! The phone API (`/wechat/*`, seed 001, SPEC §7): captcha and mobile binding, user
//! info, registration check, recharge and the recharge and expense lists, and the
//! postpaid orders (list and pay).

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use kioskd_protocol::wechat::*;
use kioskd_protocol::windows::NOT_SIGNED_IN_MSG;
use std::net::SocketAddr;

use super::extract::{EnvJson, EnvPath, EnvQuery};
use super::{ApiError, ApiResult, AppState, codes, csrf, ok};
use crate::identity::{self, BindError, Refusal, Registration, UserRow};
use crate::payments::{self, PageQuery, PayError, Payment};
use crate::timefmt::{parse, wire};
use crate::{orders, sms};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wechat/captcha", post(captcha))
        .route("/wechat/login", post(login))
        .route("/wechat/user", get(user))
        .route("/wechat/check", get(check))
        .route("/wechat/recharge/{amount}", get(recharge))
        .route("/wechat/recharge/list", post(recharge_list))
        .route("/wechat/expense/list", post(expense_list))
        .route("/wechat/orders", get(orders))
        .route("/wechat/order/pay", post(order_pay))
}

/// The seed's user object.
pub fn user_info(u: &UserRow, tz: chrono_tz::Tz) -> UserInfo {
    UserInfo {
        head_img_url: u.head_img_url.clone(),
        mobile: u.mobile.clone().unwrap_or_default(),
        total_account: u.total_account,
        used_account: u.used_account,
        balance_account: u.balance_account,
        state: u.state,
        ctime: wire(u.ctime, tz),
        utime: wire(u.utime, tz),
        ..UserInfo::new(u.id, u.nickname.clone())
    }
}

/// The phone caller's refusal in this dialect.
fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::NotSignedIn => ApiError::fail(codes::NOT_SIGNED_IN, NOT_SIGNED_IN_MSG),
        Refusal::NotRegistered => ApiError::fail(0, "用户未注册"),
        Refusal::Deleted => ApiError::fail(-2, "用户已被删除"),
        Refusal::Disabled => ApiError::fail(-3, "用户已被禁用"),
        Refusal::Store(e) => ApiError::internal(e),
    }
}

/// A binding refusal in this dialect (also the app quick entry's).
pub(crate) fn bind_err(e: BindError) -> ApiError {
    match e {
        BindError::MobileTaken => ApiError::fail(codes::BINDING_CONFLICT, "该手机号已绑定其他微信"),
        BindError::HasOtherMobile => {
            ApiError::fail(codes::BINDING_CONFLICT, "当前微信已绑定其他手机号")
        }
        BindError::BadCaptcha => ApiError::fail(codes::BAD_CAPTCHA, "验证码错误或已过期"),
        BindError::Store(e) => ApiError::internal(e),
    }
}

/// A payment refusal in this dialect (also the app's package purchases').
pub(crate) fn pay_err(e: PayError) -> ApiError {
    match e {
        PayError::BadAmount { max } => ApiError::fail(
            codes::BAD_AMOUNT,
            format!("amount must be whole fen from 1 to {max}"),
        ),
        PayError::NoSuchOrder => ApiError::fail(codes::NO_SUCH_ORDER, "订单不存在"),
        PayError::NotOnSale => ApiError::fail(codes::NO_SUCH_PACKAGE, "套餐不存在或已下架"),
        PayError::NoPayOpenid => ApiError::fail(
            codes::NO_PAY_OPENID,
            "尚未完成微信支付授权，请重新从微信打开页面",
        ),
        PayError::Upstream => ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UPSTREAM,
            "微信支付下单失败，请稍后再试",
        ),
        PayError::Store(e) => e.into(),
        PayError::Internal(cause) => ApiError::Internal(cause),
    }
}

fn bad_mobile() -> ApiError {
    ApiError::bad_request(
        StatusCode::BAD_REQUEST,
        "mobile must be 11 digits starting with 1",
    )
}

/// `POST /wechat/captcha {mobile}`.
async fn captcha(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    EnvJson(req): EnvJson<CaptchaRequest>,
) -> ApiResult {
    if !sms::valid_mobile(&req.mobile) {
        return Err(bad_mobile());
    }
    let client = peer.ip().to_string();
    match sms::send_captcha(&s, &req.mobile, &client)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(()) => Ok(ok(SUCCESS)),
        Err(sms::SendRefusal::Mobile) => Err(ApiError::fail(
            codes::RATE_LIMITED,
            "验证码发送过于频繁，请稍后再试",
        )),
        Err(sms::SendRefusal::Client) => Err(ApiError::fail(
            codes::RATE_LIMITED,
            "请求过于频繁，请稍后再试",
        )),
    }
}

/// `POST /wechat/login {mobile, code}`: binds the mobile to the signed-in openid.
async fn login(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<LoginRequest>,
) -> ApiResult {
    let u = identity::signed_in(&s, &jar).await.map_err(refusal)?;
    if !sms::valid_mobile(&req.mobile) {
        return Err(bad_mobile());
    }
    let u = identity::bind_mobile(&s, &u, &req.mobile, &req.code)
        .await
        .map_err(bind_err)?;
    Ok(ok(user_info(&u, s.tz)))
}

/// `GET /wechat/user`.
async fn user(State(s): State<AppState>, jar: SignedCookieJar) -> ApiResult {
    let u = identity::signed_in(&s, &jar).await.map_err(refusal)?;
    Ok(ok(user_info(&u, s.tz)))
}

/// `GET /wechat/check`: is the caller registered?
async fn check(State(s): State<AppState>, jar: SignedCookieJar) -> ApiResult {
    let code = match identity::registration(&s, &jar).await? {
        Registration::NoOpenid => CheckCode::NoOpenid,
        Registration::NotRegistered => CheckCode::NotRegistered,
        Registration::Deleted => CheckCode::Deleted,
        Registration::Registered => CheckCode::Registered,
    };
    Ok(axum::Json(code.envelope()).into_response())
}

/// `GET /wechat/recharge/<amount>`: a recharge in fen (`payments::recharge`: settled at
/// once in sandbox mode, a JSAPI order with WeChat Pay).
async fn recharge(
    State(s): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    EnvPath(raw): EnvPath<String>,
) -> ApiResult {
    let u = identity::registered(&s, &jar).await.map_err(refusal)?;
    csrf::check(&s, &headers)?;
    // Not a number is as out of range as 0.
    let amount: i64 = raw.parse().unwrap_or(0);
    payment(payments::recharge(&s, &u, amount).await)
}

fn payment(r: Result<Payment, PayError>) -> ApiResult {
    match r.map_err(pay_err)? {
        Payment::Done => Ok(ok(SUCCESS)),
        Payment::Pay(params) => Ok(ok(params)),
    }
}

fn page_query(s: &AppState, req: &PageRequest) -> Result<PageQuery, ApiError> {
    let t = |v: &Option<String>, default: i64| -> Result<i64, ApiError> {
        match v.as_deref().map(str::trim).filter(|x| !x.is_empty()) {
            None => Ok(default),
            Some(x) => parse(x, s.tz).ok_or_else(|| {
                ApiError::bad_request(
                    StatusCode::BAD_REQUEST,
                    "times must look like 2017-07-01 23:23:23",
                )
            }),
        }
    };
    Ok(PageQuery {
        page: req.page.max(1) as i64,
        size: req.size.clamp(1, 100) as i64,
        from: t(&req.start_time, i64::MIN)?,
        to: t(&req.end_time, i64::MAX)?,
    })
}

/// `POST /wechat/recharge/list`.
async fn recharge_list(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<PageRequest>,
) -> ApiResult {
    let u = identity::signed_in(&s, &jar).await.map_err(refusal)?;
    let q = page_query(&s, &req)?;
    let crate::services::Page { total, rows } = payments::recharges(&s, u.id, &q).await?;
    let info = user_info(&u, s.tz);
    Ok(ok(Page {
        total,
        data: rows
            .into_iter()
            .map(|r| RechargeItem {
                id: r.id,
                user: info.clone(),
                amount: r.amount,
                transaction_id: r.transaction_id,
                pay_time: wire(r.pay_time, s.tz),
                utime: wire(r.utime, s.tz),
                ctime: wire(r.ctime, s.tz),
            })
            .collect(),
    }))
}

/// `POST /wechat/expense/list` (`cost_time` in minutes, as the seed divides by 60).
async fn expense_list(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<PageRequest>,
) -> ApiResult {
    let u = identity::signed_in(&s, &jar).await.map_err(refusal)?;
    let q = page_query(&s, &req)?;
    let crate::services::Page { total, rows } = orders::expenses(&s, u.id, &q).await?;
    Ok(ok(Page {
        total,
        data: rows
            .into_iter()
            .map(|r| ExpenseItem {
                id: r.id,
                user_id: r.user_id,
                device_id: r.device_id,
                province: r.province,
                city: r.city,
                area: r.area,
                location: r.location,
                cost_money: r.cost_money,
                ctime: wire(r.started_at, s.tz),
                utime: wire(r.utime, s.tz),
                end_time: wire(r.ended_at, s.tz),
                cost_time: r.billed_ms / 1000 / 60,
            })
            .collect(),
    }))
}

#[derive(serde::Deserialize)]
struct OrdersQuery {
    page: Option<u32>,
    size: Option<u32>,
}

/// `GET /wechat/orders[?page&size]`: the user's postpaid orders, unpaid first.
async fn orders(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvQuery(q): EnvQuery<OrdersQuery>,
) -> ApiResult {
    let u = identity::signed_in(&s, &jar).await.map_err(refusal)?;
    let size = q.size.unwrap_or(10).clamp(1, 100) as i64;
    let page = q.page.unwrap_or(1).max(1) as i64;
    let crate::services::Page { total, rows } = orders::of_user(&s, u.id, page, size).await?;
    Ok(ok(Page {
        total,
        data: rows
            .into_iter()
            .map(|o| OrderItem {
                order_id: o.id,
                device_code: o.device_code,
                cost_money: o.amount,
                cost_time: orders::billed_minutes(s.coord.config(), o.billed_ms),
                ctime: wire(o.started_at, s.tz),
                end_time: wire(o.ended_at, s.tz),
                paid: o.paid,
            })
            .collect(),
    }))
}

/// `POST /wechat/order/pay {orderId}`: pays a postpaid order (`payments::pay_order`).
async fn order_pay(
    State(s): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<OrderPayRequest>,
) -> ApiResult {
    let u = identity::signed_in(&s, &jar).await.map_err(refusal)?;
    csrf::check(&s, &headers)?;
    payment(payments::pay_order(&s, &u, &req.order_id).await)
}
