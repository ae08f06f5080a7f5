//! Dialect A (`/windows/*`, seed 000, SPEC §5): the "windows" kiosk client and the
//! phone's scan, offline and status calls. Every business failure is HTTP 200 with
//! `success:false`; kiosks in the field depend on the exact shapes.

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::SignedCookieJar;
use kioskd_actors::device::{DeviceRefusal, MaintainLogout, StartRefusal};
use kioskd_actors::ids::normalize_device_code;
use kioskd_actors::ports::UserRef;
use kioskd_actors::session::SessionView;
use kioskd_actors::{CoordError, DeviceStatus as ActorStatus, EndReason};
use kioskd_protocol::windows::*;
use serde::Deserialize;
use std::net::SocketAddr;

use super::extract::{EnvJson, EnvPath, EnvQuery};
use super::legacy::{self, Trust, Verdict};
use super::{ApiError, ApiResult, AppState, codes, csrf, ok};
use crate::devices;
use crate::games::{self, GamesError};
use crate::identity::{self, Refusal};
use crate::maintainers::{self, LoginRefusal, MaintainError};
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
fn device_code(raw: &str) -> Result<String, ApiError> {
    normalize_device_code(raw).ok_or_else(|| {
        ApiError::bad_request(
            StatusCode::BAD_REQUEST,
            "device_code must be a MAC-like code such as 11-22-33-44-55-66",
        )
    })
}

fn no_device() -> ApiError {
    ApiError::fail(codes::NO_SUCH_DEVICE, LoginCode::NoSuchDevice.message())
}

fn coord_err(e: CoordError) -> ApiError {
    match e {
        CoordError::NoSuchDevice => no_device(),
        other => ApiError::internal(other),
    }
}

/// A device's refusal of a maintenance command.
fn device_refusal(r: DeviceRefusal) -> ApiError {
    match r {
        DeviceRefusal::Internal => ApiError::internal("device status"),
        r => ApiError::fail(codes::DEVICE_UNAVAILABLE, r.to_string()),
    }
}

fn games_err(e: GamesError) -> ApiError {
    match e {
        GamesError::NoSuchDevice => no_device(),
        GamesError::Refused(r) => ApiError::internal(r),
        GamesError::Coord(e) => ApiError::internal(e),
        GamesError::Store(e) => ApiError::internal(e),
    }
}

/// The phone caller's refusal in this dialect.
fn refusal(r: Refusal) -> ApiError {
    let c = match r {
        Refusal::Deleted => LoginCode::UserDeleted,
        Refusal::Disabled => LoginCode::UserDisabled,
        Refusal::NotSignedIn | Refusal::NotRegistered => {
            return ApiError::fail(codes::NOT_SIGNED_IN, NOT_SIGNED_IN_MSG);
        }
        Refusal::Store(e) => return ApiError::internal(e),
    };
    ApiError::fail(c.code(), c.message())
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
) -> ApiResult {
    let app = s.cfg.phone.app_url.trim();
    if q.from.as_deref() != Some("playing") {
        let enc: String = url_escape(&raw_code);
        if app.is_empty() {
            return Ok(confirm_page(&enc));
        }
        // Hand over to the phone app page, which starts with a same-origin fetch.
        let sep = if app.contains('?') { '&' } else { '?' };
        return Ok(Redirect::to(&format!("{app}{sep}device_code={enc}")).into_response());
    }
    let user = identity::player(&s, &jar).await.map_err(refusal)?;
    csrf::check(&s, &headers)?;
    let Some(code) = normalize_device_code(&raw_code) else {
        return Err(no_device());
    };
    let who = UserRef {
        id: user.id,
        openid: user.openid.clone(),
        balance: user.balance_account,
    };
    let c = match s.coord.start_session(&code, who).await {
        Ok(Ok(_)) => return Ok(ok(LOGIN_OK)),
        Ok(Err(r)) => match r {
            StartRefusal::DeviceTaken => LoginCode::DeviceTaken,
            StartRefusal::UserBusyElsewhere => LoginCode::UserBusyElsewhere,
            StartRefusal::DeviceUnavailable => LoginCode::DeviceUnavailable,
            StartRefusal::UnpaidOrder => LoginCode::UnpaidOrder,
            StartRefusal::BalanceTooLow => LoginCode::BalanceTooLow,
            StartRefusal::UserNotAllowed => LoginCode::UserDisabled,
            StartRefusal::Internal => LoginCode::Internal,
        },
        Err(CoordError::NoSuchDevice) => return Err(no_device()),
        Err(e) => {
            tracing::error!(error = %e, "starting a session failed");
            LoginCode::Internal
        }
    };
    Err(ApiError::fail(c.code(), c.message()))
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
async fn offline(State(s): State<AppState>, headers: HeaderMap, jar: SignedCookieJar) -> ApiResult {
    let user = identity::player(&s, &jar).await.map_err(refusal)?;
    csrf::check(&s, &headers)?;
    Ok(
        match s
            .coord
            .end_for_user(user.id, EndReason::PhoneOffline)
            .await?
        {
            Some(_) => ok(StatusMsg::logged_out()),
            None => ok(StatusMsg::not_in_session(NOT_PLAYING_MSG)),
        },
    )
}

/// `GET /windows/online/status`: the phone's view of its session.
async fn online_status(State(s): State<AppState>, jar: SignedCookieJar) -> ApiResult {
    let user = identity::player(&s, &jar).await.map_err(refusal)?;
    match s.coord.user_session(user.id).await? {
        Some(v) => Ok(ok(session_object(&v, s.tz))),
        None => Err(ApiError::fail(NOT_PLAYING_CODE, NOT_PLAYING_MSG)),
    }
}

/// `POST /windows/logout {token}`: by the session's kiosk only (`http::legacy`): a
/// signed request for a device with a secret, else a call from the kiosk's address.
async fn logout(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    EnvJson(req): EnvJson<TokenRequest>,
) -> ApiResult {
    let not_in_session = || Ok(ok(StatusMsg::not_in_session("token is not in session")));
    let Some(running) = devices::running_session(&s, &req.token).await? else {
        return not_in_session();
    };
    let code = running.device_code;
    match legacy::trust(&s, &headers, &code).await? {
        Trust::Signed => {}
        Trust::Unsigned => {
            if s.legacy.observe(&s, &code, peer.ip()) != Verdict::Counts {
                return Err(ApiError::fail(
                    codes::NOT_THE_KIOSK,
                    "logout must come from the session's kiosk",
                ));
            }
        }
        Trust::Refused => return Err(legacy::signature_required()),
        Trust::Unknown => return not_in_session(),
    }
    match s
        .coord
        .end_by_token(&req.token, EndReason::UserLogout)
        .await?
    {
        Some(_) => Ok(ok(StatusMsg::logged_out())),
        None => not_in_session(),
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
) -> ApiResult {
    let code = device_code(&req.device_code)?;
    let dead = || Ok(ok(KeepaliveResult::dead("token is not in session")));
    match legacy::trust(&s, &headers, &code).await? {
        Trust::Signed | Trust::Unknown => {}
        Trust::Unsigned => match s.legacy.observe(&s, &code, peer.ip()) {
            Verdict::Counts => {}
            Verdict::Pending => {
                // The session as a keepalive would show it, without counting as a sign
                // of life.
                return match devices::peek_session(&s, &req.token, &code)
                    .await
                    .map_err(ApiError::internal)?
                {
                    Some(v) => Ok(ok(KeepaliveResult::alive(session_object(&v, s.tz)))),
                    None => dead(),
                };
            }
            Verdict::Foreign => return dead(),
        },
        Trust::Refused => return Err(legacy::signature_required()),
    }
    match s.coord.keepalive(&req.token, &code).await? {
        Some(v) => Ok(ok(KeepaliveResult::alive(session_object(&v, s.tz)))),
        None => {
            // Still a sign of life from the kiosk, whatever its token.
            let _ = s.coord.heard(&code).await;
            dead()
        }
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
) -> ApiResult {
    let code = device_code(&req.device_code)?;
    let (reveal, counts) = match legacy::trust(&s, &headers, &code).await? {
        Trust::Signed | Trust::Unknown => (true, true),
        Trust::Unsigned => (
            true,
            s.legacy.observe(&s, &code, peer.ip()) == Verdict::Counts,
        ),
        Trust::Refused => (false, false),
    };
    let view = if counts {
        s.coord.check(&code).await.map(|v| (v.status, v.token))
    } else {
        s.coord
            .device_info(&code)
            .await
            .map(|v| (v.status, v.session.map(|(_, t, _)| t)))
    };
    Ok(match view {
        Ok((status, token)) => match token {
            Some(t) if reveal => ok(CheckResult::in_session(t, status_of(status))),
            Some(_) => ok(CheckResult {
                token: None,
                ..CheckResult::in_session(String::new(), status_of(status))
            }),
            None => ok(CheckResult::idle(status_of(status))),
        },
        Err(CoordError::NoSuchDevice) => ok(CheckResult::not_deployed()),
        Err(e) => return Err(e.into()),
    })
}

/// `POST /windows/maintain/login {device_code, username, password}`: the rules are
/// `crate::maintainers`'.
async fn maintain_login(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<MaintainLoginRequest>,
) -> ApiResult {
    let code = device_code(&req.device_code)?;
    match maintainers::enter(&s, &code, &req.username, &req.password).await {
        Ok(()) => Ok(ok(MAINTAIN_LOGIN_OK)),
        Err(MaintainError::SignIn(r)) => Err(match r {
            LoginRefusal::BadCredentials => {
                ApiError::fail(codes::BAD_CREDENTIALS, "用户名或密码错误")
            }
            LoginRefusal::Disabled => ApiError::fail(codes::BAD_CREDENTIALS, "账号已被禁用"),
            LoginRefusal::BackingOff(secs) => ApiError::fail(
                codes::RATE_LIMITED,
                format!("密码错误次数过多，请 {secs} 秒后再试"),
            ),
            LoginRefusal::Busy => ApiError::fail(codes::RATE_LIMITED, "服务器繁忙，请稍后再试"),
        }),
        Err(MaintainError::Device(r)) => Err(device_refusal(r)),
        Err(MaintainError::Coord(e)) => Err(coord_err(e)),
        Err(MaintainError::Store(e)) => Err(ApiError::internal(e)),
    }
}

/// `POST /windows/maintain/logout {device_code, username}`.
async fn maintain_logout(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<MaintainLogoutRequest>,
) -> ApiResult {
    let code = device_code(&req.device_code)?;
    s.coord
        .ask_device(
            &code,
            MaintainLogout {
                username: req.username,
            },
        )
        .await
        .map_err(coord_err)?
        .map_err(device_refusal)?;
    Ok(ok("退出维护成功"))
}

/// `POST /windows/game/list {device_code}`.
async fn game_list(State(s): State<AppState>, EnvJson(req): EnvJson<DeviceRequest>) -> ApiResult {
    let code = device_code(&req.device_code)?;
    let data: Vec<GameItem> = games::list(&s, &code)
        .await
        .map_err(games_err)?
        .into_iter()
        .map(|g| GameItem {
            need_update: games::needs_update(&g),
            id: g.id,
            name: g.name,
            current_version: g.current_version,
            newest_version: g.newest_version,
            url: g.url,
            md5: g.md5,
        })
        .collect();
    Ok(ok(GameList {
        total: data.len() as i64,
        data,
    }))
}

async fn set_update(s: &AppState, code: &str, state: UpdateState) -> ApiResult {
    games::set_updating(s, code, state == UpdateState::Ing)
        .await
        .map_err(games_err)?;
    Ok(ok(GAME_STATE_SET_OK))
}

/// `PUT /windows/game/state {device_code, update_state}`: sets the update state.
async fn game_state_put(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<GameStateRequest>,
) -> ApiResult {
    let code = device_code(&req.device_code)?;
    match req.update_state {
        Some(st) => set_update(&s, &code, st).await,
        None => Err(ApiError::bad_request(
            StatusCode::BAD_REQUEST,
            "update_state must be \"ing\" or \"finish\"",
        )),
    }
}

/// `POST /windows/game/state`: sets with `update_state`, reads without it.
async fn game_state_post(
    State(s): State<AppState>,
    EnvJson(req): EnvJson<GameStateRequest>,
) -> ApiResult {
    let code = device_code(&req.device_code)?;
    if let Some(st) = req.update_state {
        return set_update(&s, &code, st).await;
    }
    let state = match games::state(&s, &code).await.map_err(games_err)? {
        games::UpdateState::Updating => GameUpdateState::Ing,
        games::UpdateState::Wanted => GameUpdateState::Wait,
        games::UpdateState::Current => GameUpdateState::Finish,
    };
    Ok(ok(state.as_str()))
}
