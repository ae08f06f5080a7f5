//! Users: identity (openid, mobile) and state. Their money is in `ledger.rs`.

use super::RowExt;
use sqlx::any::AnyRow;

use super::rows::UserRow;
use super::{Db, WriteError, se};
use kioskd_actors::ports::StoreError;

pub(super) const USER_COLS: &str = "id, openid, nickname, head_img_url, mobile, total_account, used_account, balance_account, state, ctime, utime";

impl Db {
    /// The user with this openid, created if new (a phone that signed in).
    pub async fn ensure_user(
        &self,
        openid: &str,
        nickname: &str,
        head_img_url: &str,
        now: i64,
    ) -> Result<UserRow, StoreError> {
        sqlx::query(
            "INSERT INTO users (openid, nickname, head_img_url, ctime, utime) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (openid) DO NOTHING",
        )
        .bind(openid)
        .bind(nickname)
        .bind(head_img_url)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        self.user_by_openid(openid)
            .await?
            .ok_or_else(|| StoreError::other("user vanished after insert"))
    }

    /// A user by openid.
    pub async fn user_by_openid(&self, openid: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE openid = $1"
        )))
        .bind(openid)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user by mobile.
    pub async fn user_by_mobile(&self, mobile: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE mobile = $1"
        )))
        .bind(mobile)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Binds a mobile to a user that has none (registration). `Conflict`: the mobile
    /// belongs to another user; `Refused`: this user has another mobile.
    pub async fn bind_mobile(
        &self,
        user_id: i64,
        mobile: &str,
        now: i64,
    ) -> Result<UserRow, WriteError> {
        let user = self
            .user_by_id(user_id)
            .await?
            .ok_or(WriteError::NotFound)?;
        match user.mobile.as_deref() {
            Some(m) if m == mobile => return Ok(user),
            Some(_) => return Err(WriteError::Refused),
            None => {}
        }
        let r = sqlx::query(
            "UPDATE users SET mobile = $1, utime = $2 WHERE id = $3 AND mobile IS NULL",
        )
        .bind(mobile)
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::Refused);
        }
        self.user_by_id(user_id).await?.ok_or(WriteError::NotFound)
    }

    /// Sets a user's state (0 active, 1 disabled, 2 deleted).
    pub async fn set_user_state(
        &self,
        user_id: i64,
        state: i32,
        now: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE users SET state = $1, utime = $2 WHERE id = $3")
            .bind(state as i64)
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(r.rows_affected() > 0)
    }
}

pub(super) fn user_from_row(r: &AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: r.col("id")?,
        openid: r.col("openid")?,
        nickname: r.col("nickname")?,
        head_img_url: r.col("head_img_url")?,
        mobile: r.col("mobile")?,
        total_account: r.col("total_account")?,
        used_account: r.col("used_account")?,
        balance_account: r.col("balance_account")?,
        state: r.col::<i64>("state")? as i32,
        ctime: r.col("ctime")?,
        utime: r.col("utime")?,
    })
}
