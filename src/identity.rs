//! The phone's identity: a signed session cookie holding the user's openid. It is set by
//! the identity provider (`/dev/login` in dev mode; WeChat OAuth otherwise) and never
//! taken from anything else the client sends.
//!
//! Also the phone user's rules, for every way in: who may play or pay (registered,
//! not deleted, not disabled), binding a mobile (captcha, one mobile per WeChat and one
//! WeChat per mobile), the telecom app's quick entry, and the sign-in at the open
//! platform (the user row, the profile, whether the payment openid is still missing).

use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::{Cookie, Key, SameSite};
use sha2::{Digest, Sha512};

use crate::services::Services;
use crate::store::WriteError;
pub use crate::store::{UserRow, user_state};
use kioskd_actors::ports::StoreError;

/// Cookie name.
pub const COOKIE: &str = "kioskd_sid";

/// The cookie key from a configured secret (any length), or a random one.
pub fn key(secret: &str) -> Key {
    if secret.is_empty() {
        tracing::warn!(
            "identity.cookie_secret is empty: phones must sign in again after every restart"
        );
        Key::generate()
    } else {
        Key::from(Sha512::digest(secret.as_bytes()).as_slice())
    }
}

/// Name of the short cookie that carries a sign-in in progress (its nonce, deadline,
/// restarts and return path) between the redirect out and the callback.
pub const PRE_COOKIE: &str = "kioskd_pre";

/// Default lifetime of a sign-in (the configured one is passed to `sign_in_for`).
pub const DEFAULT_TTL_SECONDS: i64 = 30 * 86_400;

pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The signed-in openid, if any. The signed value is `<openid>.<expiry unix s>`: an
/// expired sign-in counts as none even if the phone kept the cookie.
pub fn openid(jar: &SignedCookieJar) -> Option<String> {
    let c = jar.get(COOKIE)?;
    let (openid, exp) = c.value().rsplit_once('.')?;
    let exp: i64 = exp.parse().ok()?;
    (exp > now_s() && valid_openid(openid)).then(|| openid.to_string())
}

/// Signs a phone in for the default lifetime.
pub fn sign_in(jar: SignedCookieJar, openid: &str) -> SignedCookieJar {
    sign_in_for(jar, openid, DEFAULT_TTL_SECONDS, false)
}

/// Signs a phone in for `ttl_seconds`: a signed, HttpOnly, SameSite=Lax cookie that
/// expires (and is `Secure` when phones use HTTPS). A new value replaces any earlier
/// one, so the session rotates at every sign-in.
pub fn sign_in_for(
    jar: SignedCookieJar,
    openid: &str,
    ttl_seconds: i64,
    secure: bool,
) -> SignedCookieJar {
    let exp = now_s() + ttl_seconds;
    let mut c = Cookie::new(COOKIE, format!("{openid}.{exp}"));
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c.set_secure(secure);
    c.set_max_age(time::Duration::seconds(ttl_seconds));
    jar.add(c)
}

/// Who is calling, as far as the phone API cares.
pub enum Caller {
    /// No (valid) cookie.
    Anonymous,
    /// A cookie for an openid without a user row.
    Unknown,
    /// A known user.
    User(UserRow),
}

/// Resolves the caller from the cookie.
pub async fn caller(s: &Services, jar: &SignedCookieJar) -> Result<Caller, StoreError> {
    let Some(openid) = openid(jar) else {
        return Ok(Caller::Anonymous);
    };
    Ok(match s.db.user_by_openid(&openid).await? {
        Some(u) => Caller::User(u),
        None => Caller::Unknown,
    })
}

/// Why a phone caller may not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No valid sign-in, no user row (or, to play, no mobile bound).
    #[error("not signed in")]
    NotSignedIn,
    /// Signed in, no mobile bound.
    #[error("not registered")]
    NotRegistered,
    /// The user was deleted.
    #[error("user deleted")]
    Deleted,
    /// The user is disabled.
    #[error("user disabled")]
    Disabled,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A user who may start a session (dialect A's scan, offline and status): a mobile
/// bound, neither deleted nor disabled. Without a mobile the phone counts as not signed
/// in (the seed's order of checks).
pub async fn player(s: &Services, jar: &SignedCookieJar) -> Result<UserRow, Refusal> {
    match caller(s, jar).await? {
        Caller::User(u) if u.mobile.is_some() => match u.state {
            user_state::DELETED => Err(Refusal::Deleted),
            user_state::DISABLED => Err(Refusal::Disabled),
            _ => Ok(u),
        },
        _ => Err(Refusal::NotSignedIn),
    }
}

/// Any signed-in user with a row, registered or not, unless deleted.
pub async fn signed_in(s: &Services, jar: &SignedCookieJar) -> Result<UserRow, Refusal> {
    match caller(s, jar).await? {
        Caller::User(u) if u.state != user_state::DELETED => Ok(u),
        Caller::User(_) => Err(Refusal::Deleted),
        _ => Err(Refusal::NotSignedIn),
    }
}

/// A registered (mobile bound), active user: may recharge.
pub async fn registered(s: &Services, jar: &SignedCookieJar) -> Result<UserRow, Refusal> {
    let u = signed_in(s, jar).await?;
    if u.mobile.is_none() {
        return Err(Refusal::NotRegistered);
    }
    if u.state == user_state::DISABLED {
        return Err(Refusal::Disabled);
    }
    Ok(u)
}

/// Any user row behind the cookie (deleted or disabled included): for reads of the
/// user's own records.
pub async fn known(s: &Services, jar: &SignedCookieJar) -> Result<Option<UserRow>, StoreError> {
    Ok(match caller(s, jar).await? {
        Caller::User(u) => Some(u),
        _ => None,
    })
}

/// An active user (for the user's own WebSocket), or none.
pub async fn active(s: &Services, jar: &SignedCookieJar) -> Result<Option<UserRow>, StoreError> {
    Ok(match caller(s, jar).await? {
        Caller::User(u) if u.state == user_state::ACTIVE => Some(u),
        _ => None,
    })
}

/// How far a phone is registered (`GET /wechat/check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// No valid sign-in.
    NoOpenid,
    /// Signed in without a user row, or without a mobile.
    NotRegistered,
    /// The user was deleted.
    Deleted,
    /// A mobile is bound.
    Registered,
}

/// The caller's registration.
pub async fn registration(s: &Services, jar: &SignedCookieJar) -> Result<Registration, StoreError> {
    Ok(match caller(s, jar).await? {
        Caller::Anonymous => Registration::NoOpenid,
        Caller::Unknown => Registration::NotRegistered,
        Caller::User(u) if u.state == user_state::DELETED => Registration::Deleted,
        Caller::User(u) if u.mobile.is_none() => Registration::NotRegistered,
        Caller::User(_) => Registration::Registered,
    })
}

/// Why a mobile was not bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// This WeChat already has another mobile.
    #[error("this user has another mobile")]
    HasOtherMobile,
    /// The mobile belongs to another WeChat.
    #[error("the mobile belongs to another user")]
    MobileTaken,
    /// Wrong, expired or used captcha.
    #[error("bad captcha")]
    BadCaptcha,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The binding write's refusals: a unique constraint (the mobile is taken) or a check
/// (this user already has another mobile).
fn bind_refused(e: WriteError) -> BindError {
    match e {
        WriteError::Conflict => BindError::MobileTaken,
        WriteError::Refused => BindError::HasOtherMobile,
        other => BindError::Store(other),
    }
}

/// Binds `mobile` to user `u` after checking the captcha `code` (`POST /wechat/login`):
/// the cheap conflicts first, then one guess at the code, then the binding (the
/// database has the last word on a race) and its report to the open platform.
pub async fn bind_mobile(
    s: &Services,
    u: &UserRow,
    mobile: &str,
    code: &str,
) -> Result<UserRow, BindError> {
    if u.mobile.as_deref().is_some_and(|m| m != mobile) {
        return Err(BindError::HasOtherMobile);
    }
    if let Some(other) = s.db.user_by_mobile(mobile).await?
        && other.id != u.id
    {
        return Err(BindError::MobileTaken);
    }
    if !crate::sms::check_code(s, mobile, code).await? {
        return Err(BindError::BadCaptcha);
    }
    let now = s.coord.clock().now_ms();
    let u =
        s.db.bind_mobile(u.id, mobile, now)
            .await
            .map_err(bind_refused)?;
    report_binding(s, &u.openid, mobile).await;
    Ok(u)
}

/// What the telecom app's quick entry did with a mobile.
#[derive(Debug)]
pub enum AppEntry {
    /// The signed-in phone got the mobile bound.
    Bound(UserRow),
    /// No sign-in: the user who owns the mobile, to be signed in.
    Owner(UserRow),
    /// No sign-in and no (live) user owns the mobile.
    NotRegistered,
}

/// The telecom app's quick entry with the `mobile` its ticket named: a signed-in phone
/// (`openid`) gets the mobile bound (its user row made if need be), otherwise the user
/// who owns that mobile is the one to sign in.
pub async fn app_entry(
    s: &Services,
    jar: &SignedCookieJar,
    mobile: &str,
) -> Result<AppEntry, BindError> {
    let now = s.coord.clock().now_ms();
    let signed_in = match caller(s, jar).await? {
        Caller::User(u) => Some(u),
        Caller::Unknown => match openid(jar) {
            Some(o) => Some(s.db.ensure_user(&o, "", "", now).await?),
            None => None,
        },
        Caller::Anonymous => None,
    };
    match signed_in {
        Some(u) => {
            let u =
                s.db.bind_mobile(u.id, mobile, now)
                    .await
                    .map_err(bind_refused)?;
            report_binding(s, &u.openid, mobile).await;
            Ok(AppEntry::Bound(u))
        }
        None => Ok(match s.db.user_by_mobile(mobile).await? {
            Some(u) if u.state != user_state::DELETED => AppEntry::Owner(u),
            _ => AppEntry::NotRegistered,
        }),
    }
}

/// The user row of `openid`, made on first sight (the dev provider's sign-in).
pub async fn ensure_user(
    s: &Services,
    openid: &str,
    nickname: &str,
) -> Result<UserRow, StoreError> {
    let now = s.coord.clock().now_ms();
    s.db.ensure_user(openid, nickname, "", now).await
}

/// A sign-in the open platform vouched for.
#[derive(Debug)]
pub struct PlatformSignIn {
    /// The user (made on first sight).
    pub user: UserRow,
    /// WeChat Pay needs a payment openid kioskd does not have yet: the silent pass of
    /// kioskd's own official account should follow.
    pub needs_pay_openid: bool,
}

/// The open platform named `openid`: its user row (made on first sight), the profile
/// refreshed when the platform gives one (a nicety: failures are only logged), and
/// whether the payment openid is still missing.
pub async fn platform_sign_in(s: &Services, openid: &str) -> Result<PlatformSignIn, StoreError> {
    use crate::upstream::open189::op;
    let now = s.coord.clock().now_ms();
    let user = s.db.ensure_user(openid, "", "", now).await?;
    if s.upstream.open189.has_user_info() {
        match s
            .upstream
            .open189_call(op::USER_INFO, |c, t| async move {
                c.user_info(&t, openid).await
            })
            .await
        {
            Ok(pr) => {
                if let Err(e) =
                    s.db.set_profile(user.id, &pr.nickname, &pr.headimg, now)
                        .await
                {
                    tracing::warn!(error = %e, "could not store the profile");
                }
            }
            // The profile is a nicety: sign-in goes on without it.
            Err(e) => tracing::warn!(error = %e, "user info call failed"),
        }
    }
    let wanted = s.cfg.payments.mode == crate::config::PaymentsMode::Wechatpay
        && !s.cfg.wechatpay.platform_appid_is_merchant
        && s.upstream.mp.configured();
    let needs_pay_openid = wanted && matches!(s.db.pay_openid(user.id).await, Ok(None));
    Ok(PlatformSignIn {
        user,
        needs_pay_openid,
    })
}

/// Stores the payment openid kioskd's own account knows the user of `openid` by; false
/// when there is no such user.
pub async fn store_pay_openid(
    s: &Services,
    openid: &str,
    pay_openid: &str,
) -> Result<bool, StoreError> {
    let now = s.coord.clock().now_ms();
    match s.db.user_by_openid(openid).await? {
        Some(u) => {
            s.db.set_pay_openid(u.id, pay_openid, now).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Records a mobile binding for the 爱流量 `weekBind/create` callback (when
/// `open189.report_bindings`); the outbox sends it.
pub async fn report_binding(s: &Services, openid: &str, mobile: &str) {
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

/// A valid openid as the dev provider accepts it.
pub fn valid_openid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
