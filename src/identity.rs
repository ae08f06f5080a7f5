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

/// The signed-in openid, if any.
pub fn openid(jar: &SignedCookieJar) -> Option<String> {
    jar.get(COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

/// Signs a phone in.
pub fn sign_in(jar: SignedCookieJar, openid: &str) -> SignedCookieJar {
    let mut c = Cookie::new(COOKIE, openid.to_string());
    c.set_http_only(true);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
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
