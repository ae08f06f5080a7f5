//! The phone's identity: a signed session cookie holding the user's openid. It is set by
//! the identity provider (`/dev/login` in dev mode; WeChat OAuth otherwise) and never
//! taken from anything else the client sends.

use axum_extra::extract::SignedCookieJar;
use axum_extra::extract::cookie::{Cookie, Key, SameSite};
use sha2::{Digest, Sha512};

use crate::store::{Db, UserRow};
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
pub async fn caller(db: &Db, jar: &SignedCookieJar) -> Result<Caller, StoreError> {
    let Some(openid) = openid(jar) else {
        return Ok(Caller::Anonymous);
    };
    Ok(match db.user_by_openid(&openid).await? {
        Some(u) => Caller::User(u),
        None => Caller::Unknown,
    })
}

/// A valid openid as the dev provider accepts it.
pub fn valid_openid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
