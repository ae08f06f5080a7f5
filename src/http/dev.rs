//! `GET /dev/login?openid=X[&nickname=Y]`: the `dev` identity provider (routed only when
//! `identity.mode = "dev"`). Sets the phone's session cookie for that openid.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;

use super::extract::EnvQuery;
use super::{ApiError, ApiResult, AppState, ok};
use crate::identity;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/dev/login", get(login))
}

#[derive(Deserialize)]
struct Q {
    openid: String,
    nickname: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    jar: SignedCookieJar,
    EnvQuery(q): EnvQuery<Q>,
) -> ApiResult {
    if !identity::valid_openid(&q.openid) {
        return Err(ApiError::bad_request(
            StatusCode::BAD_REQUEST,
            "openid must be 1-64 of [A-Za-z0-9_-]",
        ));
    }
    let nick = q.nickname.unwrap_or_default();
    if nick.chars().count() > 64 {
        return Err(ApiError::bad_request(
            StatusCode::BAD_REQUEST,
            "nickname too long",
        ));
    }
    let u = identity::ensure_user(&s, &q.openid, &nick).await?;
    let jar = identity::sign_in_for(
        jar,
        &q.openid,
        s.cfg.identity.session_ttl_seconds,
        s.cfg.public.base_url.starts_with("https://"),
    );
    Ok((jar, ok(super::wechat::user_info(&u, s.tz))).into_response())
}
