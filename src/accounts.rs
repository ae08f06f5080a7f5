//! Players' accounts and the maintainers as operators manage them (`/ops/users/*`,
//! `/ops/maintainers`): reading a user with the ledger's own sum, the ledger, balance
//! adjustments (one ledger row in one transaction, idempotent with a key), and the
//! user's state.

use kioskd_actors::ids::new_token;

use crate::service_error::ServiceError;
use crate::services::Services;
use crate::store::{LedgerRow, MaintainerRow, UserRow, WriteError};

fn no_user() -> ServiceError {
    ServiceError::not_found("no such user")
}

/// A user with the sum of their ledger rows (which must equal the balance).
pub async fn user(s: &Services, id: i64) -> Result<UserDetail, ServiceError> {
    let user = s.db.user_by_id(id).await?.ok_or_else(no_user)?;
    let ledger_sum = s.db.ledger_sum(id).await?;
    let group_id = s.db.group_of_user(id).await?;
    Ok(UserDetail {
        user,
        ledger_sum,
        group_id,
    })
}

/// A user as an operator looks at one.
#[derive(Debug, Clone)]
pub struct UserDetail {
    /// The account.
    pub user: UserRow,
    /// The sum of the user's ledger (equals the balance when the books are right).
    pub ledger_sum: i64,
    /// The member group (`None`: none).
    pub group_id: Option<i64>,
}

/// A user's ledger, newest first.
pub async fn ledger(s: &Services, id: i64) -> Result<Vec<LedgerRow>, ServiceError> {
    s.db.user_by_id(id).await?.ok_or_else(no_user)?;
    Ok(s.db.ledger(id).await?)
}

/// The result of an adjustment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjusted {
    /// The balance after it.
    pub balance: i64,
    /// The ledger row's id (`adjust:key:<key>` with an idempotency key).
    pub ledger_id: String,
    /// The same key and adjustment were seen before: nothing changed this time.
    pub replayed: bool,
}

/// The `Idempotency-Key` rule: 1-64 of `[A-Za-z0-9_.:-]`.
pub fn idempotency_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

/// Adjusts a balance by `amount` fen (either way). With a key, a retried request
/// changes nothing and answers the same; a key reused for a different adjustment is
/// refused. The actors are told the new balance after the ledger row is committed.
pub async fn adjust(
    s: &Services,
    id: i64,
    amount: i64,
    reason: &str,
    key: Option<&str>,
) -> Result<Adjusted, ServiceError> {
    if amount == 0 || amount.unsigned_abs() > 100_000_000 {
        return Err(ServiceError::invalid(
            "amount must be non-zero fen, at most 100000000 either way",
        ));
    }
    if reason.trim().is_empty() || reason.chars().count() > 200 {
        return Err(ServiceError::invalid("reason must be 1-200 characters"));
    }
    if let Ok(None) = s.db.user_by_id(id).await {
        return Err(no_user());
    }
    let ledger_id = match key {
        Some(k) => format!("adjust:key:{k}"),
        None => format!("adjust:{}", new_token()),
    };
    match s
        .db
        .adjust(id, amount, reason, &ledger_id, s.coord.clock().now_ms())
        .await
    {
        Ok(balance) => {
            s.coord.balance_changed(id, balance).await;
            Ok(Adjusted {
                balance,
                ledger_id,
                replayed: false,
            })
        }
        Err(WriteError::Refused) => Err(ServiceError::conflict("the balance would go below zero")),
        Err(WriteError::NotFound) => Err(no_user()),
        Err(WriteError::Conflict) if key.is_some() => match s.db.ledger_entry(&ledger_id).await? {
            Some(e) if e.user_id == id && e.amount == amount => {
                let u = s.db.user_by_id(id).await?.ok_or_else(no_user)?;
                Ok(Adjusted {
                    balance: u.balance_account,
                    ledger_id,
                    replayed: true,
                })
            }
            _ => Err(ServiceError::conflict(
                "Idempotency-Key already used for a different adjustment",
            )),
        },
        Err(e) => Err(e.into()),
    }
}

/// Sets a user's state: 0 active, 1 disabled, 2 deleted.
pub async fn set_state(s: &Services, id: i64, state: i32) -> Result<(), ServiceError> {
    if !(0..=2).contains(&state) {
        return Err(ServiceError::invalid(
            "state must be 0 (active), 1 (disabled) or 2 (deleted)",
        ));
    }
    if s.db
        .set_user_state(id, state, s.coord.clock().now_ms())
        .await?
    {
        Ok(())
    } else {
        Err(no_user())
    }
}

/// Every maintainer account.
pub async fn maintainers(s: &Services) -> Result<Vec<MaintainerRow>, ServiceError> {
    Ok(s.db.list_maintainers().await?)
}

/// Adds a maintainer (the same rules as the CLI's).
pub async fn add_maintainer(
    s: &Services,
    username: &str,
    password: &str,
) -> Result<(), ServiceError> {
    use crate::app::AddError;
    match crate::app::add_maintainer(&s.db, username, password, s.coord.clock().now_ms()).await {
        Ok(()) => Ok(()),
        Err(AddError::Invalid(m)) => Err(ServiceError::Invalid(m)),
        Err(AddError::Exists) => Err(ServiceError::conflict("that username exists")),
        Err(AddError::Store(e)) => Err(ServiceError::Unavailable(e.to_string())),
        Err(AddError::Internal(e)) => Err(ServiceError::Unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_short_and_plain() {
        assert!(idempotency_key_ok("refund-2026.12:1_a"));
        assert!(!idempotency_key_ok(""));
        assert!(!idempotency_key_ok(&"k".repeat(65)));
        assert!(!idempotency_key_ok("a b"));
        assert!(!idempotency_key_ok("ключ"));
    }
}
