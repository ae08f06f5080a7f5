//! Rate plans, zones, member groups and packages (issue 16): the catalog operators edit,
//! the packages users hold, and how each unit of a priced session was paid.
//!
//! Money still moves only through the ledger (a package bought from the balance is a
//! `debit` row `pkg:<user package>`); package *time* has its own ledger
//! (`package_ledger`, deterministic ids like the money ledger) so that
//! `seconds_left = sum(seconds)` per user package, and a replayed unit never takes time
//! twice. The pricing rules themselves live in `kioskd_actors::pricing`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use kioskd_actors::ports::{Reserve, StoreError, StoreResult, UnitCharge};
use kioskd_actors::pricing::{Catalog, HeldPackage, PackageTime, RatePlan, Window};

use super::{Db, RowExt, WriteError, se};

/// A zone of devices sharing a plan ("VR", "standard", "VIP").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ZoneRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its plan.
    pub plan_id: Option<i64>,
}

/// A member group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Discount in percent.
    pub discount_pct: i64,
    /// Its own plan.
    pub plan_id: Option<i64>,
}

/// A package operators sell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Minutes of use.
    pub minutes: i64,
    /// Price in fen.
    pub price: i64,
    /// Zones where usable (empty: any device).
    pub zones: Vec<i64>,
    /// Daily windows (`HH:MM-HH:MM`; empty: all day).
    pub windows: Vec<String>,
    /// Days of validity from the purchase.
    pub valid_days: i64,
    /// Still sold.
    pub on_sale: bool,
}

/// A package a user holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserPackageRow {
    /// Id.
    pub id: i64,
    /// The package.
    pub package_id: i64,
    /// Its name.
    pub name: String,
    /// Seconds left.
    pub seconds_left: i64,
    /// Usable from (unix ms).
    pub valid_from: i64,
    /// Usable until (unix ms).
    pub expires_at: i64,
    /// `balance`, `wechat` or `operator`.
    pub source: String,
}

/// What uses a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PlanUsers {
    /// Zones on it.
    pub zones: i64,
    /// Member groups on it.
    pub groups: i64,
    /// Devices on it (their own plan).
    pub devices: i64,
}

/// A device as pricing sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DevicePricingRow {
    /// Id.
    pub id: i64,
    /// Its code.
    pub device_code: String,
    /// Display name.
    pub name: String,
    /// Its zone.
    pub zone_id: Option<i64>,
    /// Its own plan.
    pub plan_id: Option<i64>,
}

/// How a package purchase from the balance went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purchase {
    /// Bought: the user package and the balance after.
    Bought {
        /// The user package.
        user_package_id: i64,
        /// Balance after.
        balance: i64,
    },
    /// The balance does not cover the price; nothing changed.
    Insufficient,
    /// No such package on sale.
    NotOnSale,
}

/// A stored comma-separated list of integers; anything else is
/// [`StoreError::Corrupt`], never silently dropped.
fn strict_ints(what: &str, s: &str) -> Result<Vec<i64>, StoreError> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| StoreError::corrupt(what, s.to_string()))
        })
        .collect()
}

/// A stored 0/1 flag.
fn flag(what: &str, v: i64) -> Result<bool, StoreError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(StoreError::corrupt(what, v.to_string())),
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// Stored daily windows (`HH:MM-HH:MM,...`); one that does not parse is
/// [`StoreError::Corrupt`].
fn strict_windows(what: &str, s: &str) -> Result<Vec<Window>, StoreError> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| Window::parse(x).ok_or_else(|| StoreError::corrupt(what, s.to_string())))
        .collect()
}

impl Db {
    /// Adds a rate plan (validated by the caller).
    pub async fn add_plan(
        &self,
        name: &str,
        week: &[i64],
        min_charge: i64,
        now: i64,
    ) -> Result<i64, WriteError> {
        sqlx::query_scalar(
            "INSERT INTO rate_plans (name, week, min_charge, ctime, utime) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(name)
        .bind(join(week))
        .bind(min_charge)
        .bind(now)
        .fetch_one(self.pool())
        .await.map_err(se)
    }

    /// Replaces a plan's weekly grid and minimum charge.
    pub async fn update_plan(
        &self,
        id: i64,
        week: &[i64],
        min_charge: i64,
        now: i64,
    ) -> Result<(), WriteError> {
        let r = sqlx::query(
            "UPDATE rate_plans SET week = $1, min_charge = $2, utime = $3 WHERE id = $4",
        )
        .bind(join(week))
        .bind(min_charge)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::NotFound);
        }
        Ok(())
    }

    /// Sets (or with `None` removes) a plan's override for a local date.
    pub async fn set_plan_day(
        &self,
        plan_id: i64,
        day: NaiveDate,
        slots: Option<&[i64]>,
    ) -> Result<(), WriteError> {
        let day = day.format("%Y-%m-%d").to_string();
        match slots {
            Some(slots) => {
                sqlx::query(
                    "INSERT INTO rate_plan_days (plan_id, day, slots) VALUES ($1, $2, $3)
                     ON CONFLICT (plan_id, day) DO UPDATE SET slots = excluded.slots",
                )
                .bind(plan_id)
                .bind(day)
                .bind(join(slots))
                .execute(self.pool())
                .await
                .map_err(se)?;
            }
            None => {
                sqlx::query("DELETE FROM rate_plan_days WHERE plan_id = $1 AND day = $2")
                    .bind(plan_id)
                    .bind(day)
                    .execute(self.pool())
                    .await
                    .map_err(se)?;
            }
        }
        Ok(())
    }

    /// Every plan with its overrides.
    pub async fn plans(&self) -> Result<Vec<RatePlan>, StoreError> {
        let rows = sqlx::query("SELECT id, name, week, min_charge FROM rate_plans ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(se)?;
        let days = sqlx::query("SELECT plan_id, day, slots FROM rate_plan_days")
            .fetch_all(self.pool())
            .await
            .map_err(se)?;
        let mut overrides: BTreeMap<i64, BTreeMap<NaiveDate, Vec<i64>>> = BTreeMap::new();
        for d in &days {
            let plan: i64 = d.col("plan_id")?;
            let day: String = d.col("day")?;
            let slots: String = d.col("slots")?;
            let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                .map_err(|_| StoreError::corrupt("rate_plan_days.day", day.clone()))?;
            overrides
                .entry(plan)
                .or_default()
                .insert(date, strict_ints("rate_plan_days.slots", &slots)?);
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.col("id")?;
                let week: String = r.col("week")?;
                Ok(RatePlan {
                    id,
                    name: r.col("name")?,
                    week: strict_ints("rate_plans.week", &week)?,
                    overrides: overrides.remove(&id).unwrap_or_default(),
                    min_charge: r.col("min_charge")?,
                })
            })
            .collect()
    }

    /// What uses a plan: zones, member groups and devices naming it.
    pub async fn plan_users(&self, id: i64) -> Result<PlanUsers, StoreError> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM zones WHERE plan_id = $1) AS zones,
                    (SELECT COUNT(*) FROM member_groups WHERE plan_id = $1) AS groups,
                    (SELECT COUNT(*) FROM devices WHERE plan_id = $1) AS devices",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await
        .map_err(se)?;
        Ok(PlanUsers {
            zones: r.col("zones")?,
            groups: r.col("groups")?,
            devices: r.col("devices")?,
        })
    }

    /// Deletes a plan nothing uses (with its date overrides), in one transaction.
    /// `Refused` when a zone, group or device still names it; `NotFound` when absent.
    pub async fn delete_plan(&self, id: i64) -> Result<(), WriteError> {
        let mut tx = self.pool().begin().await.map_err(se)?;
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM zones WHERE plan_id = $1)
                  + (SELECT COUNT(*) FROM member_groups WHERE plan_id = $1)
                  + (SELECT COUNT(*) FROM devices WHERE plan_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(se)?;
        if used > 0 {
            tx.rollback().await.map_err(se)?;
            return Err(WriteError::Refused);
        }
        sqlx::query("DELETE FROM rate_plan_days WHERE plan_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        let r = sqlx::query("DELETE FROM rate_plans WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(se)?;
        if r.rows_affected() == 0 {
            tx.rollback().await.map_err(se)?;
            return Err(WriteError::NotFound);
        }
        tx.commit().await.map_err(se)?;
        Ok(())
    }

    /// Every device with where it is priced (zone, own plan).
    pub async fn device_pricing(&self) -> Result<Vec<DevicePricingRow>, StoreError> {
        let rows = sqlx::query("SELECT id, code, name, zone_id, plan_id FROM devices ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(DevicePricingRow {
                    id: r.col("id")?,
                    device_code: r.col("code")?,
                    name: r.col("name")?,
                    zone_id: r.col("zone_id")?,
                    plan_id: r.col("plan_id")?,
                })
            })
            .collect()
    }

    /// Adds a zone.
    pub async fn add_zone(
        &self,
        name: &str,
        plan_id: Option<i64>,
        now: i64,
    ) -> Result<i64, WriteError> {
        sqlx::query_scalar(
            "INSERT INTO zones (name, plan_id, ctime) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(plan_id)
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(se)
    }

    /// Sets a zone's plan.
    pub async fn set_zone_plan(&self, id: i64, plan_id: Option<i64>) -> Result<(), WriteError> {
        let r = sqlx::query("UPDATE zones SET plan_id = $1 WHERE id = $2")
            .bind(plan_id)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::NotFound);
        }
        Ok(())
    }

    /// Every zone.
    pub async fn zones(&self) -> Result<Vec<ZoneRow>, StoreError> {
        let rows = sqlx::query("SELECT id, name, plan_id FROM zones ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(ZoneRow {
                    id: r.col("id")?,
                    name: r.col("name")?,
                    plan_id: r.col("plan_id")?,
                })
            })
            .collect()
    }

    /// Puts a device in a zone and/or on a plan of its own (`None` clears either).
    pub async fn assign_device(
        &self,
        device_id: i64,
        zone_id: Option<i64>,
        plan_id: Option<i64>,
    ) -> Result<(), WriteError> {
        let r = sqlx::query("UPDATE devices SET zone_id = $1, plan_id = $2 WHERE id = $3")
            .bind(zone_id)
            .bind(plan_id)
            .bind(device_id)
            .execute(self.pool())
            .await
            .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::NotFound);
        }
        Ok(())
    }

    /// Adds a member group.
    pub async fn add_group(
        &self,
        name: &str,
        discount_pct: i64,
        plan_id: Option<i64>,
        now: i64,
    ) -> Result<i64, WriteError> {
        sqlx::query_scalar(
            "INSERT INTO member_groups (name, discount_pct, plan_id, ctime) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(discount_pct)
        .bind(plan_id)
        .bind(now)
        .fetch_one(self.pool())
        .await.map_err(se)
    }

    /// Sets a group's discount and own plan.
    pub async fn set_group(
        &self,
        id: i64,
        discount_pct: i64,
        plan_id: Option<i64>,
    ) -> Result<(), WriteError> {
        let r =
            sqlx::query("UPDATE member_groups SET discount_pct = $1, plan_id = $2 WHERE id = $3")
                .bind(discount_pct)
                .bind(plan_id)
                .bind(id)
                .execute(self.pool())
                .await
                .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::NotFound);
        }
        Ok(())
    }

    /// Every member group.
    pub async fn groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, discount_pct, plan_id FROM member_groups ORDER BY id")
                .fetch_all(self.pool())
                .await
                .map_err(se)?;
        rows.iter()
            .map(|r| {
                Ok(GroupRow {
                    id: r.col("id")?,
                    name: r.col("name")?,
                    discount_pct: r.col("discount_pct")?,
                    plan_id: r.col("plan_id")?,
                })
            })
            .collect()
    }

    /// Puts a user in a group (or none). Applies to sessions started afterwards.
    pub async fn set_user_group(
        &self,
        user_id: i64,
        group_id: Option<i64>,
    ) -> Result<(), WriteError> {
        let r = sqlx::query("UPDATE users SET group_id = $1 WHERE id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::NotFound);
        }
        Ok(())
    }

    /// The group a user is in.
    pub async fn group_of_user(&self, user_id: i64) -> Result<Option<i64>, StoreError> {
        let g: Option<Option<i64>> = sqlx::query_scalar("SELECT group_id FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(se)?;
        Ok(g.flatten())
    }

    /// Adds a package for sale (windows as `HH:MM-HH:MM`, validated by the caller).
    #[allow(clippy::too_many_arguments)]
    pub async fn add_package(
        &self,
        name: &str,
        minutes: i64,
        price: i64,
        zones: &[i64],
        windows: &[Window],
        valid_days: i64,
        now: i64,
    ) -> Result<i64, WriteError> {
        sqlx::query_scalar(
            "INSERT INTO packages (name, minutes, price, zones, windows, valid_days, ctime) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(name)
        .bind(minutes)
        .bind(price)
        .bind(join(zones))
        .bind(join(windows))
        .bind(valid_days)
        .bind(now)
        .fetch_one(self.pool())
        .await.map_err(se)
    }

    /// Every package.
    pub async fn packages(&self) -> Result<Vec<PackageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, minutes, price, zones, windows, valid_days, on_sale FROM packages ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                let zones: String = r.col("zones")?;
                let w: String = r.col("windows")?;
                let on_sale: i64 = r.col("on_sale")?;
                Ok(PackageRow {
                    id: r.col("id")?,
                    name: r.col("name")?,
                    minutes: r.col("minutes")?,
                    price: r.col("price")?,
                    zones: strict_ints("packages.zones", &zones)?,
                    windows: strict_windows("packages.windows", &w)?
                        .iter()
                        .map(Window::to_string)
                        .collect(),
                    valid_days: r.col("valid_days")?,
                    on_sale: flag("packages.on_sale", on_sale)?,
                })
            })
            .collect()
    }

    /// Withdraws a package from sale (or puts it back). What users already hold is kept:
    /// their user packages copied the package's terms when bought.
    pub async fn set_package_on_sale(&self, id: i64, on_sale: bool) -> Result<(), WriteError> {
        let r = sqlx::query("UPDATE packages SET on_sale = $1 WHERE id = $2")
            .bind(i64::from(on_sale))
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(se)?;
        if r.rows_affected() == 0 {
            return Err(WriteError::NotFound);
        }
        Ok(())
    }

    /// Buys a package from the balance, in one transaction: the ledger debit
    /// `pkg:<user package>`, the user's totals, the user package and its time ledger row.
    pub async fn buy_package_with_balance(
        &self,
        user_id: i64,
        package_id: i64,
        now: i64,
    ) -> Result<Purchase, StoreError> {
        let mut tx = self.pool().begin().await.map_err(se)?;
        self.lock_user(&mut tx, user_id).await?;
        let Some(Granted {
            price,
            name,
            user_package_id: up,
        }) = grant(
            &mut tx,
            user_id,
            package_id,
            "balance",
            None,
            Sale::OnSaleNow,
            now,
        )
        .await?
        else {
            return Ok(Purchase::NotOnSale);
        };
        package_debit(&mut tx, user_id, up, &name, price, now).await?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET used_account = used_account + $1, balance_account = balance_account - $1, utime = $2
             WHERE id = $3 AND state = 0 AND balance_account >= $1 RETURNING balance_account",
        )
        .bind(price)
        .bind(now)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        let Some(balance) = balance else {
            tx.rollback().await.map_err(se)?;
            return Ok(Purchase::Insufficient);
        };
        tx.commit().await.map_err(se)?;
        Ok(Purchase::Bought {
            user_package_id: up,
            balance,
        })
    }

    /// Gives a user a package without payment (an operator's grant), in one transaction.
    pub async fn grant_package(
        &self,
        user_id: i64,
        package_id: i64,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool().begin().await.map_err(se)?;
        let r = grant(
            &mut tx,
            user_id,
            package_id,
            "operator",
            None,
            Sale::OnSaleNow,
            now,
        )
        .await?;
        tx.commit().await.map_err(se)?;
        Ok(r.map(|g| g.user_package_id))
    }

    /// The packages a user holds with time left and not expired, soonest expiry first.
    pub async fn user_packages(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<Vec<UserPackageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT up.id, up.package_id, p.name, up.seconds_left, up.valid_from, up.expires_at, up.source
             FROM user_packages up JOIN packages p ON p.id = up.package_id
             WHERE up.user_id = $1 AND up.seconds_left > 0 AND up.expires_at > $2
             ORDER BY up.expires_at, up.id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(self.pool())
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                let source: String = r.col("source")?;
                if !matches!(source.as_str(), "balance" | "wechat" | "operator") {
                    return Err(StoreError::corrupt("user_packages.source", source));
                }
                Ok(UserPackageRow {
                    id: r.col("id")?,
                    package_id: r.col("package_id")?,
                    name: r.col("name")?,
                    seconds_left: r.col("seconds_left")?,
                    valid_from: r.col("valid_from")?,
                    expires_at: r.col("expires_at")?,
                    source,
                })
            })
            .collect()
    }

    /// The sum of a user package's time ledger (always equal to its seconds left).
    pub async fn package_ledger_sum(&self, user_package_id: i64) -> Result<i64, StoreError> {
        let s: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(seconds) AS BIGINT) FROM package_ledger WHERE user_package_id = $1",
        )
        .bind(user_package_id)
        .fetch_one(self.pool())
        .await
        .map_err(se)?;
        Ok(s.unwrap_or(0))
    }

    /// The catalog the actors price with, in the venue's zone `tz`.
    pub async fn pricing_catalog(&self, tz: chrono_tz::Tz) -> Result<Catalog, StoreError> {
        let mut c = Catalog {
            tz,
            ..Catalog::default()
        };
        for p in self.plans().await? {
            c.plans.insert(p.id, Arc::new(p));
        }
        for z in self.zones().await? {
            c.zone_plans.insert(z.id, z.plan_id);
        }
        for g in self.groups().await? {
            c.groups.insert(g.id, (g.discount_pct, g.plan_id));
        }
        let rows = sqlx::query(
            "SELECT id, zone_id, plan_id FROM devices WHERE zone_id IS NOT NULL OR plan_id IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await
        .map_err(se)?;
        for r in &rows {
            c.devices
                .insert(r.col("id")?, (r.col("zone_id")?, r.col("plan_id")?));
        }
        Ok(c)
    }

    /// `Store::held_packages`.
    pub(super) async fn held_packages_of(
        &self,
        user_id: i64,
        now: i64,
    ) -> StoreResult<Vec<HeldPackage>> {
        let rows = sqlx::query(
            "SELECT id, seconds_left, valid_from, expires_at, zones, windows FROM user_packages
             WHERE user_id = $1 AND seconds_left > 0 AND expires_at > $2 ORDER BY id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(self.pool())
        .await
        .map_err(se)?;
        rows.iter()
            .map(|r| {
                let zones: String = r.col("zones")?;
                let w: String = r.col("windows")?;
                Ok(HeldPackage {
                    id: r.col("id")?,
                    seconds_left: r.col("seconds_left")?,
                    valid_from: r.col("valid_from")?,
                    expires_at: r.col("expires_at")?,
                    zones: strict_ints("user_packages.zones", &zones)?,
                    windows: strict_windows("user_packages.windows", &w)?,
                })
            })
            .collect()
    }

    /// `Store::session_units`.
    pub(super) async fn session_units_of(&self, session_id: i64) -> StoreResult<Vec<UnitCharge>> {
        let rows = sqlx::query(
            "SELECT unit, price, debit, user_package_id FROM session_units WHERE session_id = $1 ORDER BY unit",
        )
        .bind(session_id)
        .fetch_all(self.pool())
        .await
        .map_err(se)?;
        // A unit's package seconds are in the time ledger; the actors only need the id.
        rows.iter()
            .map(|r| {
                let pkg: Option<i64> = r.col("user_package_id")?;
                Ok(UnitCharge {
                    unit: r.col("unit")?,
                    price: r.col("price")?,
                    debit: r.col("debit")?,
                    // The seconds taken are not stored per unit (the package's
                    // ledger has them); only which package paid matters here.
                    package: pkg.map(|user_package| PackageTime {
                        user_package,
                        seconds: 0,
                    }),
                })
            })
            .collect()
    }

    /// `Store::reserve_priced_unit`: one transaction for the session's counters, the
    /// unit's record, and either its ledger debit or its package time.
    pub(super) async fn reserve_priced(
        &self,
        session_id: i64,
        user_id: i64,
        c: UnitCharge,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve> {
        let mut tx = self.pool().begin().await.map_err(se)?;
        let active = sqlx::query(
            "UPDATE sessions SET
                reserved_units = CASE WHEN reserved_units > $1 THEN reserved_units ELSE $1 END,
                last_heard_at = CASE WHEN last_heard_at > $2 THEN last_heard_at ELSE $2 END,
                utime = $4
             WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(c.unit)
        .bind(last_heard_at)
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        if active.rows_affected() == 0 {
            return Ok(Reserve::SessionEnded);
        }
        let fresh = record_unit(&mut tx, session_id, c).await?;
        if !fresh {
            // Reserved before (a replayed step): nothing more to do.
            tx.commit().await.map_err(se)?;
            return Ok(Reserve::Reserved {
                balance: kioskd_actors::ports::Store::user_balance(self, user_id).await?,
            });
        }
        if let Some(PackageTime {
            user_package: up,
            seconds: secs,
        }) = c.package
        {
            if !use_package(&mut tx, session_id, user_id, c.unit, up, secs, now).await? {
                tx.rollback().await.map_err(se)?;
                return Ok(Reserve::PackageGone);
            }
            let balance: i64 =
                sqlx::query_scalar("SELECT balance_account FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(se)?;
            tx.commit().await.map_err(se)?;
            return Ok(Reserve::Reserved { balance });
        }
        sqlx::query(
            "INSERT INTO ledger (id, user_id, amount, kind, session_id, created_at) VALUES ($1, $2, $3, 'debit', $4, $5)",
        )
        .bind(format!("{session_id}:{}", c.unit))
        .bind(user_id)
        .bind(-c.debit)
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(se)?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET used_account = used_account + $1, balance_account = balance_account - $1, utime = $2
             WHERE id = $3 AND balance_account >= $1 RETURNING balance_account",
        )
        .bind(c.debit)
        .bind(now)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(se)?;
        match balance {
            Some(balance) => {
                tx.commit().await.map_err(se)?;
                Ok(Reserve::Reserved { balance })
            }
            None => {
                tx.rollback().await.map_err(se)?;
                Ok(Reserve::Insufficient {
                    balance: kioskd_actors::ports::Store::user_balance(self, user_id).await?,
                })
            }
        }
    }
}

/// A package given to a user by [`grant`].
pub(super) struct Granted {
    /// The package's price now (fen).
    pub price: i64,
    /// Its name.
    pub name: String,
    /// The new user package.
    pub user_package_id: i64,
}

/// Which packages [`grant`] may give.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sale {
    /// Only one on sale now (a purchase from the balance, an operator's grant).
    OnSaleNow,
    /// Also one withdrawn since (a paid WeChat Pay order: it was on sale when ordered).
    PaidOrder,
}

/// Inserts a user package for `package_id` with its purchase time-ledger row (`None`: no
/// such package, or not on sale when `sale` asks for that).
pub(super) async fn grant(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    package_id: i64,
    source: &str,
    transaction_id: Option<&str>,
    sale: Sale,
    now: i64,
) -> Result<Option<Granted>, StoreError> {
    let sql = match sale {
        Sale::OnSaleNow => {
            "SELECT price, name, minutes, zones, windows, valid_days FROM packages WHERE id = $1 AND on_sale = 1"
        }
        Sale::PaidOrder => {
            "SELECT price, name, minutes, zones, windows, valid_days FROM packages WHERE id = $1"
        }
    };
    let p = sqlx::query(sql)
        .bind(package_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(se)?;
    let Some(p) = p else {
        return Ok(None);
    };
    let price: i64 = p.col("price")?;
    let name: String = p.col("name")?;
    let minutes: i64 = p.col("minutes")?;
    let zones: String = p.col("zones")?;
    let w: String = p.col("windows")?;
    let days: i64 = p.col("valid_days")?;
    let up: i64 = sqlx::query_scalar(
        "INSERT INTO user_packages (user_id, package_id, seconds_left, valid_from, expires_at, zones, windows, source, transaction_id, ctime)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $4) RETURNING id",
    )
    .bind(user_id)
    .bind(package_id)
    .bind(minutes * 60)
    .bind(now)
    .bind(now + days * 86_400_000)
    .bind(zones)
    .bind(w)
    .bind(source)
    .bind(transaction_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(se)?;
    sqlx::query(
        "INSERT INTO package_ledger (id, user_package_id, user_id, seconds, kind, created_at) VALUES ($1, $2, $3, $4, 'purchase', $5)",
    )
    .bind(format!("pkg:{up}"))
    .bind(up)
    .bind(user_id)
    .bind(minutes * 60)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(se)?;
    Ok(Some(Granted {
        price,
        name,
        user_package_id: up,
    }))
}

/// The money ledger's row of a package purchase: `pkg:<user package>`, `price` fen
/// debited (its time-ledger row shares the id).
pub(super) async fn package_debit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    user_package_id: i64,
    name: &str,
    price: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ledger (id, user_id, amount, kind, reason, created_at) VALUES ($1, $2, $3, 'debit', $4, $5)",
    )
    .bind(format!("pkg:{user_package_id}"))
    .bind(user_id)
    .bind(-price)
    .bind(format!("package:{name}"))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(se)?;
    Ok(())
}

/// Records how a unit was paid; false when it was recorded before (a replay).
pub(super) async fn record_unit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    session_id: i64,
    c: UnitCharge,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO session_units (session_id, unit, price, debit, user_package_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (session_id, unit) DO NOTHING RETURNING unit",
    )
    .bind(session_id)
    .bind(c.unit)
    .bind(c.price)
    .bind(c.debit)
    .bind(c.package.map(|p| p.user_package))
    .fetch_optional(&mut **tx)
    .await
    .map_err(se)?;
    Ok(r.is_some())
}

/// Takes a unit's seconds off a user package (it must be the user's, unexpired at the
/// unit's start and hold a whole unit) with its time-ledger row `<session>:<unit>:pkg`.
/// False: the package cannot cover the unit.
pub(super) async fn use_package(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    session_id: i64,
    user_id: i64,
    unit: i64,
    user_package_id: i64,
    seconds: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE user_packages SET seconds_left = seconds_left - $1
         WHERE id = $2 AND user_id = $3 AND seconds_left >= $1 AND expires_at > $4",
    )
    .bind(seconds)
    .bind(user_package_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(se)?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO package_ledger (id, user_package_id, user_id, seconds, kind, session_id, created_at) VALUES ($1, $2, $3, $4, 'use', $5, $6)",
    )
    .bind(format!("{session_id}:{unit}:pkg"))
    .bind(user_package_id)
    .bind(user_id)
    .bind(-seconds)
    .bind(session_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(se)?;
    Ok(true)
}

/// Gives unused package time back at a session's end (`<session>:<user package>:pkgback`).
pub(super) async fn return_package_time(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    session_id: i64,
    user_id: i64,
    returns: &[PackageTime],
    now: i64,
) -> Result<(), StoreError> {
    for &PackageTime {
        user_package: up,
        seconds: secs,
    } in returns
    {
        if secs <= 0 {
            continue;
        }
        let ins = sqlx::query(
            "INSERT INTO package_ledger (id, user_package_id, user_id, seconds, kind, session_id, created_at) VALUES ($1, $2, $3, $4, 'return', $5, $6)
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(format!("{session_id}:{up}:pkgback"))
        .bind(up)
        .bind(user_id)
        .bind(secs)
        .bind(session_id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await
        .map_err(se)?;
        if ins.is_some() {
            sqlx::query("UPDATE user_packages SET seconds_left = seconds_left + $1 WHERE id = $2")
                .bind(secs)
                .bind(up)
                .execute(&mut **tx)
                .await
                .map_err(se)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lists_and_flags_decode_strictly() {
        assert_eq!(strict_ints("w", "1,2,3").unwrap(), vec![1, 2, 3]);
        assert_eq!(strict_ints("w", "").unwrap(), Vec::<i64>::new());
        assert!(matches!(
            strict_ints("rate_plans.week", "1,x,3"),
            Err(StoreError::Corrupt { what, .. }) if what == "rate_plans.week"
        ));
        assert_eq!(
            strict_windows("w", "22:00-08:00").unwrap()[0].to_string(),
            "22:00-08:00"
        );
        assert!(strict_windows("w", "22:00-8").is_err());
        assert!(flag("f", 1).unwrap() && !flag("f", 0).unwrap());
        assert!(flag("f", 2).is_err());
    }
}
