//! WeChat sign-in through the telecom open platform (`identity.mode = "open189"`, seed
//! 004, issue 6), the app quick entry and the JS-SDK signature.
//!
//! The dance: a phone without a valid session that opens a phone page (`GET
//! /windows/login/<code>`, `GET /wechat/*`) is sent through `getBaseUrl` with our own
//! return URL `/wechat/oauth/cb/<nonce>` as the platform's `state` (the platform appends
//! `?code=`). The nonce is random, lives in the return URL's path and in a short signed
//! cookie (`kioskd_pre`, with the deadline, the number of restarts and the page to go
//! back to), so a forged or replayed callback finds no matching cookie. The code becomes
//! an openid (`getOpenidByCode`, server side only); an expired code (`40005`) restarts the
//! dance (at most twice). Then the session cookie is set (rotated) and the phone goes
//! back to the page it opened, which must match `identity.return_paths`.
//!
//! When the platform's appid cannot pay (`wechatpay.platform_appid_is_merchant = false`)
//! a silent `snsapi_base` pass of kioskd's own account follows once per user and stores
//! the payment openid (`/wechat/oauth/pay/<nonce>`).
//!
//! The platform calls and their rules (acceptable codes and tickets, which pages get a
//! JS-SDK signature) are the `platform` service's; this adapter keeps the cookies, nonces
//! and redirects.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::extract::{EnvJson, EnvPath, EnvQuery};
use super::{ApiError, ApiResult, AppState, codes, ok};
use crate::config::IdentityMode;
use crate::identity::{self, AppEntry, PRE_COOKIE};
use crate::platform::{self, JsapiError};
use crate::upstream::UpstreamError;

/// Routes (the callbacks exist in open189 mode only; the app entry and the JS-SDK
/// signature in every mode).
pub fn routes(mode: IdentityMode) -> Router<AppState> {
    let r = Router::new()
        .route("/wechat/app/login", get(app_login))
        .route("/wechat/jsapi/signature", post(jsapi));
    if mode == IdentityMode::Open189 {
        r.route("/wechat/oauth/cb/{nonce}", get(callback))
            .route("/wechat/oauth/pay/{nonce}", get(pay_callback))
    } else {
        r
    }
}

/// Restarts allowed after an expired code.
const MAX_RESTARTS: u32 = 2;

/// A sign-in in progress, as the pre-auth cookie carries it.
struct Pending {
    nonce: String,
    deadline: i64,
    restarts: u32,
    back: String,
}

impl Pending {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.nonce, self.deadline, self.restarts, self.back
        )
    }

    fn decode(v: &str) -> Option<Self> {
        let mut it = v.splitn(4, '|');
        Some(Self {
            nonce: it.next()?.to_string(),
            deadline: it.next()?.parse().ok()?,
            restarts: it.next()?.parse().ok()?,
            back: it.next()?.to_string(),
        })
    }

    /// The pending sign-in this callback belongs to: same nonce, not expired.
    fn matching(jar: &SignedCookieJar, nonce: &str) -> Option<Self> {
        let p = Self::decode(jar.get(PRE_COOKIE)?.value())?;
        let same = bool::from(p.nonce.as_bytes().ct_eq(nonce.as_bytes()));
        (same && p.deadline > identity::now_s()).then_some(p)
    }
}

fn secure(s: &AppState) -> bool {
    s.cfg.public.base_url.starts_with("https://")
}

fn pre_cookie(s: &AppState, p: &Pending) -> Cookie<'static> {
    let mut c = Cookie::new(PRE_COOKIE, p.encode());
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/wechat/oauth");
    c.set_secure(secure(s));
    c.set_max_age(time::Duration::seconds(s.cfg.identity.signin_ttl_seconds));
    c
}

fn drop_pre(jar: SignedCookieJar) -> SignedCookieJar {
    jar.remove(Cookie::build(PRE_COOKIE).path("/wechat/oauth"))
}

/// The page a sign-in may return to: a local path under one of the allowed prefixes,
/// else the user page.
pub fn safe_return(s: &AppState, path_and_query: &str) -> String {
    let p = path_and_query;
    let local = p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control() || "|;, \"".contains(c))
        && p.len() <= 1024;
    if local
        && s.cfg
            .identity
            .return_paths
            .iter()
            .any(|pre| !pre.is_empty() && p.starts_with(pre.as_str()))
    {
        p.to_string()
    } else {
        "/wechat/user".to_string()
    }
}

/// A sign-in failure in the phone envelope (HTTP 503 for upstream trouble).
fn upstream_failed(e: &UpstreamError) -> ApiError {
    tracing::warn!(error = %e, "sign-in at the open platform failed");
    let msg = match e {
        UpstreamError::NotConfigured(_) => {
            "微信登录未配置（open189.appid / open189.secret），请联系管理员".to_string()
        }
        UpstreamError::Platform { msg, .. } | UpstreamError::Code40005(msg) if !msg.is_empty() => {
            format!("微信登录失败：{msg}")
        }
        _ => "微信登录暂时不可用，请稍后再试".to_string(),
    };
    ApiError::status(StatusCode::SERVICE_UNAVAILABLE, codes::UPSTREAM, msg)
}

/// Sends the phone through `getBaseUrl`, remembering where it wanted to go.
pub(crate) async fn start(
    s: &AppState,
    jar: SignedCookieJar,
    back: String,
    restarts: u32,
) -> ApiResult {
    let nonce = kioskd_actors::ids::new_token();
    let return_url = format!(
        "{}/wechat/oauth/cb/{nonce}",
        s.cfg.public.base_url.trim_end_matches('/')
    );
    let redirect = platform::sign_in_url(s, &return_url)
        .await
        .map_err(|e| upstream_failed(&e))?;
    let p = Pending {
        nonce,
        deadline: identity::now_s() + s.cfg.identity.signin_ttl_seconds,
        restarts,
        back,
    };
    Ok((jar.add(pre_cookie(s, &p)), Redirect::to(&redirect)).into_response())
}

/// Middleware (open189 mode): phone pages opened without a valid session start the
/// sign-in.
pub async fn require_sign_in(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let phone_page = (path.starts_with("/windows/login/") || path.starts_with("/wechat/"))
        && !path.starts_with("/wechat/oauth/")
        && path != "/wechat/notify"
        && path != "/wechat/app/login";
    if req.method() != Method::GET || !phone_page {
        return next.run(req).await;
    }
    let jar = SignedCookieJar::from_headers(req.headers(), s.cookie_key.clone());
    if identity::openid(&jar).is_some() {
        return next.run(req).await;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.to_string());
    let back = safe_return(&s, &pq);
    start(&s, jar, back, 0).await.into_response()
}

#[derive(Deserialize)]
struct CodeQ {
    code: Option<String>,
    state: Option<String>,
}

fn forged() -> ApiError {
    ApiError::status(
        StatusCode::FORBIDDEN,
        codes::NOT_SIGNED_IN,
        "登录状态无效或已过期，请重新打开页面",
    )
}

fn no_code() -> ApiError {
    ApiError::bad_request(
        StatusCode::BAD_REQUEST,
        "the callback carries no valid code",
    )
}

/// `GET /wechat/oauth/cb/<nonce>?code=`: the platform sends the phone back here.
async fn callback(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvPath(nonce): EnvPath<String>,
    EnvQuery(q): EnvQuery<CodeQ>,
) -> ApiResult {
    let p = Pending::matching(&jar, &nonce).ok_or_else(forged)?;
    let code = q
        .code
        .filter(|c| platform::valid_code(c))
        .ok_or_else(no_code)?;
    let openid = match platform::openid_for_code(&s, &code).await {
        Ok(o) => o,
        Err(UpstreamError::Code40005(_)) if p.restarts < MAX_RESTARTS => {
            // The code expired on the way: start over (a fresh nonce and code).
            return start(&s, drop_pre(jar), p.back, p.restarts + 1).await;
        }
        Err(e) => return Err(upstream_failed(&e)),
    };
    let signed = identity::platform_sign_in(&s, &openid).await?;
    let jar = identity::sign_in_for(jar, &openid, s.cfg.identity.session_ttl_seconds, secure(&s));
    if signed.needs_pay_openid {
        let redirect_uri = format!(
            "{}/wechat/oauth/pay/{}",
            s.cfg.public.base_url.trim_end_matches('/'),
            p.nonce
        );
        let url = platform::pay_openid_url(&s, &redirect_uri, &p.nonce);
        return Ok((jar, Redirect::to(&url)).into_response());
    }
    Ok((drop_pre(jar), Redirect::to(&p.back)).into_response())
}

/// `GET /wechat/oauth/pay/<nonce>?code=&state=`: the silent pass of kioskd's own account
/// returns here with a code for the payment openid.
async fn pay_callback(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvPath(nonce): EnvPath<String>,
    EnvQuery(q): EnvQuery<CodeQ>,
) -> ApiResult {
    let p = Pending::matching(&jar, &nonce).ok_or_else(forged)?;
    if q.state.as_deref() != Some(p.nonce.as_str()) {
        return Err(forged());
    }
    let openid = identity::openid(&jar).ok_or_else(forged)?;
    let code = q
        .code
        .filter(|c| platform::valid_code(c))
        .ok_or_else(no_code)?;
    let pay_openid = platform::pay_openid_for_code(&s, &code)
        .await
        .map_err(|e| upstream_failed(&e))?;
    if !identity::store_pay_openid(&s, &openid, &pay_openid).await? {
        return Err(forged());
    }
    Ok((drop_pre(jar), Redirect::to(&p.back)).into_response())
}

#[derive(Deserialize)]
struct TicketQ {
    ticket: Option<String>,
}

/// `GET /wechat/app/login?ticket=`: the telecom app's quick entry. The ticket becomes a
/// mobile at the platform; a signed-in phone gets it bound, otherwise the user who owns
/// that mobile is signed in.
///
/// Binding a mobile to a signed-in phone changes state, so a phone that carries a
/// session cookie must make this call from kioskd's own pages (`http::csrf`), before the
/// ticket is spent: a link from another site cannot bind a mobile to a victim's WeChat.
/// The telecom app should open the phone app page, which calls this with a same-origin
/// fetch.
async fn app_login(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    jar: SignedCookieJar,
    EnvQuery(q): EnvQuery<TicketQ>,
) -> ApiResult {
    let Some(ticket) = q.ticket.filter(|t| platform::valid_ticket(t)) else {
        return Err(ApiError::bad_request(
            StatusCode::BAD_REQUEST,
            "ticket must be given",
        ));
    };
    if identity::openid(&jar).is_some() {
        super::csrf::check(&s, &headers)?;
    }
    let mobile = match platform::mobile_for_ticket(&s, &ticket).await {
        Ok(m) => m,
        Err(UpstreamError::Platform { msg, .. }) => {
            return Err(ApiError::fail(
                codes::UPSTREAM,
                format!("手机号码获取失败：{msg}"),
            ));
        }
        Err(e) => return Err(upstream_failed(&e)),
    };
    match identity::app_entry(&s, &jar, &mobile)
        .await
        .map_err(super::wechat::bind_err)?
    {
        AppEntry::Bound(u) => Ok(ok(super::wechat::user_info(&u, s.tz))),
        AppEntry::Owner(u) => {
            let jar = identity::sign_in_for(
                jar,
                &u.openid,
                s.cfg.identity.session_ttl_seconds,
                secure(&s),
            );
            Ok((jar, ok(super::wechat::user_info(&u, s.tz))).into_response())
        }
        AppEntry::NotRegistered => Err(ApiError::fail(
            codes::NOT_SIGNED_IN,
            "该手机号尚未注册，请先在微信中打开并绑定手机号",
        )),
    }
}

/// `POST /wechat/jsapi/signature {url}` → `{appId, timestamp, nonceStr, signature}` for
/// `wx.config` (only pages on the host of `public.base_url`; the fragment is cut).
async fn jsapi(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<kioskd_protocol::wechat::JsapiSignatureRequest>,
) -> ApiResult {
    platform::jsapi_config(&s, &req.url)
        .await
        .map(ok)
        .map_err(|e| match e {
            JsapiError::ForeignPage => {
                ApiError::bad_request(StatusCode::BAD_REQUEST, e.to_string())
            }
            JsapiError::Upstream(e) => upstream_failed(&e),
        })
}
