//! Maintainer sign-in (`/windows/maintain/login`): the rules, apart from the handler.
//!
//! - Each attempt is claimed in one conditional statement ([`Db::maintainer_claim_attempt`])
//!   that counts it as a failure until the password proves right: parallel wrong
//!   passwords can never be judged more often than the rules allow.
//! - After `max_failures` consecutive failures the account backs off for
//!   `backoff_base_seconds`, doubling per further failure up to `backoff_max_seconds`; a
//!   success clears it. A stranger can delay a maintainer, never lock them out for good.
//! - argon2 (19 MiB per verification) runs behind a small semaphore, so a flood of logins
//!   queues instead of taking gigabytes; a login that cannot get a slot within
//!   `verify_wait_ms` is answered "busy" without touching the account.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Semaphore;

use kioskd_actors::CoordError;
use kioskd_actors::device::{DeviceRefusal, MaintainLogin};
use kioskd_actors::ports::StoreError;

use crate::config::Maintainers as Policy;
use crate::passwords;
use crate::services::Services;
use crate::store::Db;

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Unknown username or wrong password (indistinguishable on purpose).
    BadCredentials,
    /// The account is disabled by an operator.
    Disabled,
    /// Too many failures: try again after this many seconds.
    BackingOff(i64),
    /// Every verification slot is taken: try again shortly.
    Busy,
}

fn slots(n: usize) -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(n.max(1)))
}

/// Signs a maintainer in: their username, or why not.
pub async fn login(
    db: &Db,
    policy: &Policy,
    username: &str,
    password: &str,
    now: i64,
) -> Result<Result<String, LoginRefusal>, StoreError> {
    // A slot first, so a login that finds none has claimed nothing.
    let wait = Duration::from_millis(policy.verify_wait_ms);
    let Ok(Ok(permit)) =
        tokio::time::timeout(wait, slots(policy.verify_concurrency).acquire()).await
    else {
        return Ok(Err(LoginRefusal::Busy));
    };
    let claimed = db
        .maintainer_claim_attempt(
            username,
            now,
            policy.max_failures.max(1),
            policy.backoff_base_seconds.max(1).saturating_mul(1000),
            policy.backoff_max_seconds.max(1).saturating_mul(1000),
        )
        .await?;
    let phc = match &claimed {
        Some(m) => m.password_hash.clone(),
        None => match db.maintainer(username).await? {
            // Backing off: the claim was refused, nothing was judged.
            Some(m) if m.locked_until > now => {
                let secs = (m.locked_until - now + 999) / 1000;
                return Ok(Err(LoginRefusal::BackingOff(secs)));
            }
            // Unknown (or the backoff ran out just now): the same work as a real check,
            // so unknown names and wrong passwords take the same time.
            _ => passwords::dummy_hash().to_string(),
        },
    };
    let pw = password.to_string();
    let good = tokio::task::spawn_blocking(move || passwords::verify(&pw, &phc))
        .await
        .unwrap_or(false);
    drop(permit);
    let Some(m) = claimed else {
        return Ok(Err(LoginRefusal::BadCredentials));
    };
    if !good {
        return Ok(Err(LoginRefusal::BadCredentials));
    }
    db.maintainer_succeeded(&m.username).await?;
    if !m.enabled {
        return Ok(Err(LoginRefusal::Disabled));
    }
    Ok(Ok(m.username))
}

/// Why a maintainer could not put a device into maintenance.
#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    /// The sign-in was refused.
    #[error("sign-in refused: {0:?}")]
    SignIn(LoginRefusal),
    /// The device refused (busy, locked, …).
    #[error("{0}")]
    Device(DeviceRefusal),
    /// The actors failed (`NoSuchDevice` included).
    #[error(transparent)]
    Coord(#[from] CoordError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A maintainer signs in at kiosk `code` (`/windows/maintain/login`): the sign-in
/// ([`login`]'s rules), then the device goes into maintenance under their name.
pub async fn enter(
    s: &Services,
    code: &str,
    username: &str,
    password: &str,
) -> Result<(), MaintainError> {
    let now = s.coord.clock().now_ms();
    let username = login(&s.db, &s.cfg.maintainers, username, password, now)
        .await?
        .map_err(MaintainError::SignIn)?;
    s.coord
        .ask_device(code, MaintainLogin { username })
        .await?
        .map_err(MaintainError::Device)
}
