//! Devices: registration, lookups, persisted status and the command queue.

use super::RowExt;
use sqlx::any::AnyRow;

use super::rows::{DeviceLegacy, NewDevice};
use super::{Db, WriteError, se};
use kioskd_actors::ports::*;

pub(super) const DEVICE_COLS: &str = "id, code, client_id, name, province, city, area, location, charge_mode, billing_mode, status, maintainer, updating, last_seen_at";

impl Db {
    /// Registers a device.
    pub async fn add_device(&self, d: &NewDevice, now: i64) -> Result<DeviceRecord, WriteError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO devices (code, client_id, name, province, city, area, location, charge_mode, billing_mode, secret, legacy_unsigned, ctime, utime)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $11, $11) RETURNING {DEVICE_COLS}"
        )))
        .bind(&d.code)
        .bind(&d.client_id)
        .bind(&d.name)
        .bind(&d.province)
        .bind(&d.city)
        .bind(&d.area)
        .bind(&d.location)
        .bind(d.charge_mode)
        .bind(d.billing_mode.as_str())
        .bind(&d.secret)
        .bind(now)
        .bind(&d.legacy_unsigned)
        .fetch_one(&self.pool)
        .await.map_err(se)?;
        device_from_row(&row)
    }

    /// Every device.
    pub async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(se)?;
        rows.iter().map(device_from_row).collect()
    }

    /// A device by dialect B client id.
    pub async fn device_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE client_id = $1"
        )))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// A device's WebSocket secret, if it has one.
    pub async fn device_secret(&self, device_id: i64) -> Result<Option<String>, StoreError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT secret FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(se)?;
        Ok(v.flatten().filter(|s| !s.is_empty()))
    }

    /// A device's legacy-call policy by code: its secret (if any) and whether its
    /// `legacy_unsigned` setting allows unsigned calls (an unknown stored setting is
    /// [`StoreError::Corrupt`]). `None` for an unknown device.
    pub async fn device_legacy(&self, code: &str) -> Result<Option<DeviceLegacy>, StoreError> {
        let row = sqlx::query("SELECT secret, legacy_unsigned FROM devices WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await
            .map_err(se)?;
        row.map(|r| {
            let secret: Option<String> = r.col("secret")?;
            let mode: Option<String> = r.col("legacy_unsigned")?;
            let allow_unsigned = match mode.as_deref() {
                Some("allow") => true,
                Some("refuse") | None => false,
                Some(_) => {
                    return Err(StoreError::corrupt(
                        "devices.legacy_unsigned",
                        mode.unwrap_or_default(),
                    ));
                }
            };
            Ok(DeviceLegacy {
                secret: secret.filter(|s| !s.is_empty()),
                allow_unsigned,
            })
        })
        .transpose()
    }

    /// Sets a device's `legacy_unsigned` (`None`: back to the default). False when the
    /// device is unknown.
    pub async fn set_device_legacy(
        &self,
        code: &str,
        mode: Option<&str>,
    ) -> Result<bool, WriteError> {
        let r = sqlx::query("UPDATE devices SET legacy_unsigned = $1 WHERE code = $2")
            .bind(mode)
            .bind(code)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(r.rows_affected() > 0)
    }

    /// A device by its normalised code.
    pub async fn device_by_code(&self, code: &str) -> StoreResult<Option<DeviceRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE code = $1"
        )))
        .bind(code)
        .fetch_optional(&self.pool)
        .await
        .map_err(se)?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Persists a device's status.
    pub async fn set_device_status(
        &self,
        device_id: i64,
        status: PersistedStatus,
        maintainer: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET status = $1, maintainer = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(maintainer)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }

    /// Persists a device's game-update flag.
    pub async fn set_device_updating(&self, device_id: i64, updating: bool) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET updating = $1 WHERE id = $2")
            .bind(updating as i64)
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(se)?;
        Ok(())
    }
}

pub(super) fn device_from_row(r: &AnyRow) -> Result<DeviceRecord, StoreError> {
    let billing: String = r.col("billing_mode")?;
    let status: String = r.col("status")?;
    Ok(DeviceRecord {
        id: r.col("id")?,
        code: r.col("code")?,
        client_id: r.col("client_id")?,
        name: r.col("name")?,
        province: r.col("province")?,
        city: r.col("city")?,
        area: r.col("area")?,
        location: r.col("location")?,
        charge_mode: r.col("charge_mode")?,
        billing_mode: billing_mode("devices.billing_mode", &billing)?,
        status: PersistedStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("devices.status", status))?,
        maintainer: r.col("maintainer")?,
        updating: r.col::<i64>("updating")? != 0,
        last_seen_at: r.col("last_seen_at")?,
    })
}

/// A stored billing mode; an unknown value is [`StoreError::Corrupt`], never a default.
pub(super) fn billing_mode(what: &str, v: &str) -> Result<BillingMode, StoreError> {
    BillingMode::parse(v).ok_or_else(|| StoreError::corrupt(what, v))
}
