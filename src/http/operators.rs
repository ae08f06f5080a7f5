//! Operator accounts over HTTP: console sign-in and sign-out (`/ops/login`,
//! `/ops/logout`, `/ops/me`), the admins' operator list (`/ops/operators`), and
//! personal API tokens (`/ops/tokens`). Rules live in `crate::operators`; who may call
//! what is `super::authz`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::authz::{SESSION_COOKIE, same_origin};
use super::extract::{EnvJson, OpsPath};
use super::ops::{Operator, OpsError, OpsResult, body, err};
use crate::operators::OperatorError;

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/login", post(login))
        .route("/ops/logout", post(logout))
        .route("/ops/me", get(me))
        .route("/ops/operators", get(list).post(add))
        .route("/ops/operators/{username}", post(update))
        .route("/ops/tokens", get(tokens).post(create_token))
        .route("/ops/tokens/{id}", delete(revoke_token))
}

impl IntoResponse for OperatorError {
    fn into_response(self) -> Response {
        match self {
            OperatorError::Invalid(m) => err(StatusCode::BAD_REQUEST, m),
            OperatorError::BadCredentials => err(StatusCode::UNAUTHORIZED, self.to_string()),
            OperatorError::Locked(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                Json(json!({ "error": self.to_string(), "retry_after_seconds": secs })),
            )
                .into_response(),
            OperatorError::Exists => err(StatusCode::CONFLICT, self.to_string()),
            OperatorError::NotFound => err(StatusCode::NOT_FOUND, "no such operator or token"),
            OperatorError::Store(e) => super::ops::internal(e),
            OperatorError::Internal(e) => super::ops::internal(e),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

fn session_cookie(s: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if s.cfg.public.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("kioskd_op=; Path=/; Max-Age=0"))
}

/// `POST /ops/login {username, password}`: a console session cookie. A browser
/// request must come from our own pages (no sign-in from another site's form).
async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    b: Result<EnvJson<Login>, Response>,
) -> OpsResult {
    let browser = headers.contains_key("sec-fetch-site") || headers.contains_key(header::ORIGIN);
    if browser && !same_origin(&headers, &s.cfg.public.base_url) {
        return Err(OpsError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused",
        ));
    }
    let req = body(b).await?;
    let now = s.coord.clock().now_ms();
    let (secret, who) = s
        .operators
        .sign_in(&req.username, &req.password, now)
        .await
        .inspect_err(|e| {
            if matches!(e, OperatorError::BadCredentials | OperatorError::Locked(_)) {
                tracing::info!(reason = %e, "operator sign-in refused");
            }
        })?;
    tracing::info!(operator = %who.username, "operator signed in");
    let ttl = s.cfg.ops.session_ttl_seconds as i64;
    Ok((
        [(header::SET_COOKIE, session_cookie(&s, &secret, ttl))],
        Json(json!({ "username": who.username, "role": who.role, "sites": who.sites })),
    )
        .into_response())
}

/// `POST /ops/logout`: ends the console session (the cookie is cleared either way).
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> OpsResult {
    if let Some(c) = CookieJar::from_headers(&headers).get(SESSION_COOKIE) {
        s.operators.sign_out(c.value()).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session_cookie(&s, "", 0))],
    )
        .into_response())
}

/// `GET /ops/me`: who is signed in.
async fn me(Operator(p): Operator) -> Json<crate::operators::Principal> {
    Json(p)
}

async fn list(_: Operator, State(s): State<AppState>) -> OpsResult {
    let list = s.operators.list().await?;
    Ok(Json(json!({ "data": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddOperator {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    sites: Vec<String>,
}

/// `POST /ops/operators {username, password, role, sites?}` (admins).
async fn add(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<AddOperator>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let v = s
        .operators
        .add(
            &req.username,
            &req.password,
            &req.role,
            &req.sites,
            s.coord.clock().now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateOperator {
    role: Option<String>,
    sites: Option<Vec<String>>,
    disabled: Option<bool>,
    password: Option<String>,
    /// Why (kept by the audit log).
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `POST /ops/operators/{username} {role?, sites?, disabled?, password?}` (admins). An
/// admin cannot disable or demote themselves (someone must be able to undo it).
async fn update(
    Operator(p): Operator,
    State(s): State<AppState>,
    OpsPath(username): OpsPath<String>,
    b: Result<EnvJson<UpdateOperator>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    if username == p.username
        && (req.disabled == Some(true) || req.role.as_deref().is_some_and(|r| r != "admin"))
    {
        return Err(OpsError::conflict(
            "you cannot disable or demote yourself; ask another admin",
        ));
    }
    let v = s
        .operators
        .update(
            &username,
            req.role.as_deref(),
            req.sites,
            req.disabled,
            req.password.as_deref(),
        )
        .await?;
    Ok(Json(v).into_response())
}

fn own_id(p: &crate::operators::Principal) -> Result<i64, OpsError> {
    p.id.ok_or_else(|| {
        OpsError::bad("the shared ops token has no personal tokens; sign in as an operator")
    })
}

async fn tokens(Operator(p): Operator, State(s): State<AppState>) -> OpsResult {
    let id = own_id(&p)?;
    let list = s.operators.tokens(id).await?;
    Ok(Json(json!({ "data": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

/// `POST /ops/tokens {name}`: a personal API token for `kioskd ops`, shown once.
async fn create_token(
    Operator(p): Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<NewToken>, Response>,
) -> OpsResult {
    let id = own_id(&p)?;
    let req = body(b).await?;
    let (tid, token) = s
        .operators
        .create_token(id, &req.name, s.coord.clock().now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "id": tid, "name": req.name.trim(), "token": token })),
    )
        .into_response())
}

async fn revoke_token(
    Operator(p): Operator,
    State(s): State<AppState>,
    OpsPath(tid): OpsPath<i64>,
) -> OpsResult {
    let id = own_id(&p)?;
    s.operators.revoke_token(id, tid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
