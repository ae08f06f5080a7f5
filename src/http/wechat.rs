//! The phone API (`/wechat/*`, seed 001, SPEC §7): captcha and mobile binding, user
//! info, registration check, recharge and the recharge and expense lists, and the
//! postpaid orders (list and pay).

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use kioskd_actors::catalog;
use kioskd_protocol::wechat::*;
use kioskd_protocol::windows::NOT_SIGNED_IN_MSG;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

use super::extract::{EnvJson, EnvPath, EnvQuery};
use super::{AppState, bad_request, codes, csrf, fail, internal, ok};
use crate::config::{IdentityMode, PaymentsMode};
use crate::identity::{self, Caller};
use crate::sms;
use crate::store::{OrderSettle, PageQuery, Settle, UserRow, WriteError, user_state};
use crate::timefmt::{parse, wire};

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

fn not_signed_in() -> Response {
    fail(codes::NOT_SIGNED_IN, NOT_SIGNED_IN_MSG)
}

/// Any signed-in user with a row (registered or not).
async fn signed_in(s: &AppState, jar: &SignedCookieJar) -> Result<UserRow, Response> {
    match identity::caller(&s.db, jar).await {
        Ok(Caller::User(u)) if u.state != user_state::DELETED => Ok(u),
        Ok(Caller::User(_)) => Err(fail(-2, "用户已被删除")),
        Ok(_) => Err(not_signed_in()),
        Err(e) => Err(internal(e)),
    }
}

/// A registered (mobile bound), active user.
async fn registered(s: &AppState, jar: &SignedCookieJar) -> Result<UserRow, Response> {
    let u = signed_in(s, jar).await?;
    if u.mobile.is_none() {
        return Err(fail(0, "用户未注册"));
    }
    if u.state == user_state::DISABLED {
        return Err(fail(-3, "用户已被禁用"));
    }
    Ok(u)
}

/// `POST /wechat/captcha {mobile}`.
async fn captcha(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    EnvJson(req): EnvJson<CaptchaRequest>,
) -> Response {
    if !sms::valid_mobile(&req.mobile) {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "mobile must be 11 digits starting with 1",
        );
    }
    let now = s.coord.clock().now_ms();
    let client = peer.ip().to_string();
    match captchas(&s).send(&req.mobile, &client, now).await {
        Ok(Ok(())) => ok(SUCCESS),
        Ok(Err(sms::SendRefusal::Mobile)) => {
            fail(codes::RATE_LIMITED, "验证码发送过于频繁，请稍后再试")
        }
        Ok(Err(sms::SendRefusal::Client)) => fail(codes::RATE_LIMITED, "请求过于频繁，请稍后再试"),
        Err(e) => internal(e),
    }
}

fn captchas(s: &AppState) -> sms::Captchas<'_> {
    sms::Captchas {
        db: &s.db,
        cfg: &s.cfg.sms,
        sender: s.sms.as_ref(),
    }
}

/// Checks a captcha: the debug code (dev identity mode only) or the newest unused code
/// (`sms::Captchas::verify`: burns on success or after too many wrong guesses).
async fn verify_code(s: &AppState, mobile: &str, code: &str) -> Result<bool, Response> {
    let dbg = s.cfg.sms.debug_code.expose();
    if s.cfg.identity.mode == IdentityMode::Dev
        && !dbg.is_empty()
        && bool::from(dbg.as_bytes().ct_eq(code.as_bytes()))
    {
        return Ok(true);
    }
    let now = s.coord.clock().now_ms();
    captchas(s)
        .verify(mobile, code, now)
        .await
        .map_err(internal)
}

/// `POST /wechat/login {mobile, code}`: binds the mobile to the signed-in openid.
async fn login(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<LoginRequest>,
) -> Response {
    let u = match signed_in(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !sms::valid_mobile(&req.mobile) {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "mobile must be 11 digits starting with 1",
        );
    }
    if u.mobile.as_deref().is_some_and(|m| m != req.mobile) {
        return fail(codes::BINDING_CONFLICT, "当前微信已绑定其他手机号");
    }
    match s.db.user_by_mobile(&req.mobile).await {
        Ok(Some(other)) if other.id != u.id => {
            return fail(codes::BINDING_CONFLICT, "该手机号已绑定其他微信");
        }
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    match verify_code(&s, &req.mobile, &req.code).await {
        Ok(true) => {}
        Ok(false) => return fail(codes::BAD_CAPTCHA, "验证码错误或已过期"),
        Err(r) => return r,
    }
    let now = s.coord.clock().now_ms();
    match s.db.bind_mobile(u.id, &req.mobile, now).await {
        Ok(u) => {
            report_binding(&s, &u.openid, &req.mobile).await;
            ok(user_info(&u, s.tz))
        }
        Err(WriteError::Conflict) => fail(codes::BINDING_CONFLICT, "该手机号已绑定其他微信"),
        Err(WriteError::Refused) => fail(codes::BINDING_CONFLICT, "当前微信已绑定其他手机号"),
        Err(e) => internal(e),
    }
}

/// `GET /wechat/user`.
async fn user(State(s): State<AppState>, jar: SignedCookieJar) -> Response {
    match signed_in(&s, &jar).await {
        Ok(u) => ok(user_info(&u, s.tz)),
        Err(r) => r,
    }
}

/// `GET /wechat/check`: is the caller registered?
async fn check(State(s): State<AppState>, jar: SignedCookieJar) -> Response {
    let c = match identity::caller(&s.db, &jar).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let code = match c {
        Caller::Anonymous => CheckCode::NoOpenid,
        Caller::Unknown => CheckCode::NotRegistered,
        Caller::User(u) if u.state == user_state::DELETED => CheckCode::Deleted,
        Caller::User(u) if u.mobile.is_none() => CheckCode::NotRegistered,
        Caller::User(_) => CheckCode::Registered,
    };
    axum::response::IntoResponse::into_response(axum::Json(code.envelope()))
}

/// `GET /wechat/recharge/<amount>`: a recharge in fen.
async fn recharge(
    State(s): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    EnvPath(raw): EnvPath<String>,
) -> Response {
    let u = match registered(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = csrf::check(&s, &headers) {
        return r;
    }
    let amount: i64 = match raw.parse() {
        Ok(a) if a > 0 && a <= s.cfg.payments.max_recharge_fen => a,
        _ => {
            return fail(
                codes::BAD_AMOUNT,
                format!(
                    "amount must be whole fen from 1 to {}",
                    s.cfg.payments.max_recharge_fen
                ),
            );
        }
    };
    if s.cfg.payments.mode == PaymentsMode::Wechatpay {
        return wechatpay_recharge(&s, &u, amount).await;
    }
    let now = s.coord.clock().now_ms();
    let out_trade_no = format!("R{}", kioskd_actors::ids::new_token());
    if let Err(e) =
        s.db.create_recharge(u.id, amount, "sandbox", &out_trade_no, now)
            .await
    {
        return internal(e);
    }
    // Sandbox: the payment "arrives" at once, through the same settlement a verified
    // WeChat Pay notification uses.
    match s
        .db
        .settle_recharge(
            &out_trade_no,
            &format!("sandbox-{out_trade_no}"),
            amount,
            now,
        )
        .await
    {
        Ok(Settle::Credited { user_id, balance }) => {
            metrics::counter!(catalog::RECHARGED_FEN).increment(amount as u64);
            s.coord.balance_changed(user_id, balance).await;
            ok(SUCCESS)
        }
        Ok(other) => internal(format!("sandbox settlement: {other:?}")),
        Err(e) => internal(e),
    }
}

/// `payments.mode = "wechatpay"`: the order is stored first, then created at WeChat Pay
/// (JSAPI); the reply is what the H5 page passes to `getBrandWCPayRequest`. Nothing is
/// credited here: only a verified notification or the reconciler's query credits.
async fn wechatpay_recharge(s: &AppState, u: &UserRow, amount: i64) -> Response {
    let payer = match payer_openid(s, u).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = s.coord.clock().now_ms();
    // 32 characters at most (WeChat Pay's limit).
    let out_trade_no: String = format!("R{}", kioskd_actors::ids::new_token())
        .chars()
        .take(32)
        .collect();
    if let Err(e) =
        s.db.create_recharge(u.id, amount, "wechatpay", &out_trade_no, now)
            .await
    {
        return internal(e);
    }
    let (prepay, params) = match jsapi_order(s, &out_trade_no, amount, &payer).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(e) = s.db.set_prepay_id(&out_trade_no, &prepay, now).await {
        return internal(e);
    }
    ok(params)
}

/// The openid WeChat Pay knows the user by (the platform's, or kioskd's own official
/// account's from the silent sign-in), or the envelope telling the phone to reopen.
async fn payer_openid(s: &AppState, u: &UserRow) -> Result<String, Response> {
    let payer = if s.cfg.wechatpay.platform_appid_is_merchant {
        Some(u.openid.clone())
    } else {
        s.db.pay_openid(u.id).await.map_err(internal)?
    };
    payer.ok_or_else(|| {
        fail(
            codes::NO_PAY_OPENID,
            "尚未完成微信支付授权，请重新从微信打开页面",
        )
    })
}

/// Creates a JSAPI order at WeChat Pay: its prepay id and the parameters the H5 page
/// passes to `getBrandWCPayRequest`, or the envelope for a failure.
async fn jsapi_order(
    s: &AppState,
    out_trade_no: &str,
    amount: i64,
    payer: &str,
) -> Result<(String, crate::upstream::wxpay::PayParams), Response> {
    let Some(pay) = &s.upstream.pay else {
        return Err(internal("wechatpay mode without a WeChat Pay client"));
    };
    let r = pay
        .jsapi_order(out_trade_no, amount, &s.cfg.wechatpay.description, payer)
        .await;
    crate::upstream::record(crate::upstream::wxpay::op::ORDER, &r);
    r.map(|prepay| {
        let params = pay.pay_params(&prepay, out_trade_no);
        (prepay, params)
    })
    .map_err(|e| {
        tracing::warn!(error = %e, "WeChat Pay order failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(kioskd_protocol::Envelope::fail(
                codes::UPSTREAM,
                "微信支付下单失败，请稍后再试",
            )),
        )
            .into_response()
    })
}

/// Records a mobile binding for the 爱流量 `weekBind/create` callback (when
/// `open189.report_bindings`); the outbox sends it.
pub async fn report_binding(s: &AppState, openid: &str, mobile: &str) {
    if !s.cfg.open189.report_bindings {
        return;
    }
    let b = crate::upstream::open189::WeekBind {
        openid: openid.to_string(),
        deviceno: mobile.to_string(),
        operators: String::new(),
        qcellcore: String::new(),
    };
    let payload = serde_json::to_string(&b).unwrap_or_default();
    let key = format!("week_bind:{openid}:{mobile}");
    let now = s.coord.clock().now_ms();
    match s
        .db
        .outbox_add(
            crate::upstream::outbox::kind::WEEK_BIND,
            Some(&key),
            &payload,
            now,
        )
        .await
    {
        Ok(_) => s.upstream.outbox_wake.notify_one(),
        Err(e) => tracing::error!(error = %e, "could not record a binding callback"),
    }
}

fn page_query(s: &AppState, req: &PageRequest) -> Result<PageQuery, Response> {
    let t = |v: &Option<String>, default: i64| -> Result<i64, Response> {
        match v.as_deref().map(str::trim).filter(|x| !x.is_empty()) {
            None => Ok(default),
            Some(x) => parse(x, s.tz).ok_or_else(|| {
                bad_request(
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
) -> Response {
    let u = match signed_in(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = match page_query(&s, &req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match s.db.recharge_page(u.id, &q).await {
        Ok((total, rows)) => {
            let info = user_info(&u, s.tz);
            ok(Page {
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
            })
        }
        Err(e) => internal(e),
    }
}

/// `POST /wechat/expense/list` (`cost_time` in minutes, as the seed divides by 60).
async fn expense_list(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<PageRequest>,
) -> Response {
    let u = match signed_in(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = match page_query(&s, &req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match s.db.expense_page(u.id, &q).await {
        Ok((total, rows)) => ok(Page {
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
        }),
        Err(e) => internal(e),
    }
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
) -> Response {
    let u = match signed_in(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let size = q.size.unwrap_or(10).clamp(1, 100) as i64;
    let page = q.page.unwrap_or(1).max(1) as i64;
    match s.db.orders_page(u.id, size, (page - 1) * size).await {
        Ok((total, rows)) => ok(Page {
            total,
            data: rows
                .into_iter()
                .map(|o| OrderItem {
                    order_id: o.id,
                    device_code: o.device_code,
                    cost_money: o.amount,
                    cost_time: crate::orders::billed_minutes(s.coord.config(), o.billed_ms),
                    ctime: wire(o.started_at, s.tz),
                    end_time: wire(o.ended_at, s.tz),
                    paid: o.paid,
                })
                .collect(),
        }),
        Err(e) => internal(e),
    }
}

/// `POST /wechat/order/pay {orderId}`: pays a postpaid order. Sandbox settles it at
/// once through `orders::settle_order`, the function a verified WeChat Pay notification
/// uses. Paying a paid order again answers success and changes nothing.
async fn order_pay(
    State(s): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    EnvJson(req): EnvJson<OrderPayRequest>,
) -> Response {
    let u = match signed_in(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = csrf::check(&s, &headers) {
        return r;
    }
    if !crate::orders::valid_order_id(&req.order_id) {
        return fail(codes::NO_SUCH_ORDER, "订单不存在");
    }
    let o = match s.db.order(&req.order_id).await {
        Ok(Some(o)) if o.user_id == u.id => o,
        // Someone else's order is as unknown as a missing one.
        Ok(_) => return fail(codes::NO_SUCH_ORDER, "订单不存在"),
        Err(e) => return internal(e),
    };
    if o.paid {
        return ok(SUCCESS);
    }
    if s.cfg.payments.mode != PaymentsMode::Sandbox {
        // WeChat Pay: only a verified notification (or the order query) pays it.
        let payer = match payer_openid(&s, &u).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        let out_trade_no = crate::payments::postpaid_trade_no(&o.id);
        let (prepay, params) = match jsapi_order(&s, &out_trade_no, o.amount, &payer).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        // Kept so the reconciler can settle it by query if no notification comes.
        let now = s.coord.clock().now_ms();
        if let Err(e) =
            s.db.add_order_payment(&out_trade_no, &o.id, o.amount, &prepay, now)
                .await
        {
            return internal(e);
        }
        return ok(params);
    }
    match crate::orders::settle_order(&s, &o.id, "sandbox", &format!("sandbox-{}", o.id), o.amount)
        .await
    {
        Ok(OrderSettle::Paid { .. } | OrderSettle::AlreadyPaid { .. }) => ok(SUCCESS),
        Ok(other) => internal(format!("sandbox order settlement: {other:?}")),
        Err(e) => internal(e),
    }
}
