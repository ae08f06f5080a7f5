//! SMS captchas (stored hashed) and the send quotas that limit them.

use super::{Db, se};
use kioskd_actors::ports::StoreError;

impl Db {
    /// Takes one send from the quota `key` at `now`, or refuses: at least `gap_ms` since
    /// the last send, fewer than `hourly` sends in the current hour window and fewer
    /// than `daily` in the current day window. One conditional upsert decides (on
    /// PostgreSQL the conflicting row is locked and the condition re-read), so parallel
    /// callers can never take more than the quota allows.
    pub async fn take_send_quota(
        &self,
        key: &str,
        now: i64,
        gap_ms: i64,
        hourly: i64,
        daily: i64,
    ) -> Result<bool, StoreError> {
        if hourly <= 0 || daily <= 0 {
            return Ok(false);
        }
        let row = sqlx::query(
            "INSERT INTO send_quota (key, last_at, hour_start, hour_count, day_start, day_count)
             VALUES ($1, $2, $2, 1, $2, 1)
             ON CONFLICT (key) DO UPDATE SET
                last_at = $2,
                hour_start = CASE WHEN send_quota.hour_start <= $2 - 3600000 THEN $2 ELSE send_quota.hour_start END,
                hour_count = CASE WHEN send_quota.hour_start <= $2 - 3600000 THEN 1 ELSE send_quota.hour_count + 1 END,
                day_start = CASE WHEN send_quota.day_start <= $2 - 86400000 THEN $2 ELSE send_quota.day_start END,
                day_count = CASE WHEN send_quota.day_start <= $2 - 86400000 THEN 1 ELSE send_quota.day_count + 1 END
             WHERE send_quota.last_at <= $2 - $3
               AND (send_quota.hour_start <= $2 - 3600000 OR send_quota.hour_count < $4)
               AND (send_quota.day_start <= $2 - 86400000 OR send_quota.day_count < $5)
             RETURNING key",
        )
        .bind(key)
        .bind(now)
        .bind(gap_ms)
        .bind(hourly)
        .bind(daily)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        Ok(row.is_some())
    }

    /// Stores a sent captcha (hashed).
    pub async fn insert_captcha(
        &self,
        mobile: &str,
        code_hash: &str,
        client: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO captchas (mobile, code_hash, client, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(mobile)
            .bind(code_hash)
            .bind(client)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Counts one guess against the newest unused, unexpired code of a mobile with
    /// fewer than `max_attempts` guesses, and burns it when `hash` matches or the guesses
    /// run out, in one conditional statement: parallel guesses can never be compared
    /// more than `max_attempts` times. Returns the code's stored hash when a guess was
    /// counted (the caller compares it in constant time), `None` when no code could take
    /// a guess.
    pub async fn captcha_guess(
        &self,
        mobile: &str,
        hash: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "UPDATE captchas SET attempts = attempts + 1,
                used = CASE WHEN code_hash = $2 OR attempts + 1 >= $4 THEN 1 ELSE 0 END
             WHERE id = (SELECT id FROM captchas WHERE mobile = $1 AND used = 0
                         ORDER BY created_at DESC, id DESC LIMIT 1)
               AND used = 0 AND attempts < $4 AND expires_at >= $3
             RETURNING code_hash",
        )
        .bind(mobile)
        .bind(hash)
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)
    }
}
