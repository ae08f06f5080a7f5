//! Maintainer accounts: credentials, sign-in attempts and their backoff.

use super::RowExt;

use super::rows::MaintainerRow;
use super::{Db, WriteError, se};
use kioskd_actors::ports::StoreError;

impl Db {
    /// Adds a maintainer (password already hashed).
    pub async fn add_maintainer(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), WriteError> {
        sqlx::query("INSERT INTO maintainers (username, password_hash, ctime) VALUES ($1, $2, $3)")
            .bind(username)
            .bind(hash)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// A maintainer by username.
    pub async fn maintainer(&self, username: &str) -> Result<Option<MaintainerRow>, StoreError> {
        let row = sqlx::query("SELECT username, password_hash, enabled, failed_attempts, locked_until FROM maintainers WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            Ok(MaintainerRow {
                username: r.col("username")?,
                password_hash: r.col("password_hash")?,
                enabled: r.col::<i64>("enabled")? != 0,
                failed_attempts: r.col("failed_attempts")?,
                locked_until: r.col("locked_until")?,
            })
        })
        .transpose()
    }

    /// Claims one sign-in attempt for a maintainer whose backoff has run out, counting
    /// it as a failure until [`Db::maintainer_succeeded`] clears it, in one conditional
    /// statement: the attempt that reaches `max_failures` (and every later one) starts a
    /// backoff of `base_ms`, doubling per failure up to `cap_ms`. Returns the account
    /// (password hash, enabled) when the attempt may be judged, `None` when the account
    /// does not exist or is backing off.
    pub async fn maintainer_claim_attempt(
        &self,
        username: &str,
        now: i64,
        max_failures: i64,
        base_ms: i64,
        cap_ms: i64,
    ) -> Result<Option<MaintainerRow>, StoreError> {
        let row = sqlx::query(
            "UPDATE maintainers SET
                failed_attempts = failed_attempts + 1,
                lock_ms = CASE WHEN failed_attempts + 1 < $3 THEN lock_ms
                               WHEN lock_ms = 0 THEN $4
                               WHEN lock_ms * 2 > $5 THEN $5
                               ELSE lock_ms * 2 END,
                locked_until = CASE WHEN failed_attempts + 1 < $3 THEN locked_until
                               ELSE $2 + (CASE WHEN lock_ms = 0 THEN $4
                                              WHEN lock_ms * 2 > $5 THEN $5
                                              ELSE lock_ms * 2 END) END
             WHERE username = $1 AND locked_until <= $2
             RETURNING username, password_hash, enabled, failed_attempts, locked_until",
        )
        .bind(username)
        .bind(now)
        .bind(max_failures)
        .bind(base_ms)
        .bind(cap_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.map(|r| {
            Ok(MaintainerRow {
                username: r.col("username")?,
                password_hash: r.col("password_hash")?,
                enabled: r.col::<i64>("enabled")? != 0,
                failed_attempts: r.col("failed_attempts")?,
                locked_until: r.col("locked_until")?,
            })
        })
        .transpose()
    }

    /// A correct password: the failure count and any backoff are cleared.
    pub async fn maintainer_succeeded(&self, username: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE maintainers SET failed_attempts = 0, lock_ms = 0, locked_until = 0 WHERE username = $1",
        )
        .bind(username)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// Every maintainer (username, enabled, failed attempts).
    pub async fn list_maintainers(&self) -> Result<Vec<MaintainerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, '', enabled, failed_attempts, locked_until FROM maintainers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(MaintainerRow {
                    username: r.col("username")?,
                    password_hash: String::new(),
                    enabled: r.col::<i64>("enabled")? != 0,
                    failed_attempts: r.col("failed_attempts")?,
                    locked_until: r.col("locked_until")?,
                })
            })
            .collect()
    }

    /// Enables or disables a maintainer.
    pub async fn set_maintainer_enabled(
        &self,
        username: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE maintainers SET enabled = $1, failed_attempts = 0, lock_ms = 0, locked_until = 0 WHERE username = $2",
        )
        .bind(enabled as i64)
        .bind(username)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(r.rows_affected() > 0)
    }
}
