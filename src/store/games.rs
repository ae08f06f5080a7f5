//! Games and what each device has installed.

use super::RowExt;

use super::rows::DeviceGameRow;
use super::{Db, WriteError, se};
use kioskd_actors::ports::StoreError;

impl Db {
    /// Adds a game (or a new version of one with the same name).
    pub async fn add_game(
        &self,
        name: &str,
        version: &str,
        url: &str,
        md5: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM games WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        if let Some(id) = existing {
            sqlx::query(
                "UPDATE games SET version = $1, url = $2, md5 = $3, utime = $4 WHERE id = $5",
            )
            .bind(version)
            .bind(url)
            .bind(md5)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
            return Ok(id);
        }
        sqlx::query_scalar(
            "INSERT INTO games (name, version, url, md5, ctime, utime) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(name)
        .bind(version)
        .bind(url)
        .bind(md5)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(se)
    }

    /// Puts a game on a device, wanting its newest version installed.
    pub async fn want_game(&self, device_id: i64, game_id: i64) -> Result<(), WriteError> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM games WHERE id = $1")
            .bind(game_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        if exists.is_none() {
            return Err(WriteError::NotFound);
        }
        sqlx::query(
            "INSERT INTO device_games (device_id, game_id, current_version) VALUES ($1, $2, NULL)
             ON CONFLICT (device_id, game_id) DO UPDATE SET current_version = NULL",
        )
        .bind(device_id)
        .bind(game_id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }

    /// A device's games.
    pub async fn device_games(&self, device_id: i64) -> Result<Vec<DeviceGameRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.id, g.name, dg.current_version, g.version, g.url, g.md5 FROM device_games dg
             JOIN games g ON g.id = dg.game_id WHERE dg.device_id = $1 ORDER BY g.id",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceGameRow {
                    id: r.col("id")?,
                    name: r.col("name")?,
                    current_version: r.col("current_version")?,
                    newest_version: r.col("version")?,
                    url: r.col("url")?,
                    md5: r.col("md5")?,
                })
            })
            .collect()
    }

    /// Marks every game of a device as current (its update finished).
    pub async fn games_current(&self, device_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE device_games SET current_version = (SELECT version FROM games WHERE games.id = device_games.game_id)
             WHERE device_id = $1",
        )
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map_err(se)?;
        Ok(())
    }
}
