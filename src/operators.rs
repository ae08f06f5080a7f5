//! Operators are people: accounts with a role and optional site scope, password
//! sign-in (argon2id, a timed backoff after repeated failures, verification behind a
//! small semaphore), console sessions and personal API tokens. The ops API, the console
//! and the CLI all go through these operations; the HTTP layer only decodes and encodes.

use std::sync::LazyLock;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::passwords;
use crate::store::{Db, OperatorChange, OperatorRow, WriteError};
use kioskd_actors::ports::StoreError;

/// What an operator may do. Ordered: each role may do what the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything under `/ops`.
    Viewer,
    /// Also acts on devices and sessions (of its sites, when it has any).
    Staff,
    /// Everything: devices, prices, maintainers, balances, operators.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored or submitted name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "staff" => Some(Role::Staff),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The console's session cookie.
    Session,
    /// A personal API token.
    Token,
    /// The shared `ops.token` (automation).
    Service,
}

/// The authenticated caller of an ops request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The operator's id (`None` for the service token).
    #[serde(skip)]
    pub id: Option<i64>,
    /// Who, as the audit log records it (`service` for the shared token).
    pub username: String,
    /// What it may do.
    pub role: Role,
    /// The sites it may act on; empty: every site.
    pub sites: Vec<String>,
    /// How it signed in.
    pub via: Via,
}

/// The audit name of the shared ops token.
pub const SERVICE: &str = "service";

impl Principal {
    /// The shared ops token.
    pub fn service() -> Principal {
        Principal {
            id: None,
            username: SERVICE.into(),
            role: Role::Admin,
            sites: vec![],
            via: Via::Service,
        }
    }

    fn of(row: OperatorRow, via: Via) -> Option<Principal> {
        Some(Principal {
            id: Some(row.id),
            username: row.username,
            role: Role::parse(&row.role)?,
            sites: row.sites,
            via,
        })
    }

    /// May it act on a device at `site`? Unscoped operators act everywhere; scoped ones
    /// only on devices whose location is one of their sites.
    pub fn covers(&self, site: Option<&str>) -> bool {
        self.sites.is_empty() || site.is_some_and(|s| self.sites.iter().any(|x| x == s))
    }
}

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Bad input; the message says what.
    #[error("{0}")]
    Invalid(String),
    /// Wrong username or password (or disabled): one answer for all three.
    #[error("wrong username or password")]
    BadCredentials,
    /// Too many failed sign-ins: try again after this many seconds.
    #[error("too many failed sign-ins; try again in {0} s")]
    Locked(i64),
    /// The username is taken.
    #[error("an operator with that username exists")]
    Exists,
    /// No such operator or token.
    #[error("not found")]
    NotFound,
    /// Storage failed (converted by the `From<WriteError>` below, which keeps conflicts
    /// and missing rows apart).
    #[error(transparent)]
    Store(StoreError),
    /// Hashing a password failed, or the server is shutting down.
    #[error("{0}")]
    Internal(String),
}

impl From<WriteError> for OperatorError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Conflict => OperatorError::Exists,
            WriteError::NotFound => OperatorError::NotFound,
            other => OperatorError::Store(other),
        }
    }
}

/// Failed sign-ins allowed before the backoff starts.
pub const FREE_FAILURES: i64 = 5;
/// The longest backoff (15 minutes).
pub const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;

/// The sign-in backoff after `failures` consecutive failures: none for the first
/// [`FREE_FAILURES`], then 2, 4, 8 … seconds, capped at [`MAX_BACKOFF_MS`].
pub fn backoff_ms(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let exp = (failures - FREE_FAILURES + 1).min(20) as u32;
    (1000_i64 << exp).min(MAX_BACKOFF_MS)
}

/// Argon2 verifications at once (each holds 19 MiB for ~50 ms): a flood of sign-ins
/// queues here instead of taking the machine's memory.
static VERIFY: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(4));

async fn verify_password(password: String, hash: String) -> bool {
    let Ok(_permit) = VERIFY.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
        .await
        .unwrap_or(false)
}

async fn hash_password(password: String) -> Result<String, OperatorError> {
    let Ok(_permit) = VERIFY.acquire().await else {
        return Err(OperatorError::Internal("shutting down".into()));
    };
    tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|e| OperatorError::Internal(e.to_string()))?
        .map_err(OperatorError::Internal)
}

/// SHA-256 hex of a secret: what the database keeps of tokens and session ids.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The prefix of personal API tokens (so a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "kop_";

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn check_username(u: &str) -> Result<(), OperatorError> {
    if u.is_empty()
        || u.len() > 64
        || !u
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        || u == SERVICE
    {
        return Err(OperatorError::Invalid(
            "username must be 1-64 of [A-Za-z0-9._-@] and not \"service\"".into(),
        ));
    }
    Ok(())
}

fn check_password(p: &str) -> Result<(), OperatorError> {
    if p.chars().count() < 10 || p.len() > 256 {
        return Err(OperatorError::Invalid(
            "password must be 10-256 characters".into(),
        ));
    }
    Ok(())
}

fn check_sites(sites: &[String]) -> Result<(), OperatorError> {
    if sites.len() > 100 || sites.iter().any(|s| s.trim().is_empty() || s.len() > 200) {
        return Err(OperatorError::Invalid(
            "sites: at most 100 non-empty names of up to 200 bytes".into(),
        ));
    }
    Ok(())
}

/// An operator as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorView {
    /// Sign-in name.
    pub username: String,
    /// Role.
    pub role: String,
    /// Sites (empty: all).
    pub sites: Vec<String>,
    /// Disabled?
    pub disabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Sign-in refused until (unix ms), after repeated failures.
    pub locked_until: Option<i64>,
}

impl From<OperatorRow> for OperatorView {
    fn from(r: OperatorRow) -> Self {
        OperatorView {
            username: r.username,
            role: r.role,
            sites: r.sites,
            disabled: r.disabled,
            created_at: r.created_at,
            locked_until: r.locked_until,
        }
    }
}

/// Operator operations over storage.
#[derive(Clone)]
pub struct Operators {
    db: Db,
    session_ttl_ms: i64,
}

impl Operators {
    /// Over `db`; console sessions last `session_ttl_ms`.
    pub fn new(db: Db, session_ttl_ms: i64) -> Operators {
        Operators { db, session_ttl_ms }
    }

    /// Adds an operator (the ops API's admins and `kioskd operator add`).
    pub async fn add(
        &self,
        username: &str,
        password: &str,
        role: &str,
        sites: &[String],
        now: i64,
    ) -> Result<OperatorView, OperatorError> {
        check_username(username)?;
        check_password(password)?;
        check_sites(sites)?;
        let role = Role::parse(role)
            .ok_or_else(|| OperatorError::Invalid("role must be admin, staff or viewer".into()))?;
        let hash = hash_password(password.to_string()).await?;
        let row = self
            .db
            .add_operator(username, &hash, role.as_str(), sites, now)
            .await?;
        Ok(row.into())
    }

    /// Every operator.
    pub async fn list(&self) -> Result<Vec<OperatorView>, OperatorError> {
        Ok(self
            .db
            .list_operators()
            .await?
            .into_iter()
            .map(OperatorView::from)
            .collect())
    }

    /// Changes an operator's role, sites, state or password.
    pub async fn update(
        &self,
        username: &str,
        role: Option<&str>,
        sites: Option<Vec<String>>,
        disabled: Option<bool>,
        password: Option<&str>,
    ) -> Result<OperatorView, OperatorError> {
        if let Some(s) = &sites {
            check_sites(s)?;
        }
        let role = match role {
            Some(r) => Some(
                Role::parse(r)
                    .ok_or_else(|| {
                        OperatorError::Invalid("role must be admin, staff or viewer".into())
                    })?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        let password_hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p.to_string()).await?)
            }
            None => None,
        };
        let change = OperatorChange {
            role,
            sites,
            disabled,
            password_hash,
        };
        Ok(self.db.update_operator(username, &change).await?.into())
    }

    /// Checks a password and opens a console session: the session's secret (for the
    /// cookie) and who signed in. Failures are counted in one statement each; after
    /// [`FREE_FAILURES`] the account refuses sign-in for a growing, capped time — a
    /// stranger can slow an operator down, never lock them out for good.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        now: i64,
    ) -> Result<(String, Principal), OperatorError> {
        if username.len() > 64 || password.len() > 256 {
            return Err(OperatorError::BadCredentials);
        }
        let row = self.db.operator(username).await?;
        if let Some(until) = row.as_ref().and_then(|r| r.locked_until)
            && until > now
        {
            return Err(OperatorError::Locked((until - now + 999) / 1000));
        }
        let hash = row
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| passwords::dummy_hash().to_string());
        let ok = verify_password(password.to_string(), hash).await;
        let Some(row) = row else {
            return Err(OperatorError::BadCredentials);
        };
        if !ok {
            let n = self.db.operator_login_failed(row.id).await?;
            let wait = backoff_ms(n);
            if wait > 0 {
                self.db.operator_lock_until(row.id, now + wait).await?;
            }
            return Err(OperatorError::BadCredentials);
        }
        if row.disabled {
            return Err(OperatorError::BadCredentials);
        }
        self.db.operator_login_ok(row.id).await?;
        let secret = random_secret();
        self.db
            .add_operator_token(
                row.id,
                "session",
                &token_hash(&secret),
                "console",
                now,
                Some(now + self.session_ttl_ms),
            )
            .await?;
        let role = row.role.clone();
        let p = Principal::of(row, Via::Session)
            .ok_or_else(|| OperatorError::Store(StoreError::corrupt("operators.role", role)))?;
        Ok((secret, p))
    }

    /// Ends a console session.
    pub async fn sign_out(&self, session_secret: &str) -> Result<(), OperatorError> {
        Ok(self
            .db
            .delete_operator_token_by_hash(&token_hash(session_secret))
            .await?)
    }

    /// The operator behind a console session secret.
    pub async fn by_session(
        &self,
        secret: &str,
        now: i64,
    ) -> Result<Option<Principal>, OperatorError> {
        if secret.is_empty() || secret.len() > 128 {
            return Ok(None);
        }
        Ok(self
            .db
            .operator_by_token("session", &token_hash(secret), now)
            .await?
            .and_then(|r| Principal::of(r, Via::Session)))
    }

    /// The operator behind a personal API token (`kop_…`).
    pub async fn by_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<Principal>, OperatorError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        Ok(self
            .db
            .operator_by_token("api", &token_hash(token), now)
            .await?
            .and_then(|r| Principal::of(r, Via::Token)))
    }

    /// Creates a personal API token for `operator_id`; the token is returned once.
    pub async fn create_token(
        &self,
        operator_id: i64,
        name: &str,
        now: i64,
    ) -> Result<(i64, String), OperatorError> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(OperatorError::Invalid(
                "name: 1-100 bytes, e.g. \"laptop\"".into(),
            ));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_secret());
        let id = self
            .db
            .add_operator_token(
                operator_id,
                "api",
                &token_hash(&token),
                name.trim(),
                now,
                None,
            )
            .await?;
        Ok((id, token))
    }

    /// The operator's API tokens (never their secrets).
    pub async fn tokens(
        &self,
        operator_id: i64,
    ) -> Result<Vec<crate::store::OperatorTokenRow>, OperatorError> {
        Ok(self.db.operator_tokens(operator_id).await?)
    }

    /// The site (location) of a device, for site-limited operators.
    pub async fn device_site(&self, code: &str) -> Result<Option<String>, OperatorError> {
        Ok(self.db.device_site(code).await?)
    }

    /// The site (location) of the device a session ran on.
    pub async fn session_site(&self, session_id: i64) -> Result<Option<String>, OperatorError> {
        Ok(self.db.session_site(session_id).await?)
    }

    /// Revokes one of the operator's API tokens.
    pub async fn revoke_token(&self, operator_id: i64, id: i64) -> Result<(), OperatorError> {
        if self.db.revoke_operator_token(operator_id, id).await? {
            Ok(())
        } else {
            Err(OperatorError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_after_the_free_failures_doubles_and_is_capped() {
        assert_eq!(backoff_ms(0), 0);
        assert_eq!(backoff_ms(FREE_FAILURES - 1), 0);
        assert_eq!(backoff_ms(FREE_FAILURES), 2_000);
        assert_eq!(backoff_ms(FREE_FAILURES + 1), 4_000);
        assert_eq!(backoff_ms(FREE_FAILURES + 50), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(i64::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn roles_are_ordered_and_scopes_cover_their_sites() {
        assert!(Role::Admin > Role::Staff && Role::Staff > Role::Viewer);
        let mut p = Principal::service();
        assert!(p.covers(None) && p.covers(Some("A")));
        p.sites = vec!["A".into()];
        assert!(p.covers(Some("A")));
        assert!(!p.covers(Some("B")));
        assert!(!p.covers(None));
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("service").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pw").is_ok());
    }
}
