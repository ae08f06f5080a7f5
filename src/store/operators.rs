//! Operator accounts, their console sessions and personal API tokens. Rows are read by
//! column name; an unknown role in the database is an error, never a default.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, WriteError, se};
use kioskd_actors::ports::StoreError;

/// An operator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    /// Row id.
    pub id: i64,
    /// Sign-in name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `admin`, `staff` or `viewer`.
    pub role: String,
    /// Sites (device locations) the operator may act on; empty: all.
    pub sites: Vec<String>,
    /// Refused at sign-in and for every token.
    pub disabled: bool,
    /// Consecutive failed sign-ins.
    pub failed_logins: i64,
    /// Sign-in refused until (unix ms).
    pub locked_until: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
}

/// A personal API token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperatorTokenRow {
    /// Row id.
    pub id: i64,
    /// The operator's label for it.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub last_used_at: Option<i64>,
}

/// Changes to an operator (only the `Some` fields change).
#[derive(Debug, Clone, Default)]
pub struct OperatorChange {
    /// New role.
    pub role: Option<String>,
    /// New site list.
    pub sites: Option<Vec<String>>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// New password hash.
    pub password_hash: Option<String>,
}

const OPERATOR_COLS: &str = "o.id, o.username, o.password_hash, o.role, o.sites, o.disabled, o.failed_logins, o.locked_until, o.created_at";

fn operator_from_row(r: &AnyRow) -> Result<OperatorRow, StoreError> {
    let role: String = r.try_get("role").map_err(se)?;
    if !matches!(role.as_str(), "admin" | "staff" | "viewer") {
        return Err(StoreError::corrupt("operators.role", role.to_string()));
    }
    let sites: String = r.try_get("sites").map_err(se)?;
    let sites: Vec<String> = serde_json::from_str(&sites)
        .map_err(|e| StoreError::corrupt("operators.sites", e.to_string()))?;
    Ok(OperatorRow {
        id: r.try_get("id").map_err(se)?,
        username: r.try_get("username").map_err(se)?,
        password_hash: r.try_get("password_hash").map_err(se)?,
        role,
        sites,
        disabled: r.try_get::<i64, _>("disabled").map_err(se)? != 0,
        failed_logins: r.try_get("failed_logins").map_err(se)?,
        locked_until: r.try_get("locked_until").map_err(se)?,
        created_at: r.try_get("created_at").map_err(se)?,
    })
}

fn sites_json(sites: &[String]) -> String {
    serde_json::to_string(sites).unwrap_or_else(|_| "[]".into())
}

impl Db {
    /// Adds an operator (password already hashed). `Conflict` when the name is taken.
    pub async fn add_operator(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        sites: &[String],
        now: i64,
    ) -> Result<OperatorRow, WriteError> {
        sqlx::query(
            "INSERT INTO operators (username, password_hash, role, sites, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(sites_json(sites))
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(se)?;
        self.operator(username).await?.ok_or(WriteError::NotFound)
    }

    /// An operator by name.
    pub async fn operator(&self, username: &str) -> Result<Option<OperatorRow>, StoreError> {
        let sql = format!("SELECT {OPERATOR_COLS} FROM operators o WHERE o.username = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(username)
            .fetch_optional(self.pool())
            .await
            .map_err(se)?
            .as_ref()
            .map(operator_from_row)
            .transpose()
    }

    /// Every operator, by name.
    pub async fn list_operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        let sql = format!("SELECT {OPERATOR_COLS} FROM operators o ORDER BY o.username");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(se)?
            .iter()
            .map(operator_from_row)
            .collect()
    }

    /// Applies `change`; `NotFound` when there is no such operator. Disabling or a new
    /// password ends every console session of the operator (API tokens stay, refused
    /// while disabled).
    pub async fn update_operator(
        &self,
        username: &str,
        change: &OperatorChange,
    ) -> Result<OperatorRow, WriteError> {
        let mut tx = self.pool().begin().await.map_err(se)?;
        let id: Option<i64> = sqlx::query("SELECT id FROM operators WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(se)?
            .map(|r| r.try_get("id"))
            .transpose()
            .map_err(se)?;
        let id = id.ok_or(WriteError::NotFound)?;
        if let Some(role) = &change.role {
            sqlx::query("UPDATE operators SET role = $1 WHERE id = $2")
                .bind(role)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(se)?;
        }
        if let Some(sites) = &change.sites {
            sqlx::query("UPDATE operators SET sites = $1 WHERE id = $2")
                .bind(sites_json(sites))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(se)?;
        }
        if let Some(d) = change.disabled {
            sqlx::query("UPDATE operators SET disabled = $1 WHERE id = $2")
                .bind(i64::from(d))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(se)?;
        }
        if let Some(h) = &change.password_hash {
            sqlx::query(
                "UPDATE operators SET password_hash = $1, failed_logins = 0, locked_until = NULL
                 WHERE id = $2",
            )
            .bind(h)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        }
        if change.disabled == Some(true) || change.password_hash.is_some() {
            sqlx::query("DELETE FROM operator_tokens WHERE operator_id = $1 AND kind = 'session'")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        self.operator(username).await?.ok_or(WriteError::NotFound)
    }

    /// Counts a failed sign-in in one statement and returns the new count (0 when
    /// there is no such operator).
    pub async fn operator_login_failed(&self, id: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "UPDATE operators SET failed_logins = failed_logins + 1 WHERE id = $1
             RETURNING failed_logins",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(se)?;
        row.map(|r| r.try_get("failed_logins").map_err(se))
            .transpose()
            .map(|n| n.unwrap_or(0))
    }

    /// Refuses sign-in until `until` (unix ms), unless a later lock is already set.
    pub async fn operator_lock_until(&self, id: i64, until: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE operators SET locked_until = $1
             WHERE id = $2 AND (locked_until IS NULL OR locked_until < $1)",
        )
        .bind(until)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(se)?;
        Ok(())
    }

    /// A successful sign-in clears the failure count.
    pub async fn operator_login_ok(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Stores a session or API token (its SHA-256 only); returns its id.
    pub async fn add_operator_token(
        &self,
        operator_id: i64,
        kind: &str,
        token_hash: &str,
        name: &str,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<i64, WriteError> {
        let row = sqlx::query(
            "INSERT INTO operator_tokens (operator_id, kind, token_hash, name, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(operator_id)
        .bind(kind)
        .bind(token_hash)
        .bind(name)
        .bind(now)
        .bind(expires_at)
        .fetch_one(self.pool())
        .await
        .map_err(se)?;
        row.try_get("id").map_err(se)
    }

    /// The enabled operator behind a live token of `kind`, marking it used. Expired
    /// sessions are deleted on the way.
    pub async fn operator_by_token(
        &self,
        kind: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<OperatorRow>, StoreError> {
        let sql = format!(
            "SELECT {OPERATOR_COLS}, t.id AS token_id, t.expires_at, t.last_used_at
             FROM operator_tokens t JOIN operators o ON o.id = t.operator_id
             WHERE t.token_hash = $1 AND t.kind = $2"
        );
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(kind)
            .fetch_optional(self.pool())
            .await
            .map_err(se)?
        else {
            return Ok(None);
        };
        let token_id: i64 = r.try_get("token_id").map_err(se)?;
        let expires: Option<i64> = r.try_get("expires_at").map_err(se)?;
        if expires.is_some_and(|e| e <= now) {
            sqlx::query("DELETE FROM operator_tokens WHERE id = $1")
                .bind(token_id)
                .execute(self.pool())
                .await
                .map_err(se)?;
            return Ok(None);
        }
        let op = operator_from_row(&r)?;
        if op.disabled {
            return Ok(None);
        }
        // Marking use costs a write: at most once a minute per token.
        let last: Option<i64> = r.try_get("last_used_at").map_err(se)?;
        if last.is_none_or(|l| now - l > 60_000) {
            sqlx::query("UPDATE operator_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token_id)
                .execute(self.pool())
                .await
                .map_err(se)?;
        }
        Ok(Some(op))
    }

    /// Deletes a token by its hash (sign-out).
    pub async fn delete_operator_token_by_hash(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM operator_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Revokes one of the operator's API tokens; false when it has no such token.
    pub async fn revoke_operator_token(
        &self,
        operator_id: i64,
        token_id: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM operator_tokens WHERE id = $1 AND operator_id = $2 AND kind = 'api'",
        )
        .bind(token_id)
        .bind(operator_id)
        .execute(self.pool())
        .await
        .map_err(se)?;
        Ok(done.rows_affected() > 0)
    }

    /// The operator's API tokens.
    pub async fn operator_tokens(
        &self,
        operator_id: i64,
    ) -> Result<Vec<OperatorTokenRow>, StoreError> {
        sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM operator_tokens
             WHERE operator_id = $1 AND kind = 'api' ORDER BY id",
        )
        .bind(operator_id)
        .fetch_all(self.pool())
        .await
        .map_err(se)?
        .iter()
        .map(|r| {
            Ok(OperatorTokenRow {
                id: r.try_get("id").map_err(se)?,
                name: r.try_get("name").map_err(se)?,
                created_at: r.try_get("created_at").map_err(se)?,
                last_used_at: r.try_get("last_used_at").map_err(se)?,
            })
        })
        .collect()
    }

    /// The location (site) of a device, by code; `None` when unknown.
    pub async fn device_site(&self, code: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT location FROM devices WHERE code = $1")
            .bind(code)
            .fetch_optional(self.pool())
            .await
            .map_err(se)?;
        row.map(|r| r.try_get::<Option<String>, _>("location").map_err(se))
            .transpose()
            .map(|o| o.flatten())
    }

    /// The location (site) of the device a session ran on; `None` when unknown.
    pub async fn session_site(&self, session_id: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT d.location FROM sessions s JOIN devices d ON d.id = s.device_id WHERE s.id = $1",
        )
        .bind(session_id)
        .fetch_optional(self.pool())
        .await
        .map_err(se)?;
        row.map(|r| r.try_get::<Option<String>, _>("location").map_err(se))
            .transpose()
            .map(|o| o.flatten())
    }
}
