//! Dialect A (`/windows/*`, seed 000, SPEC §5): the "windows" kiosk client and the
//! phone's scan, offline and status calls. Every business failure is HTTP 200 with
//! `success:false`; kiosks in the field depend on the exact shapes.

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use kioskd_actors::device::{
    DeviceRefusal, GameUpdate, MaintainLogin, MaintainLogout, StartRefusal,
};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::UserRef;
use kioskd_actors::session::SessionView;
use kioskd_actors::{CoordError, DeviceStatus as ActorStatus, EndReason};
use kioskd_protocol::windows::*;
use serde::Deserialize;
use std::net::SocketAddr;

use super::extract::{EnvJson, EnvPath, EnvQuery};
use super::legacy::{self, Trust, Verdict};
use super::{AppState, bad_request, codes, csrf, fail, internal, ok};
use crate::identity::{self, Caller};
use crate::maintainers::{self, LoginRefusal};
use crate::store::user_state;
use crate::timefmt::wire;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/windows/login/{device_code}", get(login))
        .route("/windows/offline", get(offline))
        .route("/windows/online/status", get(online_status))
        .route("/windows/logout", post(logout))
        .route("/windows/keepalive", post(keepalive))
        .route("/windows/check", post(check))
        .route("/windows/maintain/login", post(maintain_login))
        .route("/windows/maintain/logout", post(maintain_logout))
        .route("/windows/game/list", post(game_list))
        .route(
            "/windows/game/state",
            post(game_state_post).put(game_state_put),
        )
}

fn status_of(s: ActorStatus) -> DeviceStatus {
    match s {
        ActorStatus::Free => DeviceStatus::Free,
        ActorStatus::Busy => DeviceStatus::Busy,
        ActorStatus::Lock => DeviceStatus::Lock,
        ActorStatus::Maintain => DeviceStatus::Maintain,
    }
}

/// A device code from the wire, or an envelope error.
fn device_code(raw: &str) -> Result<String, Response> {
    normalize_device_code(raw).ok_or_else(|| {
        bad_request(
            StatusCode::BAD_REQUEST,
            "device_code must be a MAC-like code such as 11-22-33-44-55-66",
        )
    })
}

fn no_device() -> Response {
    fail(codes::NO_SUCH_DEVICE, LoginCode::NoSuchDevice.message())
}

fn coord_err(e: CoordError) -> Response {
    match e {
        CoordError::NoSuchDevice => no_device(),
        other => internal(other),
    }
}

/// The seed's session object (plus `openid` and `cur_time`).
pub fn session_object(v: &SessionView, tz: chrono_tz::Tz) -> SessionObject {
    SessionObject {
        id: v.id,
        user_id: v.user_id,
        device_id: v.device_id,
        cost_money: v.cost_money,
        ctime: wire(v.started_at, tz),
        utime: wire(v.now, tz),
        cost_time: v.cost_time,
        charge_mode: v.charge_mode,
        balance_account: v.balance,
        device_code: v.device_code.clone(),
        openid: v.openid.clone(),
        cur_time: wire(v.now, tz),
    }
}

/// The signed-in, registered, allowed user, or the dialect's refusal.
async fn phone_user(
    s: &AppState,
    jar: &SignedCookieJar,
) -> Result<crate::store::UserRow, Response> {
    match identity::caller(&s.db, jar).await {
        Err(e) => Err(internal(e)),
        Ok(Caller::User(u)) if u.mobile.is_some() => match u.state {
            user_state::DELETED => Err(fail(
                LoginCode::UserDeleted.code(),
                LoginCode::UserDeleted.message(),
            )),
            user_state::DISABLED => Err(fail(
                LoginCode::UserDisabled.code(),
                LoginCode::UserDisabled.message(),
            )),
            _ => Ok(u),
        },
        Ok(_) => Err(fail(codes::NOT_SIGNED_IN, NOT_SIGNED_IN_MSG)),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    from: Option<String>,
}

/// `GET /windows/login/<device_code>`: the phone scanned the kiosk's QR code.
///
/// A plain navigation (the WeChat camera opening the QR code's URL, a link from anywhere)
/// never starts anything: without `from=playing` it lands on the phone app page
/// (`phone.app_url`) or, with none configured, on a page that asks to confirm. A start
/// (`from=playing`) must come from kioskd's own pages (`http::csrf`).
async fn login(
    State(s): State<AppState>,
    EnvPath(raw_code): EnvPath<String>,
    EnvQuery(q): EnvQuery<LoginQuery>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Response {
    let app = s.cfg.phone.app_url.trim();
    if q.from.as_deref() != Some("playing") {
        let enc: String = url_escape(&raw_code);
        if app.is_empty() {
            return confirm_page(&enc);
        }
        // Hand over to the phone app page, which starts with a same-origin fetch.
        let sep = if app.contains('?') { '&' } else { '?' };
        return Redirect::to(&format!("{app}{sep}device_code={enc}")).into_response();
    }
    let user = match phone_user(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = csrf::check(&s, &headers) {
        return r;
    }
    let Some(code) = normalize_device_code(&raw_code) else {
        return no_device();
    };
    let who = UserRef {
        id: user.id,
        openid: user.openid.clone(),
        balance: user.balance_account,
    };
    match s.coord.start_session(&code, who).await {
        Ok(Ok(_)) => ok(LOGIN_OK),
        Ok(Err(r)) => {
            let c = match r {
                StartRefusal::DeviceTaken => LoginCode::DeviceTaken,
                StartRefusal::UserBusyElsewhere => LoginCode::UserBusyElsewhere,
                StartRefusal::DeviceUnavailable => LoginCode::DeviceUnavailable,
                StartRefusal::UnpaidOrder => LoginCode::UnpaidOrder,
                StartRefusal::BalanceTooLow => LoginCode::BalanceTooLow,
                StartRefusal::UserNotAllowed => LoginCode::UserDisabled,
                StartRefusal::Internal => LoginCode::Internal,
            };
            fail(c.code(), c.message())
        }
        Err(CoordError::NoSuchDevice) => no_device(),
        Err(e) => {
            tracing::error!(error = %e, "starting a session failed");
            fail(LoginCode::Internal.code(), LoginCode::Internal.message())
        }
    }
}

/// With no phone app configured: a page whose link starts the session (a click on
/// kioskd's own page is a same-origin navigation). `enc` is already percent-encoded.
fn confirm_page(enc: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>开始使用</title></head><body><p>确认在这台设备上开始计费？</p>\
         <p><a href=\"/windows/login/{enc}?from=playing\">确认开始</a></p></body></html>"
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body,
    )
        .into_response()
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /windows/offline`: the phone ends its session.
async fn offline(State(s): State<AppState>, headers: HeaderMap, jar: SignedCookieJar) -> Response {
    let user = match phone_user(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(r) = csrf::check(&s, &headers) {
        return r;
    }
    match s.coord.end_for_user(user.id, EndReason::PhoneOffline).await {
        Ok(Some(_)) => ok(StatusMsg::logged_out()),
        Ok(None) => ok(StatusMsg::not_in_session(NOT_PLAYING_MSG)),
        Err(e) => internal(e),
    }
}

/// `GET /windows/online/status`: the phone's view of its session.
async fn online_status(State(s): State<AppState>, jar: SignedCookieJar) -> Response {
    let user = match phone_user(&s, &jar).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match s.coord.user_session(user.id).await {
        Ok(Some(v)) => ok(session_object(&v, s.tz)),
        Ok(None) => fail(NOT_PLAYING_CODE, NOT_PLAYING_MSG),
        Err(e) => internal(e),
    }
}

/// `POST /windows/logout {token}`: by the session's kiosk only (`http::legacy`): a
/// signed request for a device with a secret, else a call from the kiosk's address.
async fn logout(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    EnvJson(req): EnvJson<TokenRequest>,
) -> Response {
    let code = match s.db.running_session_by_token(&req.token).await {
        Ok(Some((code, _))) => code,
        Ok(None) => return ok(StatusMsg::not_in_session("token is not in session")),
        Err(e) => return internal(e),
    };
    match legacy::trust(&s, &headers, &code).await {
        Ok(Trust::Signed) => {}
        Ok(Trust::Unsigned) => {
            if s.legacy.observe(&s, &code, peer.ip()) != Verdict::Counts {
                return fail(
                    codes::NOT_THE_KIOSK,
                    "logout must come from the session's kiosk",
                );
            }
        }
        Ok(Trust::Refused) => return legacy::signature_required(),
        Ok(Trust::Unknown) => return ok(StatusMsg::not_in_session("token is not in session")),
        Err(r) => return r,
    }
    match s
        .coord
        .end_by_token(&req.token, EndReason::UserLogout)
        .await
    {
        Ok(Some(_)) => ok(StatusMsg::logged_out()),
        Ok(None) => ok(StatusMsg::not_in_session("token is not in session")),
        Err(e) => internal(e),
    }
}

/// `POST /windows/keepalive {token, device_code}`: counts only from the session's kiosk
/// (`http::legacy`); a keepalive from a candidate new address is answered with the
/// session but does not keep it alive.
async fn keepalive(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    EnvJson(req): EnvJson<KeepaliveRequest>,
) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match legacy::trust(&s, &headers, &code).await {
        Ok(Trust::Signed | Trust::Unknown) => {}
        Ok(Trust::Unsigned) => match s.legacy.observe(&s, &code, peer.ip()) {
            Verdict::Counts => {}
            Verdict::Pending => return uncounted_keepalive(&s, &req.token, &code).await,
            Verdict::Foreign => return ok(KeepaliveResult::dead("token is not in session")),
        },
        Ok(Trust::Refused) => return legacy::signature_required(),
        Err(r) => return r,
    }
    match s.coord.keepalive(&req.token, &code).await {
        Ok(Some(v)) => ok(KeepaliveResult::alive(session_object(&v, s.tz))),
        Ok(None) => {
            // Still a sign of life from the kiosk, whatever its token.
            let _ = s.coord.heard(&code).await;
            ok(KeepaliveResult::dead("token is not in session"))
        }
        Err(e) => internal(e),
    }
}

/// The session as a keepalive would show it, without counting as a sign of life.
async fn uncounted_keepalive(s: &AppState, token: &str, code: &str) -> Response {
    let user = match s.db.running_session_by_token(token).await {
        Ok(Some((c, user))) if c == code => user,
        Ok(_) => return ok(KeepaliveResult::dead("token is not in session")),
        Err(e) => return internal(e),
    };
    match s.coord.user_session(user).await {
        Ok(Some(v)) => ok(KeepaliveResult::alive(session_object(&v, s.tz))),
        Ok(None) => ok(KeepaliveResult::dead("token is not in session")),
        Err(e) => internal(e),
    }
}

/// `POST /windows/check {device_code}`: for a device with a secret the token goes only
/// to a signed request (`http::legacy`). A check is also the kiosk's sign of life (it
/// keeps a running session alive), so only a signed one, or for an unsigned legacy
/// kiosk one from the kiosk's address, counts; others are answered from the device's
/// state without counting.
async fn check(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    EnvJson(req): EnvJson<DeviceRequest>,
) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (reveal, counts) = match legacy::trust(&s, &headers, &code).await {
        Ok(Trust::Signed | Trust::Unknown) => (true, true),
        Ok(Trust::Unsigned) => (
            true,
            s.legacy.observe(&s, &code, peer.ip()) == Verdict::Counts,
        ),
        Ok(Trust::Refused) => (false, false),
        Err(r) => return r,
    };
    let view = if counts {
        s.coord.check(&code).await.map(|v| (v.status, v.token))
    } else {
        s.coord
            .device_info(&code)
            .await
            .map(|v| (v.status, v.session.map(|(_, t, _)| t)))
    };
    match view {
        Ok((status, token)) => match token {
            Some(t) if reveal => ok(CheckResult::in_session(t, status_of(status))),
            Some(_) => ok(CheckResult {
                token: None,
                ..CheckResult::in_session(String::new(), status_of(status))
            }),
            None => ok(CheckResult::idle(status_of(status))),
        },
        Err(CoordError::NoSuchDevice) => ok(CheckResult::not_deployed()),
        Err(e) => internal(e),
    }
}

/// `POST /windows/maintain/login {device_code, username, password}`: the rules are
/// `crate::maintainers::login`'s.
async fn maintain_login(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<MaintainLoginRequest>,
) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = s.coord.clock().now_ms();
    let username = match maintainers::login(
        &s.db,
        &s.cfg.maintainers,
        &req.username,
        &req.password,
        now,
    )
    .await
    {
        Ok(Ok(u)) => u,
        Ok(Err(LoginRefusal::BadCredentials)) => {
            return fail(codes::BAD_CREDENTIALS, "用户名或密码错误");
        }
        Ok(Err(LoginRefusal::Disabled)) => return fail(codes::BAD_CREDENTIALS, "账号已被禁用"),
        Ok(Err(LoginRefusal::BackingOff(secs))) => {
            return fail(
                codes::RATE_LIMITED,
                format!("密码错误次数过多，请 {secs} 秒后再试"),
            );
        }
        Ok(Err(LoginRefusal::Busy)) => {
            return fail(codes::RATE_LIMITED, "服务器繁忙，请稍后再试");
        }
        Err(e) => return internal(e),
    };
    match s.coord.ask_device(&code, MaintainLogin { username }).await {
        Ok(Ok(())) => ok(MAINTAIN_LOGIN_OK),
        Ok(Err(DeviceRefusal::Internal)) => internal("device status"),
        Ok(Err(r)) => fail(codes::DEVICE_UNAVAILABLE, r.to_string()),
        Err(e) => coord_err(e),
    }
}

/// `POST /windows/maintain/logout {device_code, username}`.
async fn maintain_logout(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<MaintainLogoutRequest>,
) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match s
        .coord
        .ask_device(
            &code,
            MaintainLogout {
                username: req.username,
            },
        )
        .await
    {
        Ok(Ok(())) => ok("退出维护成功"),
        Ok(Err(DeviceRefusal::Internal)) => internal("device status"),
        Ok(Err(r)) => fail(codes::DEVICE_UNAVAILABLE, r.to_string()),
        Err(e) => coord_err(e),
    }
}

/// `POST /windows/game/list {device_code}`.
async fn game_list(State(s): State<AppState>, EnvJson(req): EnvJson<DeviceRequest>) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let info = match s.coord.device_info(&code).await {
        Ok(i) => i,
        Err(e) => return coord_err(e),
    };
    match s.db.device_games(info.id).await {
        Ok(games) => {
            let data: Vec<GameItem> = games
                .into_iter()
                .map(|g| GameItem {
                    need_update: g.current_version.as_deref() != Some(g.newest_version.as_str()),
                    id: g.id,
                    name: g.name,
                    current_version: g.current_version,
                    newest_version: g.newest_version,
                    url: g.url,
                    md5: g.md5,
                })
                .collect();
            ok(GameList {
                total: data.len() as i64,
                data,
            })
        }
        Err(e) => internal(e),
    }
}

async fn set_update(s: &AppState, code: &str, state: UpdateState) -> Response {
    let updating = state == UpdateState::Ing;
    let r = s.coord.ask_device(code, GameUpdate(Some(updating))).await;
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return internal(e),
        Err(e) => return coord_err(e),
    }
    if !updating {
        let id = match s.coord.device_info(code).await {
            Ok(i) => i.id,
            Err(e) => return coord_err(e),
        };
        if let Err(e) = s.db.games_current(id).await {
            return internal(e);
        }
    }
    ok(GAME_STATE_SET_OK)
}

/// `PUT /windows/game/state {device_code, update_state}`: sets the update state.
async fn game_state_put(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<GameStateRequest>,
) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match req.update_state {
        Some(st) => set_update(&s, &code, st).await,
        None => bad_request(
            StatusCode::BAD_REQUEST,
            "update_state must be \"ing\" or \"finish\"",
        ),
    }
}

/// `POST /windows/game/state`: sets with `update_state`, reads without it.
async fn game_state_post(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<GameStateRequest>,
) -> Response {
    let code = match device_code(&req.device_code) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(st) = req.update_state {
        return set_update(&s, &code, st).await;
    }
    let updating = match s.coord.ask_device(&code, GameUpdate(None)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return internal(e),
        Err(e) => return coord_err(e),
    };
    if updating {
        return ok(GameUpdateState::Ing.as_str());
    }
    let id = match s.coord.device_info(&code).await {
        Ok(i) => i.id,
        Err(e) => return coord_err(e),
    };
    match s.db.device_games(id).await {
        Ok(games) => {
            let wanted = games
                .iter()
                .any(|g| g.current_version.as_deref() != Some(g.newest_version.as_str()));
            ok(if wanted {
                GameUpdateState::Wait.as_str()
            } else {
                GameUpdateState::Finish.as_str()
            })
        }
        Err(e) => internal(e),
    }
}
