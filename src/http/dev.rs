//! `GET /dev/login?openid=X[&nickname=Y]`: the `dev` identity provider (routed only when
//! `identity.mode = "dev"`). Sets the phone's session cookie for that openid.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;

use super::extract::EnvQuery;
use super::{AppState, bad_request, internal, ok};
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
) -> Response {
    if !identity::valid_openid(&q.openid) {
        return bad_request(
            StatusCode::BAD_REQUEST,
            "openid must be 1-64 of [A-Za-z0-9_-]",
        );
    }
    let nick = q.nickname.unwrap_or_default();
    if nick.chars().count() > 64 {
        return bad_request(StatusCode::BAD_REQUEST, "nickname too long");
    }
    let now = s.coord.clock().now_ms();
    match s.db.ensure_user(&q.openid, &nick, "", now).await {
        Ok(u) => (
            identity::sign_in_for(
                jar,
                &q.openid,
                s.cfg.identity.session_ttl_seconds,
                s.cfg.public.base_url.starts_with("https://"),
            ),
            ok(super::wechat::user_info(&u, s.tz)),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}
